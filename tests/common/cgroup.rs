//! Host-side view of a container's cgroup, found the way an operator would: from
//! `/proc/<pid>/cgroup` and the host's mount table. Deliberately independent of the runtime's
//! own cgroup code, so a bug there cannot hide itself here.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::{cgroups_of, host_mounts, processes_with};

/// The reason every v2-only test gives on a host without cgroup v2 controllers.
pub const V2_SKIP: &str = "cgroup v2 controllers not available on this host; run make vm-test";

/// Where the unified hierarchy lives when the host is cgroup v2.
pub const V2_ROOT: &str = "/sys/fs/cgroup";

/// The host's layout as far as the tests care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLayout {
    V2,
    V1,
}

/// `(fstype, mount point, super options)` of every cgroup mount.
fn cgroup_mounts() -> Vec<(String, PathBuf, String)> {
    host_mounts()
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let _source = after.next()?;
            let opts = after.next().unwrap_or("");
            fstype
                .starts_with("cgroup")
                .then(|| (fstype.to_owned(), PathBuf::from(point), opts.to_owned()))
        })
        .collect()
}

/// v2 when cgroup2 is at /sys/fs/cgroup with the memory controller, v1 when a memory
/// hierarchy is mounted, `None` otherwise.
pub fn host_layout() -> Option<HostLayout> {
    let mounts = cgroup_mounts();
    let v2_here = mounts
        .iter()
        .any(|(t, p, _)| t == "cgroup2" && p == Path::new(V2_ROOT));
    let v2_controllers =
        fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers")).unwrap_or_default();
    if v2_here && v2_controllers.split_whitespace().any(|c| c == "memory") {
        Some(HostLayout::V2)
    } else if v1_mount("memory").is_some() {
        Some(HostLayout::V1)
    } else {
        None
    }
}

/// True on a cgroup v2 host.
pub fn is_v2() -> bool {
    host_layout() == Some(HostLayout::V2)
}

/// Mount point of the v1 hierarchy carrying `controller`.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .find(|(t, _, opts)| t == "cgroup" && opts.split(',').any(|o| o == controller))
        .map(|(_, p, _)| p)
}

/// Every `devoxx-docker` parent directory the runtime may use on this host.
pub fn cgroup_parents() -> Vec<PathBuf> {
    match host_layout() {
        Some(HostLayout::V2) => vec![Path::new(V2_ROOT).join("devoxx-docker")],
        Some(HostLayout::V1) => ["memory", "cpu", "pids"]
            .into_iter()
            .filter_map(v1_mount)
            .map(|m| m.join("devoxx-docker"))
            .collect(),
        None => Vec::new(),
    }
}

/// A container's cgroup directories on the host.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    pub pid: i32,
    v2: Option<PathBuf>,
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl ContainerCgroup {
    /// The cgroup of `pid` if it is in a `devoxx-docker/<id>` cgroup.
    pub fn of(pid: i32) -> Option<Self> {
        let lines = cgroups_of(pid);
        let ours = |path: &str| path.starts_with("/devoxx-docker/");
        let v1 = |name: &str| {
            let (_, path) = lines
                .iter()
                .find(|(cs, p)| cs.split(',').any(|c| c == name) && ours(p))?;
            Some(v1_mount(name)?.join(path.trim_start_matches('/')))
        };
        let found = match host_layout()? {
            HostLayout::V2 => {
                let (_, path) = lines.iter().find(|(cs, p)| cs.is_empty() && ours(p))?;
                ContainerCgroup {
                    pid,
                    v2: Some(Path::new(V2_ROOT).join(path.trim_start_matches('/'))),
                    memory: None,
                    cpu: None,
                    pids: None,
                }
            }
            HostLayout::V1 => ContainerCgroup {
                pid,
                v2: None,
                memory: v1("memory"),
                cpu: v1("cpu"),
                pids: v1("pids"),
            },
        };
        (!found.dirs().is_empty()).then_some(found)
    }

    /// Whether the container joined a cgroup of its own in the v1 hierarchy of `controller`
    /// (always false on v2, which has one hierarchy).
    pub fn joined_v1(&self, controller: &str) -> bool {
        match controller {
            "memory" => self.memory.is_some(),
            "cpu" => self.cpu.is_some(),
            "pids" => self.pids.is_some(),
            _ => false,
        }
    }

    /// Every directory of this cgroup (must all be gone after the run).
    pub fn dirs(&self) -> Vec<PathBuf> {
        [&self.v2, &self.memory, &self.cpu, &self.pids]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The container id: the last path component.
    pub fn id(&self) -> String {
        self.dirs()[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn read(&self, v1_dir: &Option<PathBuf>, v1_file: &str, v2_file: &str) -> Option<String> {
        let path = match &self.v2 {
            Some(dir) => dir.join(v2_file),
            None => v1_dir.as_ref()?.join(v1_file),
        };
        fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
    }

    /// Memory limit in bytes; `None` = unlimited (`max` on v2, the huge default on v1).
    pub fn memory_limit(&self) -> Option<u64> {
        let text = self
            .read(&self.memory, "memory.limit_in_bytes", "memory.max")
            .expect("memory limit file readable");
        text.parse::<u64>().ok().filter(|&b| b < 1 << 62)
    }

    /// Whether swap is closed off for this container: v2 `memory.swap.max` = 0, v1
    /// `memory.memsw.limit_in_bytes` = `memory.limit_in_bytes`. `None` when the kernel has no
    /// swap accounting file.
    pub fn swap_blocked(&self) -> Option<bool> {
        match &self.v2 {
            Some(_) => self.read(&None, "", "memory.swap.max").map(|s| s == "0"),
            None => {
                let memsw = self.read(&self.memory, "memory.memsw.limit_in_bytes", "")?;
                let limit = self.read(&self.memory, "memory.limit_in_bytes", "")?;
                Some(memsw == limit)
            }
        }
    }

    /// `(quota µs or None for unlimited, period µs)`.
    pub fn cpu_max(&self) -> (Option<u64>, u64) {
        match &self.v2 {
            Some(_) => {
                let text = self.read(&None, "", "cpu.max").expect("cpu.max readable");
                let (quota, period) = text.split_once(' ').expect("cpu.max has two fields");
                (quota.parse().ok(), period.parse().expect("period"))
            }
            None => {
                let quota = self
                    .read(&self.cpu, "cpu.cfs_quota_us", "")
                    .expect("cpu.cfs_quota_us readable");
                let period = self
                    .read(&self.cpu, "cpu.cfs_period_us", "")
                    .expect("cpu.cfs_period_us readable");
                (quota.parse().ok(), period.parse().expect("period"))
            }
        }
    }

    /// `pids.max`; `None` = unlimited.
    pub fn pids_max(&self) -> Option<u64> {
        self.read(&self.pids, "pids.max", "pids.max")?.parse().ok()
    }

    fn key(&self, v1_dir: &Option<PathBuf>, v1_file: &str, v2_file: &str, key: &str) -> u64 {
        self.read(v1_dir, v1_file, v2_file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// The kernel's OOM-kill counter for this cgroup.
    pub fn oom_kills(&self) -> u64 {
        self.key(
            &self.memory,
            "memory.oom_control",
            "memory.events",
            "oom_kill",
        )
    }

    /// Peak memory use of the cgroup in bytes (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`). Used to show the limit was reached: `memory.failcnt` is not reliable
    /// (it stays 0 on recent kernels).
    pub fn peak_memory(&self) -> u64 {
        self.read(&self.memory, "memory.max_usage_in_bytes", "memory.peak")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Periods in which the CPU quota throttled the cgroup.
    pub fn nr_throttled(&self) -> u64 {
        self.key(&self.cpu, "cpu.stat", "cpu.stat", "nr_throttled")
    }

    /// Pids listed in the cgroup (v2 dir, or the memory hierarchy on v1).
    pub fn procs(&self) -> Vec<i32> {
        self.read(&self.memory, "cgroup.procs", "cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

/// Wait until a process carrying `marker` runs inside a devoxx-docker cgroup (the runtime's
/// own command line carries the marker too; it is not in such a cgroup).
pub fn find_container(marker: &str, timeout: Duration) -> Option<ContainerCgroup> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(found) = processes_with(marker)
            .into_iter()
            .find_map(ContainerCgroup::of)
        {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Wait until a process carrying `marker` runs in a PID namespace below ours (the container's
/// command, whatever its cgroups), so a container that has no cgroup can be found too.
pub fn find_namespaced(marker: &str, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let nested = |pid: &i32| {
        fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().count() > 1)
        })
    };
    while Instant::now() < deadline {
        if let Some(pid) = processes_with(marker).into_iter().find(nested) {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// `(CPU seconds used, seconds since it started)` of `pid`, from `/proc/<pid>/stat`
/// (utime + stime of all its threads, starttime) and `/proc/uptime`.
pub fn cpu_and_age(pid: i32) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let tick = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // After "pid (comm) ": state is field 3 of proc(5), so field N is at index N - 3.
    let (utime, stime, start) = (tick(14 - 3)?, tick(15 - 3)?, tick(22 - 3)?);
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = clock_ticks();
    Some(((utime + stime) / hz, uptime - start / hz))
}

fn clock_ticks() -> f64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// Wait until `pid` has a handler for `sig` (`SigCgt` in `/proc/<pid>/status`), so a signal
/// sent next is caught rather than ignored by a PID 1 still starting up.
pub fn wait_catching(pid: i32, sig: nix::sys::signal::Signal, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let bit = 1u64 << (sig as i32 - 1);
    while Instant::now() < deadline {
        let caught = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let hex = s
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))?
                    .trim()
                    .to_owned();
                u64::from_str_radix(&hex, 16).ok()
            });
        if caught.is_some_and(|mask| mask & bit != 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// What a finished runtime left: exit status, stdout, stderr.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Wait for a spawned runtime (stdout/stderr piped), killing it after `timeout` so a hung
/// runtime fails the test instead of hanging it.
pub fn wait_finished(mut child: Child, timeout: Duration) -> Finished {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runtime still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// Send `signal` to a spawned runtime.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("signal the runtime");
}

/// Assert every directory of a container's cgroup is gone.
pub fn assert_cgroup_gone(cgroup: &ContainerCgroup) {
    for dir in cgroup.dirs() {
        assert!(!dir.exists(), "cgroup left behind: {}", dir.display());
    }
}
