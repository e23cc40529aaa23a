//! `--cgroupns private|host` (issue 25): a private cgroup namespace roots the container at its
//! own cgroup (`0::/` on v2) with either clone path while the host still finds the cgroup; the
//! host mode shows the host's paths; private is the default on cgroup v2 only.

use crate::common;

use std::fs;
use std::time::Duration;

use common::cgroup::{assert_cgroup_gone, is_v2, signal, wait_finished, ContainerCgroup, V2_SKIP};
use common::run::*;
use common::*;
use nix::sys::signal::Signal;

/// The container's `/proc/self/cgroup` and cgroup namespace link, seen from inside, and the
/// same for its PID 1 seen from the host while it runs; the cgroup is gone afterwards.
fn cgroups_inside_and_out(options: &[&str], no_clone3: bool) -> (String, String, String) {
    let arranged = Arranged::standard();
    let mark = marker();
    let script = format!(
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup; echo ready; exec /bin/probe sleep 30 {mark}"
    );
    let mut cmd = arranged.root.std_cmd();
    cmd.arg("run")
        .args(["--stop-timeout", "1"])
        .args(options)
        .args([&arranged.img, "/bin/sh", "-c", &script]);
    if no_clone3 {
        cmd.env("DEVOXX_NO_CLONE3", "1");
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the runtime");
    // PID 1 once it runs the probe: the command has started (a signal before that would
    // interrupt the start, and clone3 puts the not-yet-exec'd child in the cgroup already).
    let pid = container_pid1(&mark);
    let cg = ContainerCgroup::of(pid).expect("the container's cgroup");
    let outside = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("host view");
    signal(&child, Signal::SIGTERM);
    let done = wait_finished(child, Duration::from_secs(60));
    assert_eq!(
        done.status.code(),
        Some(137),
        "stopped after --stop-timeout: {}",
        done.stderr
    );
    assert_cgroup_gone(&cg);
    arranged.assert_clean(&[&mark]);
    let (cgroups, ns) = done
        .stdout
        .rsplit_once("cgroup:[")
        .expect("ns link printed");
    (
        cgroups.to_owned(),
        format!("cgroup:[{}", ns.lines().next().unwrap_or_default()),
        outside,
    )
}

fn own_cgroupns() -> String {
    fs::read_link("/proc/self/ns/cgroup")
        .expect("own ns")
        .display()
        .to_string()
}

#[test]
fn private_cgroupns_roots_the_container_at_its_own_cgroup_with_either_clone() {
    require_root!();
    for no_clone3 in [false, true] {
        let (inside, ns, outside) = cgroups_inside_and_out(&["--cgroupns", "private"], no_clone3);
        assert_ne!(ns, own_cgroupns(), "own cgroup namespace");
        let paths: Vec<&str> = inside
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .collect();
        assert!(
            !paths.is_empty() && paths.iter().all(|p| *p == "/"),
            "inside: {inside}"
        );
        assert!(
            outside.contains("/devoxx-docker/"),
            "the host still sees its cgroup: {outside}"
        );
    }
}

#[test]
fn host_cgroupns_shows_the_hosts_paths() {
    require_root!();
    let (inside, ns, outside) = cgroups_inside_and_out(&["--cgroupns", "host"], false);
    assert_eq!(ns, own_cgroupns(), "the host's cgroup namespace");
    assert_eq!(inside.trim_end(), outside.trim_end());
    assert!(inside.contains("/devoxx-docker/"), "{inside}");
}

#[test]
fn default_cgroupns_is_private_on_cgroup_v2_reading_0_root() {
    require_root!();
    if !is_v2() {
        skip!("{V2_SKIP}");
    }
    let (inside, ns, _) = cgroups_inside_and_out(&[], false);
    assert_eq!(inside, "0::/\n");
    assert_ne!(ns, own_cgroupns());
}

#[test]
fn bad_cgroupns_is_one_line_and_125() {
    require_root!();
    let arranged = Arranged::standard();
    let bad = format!("p{}", marker());
    arranged.assert_refused(&["--cgroupns", &bad], "invalid --cgroupns");
    arranged.assert_clean(&[]);
}
