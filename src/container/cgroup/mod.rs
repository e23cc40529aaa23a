//! cgroups: detect the host layout once (v2, or v1/hybrid), create one cgroup per container,
//! apply memory/cpu/pids limits before the command starts, report OOM kills, remove it after.
//!
//! The pinned API used by `container::process`: [`Limits::parse`] (before anything is
//! created), [`Cgroup::create`], [`Cgroup::clone_target`] (v2: clone3 creates the container
//! in it), [`Cgroup::add_process`] (otherwise, before the command execs),
//! [`Cgroup::oom_killed`] (after a SIGKILL), drop (= kill leftovers + rmdir), [`reclaim_stale`].

pub mod devices;
mod dir;
pub mod layout;
mod limits;
pub mod v1;
pub mod v2;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

pub use dir::CgroupDir;
pub use layout::{Controller, Layout};
pub use limits::{
    parse_cpu_list, shares_to_weight, CpuMax, Cpuset, Limits, CPU_PERIOD, CPU_SHARES_RANGE,
    MIN_MEMORY,
};

use crate::{Error, Result};

/// One container's cgroup; removed (after killing leftovers) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    id: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    V2(v2::Group),
    V1(v1::Group),
    /// No controller on this host and the user asked for no limit: nothing to manage.
    Absent,
}

impl Cgroup {
    /// Create `devoxx-docker/<id>` with `limits` applied, before any process is in it.
    pub fn create(id: &str, limits: &Limits) -> Result<Cgroup> {
        Self::create_in(layout::host(), id, limits)
    }

    /// [`Cgroup::create`] on a given layout (unit tests use fixture directories).
    pub fn create_in(layout: &Layout, id: &str, limits: &Limits) -> Result<Cgroup> {
        check_id(id)?;
        let rel = Path::new(layout::PARENT).join(id);
        Self::create_placed(layout, &rel, id, limits, false)
    }

    /// An OCI container's cgroup at `rel` (its config's `cgroupsPath`, relative to each
    /// hierarchy root, checked by the caller), in every hierarchy even without a limit (so
    /// `kill --all`, `ps` and `delete` find every process). Not under `devoxx-docker/`: no
    /// `run` reclaims it, its `delete` does.
    pub fn create_at(rel: &Path, id: &str, limits: &Limits) -> Result<Cgroup> {
        Self::create_placed(layout::host(), rel, id, limits, true)
    }

    fn create_placed(
        layout: &Layout,
        rel: &Path,
        id: &str,
        limits: &Limits,
        every_hierarchy: bool,
    ) -> Result<Cgroup> {
        let backend = match layout {
            Layout::V2 { root, controllers } => {
                Backend::V2(v2::Group::create(root, controllers, rel, limits)?)
            }
            Layout::V1 { hierarchies } => Backend::V1(v1::Group::create(
                hierarchies,
                rel,
                limits,
                every_hierarchy,
            )?),
            Layout::None if limits.is_unlimited() => {
                crate::note!(
                    "warning: no cgroup controller on this host; running without \
                     resource limits, as asked (--memory 0 --cpus 0)"
                );
                Backend::Absent
            }
            Layout::None => return Err(no_controller_error(limits)),
        };
        Ok(Cgroup {
            id: id.to_owned(),
            backend,
        })
    }

    /// Move `pid` into the cgroup (called before the container's command is exec'd).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(g) => g.add_process(pid),
            Backend::V1(g) => g.add_process(pid),
            Backend::Absent => Ok(()),
        }
    }

    /// On cgroup v2, a descriptor of the cgroup for clone3's `CLONE_INTO_CGROUP`: the
    /// container is born in it and [`Cgroup::add_process`] is not needed.
    pub fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        match &self.backend {
            Backend::V2(g) => g.clone_target(),
            Backend::V1(_) | Backend::Absent => None,
        }
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        match &self.backend {
            Backend::V2(g) => g.oom_killed(),
            Backend::V1(g) => g.oom_killed(),
            Backend::Absent => false,
        }
    }

    /// Leave the cgroup in place (an OCI container outlives `create`): its directories, for
    /// [`remove_paths`] at `delete`. The guard is forgotten, not dropped (it would remove them).
    pub fn keep(self) -> Vec<PathBuf> {
        let paths = self.paths();
        std::mem::forget(self);
        paths
    }

    /// The container id this cgroup is named after.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host directories of this cgroup (one on v2, one per hierarchy on v1).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V2(g) => vec![g.dir().path().to_owned()],
            Backend::V1(g) => g.dirs().map(|d| d.path().to_owned()).collect(),
            Backend::Absent => Vec::new(),
        }
    }
}

/// Kill what is left in the cgroup directories `paths` (from [`Cgroup::keep`]) and remove
/// them; a failure is reported, never fatal (OCI `delete`).
pub fn remove_paths(paths: &[PathBuf]) {
    for path in paths {
        let dir = CgroupDir::new(path);
        if let Err(e) = dir.remove() {
            warn_not_removed(dir.path(), &e);
        }
    }
}

/// Remove cgroups of containers that died without cleaning up (runtime SIGKILLed).
/// `is_live(id)` tells whether container `id` still has a live runtime.
pub fn reclaim_stale(is_live: &dyn Fn(&str) -> bool) {
    reclaim_stale_in(layout::host(), is_live);
}

/// [`reclaim_stale`] on a given layout: every `devoxx-docker/<id>` whose runtime is gone has
/// its leftover processes killed and is removed.
pub fn reclaim_stale_in(layout: &Layout, is_live: &dyn Fn(&str) -> bool) {
    for parent in layout.parents() {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !is_live(id) {
                let dir = CgroupDir::new(entry.path());
                if let Err(e) = dir.remove() {
                    warn_not_removed(dir.path(), &e);
                }
            }
        }
    }
}

/// The controllers `limits` cannot do without.
fn needed(limits: &Limits) -> Vec<Controller> {
    let mut needed = Vec::new();
    if limits.memory.is_some() || limits.oom_kill_disable {
        needed.push(Controller::Memory);
    }
    if limits.cpu.is_some() || limits.cpu_shares.is_some() {
        needed.push(Controller::Cpu);
    }
    if limits.pids.is_some() {
        needed.push(Controller::Pids);
    }
    if limits.cpuset.is_set() {
        needed.push(Controller::Cpuset);
    }
    needed
}

/// Fail (never pretend) when a limit was asked for and its controller is not there.
fn require(available: &[Controller], needed: &[Controller], place: &str) -> Result<()> {
    match needed.iter().find(|c| !available.contains(c)) {
        None => Ok(()),
        Some(c) => Err(Error::Host(format!(
            "no {} controller in {place}: cannot enforce {}; {}",
            c.name(),
            c.option(),
            how_to_run_without(*c)
        ))),
    }
}

fn how_to_run_without(c: Controller) -> &'static str {
    match c {
        Controller::Memory => "pass --memory 0 to run without a memory limit",
        Controller::Cpu => "pass --cpus 0 to run without a CPU limit",
        Controller::Pids => "omit --pids-limit to run without a process limit",
        Controller::Cpuset => "omit linux.resources.cpu.cpus and mems to run on every CPU",
    }
}

fn no_controller_error(limits: &Limits) -> Error {
    let asked: Vec<&str> = needed(limits).iter().map(|c| c.option()).collect();
    Error::Host(format!(
        "no cgroup controller on this host (neither cgroup v2 at {} with controllers nor v1 \
         memory/cpu/pids hierarchies): cannot enforce {}; pass --memory 0 --cpus 0 (and no \
         --pids-limit) to run without limits",
        layout::V2_MOUNT,
        asked.join(", ")
    ))
}

/// Container ids become one path component under `devoxx-docker/`.
fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0']);
    if valid {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "invalid container id for a cgroup: {id:?}"
        )))
    }
}

/// Every ancestor of `rel` under `root` (`a`, `a/b` for `a/b/c`), created if missing: the
/// parents a cgroup at `rel` needs, outermost first.
fn ensure_ancestors(root: &Path, rel: &Path) -> Result<Vec<CgroupDir>> {
    let mut dirs = Vec::new();
    let mut path = root.to_owned();
    let count = rel.components().count();
    for component in rel.components().take(count.saturating_sub(1)) {
        path.push(component);
        dirs.push(ensure_parent(&path)?);
    }
    Ok(dirs)
}

/// `devoxx-docker/` under a hierarchy root; concurrent runtimes may race to create it.
fn ensure_parent(path: &Path) -> Result<CgroupDir> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(CgroupDir::new(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(CgroupDir::new(path)),
        Err(e) => Err(Error::path("create cgroup", path, e)),
    }
}

/// Drop cannot fail: say what was left and that the next run will reclaim it.
fn warn_not_removed(path: &Path, e: &io::Error) {
    crate::note!(
        "warning: could not remove cgroup {}: {e} (the next run reclaims it)",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn v1_fixture(tmp: &Path) -> Layout {
        let hierarchies: Vec<(Controller, PathBuf)> = Controller::ALL
            .into_iter()
            .map(|c| (c, tmp.join(c.name())))
            .collect();
        for (_, mount) in &hierarchies {
            fs::create_dir_all(mount.join(layout::PARENT)).unwrap();
        }
        Layout::V1 { hierarchies }
    }

    #[test]
    fn no_controller_with_limits_fails_naming_them() {
        let limits = Limits::parse_with_cpus("100m", "0.5", None, 2).unwrap();
        let err = Cgroup::create_in(&Layout::None, "abc", &limits).unwrap_err();
        assert!(matches!(err, Error::Host(_)));
        let msg = err.to_string();
        assert!(msg.contains("--memory, --cpus"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn no_controller_without_limits_runs_unmanaged() {
        let cgroup = Cgroup::create_in(&Layout::None, "abc", &Limits::default()).unwrap();
        cgroup.add_process(std::process::id() as i32).unwrap();
        assert!(!cgroup.oom_killed());
        assert!(cgroup.paths().is_empty());
    }

    #[test]
    fn ids_that_are_not_one_path_component_are_refused() {
        for id in ["", ".", "..", "a/b", "../x"] {
            assert!(Cgroup::create_in(&Layout::None, id, &Limits::default()).is_err());
        }
    }

    #[test]
    fn stale_dirs_are_reclaimed_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1_fixture(tmp.path());
        for parent in layout.parents() {
            fs::create_dir(parent.join("dead1")).unwrap();
            fs::create_dir(parent.join("live1")).unwrap();
        }
        reclaim_stale_in(&layout, &|id| id.starts_with("live"));
        for parent in layout.parents() {
            assert!(!parent.join("dead1").exists());
            assert!(parent.join("live1").is_dir());
        }
    }

    /// The real thing on this host (root only): limits land in the kernel's files, a process
    /// joins, drop kills it and removes every directory.
    #[test]
    fn host_cgroup_round_trip() {
        let layout = layout::host();
        if !nix::unistd::geteuid().is_root() || *layout == Layout::None {
            eprintln!("SKIPPED host_cgroup_round_trip: needs root and a cgroup controller");
            return;
        }
        let id = format!("unit-{}", rand::random::<u32>());
        let limits = Limits::parse_with_cpus("64m", "0.25", Some("8"), 1).unwrap();
        let cgroup = Cgroup::create(&id, &limits).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        cgroup.add_process(child.id() as i32).unwrap();
        let own = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(own.contains(&format!("/devoxx-docker/{id}")), "{own}");
        let read = |file: &str| {
            cgroup
                .paths()
                .iter()
                .find_map(|p| fs::read_to_string(p.join(file)).ok())
                .map(|s| s.trim().to_owned())
        };
        match layout {
            Layout::V2 { .. } => {
                assert_eq!(read("memory.max").as_deref(), Some("67108864"));
                assert_eq!(read("cpu.max").as_deref(), Some("25000 100000"));
            }
            _ => {
                assert_eq!(read("memory.limit_in_bytes").as_deref(), Some("67108864"));
                assert_eq!(read("cpu.cfs_quota_us").as_deref(), Some("25000"));
            }
        }
        assert_eq!(read("pids.max").as_deref(), Some("8"));
        assert!(!cgroup.oom_killed());
        let paths = cgroup.paths();
        drop(cgroup);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "leftover killed");
        for p in paths {
            assert!(!p.exists(), "{} left behind", p.display());
        }
    }

    #[test]
    fn needed_follows_the_limits() {
        let limits = Limits::parse_with_cpus("0", "1", Some("3"), 2).unwrap();
        assert_eq!(needed(&limits), vec![Controller::Cpu, Controller::Pids]);
        assert!(needed(&Limits::default()).is_empty());
    }
}
