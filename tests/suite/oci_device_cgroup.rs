//! OCI `linux.resources.devices` (issue 31): the rules are enforced by a device cgroup (a v1
//! `devices` directory, or a BPF program on the v2 cgroup), so a container given `CAP_MKNOD`
//! cannot make (or open) a node of the host's disk; the default devices stay usable; without
//! rules nothing changes; rules it cannot enforce are refused with one line.

use crate::common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

use super::oci::{assert_refused, cgroup_dirs, wait_for, Bundle};

/// containerd's rules: deny all, then the default devices (/dev/null... /dev/pts/*).
fn containerd_rules() -> Value {
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor,
                          "access": "rwm"}),
        );
    }
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(rules)
}

/// Root with `CAP_MKNOD` (podman and containerd grant it) running `script`, then sleeping.
fn mknod_bundle(script: &str, devices: Option<Value>) -> Bundle {
    let caps = json!(["CAP_MKNOD"]);
    let mut extra = json!({
        "process": {"args": ["/bin/sh", "-c", script],
                    "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
    });
    if let Some(devices) = devices {
        extra["linux"] = json!({"resources": {"devices": devices}});
    }
    Bundle::new(extra)
}

/// Every cgroup directory of the container, the v1 `devices` one included.
fn all_cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let rel = format!("devoxx-docker-oci/{id}");
    let mut dirs = cgroup_dirs(&rel);
    if !common::cgroup::is_v2() {
        dirs.extend(common::cgroup::v1_mount("devices").map(|m| m.join(&rel)));
    }
    dirs
}

/// What the container prints once its line `done` is out.
fn output_when_done(b: &Bundle) -> String {
    wait_for(|| b.output().contains("done\n"));
    b.output()
}

#[test]
fn device_rules_deny_a_disk_node_and_allow_the_default_devices() {
    require_root!();
    let mark = marker();
    let minor = random_in(1..=200);
    let script = format!(
        "mknod /x b 8 {minor} 2>&1; echo x=$?; mknod /y c 1 3; echo y=$?; \
         echo {mark} > /dev/null; echo null=$?; cat /dev/null; echo read=$?; \
         echo done; exec sleep 30 # {mark}"
    );
    let b = mknod_bundle(&script, Some(containerd_rules()));
    let cgroups = all_cgroup_dirs(&b.id);
    b.create().assert_code(0);
    assert!(cgroups.iter().all(|d| d.is_dir()), "cgroups {cgroups:?}");
    b.oci(&["start", &b.id]).assert_code(0);
    let out = output_when_done(&b);
    assert!(
        out.contains("Operation not permitted\nx=1\n"),
        "mknod of block 8:{minor} must fail with EPERM: {out:?}"
    );
    assert!(out.contains("y=0\nnull=0\nread=0\n"), "{out:?}");
    let rootfs = b.dir.join("rootfs");
    assert!(!rootfs.join("x").exists(), "no disk node made");
    let y = fs::metadata(rootfs.join("y")).expect("/y made");
    assert!(y.file_type().is_char_device());
    assert_eq!(y.rdev(), nix::sys::stat::makedev(1, 3));

    // A process `exec` adds is under the same rules.
    let minor_text = minor.to_string();
    let ran = b.oci(&["exec", &b.id, "mknod", "/z", "b", "8", &minor_text]);
    assert_ne!(ran.code, 0, "exec'd mknod: {ran:?}");
    assert!(!rootfs.join("z").exists(), "no disk node made by exec");

    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn a_general_allow_rule_grants_its_device_and_access_only() {
    require_root!();
    let mark = marker();
    let mut rules = containerd_rules();
    // /dev/net/tun as runc configs allow it, here read and write without mknod.
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}));
    let script = format!(
        "true 3<>/dev/net/tun; echo open=$?; mknod /tun c 10 200 2>&1; echo tun=$?; \
         mknod /other c 10 201 2>&1; echo other=$?; echo done # {mark}"
    );
    let b = mknod_bundle(&script, Some(rules));
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/dev/net/tun", "type": "bind", "source": "/dev/net/tun",
        "options": ["bind"]}));
    fs::write(b.dir.join("config.json"), config.to_string()).unwrap();
    let cgroups = all_cgroup_dirs(&b.id);
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let out = output_when_done(&b);
    assert!(
        out.starts_with("open=0\n")
            && out.contains("Operation not permitted\ntun=1\n")
            && out.contains("Operation not permitted\nother=1\n"),
        "{out:?}"
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

/// Without device rules no device cgroup is made: a `CAP_MKNOD` container can still make a
/// disk's node (as with runc given no rules); engines always send the deny-all rule.
#[test]
fn without_device_rules_no_device_cgroup_is_installed() {
    require_root!();
    let mark = marker();
    let minor = random_in(1..=200);
    let script = format!("mknod /x b 8 {minor}; echo x=$?; echo done # {mark}");
    let b = mknod_bundle(&script, None);
    let cgroups = all_cgroup_dirs(&b.id);
    b.create().assert_code(0);
    if !common::cgroup::is_v2() {
        assert!(!cgroups.last().unwrap().exists(), "no devices cgroup");
    }
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(output_when_done(&b), "x=0\ndone\n");
    let x = fs::metadata(b.dir.join("rootfs/x")).expect("/x made");
    assert!(x.file_type().is_block_device());
    fs::remove_file(b.dir.join("rootfs/x")).expect("rm /x");
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn device_rules_it_cannot_enforce_are_refused_with_one_line() {
    require_root!();
    let mark = marker();
    for (rule, needle) in [
        (
            json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}),
            "linux.resources.devices[9]: only the deny-all rule",
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwx"}),
            "linux.resources.devices[9]: access",
        ),
    ] {
        let mut rules = containerd_rules();
        rules.as_array_mut().unwrap().insert(9, rule);
        let b = mknod_bundle(&format!("true # {mark}"), Some(rules));
        assert_refused(&b.create(), needle);
        b.assert_clean(&mark, &all_cgroup_dirs(&b.id));
    }
}
