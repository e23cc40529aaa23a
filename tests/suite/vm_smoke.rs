//! Guards for the environment the privileged suite runs in. In the VM (`make vm-test`) they
//! prove the guest really is what the suite is promised: cgroup v2 mounted alone with the
//! memory/cpu/pids controllers, overlayfs available, and a root from which a container can
//! `pivot_root` (an initramfs rootfs cannot). On a hybrid host the cgroup v2 test skips visibly.
use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;

use serial_test::serial;

/// The controllers every limit test relies on.
const NEEDED_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Filesystem type of the mount at `mount_point`, from this process's mountinfo.
fn fstype_at(mount_point: &str) -> Option<String> {
    common::host_mounts().lines().rev().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let point = before.split_whitespace().nth(4)?;
        (point == mount_point).then(|| after.split_whitespace().next().map(str::to_owned))?
    })
}

fn filesystem_supported(name: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)))
        .unwrap_or(false)
}

#[test]
fn cgroup2_is_mounted_alone_with_the_limit_controllers() {
    if fstype_at("/sys/fs/cgroup").as_deref() != Some("cgroup2") {
        skip!("cgroup v2 is not mounted alone at /sys/fs/cgroup on this host; run make vm-test");
    }
    let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .expect("cgroup2 root must have cgroup.controllers");
    let available: Vec<&str> = controllers.split_whitespace().collect();
    for wanted in NEEDED_CONTROLLERS {
        assert!(
            available.contains(&wanted),
            "controller {wanted} missing from cgroup.controllers: {controllers:?}"
        );
    }
    let mounts = common::host_mounts();
    let v1 = mounts
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup "))
        })
        .count();
    assert_eq!(
        v1, 0,
        "cgroup v1 hierarchies are mounted next to cgroup2:\n{mounts}"
    );
}

#[test]
#[serial(host_mounts)] // one compares the whole mount table, the other adds a mount
fn overlay_root_can_be_pivoted_into_from_a_private_mount_namespace() {
    if !common::is_root() {
        skip!("needs root (mount namespaces, overlayfs)");
    }
    if !filesystem_supported("overlay") {
        skip!("overlayfs is not available in this kernel");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let t = dir.path();
    for sub in ["lower/bin", "upper", "work", "merged"] {
        fs::create_dir_all(t.join(sub)).expect("mkdir");
    }
    let bb = common::busybox();
    fs::copy(&bb, t.join("lower/bin/busybox")).expect("copy busybox");
    let mark = common::marker();
    fs::write(t.join("lower/marker"), &mark).expect("write marker");
    let put_old = format!("old-{}", common::marker());

    let before = common::host_mounts();
    let script = pivot_script(&bb, t, &put_old);
    let out = Command::new(&bb)
        .args(["unshare", "-m", "--"])
        .arg(&bb)
        .args(["sh", "-c", &script])
        .output()
        .expect("run busybox unshare");
    assert!(
        out.status.success(),
        "pivot_root into an overlay failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        mark,
        "read through the pivoted root"
    );
    assert!(
        t.join("upper").join(&put_old).is_dir(),
        "writes must land in the upper layer"
    );
    assert!(
        !t.join("lower").join(&put_old).exists(),
        "the lower layer must stay untouched"
    );
    assert_eq!(
        common::host_mounts(),
        before,
        "the host mount table changed"
    );
}

/// A shell script for `busybox sh`, run in a new mount namespace: overlay over `t/lower`,
/// pivot_root into it, and print `/marker` from inside.
fn pivot_script(bb: &Path, t: &Path, put_old: &str) -> String {
    let (bb, t) = (bb.display(), t.display());
    format!(
        "set -e
         {bb} mount --make-rprivate /
         {bb} mount -t overlay overlay -o lowerdir={t}/lower,upperdir={t}/upper,workdir={t}/work {t}/merged
         {bb} mkdir {t}/merged/{put_old}
         cd {t}/merged
         {bb} pivot_root . {put_old}
         cd /
         /bin/busybox cat /marker"
    )
}

/// The workshop's NAT line works (the grading guest is a student's machine): `iptables` finds its
/// MASQUERADE extension and the kernel its NAT modules. Run in a network namespace of its own,
/// so the host's rules never change.
#[test]
fn iptables_masquerade_works_in_a_private_network_namespace() {
    require_root!();
    if Command::new("iptables").arg("--version").output().is_err() {
        skip!("iptables is not installed (apt-get install iptables; make deps does)");
    }
    let subnet = format!(
        "10.{}.{}.0/24",
        common::random_in(1..=254),
        common::random_in(1..=254)
    );
    let script = format!(
        "iptables -t nat -A POSTROUTING -s {subnet} -j MASQUERADE && iptables -t nat -S POSTROUTING"
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .expect("unshare --net");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "iptables NAT failed: {stderr}");
    assert!(
        stdout.contains(&format!("-A POSTROUTING -s {subnet} -j MASQUERADE")),
        "rule not listed: {stdout} {stderr}"
    );
}

/// The leak check itself: a mount left under a test's own directory is reported, one elsewhere
/// by a neighbour is not blamed on it. (A tmpfs under the test's temp dir, removed at once.)
#[test]
#[serial(host_mounts)] // one compares the whole mount table, the other adds a mount
fn leak_check_reports_a_mount_left_under_the_tests_own_directory() {
    require_root!();
    let root = common::TestRoot::new();
    let mark = common::marker();
    let before = common::host_mounts();
    let target = root.dir.path().join(format!("leak-{mark}"));
    fs::create_dir(&target).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&target)
        .status()
        .expect("mount");
    assert!(mounted.success());
    let changes = common::mount_changes(&root, &before, &mark);
    let other = common::mount_changes(&common::TestRoot::new(), &before, &common::marker());
    let _ = Command::new("umount").arg(&target).status();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].starts_with("added: ") && changes[0].contains(&mark),
        "{changes:?}"
    );
    assert!(
        other.is_empty(),
        "a neighbour's mount is not this test's: {other:?}"
    );
    assert!(common::mount_changes(&root, &before, &mark).is_empty());
}
