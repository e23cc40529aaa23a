//! cgroups: detect the host layout once (v2, or v1/hybrid), create one cgroup per container,
//! apply memory/cpu/pids limits before the command starts, report OOM kills, remove it after.
//!
//! API pinned for `container::process` (bodies are provisional stubs).

pub mod v1;
pub mod v2;

use crate::Result;

/// CPU bandwidth: `quota` µs of CPU time per `period` µs (cgroup v2 `cpu.max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota: u64,
    pub period: u64,
}

/// The limits one container asked for; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub cpu: Option<CpuMax>,
    pub pids: Option<u64>,
}

impl Limits {
    /// Parse the CLI's `--memory`, `--cpus`, `--pids-limit` (bad values → `Error::Usage`).
    pub fn parse(memory: &str, cpus: &str, pids: Option<&str>) -> Result<Limits> {
        let _ = (memory, cpus, pids);
        Ok(Limits::default())
    }
}

/// One container's cgroup; removed (after killing leftovers) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    id: String,
}

impl Cgroup {
    /// Create `devoxx-docker/<id>` with `limits` applied, before any process is in it.
    pub fn create(id: &str, limits: &Limits) -> Result<Cgroup> {
        let _ = limits;
        Ok(Cgroup { id: id.to_owned() })
    }

    /// Move `pid` into the cgroup (called before the container's command is exec'd).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let _ = (pid, &self.id);
        Ok(())
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        false
    }
}

/// Remove cgroups of containers that died without cleaning up (runtime SIGKILLed).
/// `is_live(id)` tells whether container `id` still has a live runtime.
pub fn reclaim_stale(is_live: &dyn Fn(&str) -> bool) {
    let _ = is_live;
}
