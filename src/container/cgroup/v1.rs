//! cgroup v1 / hybrid backend: one `devoxx-docker/<id>` directory in each hierarchy (memory,
//! cpu, pids) whose controller carries one of the container's limits, and in no other: joining
//! a v1 cgroup is a migration, whose first write waits for an RCU grace period (~5 ms, more
//! than the rest of the start), so a container without limits joins none.

use std::path::{Path, PathBuf};

use super::dir::CgroupDir;
use super::layout::Controller;
use super::{ensure_ancestors, needed, require, warn_not_removed, Limits};
use crate::Result;

/// A container's v1 cgroups, one per hierarchy; removed (after killing leftovers) on drop.
#[derive(Debug)]
pub struct Group {
    dirs: Vec<(Controller, CgroupDir)>,
}

impl Group {
    /// Create `rel` (`devoxx-docker/<id>` for `run`) in each hierarchy that carries one of
    /// `limits` (in every one with `every_hierarchy`), and apply them.
    pub fn create(
        hierarchies: &[(Controller, PathBuf)],
        rel: &Path,
        limits: &Limits,
        every_hierarchy: bool,
    ) -> Result<Group> {
        let available: Vec<Controller> = hierarchies.iter().map(|(c, _)| *c).collect();
        let needed = needed(limits);
        require(&available, &needed, "the cgroup v1 hierarchies")?;
        // Built one directory at a time, so a failure drops (removes) exactly what exists.
        let mut group = Group { dirs: Vec::new() };
        let wanted = hierarchies.iter().filter(|(c, _)| {
            (every_hierarchy && Controller::CORE.contains(c)) || needed.contains(c)
        });
        for (controller, mount) in wanted {
            let ancestors = ensure_ancestors(mount, rel)?;
            let dir = CgroupDir::create(mount.join(rel))?;
            if *controller == Controller::Cpuset {
                let root = CgroupDir::new(mount);
                let chain: Vec<&CgroupDir> = std::iter::once(&root)
                    .chain(&ancestors)
                    .chain(std::iter::once(&dir))
                    .collect();
                group.dirs.push((*controller, dir.clone()));
                inherit_cpuset(&chain)?;
            } else {
                group.dirs.push((*controller, dir));
            }
        }
        group.apply_limits(limits)?;
        Ok(group)
    }

    /// The directories, for messages and host-side inspection.
    pub fn dirs(&self) -> impl Iterator<Item = &CgroupDir> {
        self.dirs.iter().map(|(_, d)| d)
    }

    fn dir_of(&self, controller: Controller) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d)
    }

    /// Move `pid` into the cgroup of every hierarchy that carries a limit.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        self.dirs().try_for_each(|d| d.add(pid))
    }

    /// `memory.oom_control` counts OOM kills (`oom_kill`, kernel ≥ 4.13). Kernels without that
    /// key only have `memory.failcnt` (the limit was hit; we are asked after a SIGKILL). Recent
    /// kernels leave failcnt at 0, so it is only a fallback.
    pub fn oom_killed(&self) -> bool {
        let Some(memory) = self.dir_of(Controller::Memory) else {
            return false;
        };
        match memory.read_key("memory.oom_control", "oom_kill") {
            Some(kills) => kills > 0,
            None => memory.read_number("memory.failcnt").is_some_and(|n| n > 0),
        }
    }

    /// `memory.limit_in_bytes` (then `memory.memsw.limit_in_bytes`, when swap accounting
    /// exists, to the same value: no dodging through swap), `memory.oom_control` (1: the
    /// OOM killer off, tasks wait at the limit instead), `cpu.cfs_period_us` then
    /// `cpu.cfs_quota_us`, `cpu.shares`, `pids.max`, `cpuset.mems` and `cpuset.cpus`.
    pub fn apply_limits(&self, limits: &Limits) -> Result<()> {
        if let (Some(bytes), Some(dir)) = (limits.memory, self.dir_of(Controller::Memory)) {
            dir.write("memory.limit_in_bytes", &bytes.to_string())?;
            if dir.has("memory.memsw.limit_in_bytes") {
                dir.write("memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
        }
        if let (true, Some(dir)) = (limits.oom_kill_disable, self.dir_of(Controller::Memory)) {
            dir.write("memory.oom_control", "1")?;
        }
        if let (Some(cpu), Some(dir)) = (limits.cpu, self.dir_of(Controller::Cpu)) {
            dir.write("cpu.cfs_period_us", &cpu.period.to_string())?;
            dir.write("cpu.cfs_quota_us", &cpu.quota.to_string())?;
        }
        if let (Some(shares), Some(dir)) = (limits.cpu_shares, self.dir_of(Controller::Cpu)) {
            dir.write("cpu.shares", &shares.to_string())?;
        }
        if let (Some(pids), Some(dir)) = (limits.pids, self.dir_of(Controller::Pids)) {
            dir.write("pids.max", &pids.to_string())?;
        }
        if let Some(dir) = self.dir_of(Controller::Cpuset) {
            // Only what was asked: the rest stays as inherited from the parent.
            if let Some(mems) = &limits.cpuset.mems {
                dir.write("cpuset.mems", mems)?;
            }
            if let Some(cpus) = &limits.cpuset.cpus {
                dir.write("cpuset.cpus", cpus)?;
            }
        }
        Ok(())
    }
}

/// v1 cpuset cgroups start with empty `cpuset.cpus` and `cpuset.mems`, and no task can join
/// one until both are set: fill each empty one from its parent, top down (`chain`: the
/// hierarchy root, the ancestors, the container's cgroup), as runc does.
fn inherit_cpuset(chain: &[&CgroupDir]) -> Result<()> {
    for pair in chain.windows(2) {
        let (parent, child) = (pair[0], pair[1]);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if child.read(file)?.trim().is_empty() {
                child.write(file, parent.read(file)?.trim())?;
            }
        }
    }
    Ok(())
}

impl Drop for Group {
    fn drop(&mut self) {
        for (_, dir) in self.dirs.iter().rev() {
            if let Err(e) = dir.remove() {
                warn_not_removed(dir.path(), &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup::layout::PARENT;
    use crate::container::cgroup::CpuMax;
    use crate::Error;
    use std::fs;

    /// Fixture hierarchies: a dir per controller with the files the kernel would create.
    fn fixture() -> (tempfile::TempDir, Group) {
        let tmp = tempfile::tempdir().unwrap();
        let files: &[(Controller, &[(&str, &str)])] = &[
            (
                Controller::Memory,
                &[
                    ("memory.limit_in_bytes", "9223372036854771712\n"),
                    ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                    (
                        "memory.oom_control",
                        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                    ),
                    ("memory.failcnt", "0\n"),
                ],
            ),
            (
                Controller::Cpu,
                &[
                    ("cpu.cfs_period_us", "100000\n"),
                    ("cpu.cfs_quota_us", "-1\n"),
                    ("cpu.shares", "1024\n"),
                ],
            ),
            (Controller::Pids, &[("pids.max", "max\n")]),
            (
                Controller::Cpuset,
                &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")],
            ),
        ];
        let mut dirs = Vec::new();
        for (controller, content) in files {
            let path = tmp.path().join(controller.name());
            fs::create_dir(&path).unwrap();
            for (name, text) in *content {
                fs::write(path.join(name), text).unwrap();
            }
            dirs.push((*controller, CgroupDir::new(path)));
        }
        (tmp, Group { dirs })
    }

    fn read(group: &Group, c: Controller, file: &str) -> String {
        group.dir_of(c).unwrap().read(file).unwrap()
    }

    #[test]
    fn all_limits_are_written() {
        let (_tmp, group) = fixture();
        let limits = Limits {
            memory: Some(52_428_800),
            cpu: Some(CpuMax {
                quota: 25_000,
                period: 100_000,
            }),
            pids: Some(7),
            cpu_shares: Some(512),
            cpuset: crate::container::cgroup::Cpuset {
                cpus: Some("1,3".into()),
                mems: None,
            },
            oom_kill_disable: true,
        };
        group.apply_limits(&limits).unwrap();
        assert_eq!(read(&group, Controller::Memory, "memory.oom_control"), "1");
        assert_eq!(read(&group, Controller::Cpu, "cpu.shares"), "512");
        assert_eq!(read(&group, Controller::Cpuset, "cpuset.cpus"), "1,3");
        assert_eq!(read(&group, Controller::Cpuset, "cpuset.mems"), "0\n");
        assert_eq!(
            read(&group, Controller::Memory, "memory.limit_in_bytes"),
            "52428800"
        );
        assert_eq!(
            read(&group, Controller::Memory, "memory.memsw.limit_in_bytes"),
            "52428800"
        );
        assert_eq!(read(&group, Controller::Cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&group, Controller::Cpu, "cpu.cfs_quota_us"), "25000");
        assert_eq!(read(&group, Controller::Pids, "pids.max"), "7");
        std::mem::forget(group);
    }

    #[test]
    fn unlimited_leaves_kernel_defaults() {
        let (_tmp, group) = fixture();
        group.apply_limits(&Limits::default()).unwrap();
        assert_eq!(read(&group, Controller::Cpu, "cpu.cfs_quota_us"), "-1\n");
        assert_eq!(read(&group, Controller::Pids, "pids.max"), "max\n");
        assert_eq!(
            read(&group, Controller::Memory, "memory.limit_in_bytes"),
            "9223372036854771712\n"
        );
        std::mem::forget(group);
    }

    #[test]
    fn memsw_only_when_the_kernel_has_it() {
        let (tmp, group) = fixture();
        fs::remove_file(tmp.path().join("memory/memory.memsw.limit_in_bytes")).unwrap();
        let limits = Limits {
            memory: Some(10 << 20),
            ..Limits::default()
        };
        group.apply_limits(&limits).unwrap();
        assert_eq!(
            read(&group, Controller::Memory, "memory.limit_in_bytes"),
            "10485760"
        );
        assert!(!tmp
            .path()
            .join("memory/memory.memsw.limit_in_bytes")
            .exists());
        std::mem::forget(group);
    }

    #[test]
    fn oom_kill_counter_then_failcnt() {
        let (tmp, group) = fixture();
        assert!(!group.oom_killed());
        let oom = tmp.path().join("memory/memory.oom_control");
        fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert!(group.oom_killed());
        fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert!(!group.oom_killed());
        fs::write(tmp.path().join("memory/memory.failcnt"), "17\n").unwrap();
        assert!(group.oom_killed());
        std::mem::forget(group);
    }

    /// One empty directory per controller, standing for its hierarchy's root.
    fn empty_hierarchies() -> (tempfile::TempDir, Vec<(Controller, PathBuf)>) {
        let tmp = tempfile::tempdir().unwrap();
        let hierarchies: Vec<(Controller, PathBuf)> = Controller::ALL
            .into_iter()
            .map(|c| (c, tmp.path().join(c.name())))
            .collect();
        for (_, mount) in &hierarchies {
            fs::create_dir(mount).unwrap();
        }
        (tmp, hierarchies)
    }

    #[test]
    fn without_limits_no_hierarchy_is_joined() {
        let (_tmp, hierarchies) = empty_hierarchies();
        let group = Group::create(
            &hierarchies,
            &Path::new(PARENT).join("c0ffee"),
            &Limits::default(),
            false,
        )
        .unwrap();
        assert_eq!(group.dirs().count(), 0);
        group.add_process(std::process::id() as i32).unwrap();
        for (_, mount) in &hierarchies {
            assert!(!mount.join(PARENT).join("c0ffee").exists());
        }
    }

    #[test]
    fn only_the_limited_hierarchy_is_created() {
        let (_tmp, hierarchies) = empty_hierarchies();
        let limits = Limits {
            pids: Some(9),
            ..Limits::default()
        };
        // A plain directory has no pids.max: the one write fails, and it names the only
        // hierarchy that was created (memory and cpu come first and are skipped).
        let err = Group::create(
            &hierarchies,
            &Path::new(PARENT).join("c0ffee"),
            &limits,
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("pids/devoxx-docker/c0ffee/pids.max"),
            "{err}"
        );
        for (c, mount) in &hierarchies {
            let parent_made = mount.join(PARENT).is_dir();
            assert_eq!(parent_made, *c == Controller::Pids, "{}", c.name());
        }
    }

    #[test]
    fn failed_limit_write_removes_what_was_created() {
        let tmp = tempfile::tempdir().unwrap();
        let hierarchies = vec![(Controller::Memory, tmp.path().to_owned())];
        let limits = Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        };
        // A plain directory has no memory.limit_in_bytes: the write fails, the dir goes.
        let err = Group::create(
            &hierarchies,
            &Path::new(PARENT).join("dead"),
            &limits,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("memory.limit_in_bytes"), "{err}");
        assert!(!tmp.path().join(PARENT).join("dead").exists());
    }

    #[test]
    fn cpuset_parents_are_filled_from_the_root_down() {
        let tmp = tempfile::tempdir().unwrap();
        let levels = ["root", "root/a", "root/a/b"];
        let dirs: Vec<CgroupDir> = levels
            .iter()
            .map(|l| {
                let path = tmp.path().join(l);
                fs::create_dir_all(&path).unwrap();
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    fs::write(path.join(file), "\n").unwrap();
                }
                CgroupDir::new(path)
            })
            .collect();
        let cpus = format!("0-{}", std::process::id() % 7 + 1);
        dirs[0].write("cpuset.cpus", &cpus).unwrap();
        dirs[0].write("cpuset.mems", "0").unwrap();
        dirs[1].write("cpuset.mems", "1").unwrap(); // already set: kept
        inherit_cpuset(&dirs.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(dirs[1].read("cpuset.cpus").unwrap(), cpus);
        assert_eq!(dirs[1].read("cpuset.mems").unwrap(), "1");
        assert_eq!(dirs[2].read("cpuset.cpus").unwrap(), cpus);
        assert_eq!(dirs[2].read("cpuset.mems").unwrap(), "1");
    }

    #[test]
    fn missing_hierarchy_for_a_limit_is_a_host_error() {
        let tmp = tempfile::tempdir().unwrap();
        let hierarchies = vec![(Controller::Memory, tmp.path().to_owned())];
        let limits = Limits {
            cpu: Some(CpuMax {
                quota: 50_000,
                period: 100_000,
            }),
            ..Limits::default()
        };
        let err =
            Group::create(&hierarchies, &Path::new(PARENT).join("x"), &limits, false).unwrap_err();
        assert!(matches!(err, Error::Host(_)), "{err:?}");
        assert!(err.to_string().contains("--cpus"), "{err}");
    }
}
