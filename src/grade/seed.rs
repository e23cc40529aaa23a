//! The image every submission runs: `/fs/<image>/rootfs` laid out like the alpine rootfs the
//! workshop pulls (busybox applets where alpine has them, the probe at `/bin/probe`), made
//! anew for each submission so no submission sees another's leftovers.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::inspect;

/// Directories of alpine's rootfs.
const DIRS: [&str; 22] = [
    "bin",
    "dev",
    "etc",
    "home",
    "lib",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/local/bin",
    "var",
    "var/tmp",
    "var/log",
];

/// Where the image's rootfs lives (the workshop's layout).
pub fn rootfs_of(store: &Path, image: &str) -> PathBuf {
    store.join(image).join("rootfs")
}

/// Build a fresh rootfs at `rootfs` from `busybox` (static) and `probe`.
pub fn seed(rootfs: &Path, busybox: &Path, probe: &Path) -> anyhow::Result<()> {
    if let Some(image_dir) = rootfs.parent() {
        remove_tree(image_dir)?;
    }
    for d in DIRS {
        fs::create_dir_all(rootfs.join(d)).with_context(|| format!("create {d}"))?;
    }
    for d in ["tmp", "var/tmp"] {
        fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o1777))?;
    }
    fs::set_permissions(rootfs.join("root"), fs::Permissions::from_mode(0o700))?;
    fs::copy(busybox, rootfs.join("bin/busybox")).context("copy busybox")?;
    fs::copy(probe, rootfs.join("bin/probe")).context("copy probe")?;
    link_applets(rootfs, busybox)?;
    write_etc(rootfs)
}

/// One symlink per applet at the path busybox itself names (`--list-full`), like alpine.
fn link_applets(rootfs: &Path, busybox: &Path) -> anyhow::Result<()> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("busybox --list-full")?;
    for rel in String::from_utf8_lossy(&out.stdout).lines() {
        let path = rootfs.join(rel);
        if rel.is_empty() || rel.contains("..") || path.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &path).with_context(|| format!("link {rel}"))?;
    }
    Ok(())
}

fn write_etc(rootfs: &Path) -> anyhow::Result<()> {
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        ),
        (
            "etc/group",
            "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\n",
        ),
        ("etc/hostname", "localhost\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("etc/alpine-release", "3.20.0\n"),
        (
            "etc/os-release",
            "NAME=\"devoxx-grade (alpine layout)\"\nID=alpine\nVERSION_ID=3.20.0\n",
        ),
        (
            "etc/profile",
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        ),
    ];
    for (rel, text) in files {
        fs::write(rootfs.join(rel), text).with_context(|| format!("write {rel}"))?;
    }
    Ok(())
}

/// Detach every mount at or under `dir` (deepest first), then delete the tree without ever
/// crossing into another filesystem — a volume a submission left mounted here keeps its data.
pub fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    unmount_under(dir);
    if dir.symlink_metadata().is_err() {
        return Ok(());
    }
    let dev = dir.symlink_metadata()?.dev();
    remove_same_dev(dir, dev)
}

/// Lazily unmount everything mounted at or below `dir` in the grader's namespace.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mut points: Vec<String> = inspect::mounts("self")
        .into_iter()
        .map(|(_, p, _)| p)
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    points
}

fn remove_same_dev(path: &Path, dev: u64) -> anyhow::Result<()> {
    let meta = path.symlink_metadata()?;
    if meta.dev() != dev {
        bail!(
            "{} is on another filesystem (still mounted?): not removed",
            path.display()
        );
    }
    if meta.is_dir() {
        for e in fs::read_dir(path)? {
            remove_same_dev(&e?.path(), dev)?;
        }
        fs::remove_dir(path)?;
    } else {
        fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_deletes_a_plain_tree_and_tolerates_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("img");
        fs::create_dir_all(t.join("rootfs/etc")).unwrap();
        fs::write(t.join("rootfs/etc/x"), "x").unwrap();
        symlink("/etc/passwd", t.join("rootfs/link")).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
        assert!(
            fs::read_to_string("/etc/passwd").is_ok(),
            "a symlink's target is never followed"
        );
    }
}
