//! OCI user namespaces (issue 31): `linux.namespaces` type `user` with drawn
//! `linux.uidMappings`/`gidMappings`. Inside, the process is root of its namespace and sees
//! the drawn maps; from the host, the same process has the mapped ids, and so has a file it
//! creates in a bound host directory; `exec` joins the namespace; without a network namespace
//! `/sys` is the host's, bound; bad combinations are refused with one line, nothing left.

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

use super::oci::{assert_refused, cgroup_dirs, minimal_config, Bundle};

/// Host id bases drawn per test (size 65536 each, within 32 bits, above the host's users).
fn drawn_bases() -> (u64, u64) {
    (
        random_in(100_000..=2_000_000_000),
        random_in(100_000..=2_000_000_000),
    )
}

fn mappings(uid_base: u64, gid_base: u64) -> Value {
    json!({
        "uidMappings": [{"containerID": 0, "hostID": uid_base, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": gid_base, "size": 65536}],
    })
}

/// The container's stdout once it holds `line`, within 20 s.
fn output_with(b: &Bundle, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = b.output();
        if out.lines().any(|l| l == line) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?} in {out:?}; stderr: {}",
            fs::read_to_string(b.dir.join("err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_ids(pid: i64, field: &str) -> Vec<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .expect("field");
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("id"))
        .collect()
}

#[test]
fn a_mapped_root_is_root_inside_and_its_host_ids_outside() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let b = Bundle::new(json!({}));
    let shared = b.root.dir.path().join(format!("shared-{mark}"));
    fs::create_dir(&shared).expect("shared dir");
    std::os::unix::fs::chown(&shared, Some(uid_base as u32), Some(gid_base as u32)).expect("chown");
    let mut mounts = minimal_config()["mounts"].clone();
    mounts.as_array_mut().expect("mounts").push(json!(
        {"destination": "/data", "type": "bind", "source": shared, "options": ["rbind"]}));
    let mut linux = mappings(uid_base, gid_base);
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                 {"type": "ipc"}, {"type": "network"}, {"type": "user"}]);
    let config = json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /data/f-{mark}; \
             echo x > /dev/null && head -c 5 /dev/zero | wc -c; echo ready; exec sleep 30")]},
        "mounts": mounts,
        "linux": linux,
    });
    let mut full = minimal_config();
    super::oci::merge(&mut full, config);
    fs::write(b.dir.join("config.json"), full.to_string()).expect("config.json");
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);
    let pid = b.state()["pid"].as_i64().expect("pid");
    b.oci(&["start", &b.id]).assert_code(0);
    let out = output_with(&b, "ready");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (u, g) = (uid_base.to_string(), gid_base.to_string());
    assert_eq!(
        lines,
        [
            vec!["0"],
            vec!["0"],
            vec!["0", u.as_str(), "65536"],
            vec!["0", g.as_str(), "65536"],
            vec!["5"],
            vec!["ready"],
        ],
        "{out}"
    );
    assert_eq!(status_ids(pid, "Uid"), [uid_base; 4]);
    assert_eq!(status_ids(pid, "Gid"), [gid_base; 4]);
    let created = fs::metadata(shared.join(format!("f-{mark}"))).expect("created file");
    assert_eq!(
        (created.uid(), created.gid()),
        (uid_base as u32, gid_base as u32)
    );

    // exec joins the user namespace first: root inside, the same maps.
    let ran = b.oci(&[
        "exec",
        &b.id,
        "/bin/sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    ran.assert_code(0);
    assert_eq!(
        ran.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [vec!["0"], vec!["0", u.as_str(), "65536"]]
    );

    b.oci(&["kill", &b.id, "KILL"]).assert_code(0);
    b.wait_status("stopped");
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn without_a_network_namespace_sys_is_the_hosts_bound_read_only() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let mut linux = mappings(uid_base, gid_base);
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}]);
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "ls /sys/class/net; mkdir /sys/{mark} 2>/dev/null || echo read-only")]},
        "linux": linux,
    }));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let mut host: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("host net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let out = b.output();
    let mut inside: Vec<&str> = out.lines().collect();
    assert_eq!(inside.pop(), Some("read-only"), "{out}");
    assert_eq!(
        inside,
        host,
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    assert!(!Path::new("/sys").join(&mark).exists());
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn bad_user_namespace_combinations_are_refused_and_leave_nothing() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let outside = random_in(65_536..=1_000_000);
    let user_ns = json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}]);
    let both = mappings(uid_base, gid_base);
    let with = |mut linux: Value, namespaces: &Value| {
        linux["namespaces"] = namespaces.clone();
        linux
    };
    let cases = [
        (
            json!({"linux": both.clone()}),
            false,
            "need a user namespace",
        ),
        (
            json!({"linux": {"namespaces": user_ns}}),
            false,
            "linux.uidMappings: a user namespace needs at least one mapping",
        ),
        (
            json!({"linux": {"namespaces": user_ns, "uidMappings": both["uidMappings"]}}),
            false,
            "linux.gidMappings: a user namespace needs at least one mapping",
        ),
        (
            json!({"linux": with(json!({
                "uidMappings": [{"containerID": 0, "hostID": uid_base, "size": 10},
                                {"containerID": 5, "hostID": uid_base + 100, "size": 10}],
                "gidMappings": both["gidMappings"]}), &user_ns)}),
            false,
            "linux.uidMappings: [1] overlaps [0]",
        ),
        (
            json!({"process": {"user": {"uid": outside, "gid": 0}},
                   "linux": with(both.clone(), &user_ns)}),
            false,
            &format!("process.user.uid {outside} is not mapped"),
        ),
        (
            json!({"linux": with(both.clone(), &json!([{"type": "mount"},
                {"type": "user", "path": "/proc/1/ns/user"}]))}),
            false,
            "joining a user namespace by path",
        ),
        // The test root closed (0700, root's): the mapped root cannot reach the rootfs.
        (
            json!({"linux": with(both.clone(), &user_ns)}),
            true,
            "cannot be searched by the container's root",
        ),
    ];
    for (extra, closed, needle) in cases {
        let b = Bundle::new(extra);
        if closed {
            fs::set_permissions(b.root.dir.path(), fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        assert_refused(&b.create(), needle);
        assert!(!b.oci_state_dir().join(&b.id).exists(), "{needle}");
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}

/// A mapped root mounts devpts and mqueue (owned by its namespaces); the cgroup mount is runc's
/// v1 layout, or on v2 the container's own cgroup directory bound (cgroup2 is the host's
/// namespace's to mount): either way read-only, its init pid 1 in `cgroup.procs`.
#[test]
fn devpts_mqueue_and_cgroup_mounts_work_for_a_mapped_root() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let mut mounts = minimal_config()["mounts"].clone();
    mounts.as_array_mut().expect("mounts").extend([
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]);
    let v1 = !common::cgroup::is_v2();
    let procs = match v1 {
        true => "/sys/fs/cgroup/memory/cgroup.procs",
        false => "/sys/fs/cgroup/cgroup.procs",
    };
    let mut linux = mappings(uid_base, gid_base);
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                 {"type": "network"}, {"type": "user"}]);
    let b = Bundle::new(json!({
        "mounts": mounts,
        "process": {"args": ["/bin/sh", "-c", format!(
            "for m in /dev/pts /dev/mqueue /sys/fs/cgroup; do \
             awk -v m=$m '$2 == m {{ print $2, $3, substr($4, 1, 2) }}' /proc/mounts; done; \
             exec cat {procs} # {mark}")]},
        "linux": linux,
    }));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let cgroup_line = match v1 {
        true => "/sys/fs/cgroup tmpfs ro",
        false => "/sys/fs/cgroup cgroup2 ro",
    };
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        [
            "/dev/pts devpts rw",
            "/dev/mqueue mqueue rw",
            cgroup_line,
            "1"
        ],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

/// A tmpfs of the test's own, mounted nosuid,nodev,noatime; lazily unmounted when dropped.
struct HostTmpfs(std::path::PathBuf);

impl HostTmpfs {
    fn mount(at: std::path::PathBuf) -> HostTmpfs {
        fs::create_dir(&at).expect("mount point");
        let ran = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "nosuid,nodev,noatime,mode=755",
                "tmpfs",
            ])
            .arg(&at)
            .status()
            .expect("mount");
        assert!(ran.success(), "mount tmpfs on {}", at.display());
        HostTmpfs(at)
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// In a user namespace the kernel locks a mount's nosuid/nodev/noexec/atime flags: the
/// read-only remounts of the root and of a bind repeat them (else EPERM), as runc does.
#[test]
fn a_read_only_root_and_bind_keep_the_locked_flags_of_their_host_mount() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let b = Bundle::new(json!({}));
    let host = HostTmpfs::mount(b.root.dir.path().join(format!("host-{mark}")));
    let rootfs = host.0.join("rootfs");
    build_rootfs(&rootfs);
    fs::create_dir(host.0.join("src")).expect("src");
    fs::write(host.0.join("src/f"), &mark).expect("marker");
    let mut mounts = minimal_config()["mounts"].clone();
    mounts.as_array_mut().expect("mounts").push(json!(
        {"destination": "/data", "type": "bind", "source": host.0.join("src"), "options": ["rbind", "ro"]}));
    let mut linux = mappings(uid_base, gid_base);
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "network"},
                                 {"type": "user"}]);
    let mut config = minimal_config();
    super::oci::merge(
        &mut config,
        json!({
            "root": {"path": rootfs, "readonly": true},
            "mounts": mounts,
            "process": {"args": ["/bin/sh", "-c",
                "awk '$5 == \"/\" || $5 == \"/data\" { print $5, $6 }' /proc/self/mountinfo; cat /data/f; echo; \
                 touch /x 2>/dev/null || echo ro-root; touch /data/y 2>/dev/null || echo ro-data"]},
            "linux": linux,
        }),
    );
    fs::write(b.dir.join("config.json"), config.to_string()).expect("config.json");
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    // mountinfo's per-mount options (the superblock's differ by kernel: inode64...).
    let locked = "ro,nosuid,nodev,noatime";
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        [
            format!("/ {locked}"),
            format!("/data {locked}"),
            mark.clone(),
            "ro-root".into(),
            "ro-data".into()
        ],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    drop(host);
    b.assert_clean(&mark, &[]);
}

/// A host node made for the test (character 1:3, /dev/null's numbers); removed when dropped.
struct HostNode(String);

impl Drop for HostNode {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// mknod is refused in a user namespace: a config's device is the host's node at the same path,
/// bound, as runc does; one the host lacks, or has as another device, is refused at `create`.
#[test]
fn config_devices_are_the_hosts_nodes_bound_and_others_refused() {
    require_root!();
    let mark = marker();
    let (uid_base, gid_base) = drawn_bases();
    let node = HostNode(format!("/dev/devoxx-test-{mark}"));
    let made = std::process::Command::new("mknod")
        // 0666: the host's root owns it, unmapped, so the container's root writes as "other".
        .args(["-m", "666", node.0.as_str(), "c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(made.success(), "mknod {}", node.0);
    let with_devices = |devices: Value| {
        let mut linux = mappings(uid_base, gid_base);
        linux["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}]);
        linux["devices"] = devices;
        linux
    };
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "stat -c '%t:%T %F' {0}; echo {mark} > {0} && echo wrote", node.0)]},
        "linux": with_devices(json!([{"path": node.0, "type": "c", "major": 1, "minor": 3}])),
    }));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        ["1:3 character special file", "wrote"],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);

    for (device, needle) in [
        (
            json!({"path": format!("/dev/devoxx-missing-{mark}"), "type": "c", "major": 1, "minor": 3}),
            "it is not there",
        ),
        (
            json!({"path": node.0, "type": "c", "major": 1, "minor": 5}),
            "it is not that device",
        ),
    ] {
        let b = Bundle::new(json!({"linux": with_devices(json!([device]))}));
        assert_refused(&b.create(), needle);
        assert!(!b.oci_state_dir().join(&b.id).exists(), "{needle}");
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}
