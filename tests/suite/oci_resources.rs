//! OCI `linux.resources` beyond memory/cpu quota/pids (issue 31): `cpu.cpus`, `cpu.mems` and
//! `cpu.shares` read back from the host's cgroup files (v1 `cpuset`/`cpu`, v2 `cpuset.*` and
//! `cpu.weight`) and from inside (`Cpus_allowed_list`); `memory.disableOOMKiller` (v1
//! `memory.oom_control`, refused on v2); `start` returns once the program has exec'd (runc's
//! order); a failed `create` leaves no empty default parent cgroup behind.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;

use super::oci::{assert_refused, cgroup_dirs, script, Bundle};

/// CPUs online on this host, from the kernel's list (`0-1`).
fn online_cpus() -> Vec<u32> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online").expect("online cpus");
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(low.parse::<u32>().unwrap()..=high.parse::<u32>().unwrap());
    }
    cpus
}

/// A random CPU list the kernel prints back as written: one CPU, or a run of two or more.
fn drawn_cpu_list() -> String {
    let cpus = online_cpus();
    let first = random_in(0..=cpus.len() as u64 - 1) as usize;
    let last = random_in(first as u64..=cpus.len() as u64 - 1) as usize;
    // Only a contiguous run prints back as `a-b`: online CPUs with gaps would not.
    if last > first && cpus[last] - cpus[first] == (last - first) as u32 {
        format!("{}-{}", cpus[first], cpus[last])
    } else {
        cpus[first].to_string()
    }
}

/// The container's directory holding `file` for `rel`: on v1 in `controller`'s hierarchy.
fn cgroup_file(controller: &str, rel: &str, file: &str) -> PathBuf {
    let base = if common::cgroup::is_v2() {
        PathBuf::from(common::cgroup::V2_ROOT)
    } else {
        common::cgroup::v1_mount(controller).expect("v1 hierarchy")
    };
    base.join(rel).join(file)
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn cpus_mems_and_shares_land_in_the_cgroup_files() {
    require_root!();
    if common::cgroup::host_layout().is_none() {
        skip!("no cgroup controllers on this host");
    }
    let mark = marker();
    let cpus = drawn_cpu_list();
    let shares = random_in(2..=262_144);
    // A fresh two-level parent: on v1 each level must be filled from the one above.
    let top = format!("oci-res-{mark}");
    let rel = format!("{top}/mid/ctr");
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c",
            format!("grep -E '^(Cpus|Mems)_allowed_list:' /proc/self/status # {mark}")]},
        "linux": {
            "cgroupsPath": rel,
            "resources": {"cpu": {"cpus": cpus, "mems": "0", "shares": shares}},
        },
    }));
    let mut cgroups = cgroup_dirs(&rel);
    if !common::cgroup::is_v2() {
        cgroups.push(
            common::cgroup::v1_mount("cpuset")
                .expect("cpuset")
                .join(&rel),
        );
    }
    b.create().assert_code(0);

    assert_eq!(
        read_trimmed(&cgroup_file("cpuset", &rel, "cpuset.cpus")),
        cpus
    );
    assert_eq!(
        read_trimmed(&cgroup_file("cpuset", &rel, "cpuset.mems")),
        "0"
    );
    if common::cgroup::is_v2() {
        // runc's conversion of shares (2..=262144) to a weight (1..=10000).
        let weight = 1 + (shares - 2) * 9_999 / 262_142;
        let file = cgroup_file("cpu", &rel, "cpu.weight");
        assert_eq!(read_trimmed(&file), weight.to_string());
    } else {
        let file = cgroup_file("cpu", &rel, "cpu.shares");
        assert_eq!(read_trimmed(&file), shares.to_string());
        let root = common::cgroup::v1_mount("cpuset").unwrap();
        let mid = read_trimmed(&root.join(&top).join("mid/cpuset.cpus"));
        assert_eq!(
            mid,
            read_trimmed(&root.join("cpuset.cpus")),
            "parent filled"
        );
    }
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    assert_eq!(
        b.output(),
        format!("Cpus_allowed_list:\t{cpus}\nMems_allowed_list:\t0\n")
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
    // The config's parents stay, as with runc; they hold nothing else: remove them.
    let mut parents: Vec<PathBuf> = cgroups.iter().map(|d| d.parent().unwrap().into()).collect();
    parents.extend(parents.clone().iter().map(|d| d.parent().unwrap().into()));
    for d in parents {
        fs::remove_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
}

#[test]
fn a_cpu_list_the_kernel_would_refuse_is_one_line_and_nothing_made() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/true", &mark]},
        "linux": {"resources": {"cpu": {"cpus": format!("{}-", random_in(0..=9))}}},
    }));
    assert_refused(&b.create(), "linux.resources.cpu.cpus");
    let b2 = Bundle::new(json!({
        "linux": {"resources": {"cpu": {"realtimeRuntime": random_in(1..=950_000)}}},
    }));
    assert_refused(
        &b2.create(),
        "linux.resources.cpu.realtimeRuntime is not supported",
    );
    b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
}

#[test]
fn start_returns_once_the_program_has_execd() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(script(&format!("exec sleep 30 # {mark}")));
    b.create().assert_code(0);
    let pid = read_trimmed(&b.pid_file());
    b.oci(&["start", &b.id]).assert_code(0);
    // No wait: a signal sent now must reach the program, not the runtime's init before it.
    use std::os::unix::fs::MetadataExt;
    let identity = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino())).expect("stat");
    let exe = identity(Path::new(&format!("/proc/{pid}/exe")));
    assert_ne!(exe, identity(&runtime()), "start returned before the exec");
    let busybox_id = identity(&b.dir.join("rootfs/bin/busybox"));
    assert_eq!(exe, busybox_id, "the program runs");
    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
}

/// The default parent in every hierarchy is gone, or holds a container (another test's):
/// never empty, seen twice apart (a concurrent `create` is empty for a moment).
fn assert_no_empty_default_parent() {
    let parents: Vec<PathBuf> = cgroup_dirs("devoxx-docker-oci");
    let empty = || {
        parents
            .iter()
            .filter(|p| {
                fs::read_dir(p).is_ok_and(|rd| {
                    !rd.flatten()
                        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                })
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = empty();
    if first.is_empty() {
        return;
    }
    std::thread::sleep(Duration::from_millis(200));
    let still: Vec<_> = empty().into_iter().filter(|p| first.contains(p)).collect();
    assert!(still.is_empty(), "empty default parent left: {still:?}");
}

#[test]
fn a_failed_create_leaves_no_empty_default_parent() {
    require_root!();
    let mark = marker();
    let code = random_in(3..=99);
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!("exec sleep 30 # {mark}")]},
        "hooks": {"createRuntime": [{"path": busybox(), "args": ["sh", "-c", format!("exit {code}")]}]},
    }));
    assert_refused(&b.create(), &format!("exit status: {code}"));
    b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    assert_no_empty_default_parent();
}

#[test]
fn disable_oom_killer_is_set_on_v1_and_refused_on_v2() {
    require_root!();
    if common::cgroup::host_layout().is_none() {
        skip!("no cgroup controllers on this host");
    }
    let mark = marker();
    let limit = random_in(64..=128) << 20;
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!("exec sleep 30 # {mark}")]},
        "linux": {"resources": {"memory": {"limit": limit, "disableOOMKiller": true}}},
    }));
    let rel = format!("devoxx-docker-oci/{}", b.id);
    let cgroups = cgroup_dirs(&rel);
    if common::cgroup::is_v2() {
        // runc ignores it there; this runtime does not pretend.
        assert_refused(
            &b.create(),
            "disableOOMKiller is not available on cgroup v2",
        );
    } else {
        b.create().assert_code(0);
        let control = cgroup_file("memory", &rel, "memory.oom_control");
        let text = fs::read_to_string(&control).expect("memory.oom_control");
        assert!(text.lines().any(|l| l == "oom_kill_disable 1"), "{text}");
        let file = cgroup_file("memory", &rel, "memory.limit_in_bytes");
        assert_eq!(read_trimmed(&file), limit.to_string());
        b.oci(&["delete", "--force", &b.id]).assert_code(0);
    }
    b.assert_clean(&mark, &cgroups);
}
