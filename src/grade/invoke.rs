//! Running a submission: every run has a deadline, its output is captured whole, and whatever
//! it started is killed afterwards — a hanging or forking submission never hangs the grader.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::config::{Config, Volume};
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
    pub cgroup: Option<PathBuf>,
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
    child: Child,
    cgroup: Option<PathBuf>,
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
        let procs = self.cgroup.as_ref().and_then(|c| {
            std::ffi::CString::new(c.join("cgroup.procs").into_os_string().into_encoded_bytes())
                .ok()
        });
        let netns = net.map(|n| n.fd.as_raw_fd());
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close,
        // setns) on buffers and descriptors prepared before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                join_and_unprotect(procs.as_deref());
                for cap in UNTRUSTED_CAPS {
                    let index = libc::c_ulong::from(cap.index());
                    if libc::prctl(libc::PR_CAPBSET_DROP, index, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(fd) = netns {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
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

fn capture(
    pipe: Option<impl Read + Send + 'static>,
    into: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut v) = into.lock() {
                v.extend_from_slice(&buf[..n]);
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
                        let _ = std::fs::write(c.join("cgroup.kill"), "1");
                    }
                    kill_all(self.child.id() as i32, &self.marker);
                    break self.child.wait().ok();
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        if let Some(c) = &self.cgroup {
            let _ = std::fs::write(c.join("cgroup.kill"), "1");
        }
        let leftovers = kill_all(self.child.id() as i32, &self.marker);
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
        }
    }
}

/// A network namespace of its own for one run, with `lo` up: the run's "host" network. Links,
/// addresses, routes and netfilter rules a run adds there (a veth it never deletes, a NAT rule
/// left by a crash) die with it, so no run inherits another's.
pub struct RunNet {
    fd: std::os::fd::OwnedFd,
    /// Its inode, to tell it from a container's own network namespace.
    pub inode: u64,
}

impl RunNet {
    /// A fresh namespace, made in a thread of its own so the grader's stays as it is.
    pub fn new() -> std::io::Result<RunNet> {
        thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            set_lo_up()?;
            let file = std::fs::File::open("/proc/thread-self/ns/net")?;
            let inode = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
            Ok(RunNet {
                fd: file.into(),
                inode,
            })
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    }

    /// Run `f` in a thread that has joined this namespace (a socket made there lives there).
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let fd = self.fd.try_clone()?;
        thread::spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    }
}

/// Bring `lo` up in the calling thread's network namespace.
fn set_lo_up() -> std::io::Result<()> {
    // SAFETY: socket/ioctl on a zeroed ifreq naming "lo"; the descriptor is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// In the forked child: join the grader's run cgroup (pid 0 = self) and give up the grader's
/// OOM protection, so the kernel's OOM killer picks the submission, never the grader.
fn join_and_unprotect(procs: Option<&std::ffi::CStr>) {
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
    if let Some(p) = procs {
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

/// Capabilities a submission never needs for the workshop and could use to reach the grader
/// (its memory, the kernel's, the clock, the machine): dropped from every run's bounding set.
pub const UNTRUSTED_CAPS: [caps::Capability; 8] = [
    caps::Capability::CAP_SYS_PTRACE,
    caps::Capability::CAP_SYS_RAWIO,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_PERFMON,
    caps::Capability::CAP_SYSLOG,
    caps::Capability::CAP_SYS_BOOT,
    caps::Capability::CAP_SYS_TIME,
];

/// Create the cgroup every run starts in, capped at `pids` processes and 1 GiB where the
/// controllers can be had (each enabled on its own: one that cannot be must not cost the
/// others); `None` without cgroup v2 (runs are then killed by process group and marker only).
pub fn run_cgroup(pids: u32) -> Option<PathBuf> {
    let root = Path::new(inspect::CGROUP_ROOT);
    for controller in ["+pids", "+memory"] {
        let _ = std::fs::write(root.join("cgroup.subtree_control"), controller);
    }
    let dir = root.join("devoxx-grade");
    std::fs::create_dir_all(&dir).ok()?;
    let _ = std::fs::write(dir.join("pids.max"), pids.to_string());
    let _ = std::fs::write(dir.join("memory.max"), (1u64 << 30).to_string());
    Some(dir)
}

/// Remove a cgroup (the run cgroup once grading is over, or one a run left behind), killing
/// whatever is still in it first.
pub fn remove_cgroup(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
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
