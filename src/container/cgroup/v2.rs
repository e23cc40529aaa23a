//! cgroup v2 (unified) backend: one directory `/sys/fs/cgroup/devoxx-docker/<id>` carries
//! every limit, once the controllers are enabled in each ancestor's `cgroup.subtree_control`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::dir::CgroupDir;
use super::layout::Controller;
use super::{ensure_ancestors, needed, require, warn_not_removed, Limits};
use crate::{Error, Result};

/// A container's v2 cgroup; removed (after killing leftovers) on drop.
#[derive(Debug)]
pub struct Group {
    dir: CgroupDir,
    /// `O_PATH` descriptor of `dir`, for clone3's `CLONE_INTO_CGROUP`.
    target: Option<OwnedFd>,
}

impl Group {
    /// Enable the controllers below `root` and each ancestor of `rel`, create `rel`
    /// (`devoxx-docker/<id>` for `run`) and apply `limits`.
    pub fn create(
        root: &Path,
        available: &[Controller],
        rel: &Path,
        limits: &Limits,
    ) -> Result<Group> {
        let needed = needed(limits);
        require(
            available,
            &needed,
            &format!("cgroup v2 at {}", root.display()),
        )?;
        let ancestors = ensure_ancestors(root, rel)?;
        let wanted = wanted(available, &needed);
        enable_controllers(&CgroupDir::new(root), &wanted, &needed)?;
        for parent in &ancestors {
            enable_controllers(parent, &wanted, &needed)?;
        }
        let dir = CgroupDir::create(root.join(rel))?;
        let target = open_target(dir.path());
        let group = Group { dir, target };
        apply_limits(&group.dir, limits)?;
        Ok(group)
    }

    /// The cgroup directory, for messages and host-side inspection.
    pub fn dir(&self) -> &CgroupDir {
        &self.dir
    }

    /// The descriptor clone3 creates the container in (None: move it with [`Self::add_process`]).
    pub fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        self.target.as_ref().map(|fd| fd.as_fd())
    }

    /// Move `pid` into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        self.dir.add(pid)
    }

    /// The kernel counts OOM kills in `memory.events` (`oom_kill`).
    pub fn oom_killed(&self) -> bool {
        self.dir
            .read_key("memory.events", "oom_kill")
            .is_some_and(|n| n > 0)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Err(e) = self.dir.remove() {
            warn_not_removed(self.dir.path(), &e);
        }
    }
}

/// The controllers to enable below the parents: the core ones always (`run` as before),
/// cpuset only when a limit needs it.
fn wanted(available: &[Controller], needed: &[Controller]) -> Vec<Controller> {
    available
        .iter()
        .copied()
        .filter(|c| Controller::CORE.contains(c) || needed.contains(c))
        .collect()
}

/// `O_PATH|O_DIRECTORY` on the new cgroup. A failure only costs the migration clone3 saves,
/// so it is not an error.
fn open_target(dir: &Path) -> Option<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(dir, flags, Mode::empty()).ok()
}

/// Make `wanted` controllers available to the children of `dir`. Tries them all in one write
/// (the common case); if the kernel refuses, retries one by one so only a controller the
/// limits need turns into an error.
pub fn enable_controllers(
    dir: &CgroupDir,
    wanted: &[Controller],
    needed: &[Controller],
) -> Result<()> {
    let enabled = dir.read("cgroup.subtree_control")?;
    let missing: Vec<Controller> = wanted
        .iter()
        .copied()
        .filter(|c| !enabled.split_whitespace().any(|w| w == c.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{}", c.name())).collect();
    if dir.write("cgroup.subtree_control", &all.join(" ")).is_ok() {
        return Ok(());
    }
    for c in missing {
        let result = dir.write("cgroup.subtree_control", &format!("+{}", c.name()));
        if let (Err(e), true) = (result, needed.contains(&c)) {
            return Err(Error::Host(format!(
                "cannot enable the {} controller for {} ({e}): cannot enforce {}",
                c.name(),
                dir.path().display(),
                c.option()
            )));
        }
    }
    Ok(())
}

/// Write the limits: `memory.max` (and `memory.swap.max` 0 so swap cannot dodge it),
/// `cpu.max`, `cpu.weight` (from an OCI config's shares), `pids.max`, `cpuset.mems` and
/// `cpuset.cpus`. Unlimited values are left at the kernel's default (`max`, the parent's
/// effective CPUs and nodes).
pub fn apply_limits(dir: &CgroupDir, limits: &Limits) -> Result<()> {
    if let Some(bytes) = limits.memory {
        dir.write("memory.max", &bytes.to_string())?;
        if dir.has("memory.swap.max") {
            dir.write("memory.swap.max", "0")?;
        }
    }
    if let Some(cpu) = limits.cpu {
        dir.write("cpu.max", &format!("{} {}", cpu.quota, cpu.period))?;
    }
    if let Some(shares) = limits.cpu_shares {
        dir.write("cpu.weight", &super::shares_to_weight(shares).to_string())?;
    }
    if let Some(pids) = limits.pids {
        dir.write("pids.max", &pids.to_string())?;
    }
    if let Some(mems) = &limits.cpuset.mems {
        dir.write("cpuset.mems", mems)?;
    }
    if let Some(cpus) = &limits.cpuset.cpus {
        dir.write("cpuset.cpus", cpus)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup::layout::PARENT;
    use crate::container::cgroup::CpuMax;

    use crate::container::cgroup::dir::tests::fixture;

    const KERNEL_FILES: &[(&str, &str)] = &[
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("cpu.max", "max 100000\n"),
        ("pids.max", "max\n"),
        ("cpu.weight", "100\n"),
        ("cpuset.cpus", "\n"),
        ("cpuset.mems", "\n"),
    ];

    #[test]
    fn all_limits_are_written() {
        let (_tmp, dir) = fixture(KERNEL_FILES);
        let limits = Limits {
            memory: Some(104_857_600),
            cpu: Some(CpuMax {
                quota: 150_000,
                period: 100_000,
            }),
            pids: Some(42),
            cpu_shares: Some(2048),
            cpuset: crate::container::cgroup::Cpuset {
                cpus: Some("0-1".into()),
                mems: Some("0".into()),
            },
            ..Limits::default()
        };
        apply_limits(&dir, &limits).unwrap();
        assert_eq!(dir.read("cpu.weight").unwrap(), "79");
        assert_eq!(dir.read("cpuset.cpus").unwrap(), "0-1");
        assert_eq!(dir.read("cpuset.mems").unwrap(), "0");
        assert_eq!(dir.read("memory.max").unwrap(), "104857600");
        assert_eq!(dir.read("memory.swap.max").unwrap(), "0");
        assert_eq!(dir.read("cpu.max").unwrap(), "150000 100000");
        assert_eq!(dir.read("pids.max").unwrap(), "42");
    }

    #[test]
    fn unlimited_leaves_kernel_defaults() {
        let (_tmp, dir) = fixture(KERNEL_FILES);
        apply_limits(&dir, &Limits::default()).unwrap();
        for (name, content) in KERNEL_FILES {
            assert_eq!(&dir.read(name).unwrap(), content);
        }
    }

    #[test]
    fn missing_swap_file_is_tolerated() {
        let (_tmp, dir) = fixture(&[("memory.max", "max\n")]);
        let limits = Limits {
            memory: Some(8 << 20),
            ..Limits::default()
        };
        apply_limits(&dir, &limits).unwrap();
        assert_eq!(dir.read("memory.max").unwrap(), "8388608");
        assert!(!dir.has("memory.swap.max"));
    }

    #[test]
    fn missing_controller_file_is_an_error() {
        let (_tmp, dir) = fixture(&[("memory.max", "max\n")]);
        let limits = Limits {
            pids: Some(10),
            ..Limits::default()
        };
        assert!(apply_limits(&dir, &limits).is_err());
    }

    #[test]
    fn only_missing_controllers_are_enabled_in_one_write() {
        let (_tmp, dir) = fixture(&[("cgroup.subtree_control", "memory\n")]);
        enable_controllers(&dir, &Controller::CORE, &[Controller::Cpu]).unwrap();
        assert_eq!(dir.read("cgroup.subtree_control").unwrap(), "+cpu +pids");
    }

    #[test]
    fn cpuset_is_enabled_only_for_a_config_that_asks_for_it() {
        assert_eq!(wanted(&Controller::ALL, &[]), Controller::CORE);
        assert_eq!(
            wanted(&Controller::ALL, &[Controller::Cpuset]),
            Controller::ALL
        );
        assert_eq!(
            wanted(&[Controller::Pids], &[Controller::Cpuset]),
            [Controller::Pids]
        );
    }

    #[test]
    fn already_enabled_controllers_are_not_rewritten() {
        let (_tmp, dir) = fixture(&[("cgroup.subtree_control", "cpu memory pids\n")]);
        enable_controllers(&dir, &Controller::CORE, &Controller::CORE).unwrap();
        assert_eq!(
            dir.read("cgroup.subtree_control").unwrap(),
            "cpu memory pids\n"
        );
    }

    #[test]
    fn create_needs_the_controllers_the_limits_use() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = Limits {
            pids: Some(5),
            ..Limits::default()
        };
        let err = Group::create(
            tmp.path(),
            &[Controller::Memory],
            &Path::new(PARENT).join("abc"),
            &limits,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Host(_)));
        assert!(err.to_string().contains("--pids-limit"), "{err}");
        assert!(
            !tmp.path().join(PARENT).exists(),
            "nothing created on error"
        );
    }

    #[test]
    fn oom_kill_counter_is_read_from_memory_events() {
        let (_tmp, dir) =
            fixture(&[("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")]);
        let group = Group { dir, target: None };
        assert!(group.oom_killed());
        std::mem::forget(group); // a fixture, not a cgroup: nothing to remove
        let (_tmp, dir) =
            fixture(&[("memory.events", "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n")]);
        let group = Group { dir, target: None };
        assert!(!group.oom_killed());
        std::mem::forget(group);
    }
}
