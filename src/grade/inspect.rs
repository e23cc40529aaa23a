//! The host's view of a container process: what `/proc/<pid>` says about its namespaces, its
//! cgroup, its mounts and its network — facts a submission's output cannot fake.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the guest mounts cgroup2 (alone, like a systemd host).
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

/// Every cgroup directory under [`CGROUP_ROOT`], as paths relative to it (`/a/b`).
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

/// The cgroup directory of a relative cgroup path.
pub fn cgroup_dir(rel: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/'))
}

/// The limit in force for `file` (`memory.max`, `cpu.max`) on cgroup `rel`: the first value
/// other than `max` from the cgroup up to (not including) the root, with where it was found.
pub fn effective_limit(rel: &str, file: &str) -> Option<(String, String)> {
    let mut path = rel.trim_end_matches('/').to_owned();
    while !path.is_empty() && path != "/" {
        if let Ok(v) = fs::read_to_string(cgroup_dir(&path).join(file)) {
            let v = v.trim().to_owned();
            if !v.starts_with("max") {
                return Some((v, path));
            }
        }
        path.truncate(path.rfind('/').unwrap_or(0));
    }
    None
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
