//! OCI mounts and mount namespaces (issue 31): `linux.rootfsPropagation` seen in the init's
//! mountinfo and in what reaches the container (a host mount under a shared source, a bind of
//! `/` inside); a mount and a uts namespace joined by `path` (a marker mounted only there, a
//! hostname set only there); the runtime's own namespaces by path refused; no mount namespace
//! at all (the container in the runtime's, chrooted, its mounts undone by `delete` and by a
//! failed `create`); a bind's file-system data (`mode=755`) accepted and meaning nothing.
//! Every test checks nothing is left behind.

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

use super::oci::{assert_refused, cgroup_dirs, wait_for, Bundle};

/// A mount made by the test on the host, detached when dropped (a failed test included).
struct Mounted(PathBuf);

impl Mounted {
    /// A small tmpfs at `at` (created), with `flags` (propagation) applied after.
    fn tmpfs(at: &Path, propagation: MsFlags) -> Mounted {
        fs::create_dir_all(at).expect("mkdir mount point");
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount tmpfs");
        let mounted = Mounted(at.to_owned());
        mounted.propagate(propagation);
        mounted
    }

    /// `at` bound onto itself, private: a place where a mount namespace file may be bound.
    fn private_bind(at: &Path) -> Mounted {
        fs::create_dir_all(at).expect("mkdir");
        mount(Some(at), at, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        let mounted = Mounted(at.to_owned());
        mounted.propagate(MsFlags::MS_PRIVATE);
        mounted
    }

    fn propagate(&self, flags: MsFlags) {
        if !flags.is_empty() {
            mount(None::<&str>, &self.0, None::<&str>, flags, None::<&str>).expect("propagation");
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A namespace of `kind` (`mount`, `uts`) made by `unshare(1)` and kept by a bind on `file`.
fn persistent_namespace(kind: &str, file: &Path) -> Mounted {
    fs::write(file, "").expect("namespace file");
    let out = Command::new("unshare")
        .arg(format!("--{kind}={}", file.display()))
        .arg("true")
        .output()
        .expect("spawn unshare");
    assert!(
        out.status.success(),
        "unshare: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Mounted(file.to_owned())
}

/// `nsenter --KIND=FILE sh -c SCRIPT`, its stdout.
fn nsenter(kind: &str, file: &Path, script: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--{kind}={}", file.display()))
        .args(["sh", "-c", script])
        .output()
        .expect("spawn nsenter");
    assert!(
        out.status.success(),
        "nsenter: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The optional fields (`shared:N`, `master:N`, `unbindable`) of `pid`'s mount at `point`.
fn propagation_of(pid: i32, point: &str) -> String {
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let line = info
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(point))
        .unwrap_or_else(|| panic!("no mount at {point} in {info}"));
    let fields: Vec<&str> = line.split(' ').collect();
    let end = fields.iter().position(|f| *f == "-").expect("separator");
    fields[6..end].join(" ")
}

fn inode(path: &str) -> u64 {
    fs::metadata(path).expect("stat").ino()
}

fn pid_of(b: &Bundle) -> i32 {
    b.state()["pid"].as_i64().expect("pid") as i32
}

fn stderr_of(b: &Bundle) -> String {
    fs::read_to_string(b.dir.join("err")).unwrap_or_default()
}

#[test]
fn root_propagation_shows_in_mountinfo_and_decides_what_reaches_the_container() {
    require_root!();
    for value in ["shared", "slave", "private", "unbindable"] {
        let mark = marker();
        let (dir, file, content) = (marker(), marker(), marker());
        let b = Bundle::new(json!({
            "process": {"args": ["/bin/sh", "-c", format!("exec sleep 60 # {mark}")],
                        "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"],
                                         "permitted": ["CAP_SYS_ADMIN"]}},
            "linux": {"rootfsPropagation": value},
        }));
        let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
        // A shared source under the root, as a host's /mnt often is.
        let shared = Mounted::tmpfs(&b.dir.join("rootfs/mnt"), MsFlags::MS_SHARED);
        b.create().assert_code(0);
        b.oci(&["start", &b.id]).assert_code(0);
        b.wait_status("running");
        let pid = pid_of(&b);

        // From outside: the root's and the shared source's propagation in the init's table.
        let (root, mnt) = (propagation_of(pid, "/"), propagation_of(pid, "/mnt"));
        match value {
            "shared" => assert!(root.contains("shared:"), "{value}: / {root:?}"),
            "unbindable" => assert_eq!(root, "unbindable", "{value}"),
            _ => assert!(
                !root.contains("shared:") && !root.contains("unbindable"),
                "{root:?}"
            ),
        }
        let receives = matches!(value, "shared" | "slave");
        assert_eq!(mnt.contains("master:"), receives, "{value}: /mnt {mnt:?}");
        assert!(
            !mnt.contains("shared:"),
            "{value}: the host's peer group {mnt:?}"
        );

        // A mount made on the host under the shared source after the start.
        let late = Mounted::tmpfs(&b.dir.join(format!("rootfs/mnt/{dir}")), MsFlags::empty());
        fs::write(late.0.join(&file), &content).expect("write marker");
        let seen = b.oci(&["exec", &b.id, "/bin/cat", &format!("/mnt/{dir}/{file}")]);
        match receives {
            true => assert_eq!(seen.stdout, content, "{value}: {}", seen.stderr),
            false => assert_ne!(seen.code, 0, "{value}: the host's mount reached inside"),
        }

        // From inside: a recursive bind of / sees a mount made after it only when shared.
        let (t, m) = (format!("/t-{mark}"), format!("/m-{mark}"));
        let inside = b.oci(&[
            "exec",
            &b.id,
            "/bin/sh",
            "-c",
            &format!(
                "mkdir {t} {m} && mount --rbind / {t} && mount -t tmpfs -o size=1m tmpfs {m} \
                 && echo {content} > {m}/f && cat {t}{m}/f"
            ),
        ]);
        match value {
            "shared" => assert_eq!(inside.stdout, format!("{content}\n"), "{}", inside.stderr),
            "unbindable" => assert!(
                inside.code != 0 && inside.stderr.contains("Invalid argument"),
                "{value}: {inside:?}"
            ),
            _ => assert!(
                inside.code != 0 && inside.stdout.is_empty(),
                "{value}: {inside:?}"
            ),
        }

        b.oci(&["delete", "--force", &b.id]).assert_code(0);
        drop(late);
        drop(shared);
        b.assert_clean(&mark, &cgroups);
    }
}

#[test]
fn a_container_joins_a_mount_namespace_by_path_and_sees_what_is_mounted_only_there() {
    require_root!();
    let (mark, content) = (marker(), marker());
    let b0 = Bundle::new(json!({}));
    let holder = Mounted::private_bind(&b0.root.dir.path().join(format!("ns-{mark}")));
    let ns_file = holder.0.join("mnt");
    let ns = persistent_namespace("mount", &ns_file);
    let rootfs = b0.dir.join("rootfs");
    fs::create_dir(rootfs.join("mnt")).expect("mkdir mnt");
    // A marker mounted in that namespace only (its root is still the host's copy).
    nsenter(
        "mount",
        &ns_file,
        &format!(
            "mount -t tmpfs -o size=1m tmpfs {0}/mnt && echo {content} > {0}/mnt/marker",
            rootfs.display()
        ),
    );
    assert!(!rootfs.join("mnt/marker").exists(), "mounted on the host");
    let mut config = super::oci::minimal_config();
    super::oci::merge(
        &mut config,
        json!({
            "process": {"args": ["/bin/sh", "-c", format!("cat /mnt/marker # {mark}")]},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount", "path": ns_file},
                                     {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]},
        }),
    );
    fs::write(b0.dir.join("config.json"), config.to_string()).expect("config.json");
    let b = b0;
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);
    let pid = pid_of(&b);
    // From outside: the init is in that namespace, not the runtime's.
    let theirs = inode(&format!("/proc/{pid}/ns/mnt"));
    assert_eq!(theirs, inode(&ns_file.display().to_string()));
    assert_ne!(theirs, inode("/proc/self/ns/mnt"));
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(b.output(), format!("{content}\n"), "{}", stderr_of(&b));
    b.oci(&["delete", &b.id]).assert_code(0);
    drop(ns);
    drop(holder);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn hostname_is_set_in_a_uts_namespace_joined_by_path_and_not_on_the_host() {
    require_root!();
    let (mark, host) = (marker(), format!("h-{}", marker()));
    let hosts_name = nix::unistd::gethostname().expect("gethostname");
    let b0 = Bundle::new(json!({}));
    let ns_file = b0.root.dir.path().join(format!("uts-{mark}"));
    let ns = persistent_namespace("uts", &ns_file);
    let mut config = super::oci::minimal_config();
    super::oci::merge(
        &mut config,
        json!({
            "hostname": host,
            "process": {"args": ["/bin/sh", "-c", format!("hostname # {mark}")]},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                     {"type": "uts", "path": ns_file}, {"type": "network"}]},
        }),
    );
    fs::write(b0.dir.join("config.json"), config.to_string()).expect("config.json");
    let b = b0;
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);
    let pid = pid_of(&b);
    assert_eq!(
        inode(&format!("/proc/{pid}/ns/uts")),
        inode(&ns_file.display().to_string())
    );
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(b.output(), format!("{host}\n"), "{}", stderr_of(&b));
    // The joined namespace keeps the name; the host's is unchanged.
    assert_eq!(nsenter("uts", &ns_file, "hostname"), format!("{host}\n"));
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), hosts_name);
    b.oci(&["delete", &b.id]).assert_code(0);
    drop(ns);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn the_runtimes_own_mount_or_uts_namespace_by_path_is_refused() {
    require_root!();
    let mark = marker();
    let hosts_name = nix::unistd::gethostname().expect("gethostname");
    let me = std::process::id();
    // The spec's other namespaces, then `extra`.
    let ns = |extra: Value| {
        let mut list = vec![
            json!({"type": "pid"}),
            json!({"type": "ipc"}),
            json!({"type": "network"}),
        ];
        list.extend(extra.as_array().cloned().unwrap_or_default());
        list
    };
    for (extra, needle) in [
        (
            json!({"linux": {"namespaces": ns(json!([{"type": "uts"},
                {"type": "mount", "path": format!("/proc/{me}/ns/mnt")}]))}}),
            "is the runtime's own mnt namespace",
        ),
        (
            json!({"hostname": format!("h-{mark}"), "linux": {"namespaces": ns(json!([
                {"type": "mount"}, {"type": "uts", "path": format!("/proc/{me}/ns/uts")}]))}}),
            "is the runtime's own uts namespace",
        ),
    ] {
        let b = Bundle::new(extra);
        assert_refused(&b.create(), needle);
        assert!(!b.oci_state_dir().join(&b.id).exists(), "{needle}");
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), hosts_name);
}

#[test]
fn a_bind_mount_with_file_system_data_binds_its_source_and_ignores_the_data() {
    require_root!();
    let (mark, content) = (marker(), marker());
    // A mode the data does not ask for: mode=755 must change nothing.
    let mode = [0o700, 0o711, 0o750, 0o770, 0o777][random_in(0..=4) as usize];
    let root = TestRoot::new();
    let source = root.dir.path().join(format!("src-{mark}"));
    fs::create_dir(&source).expect("mkdir source");
    fs::set_permissions(&source, fs::Permissions::from_mode(mode)).expect("chmod");
    fs::write(source.join("f"), &content).expect("write");
    let dest = format!("/data/{mark}");
    let mut mounts = super::oci::minimal_config()["mounts"].clone();
    mounts.as_array_mut().unwrap().push(json!({
        "destination": dest, "type": "bind", "source": source,
        "options": ["rbind", "mode=755", format!("size={}k", random_in(64..=4096)), "ro"]}));
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "stat -c %a {dest}; cat {dest}/f; touch {dest}/new 2>/dev/null || echo read-only")]},
        "mounts": mounts,
    }));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(
        b.output(),
        format!("{mode:o}\n{content}read-only\n"),
        "{}",
        stderr_of(&b)
    );
    assert_eq!(fs::metadata(&source).unwrap().mode() & 0o7777, mode);
    assert!(!source.join("new").exists());
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

/// The whole mountinfo line of the runtime's `/` (its propagation included).
fn root_line() -> String {
    host_mounts()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("/ in mountinfo")
        .to_owned()
}

/// Mount points in the host's table at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    host_mounts()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| *p == dir || p.starts_with(&format!("{dir}/")))
        .collect()
}

/// The spec's namespaces but the mount one: the container inherits the runtime's.
fn without_mount_ns(extra: Value) -> Value {
    let mut config = json!({"linux": {"namespaces": [
        {"type": "pid"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]}});
    super::oci::merge(&mut config, extra);
    config
}

#[test]
fn without_a_mount_namespace_the_container_is_chrooted_in_the_runtimes_and_delete_unmounts_all() {
    require_root!();
    let (mark, content) = (marker(), marker());
    let code = random_in(3..=99);
    let root_before = root_line();
    let b = Bundle::new(without_mount_ns(json!({
        "process": {"args": ["/bin/sh", "-c", format!("cat /m-{mark}; exec sleep 60 # {mark}")],
                    "cwd": "/tmp"},
    })));
    let rootfs = b.dir.join("rootfs");
    fs::write(rootfs.join(format!("m-{mark}")), format!("{content}\n")).expect("marker");
    // The bundle under a shared mount with a peer: the root's bind reaches the peer (and
    // leaves it with `delete`), nothing mounted inside the container's root does.
    let shared = Mounted::private_bind(&b.dir);
    shared.propagate(MsFlags::MS_SHARED);
    let peer_dir = b.root.dir.path().join(format!("peer-{mark}"));
    fs::create_dir(&peer_dir).expect("mkdir peer");
    mount(
        Some(&b.dir),
        &peer_dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind the peer");
    let peer = Mounted(peer_dir.clone());
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);
    let pid = pid_of(&b);
    assert_eq!(
        inode(&format!("/proc/{pid}/ns/mnt")),
        inode("/proc/self/ns/mnt")
    );
    let made = mounts_under(&rootfs);
    for point in ["", "/proc", "/dev", "/sys", "/proc/sys"] {
        let want = format!("{}{point}", rootfs.display());
        assert!(made.contains(&want), "{want} not in {made:?}");
    }
    assert_eq!(
        mounts_under(&peer_dir.join("rootfs")),
        [peer_dir.join("rootfs").display().to_string()],
        "only the root's bind may reach the peer"
    );
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("running");
    wait_for(|| b.output().ends_with('\n'));
    assert_eq!(b.output(), format!("{content}\n"), "{}", stderr_of(&b));
    let ran = b.oci(&[
        "exec",
        &b.id,
        "/bin/sh",
        "-c",
        &format!("cat /m-{mark}; pwd; exit {code}"),
    ]);
    ran.assert_code(code as i32);
    assert_eq!(ran.stdout_lines(), [content.clone(), "/tmp".to_owned()]);

    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    assert_eq!(mounts_under(&rootfs), Vec::<String>::new());
    assert_eq!(mounts_under(&peer_dir.join("rootfs")), Vec::<String>::new());
    assert_eq!(root_line(), root_before);
    drop(peer);
    drop(shared);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn without_a_mount_namespace_a_failed_create_leaves_nothing_mounted() {
    require_root!();
    let mark = marker();
    let hook_code = random_in(3..=99);
    let root_before = root_line();
    for (extra, needle) in [
        // A file, not a directory (a missing one would be created, as runc does).
        (json!({"process": {"cwd": "/bin/sh"}}), "/bin/sh"),
        (
            json!({"hooks": {"createRuntime": [{"path": "/bin/sh",
                "args": ["sh", "-c", format!("exit {hook_code} # {mark}")]}]}}),
            "createRuntime",
        ),
    ] {
        let b = Bundle::new(without_mount_ns(extra));
        let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
        let ran = b.create();
        assert_ne!(ran.code, 0, "{needle}");
        assert!(ran.stderr.contains(needle), "{needle} in {:?}", ran.stderr);
        assert_eq!(mounts_under(&b.dir), Vec::<String>::new(), "{needle}");
        assert_eq!(root_line(), root_before);
        b.assert_clean(&mark, &cgroups);
    }
}
