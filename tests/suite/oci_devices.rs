//! OCI `linux.devices` (issue 31): nodes with random numbers, modes and owners made in the
//! container's `/dev`, usable there; paths outside `/dev/` refused with one line.

use crate::common;

use std::fs;

use common::*;
use serde_json::json;

use super::oci::{assert_refused, cgroup_dirs, Bundle};

/// Also under enforced device rules (deny all, as engines send): the nodes asked for are
/// allowed, as runc allows them.
#[rstest::rstest]
fn device_nodes_get_their_type_numbers_mode_and_owner(#[values(false, true)] deny_all: bool) {
    require_root!();
    let mark = marker();
    let (uid, gid, minor) = (
        random_in(1000..=60000),
        random_in(1000..=60000),
        random_in(1..=200),
    );
    let (chr, blk, fifo) = (
        format!("/dev/n-{mark}"),
        format!("/dev/sub/b-{mark}"),
        format!("/dev/f-{mark}"),
    );
    let b = Bundle::new(json!({
        // The node's owner writes to it (0620: no one else may, root without capabilities neither).
        "process": {"user": {"uid": uid, "gid": gid}, "args": ["/bin/sh", "-c", format!(
            "stat -c '%t:%T %a %u:%g %F' {chr} {blk}; stat -c '%a %F' {fifo}; \
             echo x > {chr} && echo wrote")]},
        "linux": {"devices": [
            {"path": chr, "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": uid, "gid": gid},
            {"path": blk, "type": "b", "major": 7, "minor": minor, "fileMode": 0o600},
            {"path": fifo, "type": "p", "major": 0, "minor": 0, "fileMode": 0o644},
        ],
        "resources": if deny_all { json!({"devices": [{"allow": false, "access": "rwm"}]}) } else { json!({}) }},
    }));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        [
            format!("1:3 620 {uid}:{gid} character special file"),
            format!("7:{minor:x} 600 0:0 block special file"),
            "644 fifo".to_owned(),
            "wrote".to_owned(),
        ],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn device_paths_outside_dev_are_refused() {
    require_root!();
    let mark = marker();
    for path in [format!("/etc/{mark}"), format!("/dev/../{mark}")] {
        let b = Bundle::new(json!({"linux": {"devices": [
            {"path": path, "type": "c", "major": 1, "minor": 3}]}}));
        assert_refused(&b.create(), "linux.devices[0]: path");
        assert!(!b.oci_state_dir().join(&b.id).exists());
        assert!(!b.dir.join("rootfs/etc").join(&mark).exists());
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}
