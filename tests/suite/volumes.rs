//! `run -v`: bind mounts and named volumes, through the CLI only. Every test uses random names
//! and content, checks what the host sees, and proves the run left nothing behind: the host
//! mount table is byte-for-byte the same, no container state or process remains, the image in
//! the store is unchanged and the mount points the runtime created are gone with its layer.

use crate::common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::run::{wait_bounded, RUN_TIMEOUT};
use common::volume::{host_dir, host_entries_named, mount_points_of, spec, tree_digest};
use common::{assert_no_leaks, host_mounts, marker, processes_with, random_in, TestRoot};
use rstest::rstest;

/// A test root with the standard image, plus what must hold after every run.
struct Setup {
    root: TestRoot,
    image: String,
    mounts_before: String,
    store_before: String,
}

impl Setup {
    fn new() -> Self {
        let root = TestRoot::new();
        let (image, _) = root.install_image(serde_json::json!({"Cmd": ["/bin/sh"]}));
        Self::with_image(root, image)
    }

    /// After the image has been adjusted (e.g. hostile symlinks added), snapshot the host.
    fn with_image(root: TestRoot, image: String) -> Self {
        let store_before = tree_digest(&root.store().join(&image));
        Setup {
            root,
            image,
            mounts_before: host_mounts(),
            store_before,
        }
    }

    fn rootfs(&self) -> std::path::PathBuf {
        self.root.store().join(&self.image).join("rootfs")
    }

    /// `run -v SPEC... IMAGE CMD...`.
    fn run(&self, volumes: &[String], cmd: &[&str]) -> assert_cmd::assert::Assert {
        self.run_with(&[], volumes, cmd)
    }

    /// `run OPTIONS... -v SPEC... IMAGE CMD...`.
    fn run_with(
        &self,
        options: &[&str],
        volumes: &[String],
        cmd: &[&str],
    ) -> assert_cmd::assert::Assert {
        let mut c = self.root.cmd();
        c.arg("run").args(options);
        for v in volumes {
            // `--volume=` so a spec starting with `-` reaches the runtime as a value.
            c.arg(format!("--volume={v}"));
        }
        c.arg(&self.image).args(cmd).assert()
    }

    /// Nothing leaked and the image in the store is exactly as before.
    fn assert_clean(&self, marker: &str) {
        assert_no_leaks(&self.root, &self.mounts_before, marker);
        let image = self.root.store().join(&self.image);
        assert_eq!(
            tree_digest(&image),
            self.store_before,
            "image in the store changed"
        );
    }
}

#[test]
fn file_written_inside_appears_on_the_host() {
    require_root!();
    let s = Setup::new();
    let (dir, target, file, content) = (host_dir(&s.root), marker(), marker(), marker());
    let inside = format!("/data/{target}/{file}");
    s.run(
        &[spec(&dir, &format!("/data/{target}"), None)],
        &["probe", "write", &inside, &content],
    )
    .success();
    assert_eq!(fs::read_to_string(dir.join(&file)).unwrap(), content);
    // No user namespace: root inside is root outside, files keep the writer's uid/gid.
    let meta = fs::metadata(dir.join(&file)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert!(
        !s.rootfs().join("data").join(&target).exists(),
        "mount point created in the image itself"
    );
    s.assert_clean(&content);
}

#[test]
fn host_file_and_dir_are_readable_inside() {
    require_root!();
    let s = Setup::new();
    let (dir, name, content, single) = (host_dir(&s.root), marker(), marker(), marker());
    fs::write(dir.join(&name), &content).unwrap();
    let file = s.root.dir.path().join(format!("file-{}", marker()));
    fs::write(&file, &single).unwrap();
    let script = format!("probe cat /srv/{name}; echo; probe cat /etc/{single}.conf");
    s.run(
        &[
            spec(&dir, "/srv", Some("rw")),
            spec(&file, &format!("/etc/{single}.conf"), Some("ro")),
        ],
        &["sh", "-c", &script],
    )
    .success()
    .stdout(format!("{content}\n{single}"));
    assert!(!s.rootfs().join(format!("etc/{single}.conf")).exists());
    s.assert_clean(&content);
}

#[test]
fn named_volume_persists_across_containers() {
    require_root!();
    let s = Setup::new();
    let (volume, file, content) = (format!("vol-{}", marker()), marker(), marker());
    let v = format!("{volume}:/store");
    s.run(
        std::slice::from_ref(&v),
        &["probe", "write", &format!("/store/{file}"), &content],
    )
    .success();
    let on_host = s.root.volumes().join(&volume).join(&file);
    assert_eq!(
        fs::read_to_string(&on_host).unwrap(),
        content,
        "volume not kept on the host"
    );
    s.run(&[v], &["probe", "cat", &format!("/store/{file}")])
        .success()
        .stdout(content.clone());
    assert!(
        s.root.volumes().join(&volume).is_dir(),
        "named volume removed after exit"
    );
    s.assert_clean(&content);
}

#[test]
fn read_only_volume_rejects_writes_with_erofs() {
    require_root!();
    let s = Setup::new();
    let (dir, file, original, attempt) = (host_dir(&s.root), marker(), marker(), marker());
    fs::write(dir.join(&file), &original).unwrap();
    let before = tree_digest(&dir);
    for inside in [format!("/data/{file}"), format!("/data/new-{}", marker())] {
        s.run(
            &[spec(&dir, "/data", Some("ro"))],
            &["probe", "write", &inside, &attempt],
        )
        .code(98)
        .stderr(predicates::str::contains("errno=30"));
    }
    assert_eq!(fs::read_to_string(dir.join(&file)).unwrap(), original);
    assert_eq!(tree_digest(&dir), before, "read-only source changed");
    s.assert_clean(&attempt);
}

#[test]
fn several_volumes_at_once() {
    require_root!();
    let s = Setup::new();
    let (a, b) = (host_dir(&s.root), host_dir(&s.root));
    let (named, fa, fb, fc, content) = (
        format!("v{}", marker()),
        marker(),
        marker(),
        marker(),
        marker(),
    );
    fs::write(a.join(&fa), &content).unwrap();
    // Nested targets: /mnt/b lands on top of the /mnt volume, whatever the order given. The
    // mount point must already exist in the read-only volume (as with docker).
    fs::create_dir(a.join("b")).unwrap();
    let script = format!(
        "probe cat /mnt/{fa} > /mnt/b/{fb} && probe write /named/{fc} {content} && \
         probe write /mnt/ro-check x; test $? -eq 98"
    );
    s.run(
        &[
            spec(&b, "/mnt/b", None),
            spec(&a, "/mnt", Some("ro")),
            format!("{named}:/named"),
        ],
        &["sh", "-c", &script],
    )
    .success();
    assert_eq!(fs::read_to_string(b.join(&fb)).unwrap(), content);
    assert_eq!(
        fs::read_to_string(s.root.volumes().join(&named).join(&fc)).unwrap(),
        content
    );
    assert!(!a.join("ro-check").exists(), "read-only volume was written");
    s.assert_clean(&content);
}

#[test]
fn hostile_symlinks_in_the_image_cannot_move_a_mount_outside_the_root() {
    require_root!();
    let root = TestRoot::new();
    let (image, _) = root.install_image(serde_json::json!({"Cmd": ["/bin/sh"]}));
    let rootfs = root.store().join(&image).join("rootfs");
    symlink("/etc", rootfs.join("evil")).unwrap();
    symlink("../../..", rootfs.join("up")).unwrap();
    symlink("/bin/../../../../..", rootfs.join("abs")).unwrap();
    let s = Setup::with_image(root, image);
    let dir = host_dir(&s.root);
    let (m1, m2, m3, content) = (marker(), marker(), marker(), marker());
    // Each write goes through the symlinked path; each check reads the place inside the root
    // the symlink really names from inside the container.
    let script = format!(
        "probe write /evil/{m1}/f {content} >/dev/null && probe cat /etc/{m1}/f && \
         probe write /up/tmp/{m2}/g {content} >/dev/null && probe cat /tmp/{m2}/g && \
         probe write /abs/{m3}/h {content} >/dev/null && probe cat /{m3}/h"
    );
    let out = s
        .run(
            &[
                spec(&dir, &format!("/evil/{m1}"), None),
                spec(&dir, &format!("/up/tmp/{m2}"), None),
                spec(&dir, &format!("/abs/{m3}"), None),
            ],
            &["sh", "-c", &script],
        )
        .get_output()
        .clone();
    match out.status.code() {
        Some(0) => {
            assert_eq!(String::from_utf8_lossy(&out.stdout), content.repeat(3));
            for f in ["f", "g", "h"] {
                assert_eq!(fs::read_to_string(dir.join(f)).unwrap(), content);
            }
        }
        Some(125) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.starts_with("devoxx-docker:"),
                "refusal without a clear error: {err}"
            );
        }
        other => panic!(
            "unexpected exit {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    for m in [&m1, &m2, &m3] {
        let escaped = host_entries_named(m);
        assert!(escaped.is_empty(), "created outside the root: {escaped:?}");
    }
    s.assert_clean(&content);
}

#[rstest]
#[case::empty_spec("")]
#[case::no_destination("SRC")]
#[case::empty_source(":/data")]
#[case::empty_destination("SRC:")]
#[case::empty_mode("SRC:/data:")]
#[case::unknown_mode("SRC:/data:rx")]
#[case::too_many_parts("SRC:/data:ro:rw")]
#[case::relative_destination("SRC:data")]
#[case::root_destination("SRC:/")]
#[case::dotdot_destination("SRC:/data/../etc")]
#[case::dot_destination("SRC:/./data")]
#[case::under_dev("SRC:/dev/NAME")]
#[case::under_proc("SRC:/proc")]
#[case::missing_host_path("./MISSING:/data")]
#[case::missing_absolute_host_path("/MISSING:/data")]
#[case::bad_volume_name("NAME/sub:/data")]
#[case::dotdot_volume_name("..:/data")]
#[case::dash_volume_name("-NAME:/data")]
#[case::duplicate_destination("SRC:/data SRC:/data/")]
fn bad_specs_fail_with_125_and_change_nothing(#[case] template: &str) {
    require_root!();
    let s = Setup::new();
    let (src, name, missing) = (host_dir(&s.root), format!("n{}", marker()), marker());
    let specs: Vec<String> = template
        .split(' ')
        .map(|t| {
            t.replace("SRC", &src.display().to_string())
                .replace("NAME", &name)
                .replace("MISSING", &missing)
        })
        .collect();
    let volumes_before = tree_digest(&s.root.volumes());
    let out = s
        .run(&specs, &["probe", "write", "/data/x", &name])
        .code(125)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "want one line, got: {stderr}");
    assert!(stderr.starts_with("devoxx-docker:"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        tree_digest(&s.root.volumes()),
        volumes_before,
        "a volume was created"
    );
    assert_eq!(fs::read_dir(&src).unwrap().count(), 0, "source written");
    s.assert_clean(&name);
}

#[test]
fn sigterm_to_the_runtime_leaves_no_mount() {
    require_root!();
    let s = Setup::new();
    let (dir, target, mark) = (host_dir(&s.root), format!("/vol-{}", marker()), marker());
    let mut child = s
        .root
        .std_cmd()
        .args([
            "run",
            "--stop-timeout",
            "1",
            "-v",
            &spec(&dir, &target, None),
            &s.image,
        ])
        .args(["probe", "sleep", "60", &mark])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let container = loop {
        let mounted = processes_with(&mark)
            .into_iter()
            .find(|&pid| pid != child.id() as i32 && mount_points_of(pid).contains(&target));
        if let Some(pid) = mounted {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "container never had {target} mounted"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !host_mounts().contains(&target),
        "the volume mount is visible on the host while running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_bounded(&mut child, RUN_TIMEOUT).expect("runtime did not exit in time");
    // PID 1 ignores an unhandled SIGTERM, so the runtime kills it after --stop-timeout.
    assert!(
        matches!(status.code(), Some(143) | Some(137)),
        "runtime exit after SIGTERM: {status:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{container}")).exists(),
        "container survived"
    );
    s.assert_clean(&mark);
}

#[test]
fn demo_relative_volume_path() {
    require_root!();
    let s = Setup::new();
    let cwd = s.root.dir.path().join(format!("demo-{}", marker()));
    fs::create_dir_all(cwd.join("volumes")).unwrap();
    let content = marker();
    s.root
        .cmd()
        .current_dir(&cwd)
        .args(["run", "-v", "./volumes:/data", &s.image, "sh", "-c"])
        .arg(format!("echo {content} > /data/hello"))
        .assert()
        .success();
    assert_eq!(
        fs::read_to_string(cwd.join("volumes/hello")).unwrap(),
        format!("{content}\n")
    );
    s.assert_clean(&content);
}

/// A fresh host directory bound on `/data` and a new named volume read-only on `/named`: the
/// directory and the two specs.
fn bind_and_named_volume(s: &Setup) -> (PathBuf, Vec<String>) {
    let (dir, volume) = (host_dir(&s.root), format!("v{}", marker()));
    let specs = vec![spec(&dir, "/data", None), format!("{volume}:/named:ro")];
    (dir, specs)
}

#[test]
fn failing_command_leaves_no_mount() {
    require_root!();
    let s = Setup::new();
    let (dir, specs) = bind_and_named_volume(&s);
    let (mark, code) = (marker(), random_in(1..=90) as i32);
    s.run(
        &specs,
        &["sh", "-c", &format!("echo {mark} > /data/f; exit {code}")],
    )
    .code(code);
    assert_eq!(
        fs::read_to_string(dir.join("f")).unwrap(),
        format!("{mark}\n")
    );
    s.assert_clean(&mark);
}

/// Needs the memory limit (cgroup branch) to be in place: the kernel kills at 32 MiB.
#[test]
fn oom_killed_command_leaves_no_mount() {
    require_root!();
    let s = Setup::new();
    let (_, specs) = bind_and_named_volume(&s);
    let mark = marker();
    s.run_with(&["-m", "32m"], &specs, &["probe", "alloc", "256", &mark])
        .code(137);
    s.assert_clean(&mark);
}

#[test]
fn refusal_inside_the_container_setup_is_clean() {
    require_root!();
    let root = TestRoot::new();
    let (image, _) = root.install_image(serde_json::json!({"Cmd": ["/bin/sh"]}));
    let missing = marker();
    symlink(
        format!("/{missing}/deeper"),
        root.store().join(&image).join("rootfs/dangling"),
    )
    .unwrap();
    fs::write(root.store().join(&image).join("rootfs/etc/plain"), "").unwrap();
    let s = Setup::with_image(root, image);
    let (dir, mark) = (host_dir(&s.root), marker());
    for target in ["/dangling/x", "/etc/plain"] {
        let out = s
            .run(
                &[spec(&dir, target, None)],
                &["probe", "write", "/x", &mark],
            )
            .code(125)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("devoxx-docker:") && stderr.contains(target),
            "{stderr}"
        );
    }
    assert!(host_entries_named(&missing).is_empty());
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    s.assert_clean(&mark);
}

/// A volume over `/etc` is the user's data: the runtime's /etc/hosts etc. may cover a file
/// there with a bind mount, but never create, replace or delete anything in the host source.
#[test]
fn volume_over_etc_keeps_the_host_files_untouched() {
    require_root!();
    let s = Setup::new();
    let dir = host_dir(&s.root);
    let (hosts, mark) = (format!("10.9.8.7 {}\n", marker()), marker());
    fs::write(dir.join("hosts"), &hosts).unwrap();
    fs::write(dir.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let before = tree_digest(&dir);
    let out = s
        .run(&[spec(&dir, "/etc", None)], &["probe", "echo", &mark])
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8_lossy(&out).trim(), mark);
    assert_eq!(
        tree_digest(&dir),
        before,
        "the runtime changed the volume's host files"
    );
    s.assert_clean(&mark);
}

/// However the image's symlinks route `/etc` into a volume (`/data -> /etc` with `-v DIR:/data`,
/// or `/etc -> /data`), the runtime's /etc files are never created, replaced or deleted in the
/// user's directory: the decision is made by mount identity, not by comparing paths.
#[rstest]
#[case::data_links_to_etc("data", "/etc")]
#[case::etc_links_to_data("etc", "/data")]
fn etc_files_never_touch_a_volume_reached_through_image_symlinks(
    #[case] link: &str,
    #[case] points_to: &str,
) {
    require_root!();
    let root = TestRoot::new();
    let (image, _) = root.install_image(serde_json::json!({"Cmd": ["/bin/sh"]}));
    let rootfs = root.store().join(&image).join("rootfs");
    if link == "etc" {
        fs::create_dir_all(rootfs.join("data")).unwrap();
        fs::rename(rootfs.join("etc/passwd"), rootfs.join("data/passwd")).unwrap();
    }
    fs::remove_dir_all(rootfs.join(link)).unwrap();
    symlink(points_to, rootfs.join(link)).unwrap();
    let s = Setup::with_image(root, image);
    let dir = host_dir(&s.root);
    let mark = marker();
    // A symlink the runtime would delete to write its own file, and a plain file it may only
    // cover; `hostname` is absent and must stay so.
    symlink(format!("/nowhere-{mark}"), dir.join("resolv.conf")).unwrap();
    fs::write(dir.join("hosts"), format!("10.1.2.3 {mark}\n")).unwrap();
    let before = tree_digest(&dir);
    let out = s
        .run(&[spec(&dir, "/data", None)], &["probe", "echo", &mark])
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8_lossy(&out).trim(), mark);
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        tree_digest(&dir),
        before,
        "the runtime changed the volume's host files (now: {names:?})"
    );
    s.assert_clean(&mark);
}
