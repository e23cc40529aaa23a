//! Running a submission: every run has a deadline, its output is captured whole, and whatever
//! it started is killed afterwards — a hanging or forking submission never hangs the grader.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::config::{Config, Volume};
use super::host::{drop_untrusted_caps, enter};
pub use super::host::{RunHost, RunNet, UNTRUSTED_CAPS};
use super::inspect;

/// The submission under grading: its binary, the directory it runs from, its settings.
#[derive(Debug, Clone)]
pub struct Submission {
    pub runtime: PathBuf,
    pub dir: PathBuf,
    pub config: Config,
    /// The grader's cgroup every run starts in (pids and memory capped, killed whole after
    /// each run): a runtime that fork-bombs before it moves its container elsewhere cannot
    /// take the grader down with it.
    pub cgroup: Option<RunCgroup>,
}

/// What one run left behind.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Exit code, or 128+N for a death by signal N; `None` when it was killed at the deadline.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// Processes carrying the run's marker still alive after the runtime exited (killed since).
    pub leftovers: usize,
    /// What the run left on its host (gone with it since).
    pub host: Box<HostLeft>,
}

/// What a run left on its host after the runtime exited.
#[derive(Debug, Clone, Default)]
pub struct HostLeft {
    /// Mount points its table gained.
    pub mounts: Vec<String>,
    /// Its hostname, when the run changed it.
    pub renamed: Option<String>,
}

impl Outcome {
    /// Did it exit 0?
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A short description for a report's `seen` field.
    pub fn describe(&self) -> String {
        let status = match (self.timed_out, self.code) {
            (true, _) => "killed at the deadline (hung?)".to_owned(),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "no exit status".to_owned(),
        };
        format!(
            "{status}; stdout: {}; stderr: {}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// `text` with every control character (a terminal's escape sequences, a carriage return) and
/// every bidirectional override shown as `\u{..}`: what a submission printed never drives the
/// teacher's terminal or reorders what a report shows.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n' && c != '\t') || bidi {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The last few lines of an output, on one line, for reports (printable only).
pub fn tail(text: &str) -> String {
    let text = printable(text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(empty)".into();
    }
    let start = lines.len().saturating_sub(3);
    let mut s = lines[start..].join(" | ");
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A run in progress.
pub struct Running {
    /// The runtime's own process (the submission's binary as the grader started it).
    pub runtime_pid: i32,
    /// The host the run sees, kept until the run is over.
    pub host: RunHost,
    child: Child,
    cgroup: Option<RunCgroup>,
    marker: String,
    deadline: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Submission {
    /// Start `command` (the container's argv; `marker` must be among its words) with
    /// `volumes`, feeding `stdin` if given (else the runtime reads an empty stdin), in the
    /// network namespace `net` when given (the run's own "host" network).
    pub fn start(
        &self,
        command: &[String],
        volumes: &[Volume],
        stdin: Option<&[u8]>,
        marker: &str,
        net: Option<&RunNet>,
    ) -> std::io::Result<Running> {
        let argv = self.config.argv(command, volumes);
        let mut cmd = Command::new(&self.runtime);
        cmd.args(&argv)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("TERM", "dumb");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let procs: Vec<std::ffi::CString> = self
            .cgroup
            .iter()
            .flat_map(|c| &c.dirs)
            .filter_map(|d| {
                std::ffi::CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .ok()
            })
            .collect();
        let dir = std::ffi::CString::new(self.dir.clone().into_os_string().into_encoded_bytes())
            .map_err(std::io::Error::other)?;
        let netns = match net {
            Some(n) => Some(n.fd.try_clone()?),
            None => None,
        };
        let (host, mut child) = RunHost::spawn_with(netns, move |host| {
            let (mnt, uts, net) = host.namespaces()?;
            // SAFETY: between fork and exec only async-signal-safe calls (open, write, close,
            // prctl, setns, chdir) on buffers and descriptors prepared before the fork.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    join_and_unprotect(&procs);
                    drop_untrusted_caps()?;
                    enter(&mnt, libc::CLONE_NEWNS)?;
                    enter(&uts, libc::CLONE_NEWUTS)?;
                    enter(&net, libc::CLONE_NEWNET)?;
                    // Joining a mount namespace moved us to its root: back to the run's directory.
                    if libc::chdir(dir.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.spawn()
        })?;
        if let Some(mut input) = child.stdin.take() {
            let data = stdin.unwrap_or_default().to_vec();
            // A runtime that never reads stdin must not block us: write from a thread.
            thread::spawn(move || {
                let _ = input.write_all(&data);
            });
        }
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            capture(child.stdout.take(), Arc::clone(&stdout)),
            capture(child.stderr.take(), Arc::clone(&stderr)),
        ];
        Ok(Running {
            runtime_pid: child.id() as i32,
            host,
            child,
            cgroup: self.cgroup.clone(),
            marker: marker.to_owned(),
            deadline: Instant::now() + Duration::from_secs(self.config.timeout_s),
            stdout,
            stderr,
            readers,
        })
    }

    /// Start and wait: the whole run.
    pub fn run(
        &self,
        command: &[String],
        volumes: &[Volume],
        stdin: Option<&[u8]>,
        marker: &str,
        net: Option<&RunNet>,
    ) -> Outcome {
        match self.start(command, volumes, stdin, marker, net) {
            Ok(running) => running.wait(),
            Err(e) => Outcome {
                stderr: format!("could not start {}: {e}", self.runtime.display()),
                ..Outcome::default()
            },
        }
    }
}

/// What one run's stdout or stderr keeps: the first MiB (a submission that prints without end
/// costs the grader nothing more; the tail shown in reports says how much was dropped).
pub const RUN_OUTPUT_MAX: usize = 1 << 20;

fn capture(
    pipe: Option<impl Read + Send + 'static>,
    into: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 8192];
        let mut dropped = 0usize;
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut v) = into.lock() {
                let keep = n.min(RUN_OUTPUT_MAX.saturating_sub(v.len()));
                v.extend_from_slice(&buf[..keep]);
                dropped += n - keep;
            }
        }
        if dropped > 0 {
            if let Ok(mut v) = into.lock() {
                v.extend_from_slice(format!("\n[{dropped} more bytes not kept]\n").as_bytes());
            }
        }
    })
}

impl Running {
    /// Has the runtime exited?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait (until the run's deadline at most) for the run's probe to appear and wait for
    /// SIGUSR1 (`hold` and `gate`: seen on the host, whatever the runtime does with stdout);
    /// `None` if the runtime exited or the deadline passed first.
    pub fn wait_for_probe(&mut self) -> Option<i32> {
        while Instant::now() < self.deadline {
            if let Some(pid) = inspect::find_probe(&self.marker) {
                if inspect::catches_sigusr1(pid) {
                    return Some(pid);
                }
            } else if self.exited() {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Wait for the runtime until the deadline, then kill whatever the run left: the runtime's
    /// process group and every process carrying the run's marker.
    pub fn wait(mut self) -> Outcome {
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= self.deadline => {
                    timed_out = true;
                    if let Some(c) = &self.cgroup {
                        c.kill();
                    }
                    kill_all(self.child.id() as i32, &self.marker);
                    break self.child.wait().ok();
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        if let Some(c) = &self.cgroup {
            c.kill();
        }
        let leftovers = kill_all(self.child.id() as i32, &self.marker);
        let host = Box::new(HostLeft {
            mounts: self.host.new_mounts(),
            renamed: self.host.renamed(),
        });
        // Readers end when the last writer is gone (all killed); never wait past a grace.
        let grace = Instant::now() + Duration::from_secs(2);
        for r in self.readers.drain(..) {
            while !r.is_finished() && Instant::now() < grace {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| {
            b.lock()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code().or_else(|| s.signal().map(|n| 128 + n)))
            },
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            timed_out,
            leftovers,
            host,
        }
    }
}

/// In the forked child: join the grader's run cgroup (pid 0 = self; on v1, in each of its
/// hierarchies) and give up the grader's OOM protection, so the kernel's OOM killer picks the
/// submission, never the grader.
fn join_and_unprotect(procs: &[std::ffi::CString]) {
    let write = |path: &std::ffi::CStr, data: &[u8]| {
        // SAFETY: plain syscalls on valid NUL-terminated paths and a live buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, data.as_ptr().cast(), data.len());
                libc::close(fd);
            }
        }
    };
    for p in procs {
        write(p, b"0");
    }
    write(c"/proc/self/oom_score_adj", b"0");
}

/// Protect the grader from the OOM killer (its runs give the protection up), and its memory
/// from the submission: not dumpable, so opening `/proc/<grader>/mem` or attaching with ptrace
/// needs CAP_SYS_PTRACE, which runs do not have ([`UNTRUSTED_CAPS`]).
pub fn protect_grader() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// The grader's cgroup every run starts in: on v2 one cgroup with pids and memory capped; on
/// v1 one cgroup in the pids and in the memory hierarchy. Removed with what is in it when
/// grading is over ([`RunCgroup::remove`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunCgroup {
    /// Its directory in each hierarchy.
    pub dirs: Vec<PathBuf>,
}

/// The name of the grader's run cgroup, at the root of each hierarchy.
pub const RUN_CGROUP: &str = "devoxx-grade";

impl RunCgroup {
    /// Create it, capped at `pids` processes and 1 GiB where the controllers can be had (each
    /// on its own: one that cannot be must not cost the other); `None` when neither can (runs
    /// are then killed by process group and marker only).
    pub fn create(pids: u32) -> Option<RunCgroup> {
        let root = Path::new(inspect::CGROUP_ROOT);
        let memory = (1u64 << 30).to_string();
        let pids = pids.to_string();
        let dirs = match inspect::cgroup_version() {
            inspect::CgroupVersion::V2 => {
                for controller in ["+pids", "+memory"] {
                    let _ = std::fs::write(root.join("cgroup.subtree_control"), controller);
                }
                let dir = root.join(RUN_CGROUP);
                std::fs::create_dir_all(&dir).ok()?;
                let _ = std::fs::write(dir.join("pids.max"), &pids);
                let _ = std::fs::write(dir.join("memory.max"), &memory);
                vec![dir]
            }
            inspect::CgroupVersion::V1 => [
                ("pids", "pids.max", &pids),
                ("memory", "memory.limit_in_bytes", &memory),
            ]
            .into_iter()
            .filter_map(|(hierarchy, file, value)| {
                let dir = root.join(hierarchy).join(RUN_CGROUP);
                std::fs::create_dir(&dir).ok()?;
                let _ = std::fs::write(dir.join(file), value);
                Some(dir)
            })
            .collect(),
        };
        (!dirs.is_empty()).then_some(RunCgroup { dirs })
    }

    /// Kill everything in it, in every hierarchy.
    pub fn kill(&self) {
        self.dirs.iter().for_each(|d| kill_cgroup(d));
    }

    /// Is `dir` (a cgroup's directory) one of its own?
    pub fn holds(&self, dir: &Path) -> bool {
        self.dirs.iter().any(|d| d == dir)
    }

    /// Kill what is in it and remove it, in every hierarchy.
    pub fn remove(&self) {
        self.dirs.iter().for_each(|d| remove_cgroup(d));
    }
}

/// Kill every process of the cgroup at `dir`: v2's `cgroup.kill`, else (v1) SIGKILL to each
/// process of its `cgroup.procs` and of its descendants' until none is left (2 s at most).
pub fn kill_cgroup(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let pids: Vec<i32> = walk_dirs(dir)
            .iter()
            .flat_map(|d| {
                inspect::parse_pids(
                    &std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default(),
                )
            })
            .filter(|&p| p != std::process::id() as i32 && !is_zombie(p))
            .collect();
        if pids.is_empty() || Instant::now() >= until {
            return;
        }
        for p in pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `dir` and every directory below it, deepest last.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            all.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        i += 1;
    }
    all
}

/// Remove a cgroup (the run cgroup once grading is over, or one a run left behind), killing
/// whatever is still in it first. A plain directory a run made beside the v1 hierarchies (on
/// their tmpfs, e.g. `mkdir -p` of a controller the guest lacks) goes with what it holds.
pub fn remove_cgroup(dir: &Path) {
    if on_tmpfs(dir) {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    kill_cgroup(dir);
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    eprintln!(
        "devoxx-docker-grade: cannot remove {}: {} (processes: {})",
        dir.display(),
        std::fs::remove_dir(dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        procs.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

/// Is `dir` on a tmpfs (not a cgroup file system)?
fn on_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// SIGKILL the process group `pgid`, the tree under it and every process carrying `marker`,
/// until none is left (2 s at most). Returns how many marker processes were found alive.
fn kill_all(pgid: i32, marker: &str) -> usize {
    let first = inspect::pids_with_marker(marker).len();
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let mut victims = inspect::pids_with_marker(marker);
        if inspect::ppid(pgid).is_some() {
            victims.extend(inspect::process_tree(pgid));
        }
        victims.retain(|&p| p != std::process::id() as i32 && !is_zombie(p));
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if victims.is_empty() || Instant::now() >= until {
            return first;
        }
        for p in victims {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// Send SIGUSR1 to a held probe: the host's release.
pub fn release(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
}

/// Kill a probe whose work is measured (a spin): waiting for its end would judge nothing more.
pub fn stop(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A random lowercase word: markers, file names and contents that no hard-coded output can
/// contain.
pub fn random_word(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let s: String = (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    format!("{prefix}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str, timeout_s: u64) -> Submission {
        let dir = std::env::temp_dir();
        let path = dir.join(random_word("grade-test-"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Submission {
            runtime: path,
            dir,
            config: Config {
                timeout_s,
                ..Config::default()
            },
            cgroup: None,
        }
    }

    #[test]
    fn what_a_submission_printed_reaches_reports_without_control_characters() {
        let word = random_word("w");
        let shown = tail(&format!("\x1b]0;owned\x07{word}\r\u{202e}fdp.exe\x1b[2J\n"));
        assert!(shown.contains(&word), "{shown}");
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}") && shown.contains("\\u{202e}"),
            "{shown}"
        );
    }

    #[test]
    fn a_hanging_runtime_is_killed_at_the_deadline_with_everything_it_started() {
        let marker = random_word("k");
        // The runtime backgrounds two sleepers that carry the marker and never exits.
        let sub = shell(
            "sh -c 'sleep 300; :' \"$@\" & sh -c 'sleep 300; :' \"$@\" & wait",
            1,
        );
        let started = Instant::now();
        let out = sub.run(std::slice::from_ref(&marker), &[], None, &marker, None);
        assert!(out.timed_out && out.code.is_none(), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(inspect::pids_with_marker(&marker).is_empty(), "all killed");
        let _ = std::fs::remove_file(&sub.runtime);
    }

    #[test]
    fn a_run_gets_a_fresh_network_namespace_with_only_lo_up() {
        let net = RunNet::new().expect("a network namespace of its own");
        assert_ne!(Some(net.inode), inspect::ns_inode("self", "net"));
        let name = random_word("v")[..8].to_owned();
        let sub = shell(
            &format!("ip link add {name} type veth peer name {name}p && ip -o link show"),
            10,
        );
        let out = sub.run(&[], &[], None, "nomarker", Some(&net));
        assert!(out.success(), "{out:?}");
        assert!(
            out.stdout.contains(&name) && out.stdout.contains("lo:"),
            "{out:?}"
        );
        let host = std::process::Command::new("ip")
            .args(["link", "show", &name])
            .output();
        assert!(
            host.is_ok_and(|o| !o.status.success()),
            "not in the grader's namespace"
        );
        let _ = std::fs::remove_file(&sub.runtime);
    }

    #[test]
    fn a_run_cannot_see_or_reach_the_grader_and_what_it_leaves_on_its_host_is_seen_then_gone() {
        let grader = std::process::id();
        let point = std::env::temp_dir().join(random_word("grade-host-"));
        std::fs::create_dir_all(&point).unwrap();
        let name = random_word("h");
        let sub = shell(
            &format!(
                "echo procs=$(ls /proc | grep -c '^[0-9]*$') pid=$$
                kill -0 {grader} 2>/dev/null && echo REACHED
                for f in /proc/kcore /dev/mem; do head -c1 $f >/dev/null 2>&1 && echo READ $f; done
                mount -t tmpfs leaked {} && hostname {name}",
                point.display()
            ),
            30,
        );
        let out = sub.run(&[], &[], None, "nomarker", None);
        assert!(out.success(), "{out:?}");
        // The run's PID namespace: its keeper, the shell, ls and grep.
        let procs: usize = out
            .stdout
            .split("procs=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(procs <= 5 && out.stdout.contains("pid=2"), "{out:?}");
        assert!(
            !out.stdout.contains("REACHED") && !out.stdout.contains("READ"),
            "{out:?}"
        );
        let point = point.display().to_string();
        assert_eq!(
            out.host.mounts,
            vec![point.clone()],
            "seen on the run's host"
        );
        assert_eq!(out.host.renamed.as_deref(), Some(name.as_str()));
        assert!(
            !inspect::mounts("self").iter().any(|(_, p, _)| *p == point),
            "never in the grader's table"
        );
        assert_ne!(super::super::steps::hostname(), name);
        let _ = std::fs::remove_dir(&point);
        let _ = std::fs::remove_file(&sub.runtime);
    }

    #[test]
    fn a_run_that_prints_without_end_keeps_only_the_first_mib() {
        let sub = shell("head -c 5000000 /dev/zero | tr '\\0' x; echo end >&2", 60);
        let out = sub.run(&[], &[], None, "nomarker", None);
        assert!(out.success(), "{out:?}");
        assert!(
            out.stdout.len() < RUN_OUTPUT_MAX + 100,
            "{}",
            out.stdout.len()
        );
        assert!(
            out.stdout.ends_with(&format!(
                "[{} more bytes not kept]\n",
                5_000_000 - RUN_OUTPUT_MAX
            )),
            "{}",
            &out.stdout[out.stdout.len() - 60..]
        );
        assert_eq!(out.stderr, "end\n");
        let _ = std::fs::remove_file(&sub.runtime);
    }

    #[test]
    fn output_code_and_stdin_of_a_finished_run_are_captured() {
        let code = 3 + rand::random::<u8>() % 100;
        // A deadline far above a loaded TCG guest's start time: only the hang test needs one.
        let sub = shell(&format!("echo out \"$@\"; cat >&2; exit {code}"), 60);
        let out = sub.run(
            &["w1".into(), "two words".into()],
            &[],
            Some(b"in-text"),
            "nomarker",
            None,
        );
        assert_eq!(out.code, Some(code as i32));
        assert_eq!(out.stdout, "out run alpine w1 two words\n");
        assert_eq!(out.stderr, "in-text");
        assert!(!out.timed_out);
        let _ = std::fs::remove_file(&sub.runtime);
    }
}
