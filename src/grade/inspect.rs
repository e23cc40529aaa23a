//! The host's view of a container process: what `/proc/<pid>` says about its namespaces, its
//! cgroup, its mounts and its network — facts a submission's output cannot fake.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use super::workshop::CgroupVersion;

/// Where the guest mounts its cgroups: cgroup2 alone (like a systemd host), or a tmpfs of v1
/// hierarchies, one per controller (a host of the talk's era).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Inode of namespace `kind` (`uts`, `pid`, `mnt`, `net`) of `pid` ("self" for the grader).
pub fn ns_inode(pid: &str, kind: &str) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// The `NSpid:` line: the pid in each nested PID namespace, outermost first.
pub fn nspid(pid: i32) -> Vec<i32> {
    status_field(pid, "NSpid")
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_owned())
    })
}

/// Argument vector of `pid` (empty once it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every pid on the machine.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose argv contains `marker` (a grader run's random word), excluding the grader.
pub fn pids_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me && cmdline(p).iter().any(|a| a.contains(marker)))
        .collect()
}

/// The probe process of a run: called by the one-word name `grade-<marker>` the grader linked
/// to it (argv[0]); the runtime's own argv holds that word too, but never as argv[0], and a
/// runtime that wraps the command (a shell) still leaves the probe to be found.
pub fn find_probe(marker: &str) -> Option<i32> {
    let name = format!("grade-{marker}");
    pids_with_marker(marker).into_iter().find(|&p| {
        cmdline(p)
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| *n == *name))
    })
}

/// Does `pid` catch SIGUSR1? The probe's `hold` and `gate` block it, then install a handler,
/// then wait for it: readiness seen on the host (`SigCgt`; `SigBlk` is cleared for the signals
/// sigtimedwait waits for), whatever the runtime did with the probe's stdout.
pub fn catches_sigusr1(pid: i32) -> bool {
    status_field(pid, "SigCgt")
        .and_then(|m| u64::from_str_radix(&m, 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGUSR1 - 1)) != 0)
}

/// The first process the runtime started on the way to `probe`: the probe's ancestor whose
/// parent is `runtime` (the probe itself when the runtime started it directly). When the chain
/// does not lead to the runtime (a double fork), the init of the probe's PID namespace, else
/// the probe. `host` is the init of the run's host (its keeper): never the container's.
pub fn first_process(probe: i32, runtime: i32, host: i32) -> i32 {
    let mut pid = probe;
    for _ in 0..64 {
        match ppid(pid) {
            Some(p) if p == runtime => return pid,
            Some(p) if p > 1 && p != host => pid = p,
            _ => break,
        }
    }
    let ns = ns_inode(&probe.to_string(), "pid");
    all_pids()
        .into_iter()
        .find(|&p| {
            nspid(p).last() == Some(&1)
                && ns_inode(&p.to_string(), "pid") == ns
                && p != 1
                && p != host
        })
        .unwrap_or(probe)
}

/// The hostname in `pid`'s UTS namespace, read by joining it from a thread of our own.
pub fn hostname_of(pid: i32) -> Option<String> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUTS).ok()?;
        nix::unistd::gethostname()
            .ok()
            .map(|h| h.to_string_lossy().into_owned())
    })
    .join()
    .ok()
    .flatten()
}

/// How many processes `pid` sees in its `/proc` (through `/proc/<pid>/root`); `None` when no
/// proc filesystem is mounted there.
pub fn processes_seen(pid: i32) -> Option<usize> {
    let proc_dir = format!("/proc/{pid}/root/proc");
    let fs_type = nix::sys::statfs::statfs(proc_dir.as_str())
        .ok()?
        .filesystem_type();
    if fs_type != nix::sys::statfs::PROC_SUPER_MAGIC {
        return None;
    }
    let n = fs::read_dir(&proc_dir)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count();
    Some(n)
}

/// Parent pid of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised name).
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants, as they are right now.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// CPU time (user + system, all threads) of `pid` in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so utime (14) and stime (15) are 11 and 12.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

/// The cgroup v2 path of `pid` (`0::/path`), relative to [`CGROUP_ROOT`].
pub fn cgroup_of(pid: i32) -> Option<String> {
    parse_cgroup_v2(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The `0::` line of a `/proc/<pid>/cgroup` file.
pub fn parse_cgroup_v2(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_owned())
}

/// The path in the v1 hierarchy holding `controller` from a `/proc/<pid>/cgroup` text
/// (`4:cpu,cpuacct:/path`), with that hierarchy's controller list (`cpu,cpuacct`).
pub fn parse_cgroup_v1<'a>(text: &'a str, controller: &str) -> Option<(&'a str, &'a str)> {
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, list, path) = (f.next()?, f.next()?, f.next()?);
        list.split(',')
            .any(|c| c == controller)
            .then(|| (list, path.trim()))
    })
}

/// The cgroup version this machine's [`CGROUP_ROOT`] shows: v2 when the unified hierarchy is
/// mounted there (its root has `cgroup.controllers`), else v1 (a tmpfs of v1 hierarchies).
pub fn cgroup_version() -> CgroupVersion {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// One cgroup hierarchy: v2's unified tree, or the v1 tree of one controller (mounted at
/// `/sys/fs/cgroup/<controllers>`, e.g. `cpu,cpuacct`). Paths in it are as `/proc/<pid>/cgroup`
/// writes them: `/` is its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: CgroupVersion,
    /// Its directory under [`CGROUP_ROOT`] (empty for v2).
    pub dir: String,
    /// The controller it was asked for (`memory`, `cpu`, `pids`).
    pub controller: String,
}

impl Hierarchy {
    /// The hierarchy of `controller` on a machine of cgroup `version`: on v1, the mount at
    /// `/sys/fs/cgroup/<controller>` (or the link to it: `cpu` → `cpu,cpuacct`).
    pub fn of(version: CgroupVersion, controller: &str) -> Hierarchy {
        let dir = match version {
            CgroupVersion::V2 => String::new(),
            CgroupVersion::V1 => fs::canonicalize(Path::new(CGROUP_ROOT).join(controller))
                .ok()
                .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                .unwrap_or_else(|| controller.to_owned()),
        };
        Hierarchy {
            version,
            dir,
            controller: controller.to_owned(),
        }
    }

    /// The directory of cgroup `path` of this hierarchy.
    pub fn path(&self, path: &str) -> PathBuf {
        cgroup_dir(&self.key(path))
    }

    /// Cgroup `path` as [`all_cgroups`] names it (relative to [`CGROUP_ROOT`]: `/pids/a` on v1).
    pub fn key(&self, path: &str) -> String {
        let path = path.trim_end_matches('/');
        match self.version {
            CgroupVersion::V2 if path.is_empty() => "/".into(),
            CgroupVersion::V2 => path.to_owned(),
            CgroupVersion::V1 => format!("/{}{path}", self.dir),
        }
    }

    /// The cgroup of `pid` in this hierarchy (`/` for its root).
    pub fn cgroup_of(&self, pid: i32) -> Option<String> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        match self.version {
            CgroupVersion::V2 => parse_cgroup_v2(&text),
            CgroupVersion::V1 => parse_cgroup_v1(&text, &self.controller).map(|(_, p)| p.into()),
        }
    }

    /// The limit in force for `kind` on cgroup `path`: the first one set from the cgroup up to
    /// (not including) the root, with the cgroup that sets it.
    pub fn effective_limit(&self, path: &str, kind: LimitKind) -> Option<(Limit, String)> {
        let mut path = path.trim_end_matches('/').to_owned();
        while !path.is_empty() && path != "/" {
            if let Some(limit) = self.limit(&path, kind) {
                return Some((limit, path));
            }
            path.truncate(path.rfind('/').unwrap_or(0));
        }
        None
    }

    /// The limit `kind` set on cgroup `path` itself (`None`: no limit, or unreadable).
    pub fn limit(&self, path: &str, kind: LimitKind) -> Option<Limit> {
        let dir = self.path(path);
        let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
        match (self.version, kind) {
            (CgroupVersion::V2, LimitKind::Cpu) => parse_cpu_max(&read("cpu.max")?),
            (CgroupVersion::V1, LimitKind::Cpu) => {
                parse_cfs(&read("cpu.cfs_quota_us")?, &read("cpu.cfs_period_us")?)
            }
            (CgroupVersion::V2, LimitKind::Memory) => {
                parse_max(&read("memory.max")?).map(Limit::Bytes)
            }
            (CgroupVersion::V1, LimitKind::Memory) => {
                parse_v1_bytes(&read("memory.limit_in_bytes")?).map(Limit::Bytes)
            }
            (_, LimitKind::Pids) => parse_max(&read("pids.max")?).map(Limit::Count),
        }
    }

    /// The file(s) that set `kind`'s limit in this version, as a workshop names them.
    pub fn limit_file(&self, kind: LimitKind) -> &'static str {
        match (self.version, kind) {
            (CgroupVersion::V2, LimitKind::Memory) => "memory.max",
            (CgroupVersion::V1, LimitKind::Memory) => "memory.limit_in_bytes",
            (CgroupVersion::V2, LimitKind::Cpu) => "cpu.max",
            (CgroupVersion::V1, LimitKind::Cpu) => "cpu.cfs_quota_us",
            (_, LimitKind::Pids) => "pids.max",
        }
    }

    /// How many processes of cgroup `path` the OOM killer killed (v2 `memory.events`, v1
    /// `memory.oom_control`: their `oom_kill` line; 0 when unreadable).
    pub fn oom_kills(&self, path: &str) -> u64 {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        keyed_count(
            &fs::read_to_string(self.path(path).join(file)).unwrap_or_default(),
            "oom_kill",
        )
    }

    /// How many forks cgroup `path`'s processes had refused for its pids limit (`max` of
    /// `pids.events`, both versions; 0 when unreadable).
    pub fn pids_refused(&self, path: &str) -> u64 {
        keyed_count(
            &fs::read_to_string(self.path(path).join("pids.events")).unwrap_or_default(),
            "max",
        )
    }

    /// The processes in cgroup `path` (`cgroup.procs`, both versions; v1 also has `tasks`).
    pub fn members(&self, path: &str) -> Vec<i32> {
        parse_pids(&fs::read_to_string(self.path(path).join("cgroup.procs")).unwrap_or_default())
    }
}

/// What a cgroup limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Memory,
    Cpu,
    Pids,
}

/// A limit as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Memory, in bytes.
    Bytes(u64),
    /// CPU time: `quota` microseconds per `period`.
    Cpu { quota: u64, period: u64 },
    /// Processes.
    Count(u64),
}

impl Limit {
    /// The limit as its files show it: `104857600`, `50000 100000`, `20`.
    pub fn show(&self) -> String {
        match self {
            Limit::Bytes(n) | Limit::Count(n) => n.to_string(),
            Limit::Cpu { quota, period } => format!("{quota} {period}"),
        }
    }
}

/// A v2 `memory.max` or `pids.max` (either version): `max` is no limit.
pub fn parse_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A v2 `cpu.max`: `QUOTA PERIOD`, `max PERIOD` being no limit.
pub fn parse_cpu_max(text: &str) -> Option<Limit> {
    let mut f = text.split_whitespace();
    let quota = f.next()?.parse().ok()?;
    let period = f.next().map_or(Some(100_000), |p| p.parse().ok())?;
    Some(Limit::Cpu { quota, period })
}

/// v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us`: a quota of -1 is no limit.
pub fn parse_cfs(quota: &str, period: &str) -> Option<Limit> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period = period.trim().parse().ok()?;
    (quota > 0).then_some(Limit::Cpu {
        quota: quota as u64,
        period,
    })
}

/// v1's `memory.limit_in_bytes`: no limit reads as the page counter's maximum (2^63 less a
/// page on 64-bit machines), anything near it is none.
pub fn parse_v1_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&n: &u64| n < 1 << 62)
}

/// The number after `key ` on its own line (`oom_kill 3` in memory.events, `max 5` in pids.events).
pub fn keyed_count(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The pids of a `cgroup.procs` (or `tasks`) file.
pub fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every cgroup directory under [`CGROUP_ROOT`], as paths relative to it (`/a/b`; on v1 the
/// hierarchy first: `/pids/a/b`, its root `/pids` among them; the links `cpu` → `cpu,cpuacct`
/// are not followed).
pub fn all_cgroups() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    walk_cgroups(Path::new(CGROUP_ROOT), "", &mut found);
    found
}

fn walk_cgroups(dir: &Path, rel: &str, found: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let rel = format!("{rel}/{}", e.file_name().to_string_lossy());
            found.insert(rel.clone());
            walk_cgroups(&e.path(), &rel, found);
        }
    }
}

/// The cgroup directory of a relative cgroup path (as [`all_cgroups`] names it).
pub fn cgroup_dir(rel: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/'))
}

/// A mount table (`/proc/<pid>/mountinfo`) as (mount id, mount point, whole line).
pub fn mounts(pid: &str) -> Vec<(u64, String, String)> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.parse().ok()?;
            let point = unescape_mount(f.nth(3)?);
            Some((id, point, l.to_owned()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Interfaces of `pid`'s network namespace other than `lo`.
pub fn interfaces(pid: i32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .filter(|n| n != "lo" && !n.is_empty())
        .collect()
}

/// IPv4 addresses of `pid`'s network namespace other than loopback ones, from `fib_trie`
/// (each local address is a leaf followed by a `/32 host LOCAL` line).
pub fn ipv4_addresses(pid: &str) -> Vec<String> {
    parse_fib_trie(&fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).unwrap_or_default())
}

/// The local addresses in a `/proc/net/fib_trie` text.
pub fn parse_fib_trie(text: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut last_leaf = "";
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if line.contains("|--") {
            last_leaf = t;
        } else if t.contains("host LOCAL") && !last_leaf.starts_with("127.") {
            found.insert(last_leaf.to_owned());
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v2_line_is_found_among_v1_lines() {
        assert_eq!(
            parse_cgroup_v2("12:pids:/x\n0::/student/abc\n").as_deref(),
            Some("/student/abc")
        );
        assert_eq!(parse_cgroup_v2("4:memory:/x\n"), None);
    }

    #[test]
    fn cgroup_v1_line_is_the_one_holding_the_controller() {
        let text =
            "12:pids:/liz\n4:cpu,cpuacct:/a/b\n3:memory:/\n1:name=systemd:/user.slice\n0::/\n";
        assert_eq!(parse_cgroup_v1(text, "pids"), Some(("pids", "/liz")));
        assert_eq!(parse_cgroup_v1(text, "cpu"), Some(("cpu,cpuacct", "/a/b")));
        assert_eq!(
            parse_cgroup_v1(text, "cpuacct"),
            Some(("cpu,cpuacct", "/a/b"))
        );
        assert_eq!(parse_cgroup_v1(text, "memory"), Some(("memory", "/")));
        assert_eq!(parse_cgroup_v1(text, "freezer"), None);
        assert_eq!(parse_cgroup_v1("0::/x\n", "pids"), None);
    }

    #[test]
    fn limits_parse_in_both_versions_and_no_limit_is_none() {
        let n = 1 + rand::random::<u32>() as u64;
        assert_eq!(parse_max(&format!("{n}\n")), Some(n));
        assert_eq!(parse_max("max\n"), None);
        assert_eq!(
            parse_cpu_max(&format!("{n} 100000\n")),
            Some(Limit::Cpu {
                quota: n,
                period: 100_000
            })
        );
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(
            parse_cfs(&format!("{n}\n"), "250000\n"),
            Some(Limit::Cpu {
                quota: n,
                period: 250_000
            })
        );
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_v1_bytes(&format!("{}\n", n << 12)), Some(n << 12));
        assert_eq!(parse_v1_bytes("9223372036854771712\n"), None);
        assert_eq!(
            Limit::Cpu {
                quota: 20_000,
                period: 100_000
            }
            .show(),
            "20000 100000"
        );
    }

    #[test]
    fn oom_kills_and_refused_forks_are_read_from_their_event_lines() {
        let n = rand::random::<u32>() as u64;
        let v2 = format!("low 0\nhigh 0\nmax 7\noom 9\noom_kill {n}\noom_group_kill 0\n");
        assert_eq!(keyed_count(&v2, "oom_kill"), n);
        let v1 = format!("oom_kill_disable 0\nunder_oom 0\noom_kill {n}\n");
        assert_eq!(keyed_count(&v1, "oom_kill"), n);
        assert_eq!(keyed_count(&format!("max {n}\n"), "max"), n);
        assert_eq!(keyed_count("oom_kill_disable 1\n", "oom_kill"), 0);
        let pid = 2 + rand::random::<u16>() as i32;
        assert_eq!(parse_pids(&format!("{pid}\n1\n")), vec![pid, 1]);
    }

    #[test]
    fn a_v1_hierarchy_names_its_cgroups_under_its_own_directory() {
        let v1 = Hierarchy {
            version: CgroupVersion::V1,
            dir: "cpu,cpuacct".into(),
            controller: "cpu".into(),
        };
        assert_eq!(v1.key("/liz/"), "/cpu,cpuacct/liz");
        assert_eq!(v1.key("/"), "/cpu,cpuacct");
        assert_eq!(v1.path("/liz"), Path::new("/sys/fs/cgroup/cpu,cpuacct/liz"));
        assert_eq!(v1.limit_file(LimitKind::Memory), "memory.limit_in_bytes");
        let v2 = Hierarchy::of(CgroupVersion::V2, "cpu");
        assert_eq!((v2.key("/"), v2.key("/a")), ("/".into(), "/a".into()));
        assert_eq!(v2.limit_file(LimitKind::Cpu), "cpu.max");
    }

    #[test]
    fn own_cgroup_is_found_in_this_machines_hierarchies() {
        let me = std::process::id() as i32;
        let version = cgroup_version();
        for controller in ["memory", "cpu", "pids"] {
            let h = Hierarchy::of(version, controller);
            let cg = h.cgroup_of(me).expect("a cgroup in every hierarchy");
            assert!(h.path(&cg).is_dir(), "{h:?}: {cg}");
            assert!(h.members(&cg).contains(&me), "{h:?}: {cg}");
            assert!(
                all_cgroups().contains(&h.key(&cg)) || cg == "/",
                "{h:?}: {cg}"
            );
        }
    }

    #[test]
    fn fib_trie_local_addresses_skip_loopback_and_broadcasts() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.88.0.0/16 2 0 2\n        |-- 10.88.0.0\n           /16 link UNICAST\n        |-- 10.88.0.7\n           /32 host LOCAL\n        |-- 10.88.255.255\n           /32 link BROADCAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\nLocal:\n        |-- 10.88.0.7\n           /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(text), vec!["10.88.0.7".to_string()]);
    }

    #[test]
    fn own_process_is_seen_from_proc() {
        let me = std::process::id() as i32;
        assert!(ns_inode("self", "mnt").is_some());
        assert!(!nspid(me).is_empty());
        assert!(process_tree(me).contains(&me));
        assert!(cpu_seconds(me).is_some());
        assert!(mounts("self").iter().any(|(_, p, _)| p == "/"));
    }
}
