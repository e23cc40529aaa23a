//! The limits a workshop teaches, as the cgroups step judges them: which are configured, the
//! file each is written to in the workshop's cgroup version, whether the value found is the
//! one taught, and the bands the enforcement checks accept. Pure functions: unit-tested here.

use crate::grade::inspect::{CgroupVersion, Hierarchy, Limit, LimitKind};
use crate::grade::report::Check;
use crate::grade::workshop::{Limits, PERIOD_US};

use super::{fail, pass};

/// One limit the workshop configured: what it limits and the value taught.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taught {
    pub kind: LimitKind,
    pub want: Limit,
}

impl Taught {
    /// The configured limits, in the step's order (memory, cpu, pids); a limit not set is not
    /// there.
    pub fn all(limits: &Limits) -> Vec<Taught> {
        let memory = limits.memory.map(|m| Taught {
            kind: LimitKind::Memory,
            want: Limit::Bytes(m),
        });
        let cpu = limits.cpu.map(|c| Taught {
            kind: LimitKind::Cpu,
            want: Limit::Cpu {
                quota: (c * PERIOD_US as f64).round() as u64,
                period: PERIOD_US,
            },
        });
        let pids = limits.pids.map(|p| Taught {
            kind: LimitKind::Pids,
            want: Limit::Count(p),
        });
        [memory, cpu, pids].into_iter().flatten().collect()
    }

    /// The check's name (`memory-max`, `cpu-max`, `pids-max`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            LimitKind::Memory => "memory-max",
            LimitKind::Cpu => "cpu-max",
            LimitKind::Pids => "pids-max",
        }
    }

    /// Is `seen` this limit? Memory as the kernel keeps it (rounded down to a page), CPU as a
    /// share (`100000 200000` is half a CPU too), processes exactly.
    pub fn matches(&self, seen: &Limit) -> bool {
        match (self.want, *seen) {
            (Limit::Bytes(w), Limit::Bytes(s)) => s == w || s == w / 4096 * 4096,
            (
                Limit::Cpu { quota, period },
                Limit::Cpu {
                    quota: q,
                    period: p,
                },
            ) => p > 0 && (q as f64 / p as f64 - quota as f64 / period as f64).abs() < 0.005,
            (Limit::Count(w), Limit::Count(s)) => s == w,
            _ => false,
        }
    }
}

/// The controller whose hierarchy holds `kind`'s limit (v1: one hierarchy per controller).
pub fn controller(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Memory => "memory",
        LimitKind::Cpu => "cpu",
        LimitKind::Pids => "pids",
    }
}

/// `want` as the workshop writes it in `version`'s file, that file, and what goes with it (v1's
/// CPU limit is two files: the quota, with the period beside it).
fn written(version: CgroupVersion, want: &Limit) -> (String, &'static str, String) {
    match (version, want) {
        (CgroupVersion::V1, Limit::Cpu { quota, period }) => (
            quota.to_string(),
            "cpu.cfs_quota_us",
            format!(" with cpu.cfs_period_us = {period}"),
        ),
        (CgroupVersion::V1, Limit::Bytes(n)) => {
            (n.to_string(), "memory.limit_in_bytes", String::new())
        }
        (CgroupVersion::V2, Limit::Bytes(n)) => (n.to_string(), "memory.max", String::new()),
        (CgroupVersion::V2, Limit::Cpu { .. }) => (want.show(), "cpu.max", String::new()),
        (_, Limit::Count(n)) => (n.to_string(), "pids.max", String::new()),
    }
}

/// A limit found on `version`'s files, as a report shows it.
fn shown(version: CgroupVersion, seen: &Limit) -> String {
    match (version, seen) {
        (CgroupVersion::V1, Limit::Cpu { quota, period }) => {
            format!("cpu.cfs_quota_us = {quota}, cpu.cfs_period_us = {period}")
        }
        _ => seen.show(),
    }
}

/// The check that `taught` is written on the container's cgroup (or an ancestor): `seen` is
/// the limit in force there and the cgroup that sets it.
pub fn written_check(
    hierarchy: &Hierarchy,
    taught: &Taught,
    seen: Option<(Limit, String)>,
) -> Check {
    let version = hierarchy.version;
    let (want, file, with) = written(version, &taught.want);
    let expected = format!("{file} = {want}{with} on the container's cgroup (or an ancestor)");
    let none = match version {
        CgroupVersion::V2 => "max (no limit)",
        CgroupVersion::V1 => "no limit",
    };
    match seen {
        Some((v, at)) if taught.matches(&v) => pass(
            taught.name(),
            &expected,
            format!("{} in {at}", shown(version, &v)),
        ),
        Some((v, at)) => fail(
            taught.name(),
            &expected,
            format!("{} in {at}", shown(version, &v)),
            &format!("step 4 (cgroups): write \"{want}\" to {file}{with} of the container's cgroup"),
        ),
        None => fail(
            taught.name(),
            &expected,
            none,
            &format!("step 4 (cgroups): write \"{want}\" to {file}{with} of the container's cgroup before starting the command"),
        ),
    }
}

/// The hint of an enforcement check that failed: the file of the limit, in the workshop's words.
pub fn enforce_hint(version: CgroupVersion, taught: &Taught) -> String {
    let (want, file, with) = written(version, &taught.want);
    let file = format!("{file}{with}");
    match taught.kind {
        LimitKind::Memory => format!("step 4 (cgroups): the memory limit is not enforced: check {file} of the cgroup the process is really in"),
        LimitKind::Cpu => format!("step 4 (cgroups): write \"{want}\" to {file} of the cgroup the process is in, and put the process in it before it starts the command"),
        LimitKind::Pids => format!("step 4 (cgroups): the process limit is not enforced: write \"{want}\" to {file} of the cgroup the process is in, and put the process in it before it starts the command"),
    }
}

/// How much the memory check allocates past a limit of `bytes`: 2.5 times it, rounded up to
/// 64 MiB (256 MiB for the devoxx workshop's 100 MiB).
pub fn alloc_mib(bytes: u64) -> u64 {
    (bytes * 5 / 2).div_ceil(64 << 20) * 64
}

/// The CPU shares the CPU check accepts for a limit of `cpu` CPUs: 60 % to 140 % of it
/// (0.3–0.7 for the devoxx workshop's half CPU).
pub fn cpu_band(cpu: f64) -> (f64, f64) {
    (cpu * 0.6, cpu * 1.4)
}

/// How many children the pids check forks against a limit of `pids`: enough past it that
/// some must fail, whatever the container already counts.
pub fn forks_for(pids: u64) -> u64 {
    pids + 10
}

/// A share of CPU as a report writes it: `0.5`, `0.12`, never `0.12000000000000001`.
pub fn cpus(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The probe's `forks` line: (children it started, forks refused with EAGAIN).
pub fn parse_forks(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("forks="))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.parse().ok())
    };
    Some((field("started=")?, field("eagain=")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::Status;

    fn v(version: CgroupVersion, controller: &str) -> Hierarchy {
        Hierarchy {
            version,
            dir: if version == CgroupVersion::V1 {
                controller.into()
            } else {
                String::new()
            },
            controller: controller.into(),
        }
    }

    #[test]
    fn the_devoxx_workshop_checks_memory_and_cpu_with_todays_values() {
        let taught = Taught::all(&Limits::default());
        assert_eq!(taught.len(), 2);
        assert_eq!(
            (taught[0].name(), taught[0].want),
            ("memory-max", Limit::Bytes(104_857_600))
        );
        assert_eq!(
            (taught[1].name(), taught[1].want.show().as_str()),
            ("cpu-max", "50000 100000")
        );
        let hier = v(CgroupVersion::V2, "memory");
        let c = written_check(
            &hier,
            &taught[0],
            Some((Limit::Bytes(104_857_600), "/w".into())),
        );
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.seen, "104857600 in /w");
        assert_eq!(
            c.expected,
            "memory.max = 104857600 on the container's cgroup (or an ancestor)"
        );
        let c = written_check(&hier, &taught[1], None);
        assert_eq!(
            (c.status, c.seen.as_str()),
            (Status::Fail, "max (no limit)")
        );
        assert_eq!(c.hint, "step 4 (cgroups): write \"50000 100000\" to cpu.max of the container's cgroup before starting the command");
        assert_eq!((alloc_mib(104_857_600), cpu_band(0.5)), (256, (0.3, 0.7)));
        assert_eq!(
            enforce_hint(CgroupVersion::V2, &taught[0]),
            "step 4 (cgroups): the memory limit is not enforced: check memory.max of the cgroup the process is really in"
        );
    }

    #[test]
    fn only_the_configured_limits_are_checked() {
        let pids = 2 + rand::random::<u64>() % 999;
        let only = Limits {
            memory: None,
            cpu: None,
            pids: Some(pids),
        };
        let taught = Taught::all(&only);
        assert_eq!(taught.len(), 1);
        assert_eq!(
            (taught[0].name(), taught[0].want),
            ("pids-max", Limit::Count(pids))
        );
        assert!(forks_for(pids) > pids);
    }

    #[test]
    fn a_wrong_value_fails_and_the_v1_files_are_named() {
        let hier = v(CgroupVersion::V1, "cpu");
        let cpu = Taught::all(&Limits {
            memory: None,
            cpu: Some(0.2),
            pids: None,
        })[0];
        let seen = Limit::Cpu {
            quota: 20_000,
            period: 100_000,
        };
        let c = written_check(&hier, &cpu, Some((seen, "/liz".into())));
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert_eq!(
            c.seen,
            "cpu.cfs_quota_us = 20000, cpu.cfs_period_us = 100000 in /liz"
        );
        assert!(
            c.expected
                .starts_with("cpu.cfs_quota_us = 20000 with cpu.cfs_period_us = 100000 on "),
            "{}",
            c.expected
        );
        let doubled = Limit::Cpu {
            quota: 40_000,
            period: 200_000,
        };
        assert!(cpu.matches(&doubled), "the same share with another period");
        let c = written_check(
            &hier,
            &cpu,
            Some((
                Limit::Cpu {
                    quota: 50_000,
                    period: 100_000,
                },
                "/liz".into(),
            )),
        );
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.hint
                .contains("\"20000\" to cpu.cfs_quota_us with cpu.cfs_period_us = 100000"),
            "{}",
            c.hint
        );
        let mem = Taught {
            kind: LimitKind::Memory,
            want: Limit::Bytes(100_000_000),
        };
        assert!(
            mem.matches(&Limit::Bytes(99_999_744)),
            "rounded down to a page"
        );
        assert!(!mem.matches(&Limit::Bytes(104_857_600)));
        let c = written_check(&v(CgroupVersion::V1, "memory"), &mem, None);
        assert_eq!(c.seen, "no limit");
        assert!(
            c.expected.starts_with("memory.limit_in_bytes = 100000000"),
            "{}",
            c.expected
        );
        let pids = Taught {
            kind: LimitKind::Pids,
            want: Limit::Count(20),
        };
        assert!(!pids.matches(&Limit::Count(21)));
        assert!(enforce_hint(CgroupVersion::V1, &pids).contains("\"20\" to pids.max"));
    }

    #[test]
    fn bands_and_sizes_scale_with_the_limit() {
        assert_eq!(alloc_mib(50 << 20), 128);
        assert_eq!(alloc_mib(1 << 30), 2560);
        let (lo, hi) = cpu_band(0.2);
        assert_eq!((cpus(lo), cpus(hi)), ("0.12".into(), "0.28".into()));
        assert_eq!(cpus(0.5), "0.5");
    }

    #[test]
    fn the_probes_forks_line_is_read() {
        let (n, e) = (rand::random::<u16>() as u64, rand::random::<u16>() as u64);
        let out = format!("noise\nforks=30 started={n} eagain={e} other=0\n");
        assert_eq!(parse_forks(&out), Some((n, e)));
        assert_eq!(parse_forks("forked=3 failed=0\n"), None);
    }
}
