//! OCI `linux.sysctl` (issue 31): namespaced keys reach the container's own namespaces with
//! random values while the host's stay as they were; keys that would change the host, or
//! whose namespace the container does not own, are refused with one line.

use crate::common;

use std::fs;

use common::*;
use serde_json::json;

use super::oci::{assert_refused, cgroup_dirs, Bundle};

#[test]
fn namespaced_sysctls_reach_the_container_and_not_the_host() {
    require_root!();
    let mark = marker();
    let (shmmni, ttl) = (random_in(1000..=4000), random_in(2..=250));
    let host_shmmni = fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let host_ttl = fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_default_ttl # {mark}")]},
        "linux": {"sysctl": {"kernel.shmmni": shmmni.to_string(),
                             "net.ipv4.ip_default_ttl": ttl.to_string()}},
    }));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(
        b.output(),
        format!("{shmmni}\n{ttl}\n"),
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(),
        host_shmmni
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap(),
        host_ttl
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn sysctls_that_would_change_the_host_are_refused() {
    require_root!();
    let mark = marker();
    let no_netns = json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}]);
    for (linux, needle) in [
        (
            json!({"sysctl": {"kernel.pid_max": "4194304"}}),
            "linux.sysctl \"kernel.pid_max\": not namespaced",
        ),
        (
            json!({"sysctl": {"net.ipv4.ip_forward": "1"}, "namespaces": no_netns}),
            "linux.sysctl \"net.ipv4.ip_forward\": needs a new network namespace",
        ),
        (
            json!({"sysctl": {"net/../../kernel/pid_max": "1"}}),
            "not a sysctl name",
        ),
    ] {
        let b = Bundle::new(json!({"linux": linux}));
        assert_refused(&b.create(), needle);
        assert!(!b.oci_state_dir().join(&b.id).exists(), "{needle}");
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}
