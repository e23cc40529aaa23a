//! Step "rootfs": the image's files are at `/`, a file of the host is not, and `..` cannot
//! climb out of the root (the classic chroot-without-chdir escape) — all seen from the host,
//! through the held container's `/proc/<pid>/root` and `/proc/<pid>/cwd`: nothing it prints
//! counts.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{fail, not_attempted, pass, with_effects, Ctx, Job};
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

/// The hint of a missing root switch, naming where the submission's image is.
fn root_hint(ctx: &Ctx) -> String {
    let root = match &ctx.sub.config.rootfs {
        Some(r) => r.display().to_string(),
        None => "/fs/<image>/rootfs".to_owned(),
    };
    format!("step 3 (rootfs): chroot (or pivot_root) into {root} in the child before running the command")
}

/// Does what the runtime printed tell of a root switch (its error, printed and ignored)?
fn mentions_root_switch(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("chroot") || s.contains("pivot_root") || s.contains("pivotroot")
}

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let (image_file, image_text) = (
        format!("grade-image-{}", random_word("")),
        random_word("img"),
    );
    let (host_file, host_text) = (
        format!("grade-host-{}", random_word("")),
        random_word("host"),
    );
    let host_path = Path::new("/").join(&host_file);
    if let Err(e) = ctx
        .image
        .add(&image_file, Some(&image_text), false)
        .and_then(|_| fs::write(&host_path, &host_text))
    {
        return vec![fail(
            "grader-setup",
            "marker files written",
            e.to_string(),
            "grader error: rerun",
        )];
    }
    let checks = held_root(ctx, &image_file, &image_text, &host_file, &host_text);
    let _ = fs::remove_file(&host_path);
    let write_name = format!("/tmp/grade-write-{}", random_word(""));
    let (_, fx) = ctx.run(Job::of(&[&["write", &write_name, "x"]]));
    let checked = format!(
        "checked {} after a write to /tmp",
        match &ctx.sub.config.rootfs {
            Some(_) => ctx.image.rootfs.display().to_string(),
            None => "/fs/<image>/rootfs".to_owned(),
        }
    );
    ctx.extra(super::verdict(
        !ctx.image.rootfs.join(write_name.trim_start_matches('/')).exists(),
        "image-unchanged-by-container",
        "a file written inside is not in the image's rootfs afterwards (copy-on-write, e.g. overlayfs)",
        checked,
        "mount an overlayfs with the image as lowerdir and a per-container upperdir",
    ));
    match checks {
        Ok(mut checks) => {
            if let Some(last) = checks.last_mut() {
                *last = with_effects(last.clone(), &fx);
            }
            checks
        }
        Err(check) => vec![check],
    }
}

/// Hold a container and look at its root and working directory from the host.
fn held_root(
    ctx: &mut Ctx,
    image_file: &str,
    image_text: &str,
    host_file: &str,
    host_text: &str,
) -> Result<Vec<Check>, Check> {
    let hold = ctx.hold(Job::of(&[]))?;
    let root = format!("/proc/{}/root", hold.held.pid);
    let read = |name: &str| fs::read_to_string(Path::new(&root).join(name)).unwrap_or_default();
    let sees_image = read(image_file) == image_text;
    let sees_host = read(host_file) == host_text;
    let switched = !same_file(&root, "/");
    let climbs = cwd_outside_root(hold.held.pid);
    let (inside, host) = (
        inspect::ns_inode(&hold.held.pid.to_string(), "mnt"),
        inspect::ns_inode(&hold.held.host.to_string(), "mnt"),
    );
    let (out, fx) = hold.finish(ctx);
    let root_hint: &str = &root_hint(ctx);
    if !switched {
        // A root switch was attempted when the command has a mount namespace of its own (the
        // workshop's step 3 makes one for it) or the runtime printed about one: then the
        // command ran on the host's root, outside the image — failed, not "not attempted".
        let own_mount_ns = inside.is_some() && inside != host;
        if own_mount_ns || mentions_root_switch(&out.stderr) {
            let why = if own_mount_ns {
                "the command ran outside the image: its / is the host's, though it runs in a mount namespace of its own"
            } else {
                "the command ran outside the image: its / is the host's, though the runtime tried a root switch (stderr)"
            };
            let hint = format!("{root_hint}: the root switch failed or was skipped (check chroot's and pivot_root's errors; devoxx-grade.toml's `rootfs` says where the runtime looks for the image)");
            return Ok([
                "image-files-at-root",
                "host-file-invisible",
                "cannot-climb-out",
            ]
            .into_iter()
            .map(|name| {
                with_effects(
                    fail(
                        name,
                        "the command runs inside the image's root",
                        format!("{why}; {}", out.describe()),
                        &hint,
                    ),
                    &fx,
                )
            })
            .collect());
        }
    }
    let no_switch = !switched;
    let file_at_root = if sees_image {
        pass(
            "image-files-at-root",
            &format!("/{image_file} of the image at the container's /"),
            "there (read through /proc/<pid>/root)",
        )
    } else if no_switch {
        not_attempted(
            "image-files-at-root",
            "the image's files at /",
            "the container's / is the host's",
            root_hint,
        )
    } else {
        fail(
            "image-files-at-root",
            &format!("/{image_file} of the image at the container's /"),
            "not there: its / is neither the host's nor the image's",
            root_hint,
        )
    };
    let host_hidden = if no_switch {
        not_attempted(
            "host-file-invisible",
            "a host file is not visible inside",
            "visible: no root switch",
            root_hint,
        )
    } else {
        super::verdict(
            !sees_host,
            "host-file-invisible",
            &format!("/{host_file} of the host invisible inside"),
            if sees_host { "visible" } else { "not visible" },
            root_hint,
        )
    };
    let no_climb = if no_switch {
        not_attempted(
            "cannot-climb-out",
            "../.. stays inside the root",
            "no root switch",
            root_hint,
        )
    } else {
        match climbs {
            Some(true) => fail(
                "cannot-climb-out",
                "the working directory inside the new root, so ../../.. stays inside it",
                "the working directory lies outside the root (/proc/<pid>/cwd): ../.. reaches the host's files",
                "step 3 (rootfs): after chroot, chdir to \"/\" (syscall.Chdir(\"/\")): the old working directory lies outside the new root",
            ),
            Some(false) => pass(
                "cannot-climb-out",
                "the working directory inside the new root, so ../../.. stays inside it",
                "inside",
            ),
            None => fail(
                "cannot-climb-out",
                "the working directory inside the new root, so ../../.. stays inside it",
                "could not be read (/proc/<pid>/cwd)",
                root_hint,
            ),
        }
    };
    Ok(vec![
        with_effects(file_at_root, &fx),
        with_effects(host_hidden, &fx),
        with_effects(no_climb, &fx),
    ])
}

/// Are `a` and `b` the same file (device and inode)?
pub(super) fn same_file(a: &str, b: &str) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Does `pid`'s working directory lie outside its root? Walk up from `/proc/<pid>/cwd` by `..`
/// (in the container's own mount namespace) until its root is met (inside) or the top is
/// reached without meeting it (outside: `..` from there climbs past the root).
pub fn cwd_outside_root(pid: i32) -> Option<bool> {
    let root = fs::metadata(format!("/proc/{pid}/root")).ok()?;
    let mut path = format!("/proc/{pid}/cwd");
    let mut here = fs::metadata(&path).ok()?;
    for _ in 0..256 {
        if here.dev() == root.dev() && here.ino() == root.ino() {
            return Some(false);
        }
        path.push_str("/..");
        let up = fs::metadata(&path).ok()?;
        if up.dev() == here.dev() && up.ino() == here.ino() {
            return Some(true);
        }
        here = up;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graders_own_working_directory_is_inside_its_root() {
        assert_eq!(cwd_outside_root(std::process::id() as i32), Some(false));
    }

    /// A process chrooted into a fresh directory (a static busybox sleeping there), with or
    /// without chdir("/") after: pre_exec does both before the exec, so it is so once spawned.
    fn chrooted(chdir: bool) -> (std::process::Child, tempfile::TempDir) {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        fs::copy("/bin/busybox", dir.path().join("busybox")).expect("make deps: busybox-static");
        let root = dir.path().to_path_buf();
        let mut cmd = std::process::Command::new("/busybox");
        cmd.args(["sleep", "20"]).current_dir("/tmp");
        // SAFETY: chroot and chdir only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::chroot(&root)?;
                if chdir {
                    nix::unistd::chdir("/")?;
                }
                Ok(())
            });
        }
        (cmd.spawn().expect("spawn the chrooted busybox"), dir)
    }

    #[test]
    fn a_chroot_without_chdir_leaves_the_working_directory_outside_the_root() {
        for (chdir, outside) in [(false, true), (true, false)] {
            let (mut child, _dir) = chrooted(chdir);
            let seen = cwd_outside_root(child.id() as i32);
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(seen, Some(outside), "chdir: {chdir}");
        }
    }
}
