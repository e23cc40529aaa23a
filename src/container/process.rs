//! Start the container process, wait for it, forward signals, report its exit status.
//!
//! Protocol between the runtime (parent) and the container's init (child):
//! - clone3(2) creates the child directly in its new namespaces and, on cgroup v2, in its cgroup
//!   (see [`super::clone3`]; clone(2) elsewhere, the parent then moves it); it builds its root
//!   while the parent wires the host side of its network, then blocks on a
//!   *sync pipe* until the parent says go, right before exec (EOF instead of a byte means the
//!   runtime is gone: the child exits), so the user's command never runs outside its cgroup;
//! - anything failing before exec is written as one line `CODE\tMESSAGE` to a close-on-exec
//!   *error pipe*, so a successful exec is simply EOF.

use std::ffi::CString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{
    kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{access, AccessFlags, Pid};

use super::etc_files::EtcFiles;
use super::network::{self, NetworkMode};
use super::rootfs::{self, Layer};
use super::security::Security;
use super::spec::{ProcessSpec, DEFAULT_PATH};
use super::{clone3, namespaces, volume};
use crate::error::IoContext;
use crate::{trace, Error, Result};

/// Signals sent to the runtime that are passed on to the container (the contract).
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Stack for the cloned child until it execs; lazily backed (calloc → untouched pages).
const CHILD_STACK_SIZE: usize = 4 << 20;

/// Everything the child needs, resolved by the parent before clone.
#[derive(Debug)]
pub struct ChildConfig<'a> {
    pub spec: &'a ProcessSpec,
    pub layer: &'a Layer,
    pub volumes: &'a [volume::Volume],
    pub network: NetworkMode,
    pub etc: &'a EtcFiles,
    pub security: &'a Security,
    /// `-t`: the child's side of the container's terminal (see [`super::tty`]).
    pub tty: Option<super::tty::ChildTty>,
}

/// Block the forwarded signals and SIGCHLD (they are consumed synchronously by [`Child::wait`],
/// so one arriving during set-up is delivered to the container later instead of killing the
/// runtime mid-way), and ignore SIGTTOU/SIGTTIN: when an interactive container takes the
/// terminal's foreground, the runtime becomes a background job that must not be stopped.
pub fn block_signals() -> Result<()> {
    let mut set = SigSet::empty();
    for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .ctx(|| "block signals")?;
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGTTOU, Signal::SIGTTIN] {
        // SAFETY: SIG_IGN installs no handler.
        unsafe { sigaction(signal, &ignore) }.ctx(|| format!("ignore {signal}"))?;
    }
    Ok(())
}

/// The cloned container init, seen from the runtime. Dropping it before it was reaped kills
/// and reaps it, so no error path leaves a container running.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    /// From clone3: waits and signals go through it (never a recycled pid).
    pidfd: Option<OwnedFd>,
    sync_tx: Option<OwnedFd>,
    err_rx: Option<OwnedFd>,
    reaped: bool,
}

/// Create the child in `flags` namespaces; it waits for [`Child::release_and_wait_exec`].
/// With `cgroup` (a cgroup v2 directory) it is born there by clone3 ([`Child::born_in_cgroup`]);
/// otherwise, or where the kernel lacks clone3, by clone(2), and the caller must place it.
pub fn start(
    config: &ChildConfig,
    flags: nix::sched::CloneFlags,
    cgroup: Option<BorrowedFd>,
) -> Result<Child> {
    let argv = to_cstrings(&config.spec.argv)?;
    let envp = to_cstrings(&config.spec.env)?;
    let (sync_rx, sync_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (err_rx, err_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let fds = ChildFds {
        sync_rx: sync_rx.as_raw_fd(),
        err_tx: err_tx.as_raw_fd(),
        parent_ends: [sync_tx.as_raw_fd(), err_rx.as_raw_fd()],
    };
    let run_child = || child_main(config, &argv, &envp, &fds);
    let target = cgroup.filter(|_| !clone3::forced_off());
    let (pid, pidfd) = match target.map(|dir| clone_into_cgroup(flags, dir, run_child)) {
        Some(Ok((pid, pidfd))) => (pid, Some(pidfd)),
        Some(Err(e)) if !clone3::unsupported(e) => {
            return Err(Error::io("clone3 the container process", e.into()))
        }
        _ => (clone_classic(flags, run_child)?, None),
    };
    Ok(Child {
        pid,
        pidfd,
        sync_tx: Some(sync_tx),
        err_rx: Some(err_rx),
        reaped: false,
    })
}

/// clone3 into `cgroup`; the child runs `run_child` and exits with its code, never returning.
fn clone_into_cgroup(
    flags: nix::sched::CloneFlags,
    cgroup: BorrowedFd,
    run_child: impl FnOnce() -> isize,
) -> nix::Result<(Pid, OwnedFd)> {
    // SAFETY: the runtime is single-threaded here (as for clone below); the child only runs
    // `child_main`, which ends in execve or returns its exit code for `_exit` — a panic too
    // is caught, so the child never unwinds into the parent's frames.
    match unsafe { clone3::fork_into_cgroup(flags, cgroup) }? {
        clone3::Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
        clone3::Forked::Child => {
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(run_child)).unwrap_or(125);
            // SAFETY: ends the child without running the parent's atexit handlers/destructors.
            unsafe { libc::_exit(code as libc::c_int) }
        }
    }
}

/// clone(2) on a fresh stack (kernels without clone3 / CLONE_INTO_CGROUP, cgroup v1).
fn clone_classic(
    flags: nix::sched::CloneFlags,
    mut run_child: impl FnMut() -> isize,
) -> Result<Pid> {
    let mut stack = vec![0u8; CHILD_STACK_SIZE];
    // SAFETY: the runtime is single-threaded here and the child gets its own copy of the
    // address space (no CLONE_VM); it only runs `child_main`, which ends in execve or exit.
    unsafe {
        nix::sched::clone(
            Box::new(&mut run_child),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .ctx(|| "clone the container process")
}

fn to_cstrings(items: &[String]) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::Usage(format!("NUL byte in {s:?}"))))
        .collect()
}

impl Child {
    /// The child's pid in the host's PID namespace (for cgroup placement and network set-up).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether clone3 created it in its cgroup (else the caller must move it there).
    pub fn born_in_cgroup(&self) -> bool {
        // Only clone3 gives a pidfd, and only with CLONE_INTO_CGROUP.
        self.pidfd.is_some()
    }

    /// Send `signal` through the pidfd when there is one, else to the (unreaped) pid.
    fn signal(&self, signal: Signal) {
        let sent = self.pidfd.as_ref().and_then(|fd| {
            let signal = rustix::process::Signal::from_named_raw(signal as i32)?;
            Some(rustix::process::pidfd_send_signal(fd, signal))
        });
        if sent.is_none() {
            let _ = kill(self.pid, signal);
        }
    }

    /// waitid(2) on the pidfd when there is one, else waitpid(2).
    fn wait_status(&self, flags: Option<WaitPidFlag>) -> nix::Result<WaitStatus> {
        match &self.pidfd {
            Some(fd) => waitid(
                Id::PIDFd(fd.as_fd()),
                WaitPidFlag::WEXITED | flags.unwrap_or(WaitPidFlag::empty()),
            ),
            None => waitpid(self.pid, flags),
        }
    }

    /// Let the child build its root and exec; then wait until it has exec'd (Ok) or reported
    /// why it could not (the error it sent, with its exit code kind).
    /// A forwarded signal arriving meanwhile aborts the start ([`Error::Interrupted`]; dropping
    /// the child then kills it), so a set-up step that hangs never makes the runtime deaf.
    pub fn release_and_wait_exec(&mut self) -> Result<()> {
        if let Some(tx) = self.sync_tx.take() {
            // EPIPE means the child already died: its report (if any) is on the error pipe.
            let _ = File::from(tx).write_all(b"1");
        }
        let report = match self.err_rx.take() {
            Some(rx) => read_report_unless_signalled(File::from(rx), &forwarded_set())?,
            None => String::new(),
        };
        if report.is_empty() {
            return Ok(());
        }
        let _ = self.reap_blocking();
        Err(decode_failure(&report))
    }

    /// When the parent's own set-up step failed: the child's report instead, if it already
    /// died of an earlier failure of its own (that is the cause the user needs to see).
    pub fn earlier_failure(&mut self) -> Option<Error> {
        self.try_reap().ok()??;
        let mut report = String::new();
        File::from(self.err_rx.take()?)
            .read_to_string(&mut report)
            .ok()?;
        (!report.is_empty()).then(|| decode_failure(&report))
    }

    /// Wait for the container to exit, forwarding the contract's signals. After a forwarded
    /// SIGINT/SIGTERM the container has `stop_timeout` to exit before it is SIGKILLed (docker
    /// stop); a second SIGINT/SIGTERM meanwhile kills it at once.
    pub fn wait(&mut self, stop_timeout: Duration) -> Result<Exit> {
        let mut waited = SigSet::empty();
        for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
            waited.add(*signal);
        }
        let mut deadline: Option<Instant> = None;
        let mut killed_by_runtime = false;
        let mut stop_requested = false;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Exit {
                    status,
                    killed_by_runtime,
                });
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match wait_signal(&waited, timeout) {
                Ok(Some(Signal::SIGCHLD)) => {}
                Ok(Some(signal)) => {
                    let stopping = matches!(signal, Signal::SIGINT | Signal::SIGTERM);
                    if stopping && stop_requested {
                        killed_by_runtime = true;
                        self.signal(Signal::SIGKILL);
                    } else {
                        self.signal(signal);
                        if stopping {
                            stop_requested = true;
                            // A timeout too large for the clock means "never".
                            deadline = Instant::now().checked_add(stop_timeout);
                        }
                    }
                }
                Ok(None) => {
                    killed_by_runtime = true;
                    self.signal(Signal::SIGKILL);
                    deadline = None;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::io("wait for signals", e.into())),
            }
        }
    }

    fn try_reap(&mut self) -> Result<Option<WaitStatus>> {
        match self.wait_status(Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                self.reaped = true;
                Ok(Some(status))
            }
            Ok(_) => Ok(None),
            Err(Errno::EINTR) => Ok(None),
            Err(e) => Err(Error::io("waitpid", e.into())),
        }
    }

    fn reap_blocking(&mut self) -> Result<WaitStatus> {
        loop {
            match self.wait_status(None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("waitpid", e.into())),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::SIGKILL);
            let _ = self.reap_blocking();
        }
    }
}

/// How the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Its wait status.
    pub status: WaitStatus,
    /// The runtime SIGKILLed it (stop timeout): a SIGKILL death is then not an OOM kill,
    /// even if the kernel OOM-killed some other process of the container earlier.
    pub killed_by_runtime: bool,
}

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    FORWARDED.iter().for_each(|s| set.add(*s));
    set
}

/// Read the child's start-up report up to EOF (exec or death), unless one of `signals`
/// (blocked, see [`block_signals`]) arrives first: then that signal, as an error.
fn read_report_unless_signalled(mut report: File, signals: &SigSet) -> Result<String> {
    let signalfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd")?;
    let mut bytes = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(report.as_fd(), PollFlags::POLLIN),
            PollFd::new(signalfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::io("poll the start-up report", e.into())),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (report_ready, signal_ready) = (ready(&fds[0]), ready(&fds[1]));
        if report_ready {
            let mut chunk = [0u8; 4096];
            match report.read(&mut chunk) {
                Ok(0) => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read the container's start-up report", e)),
            }
        } else if signal_ready {
            if let Some(info) = signalfd.read_signal().ctx(|| "read signalfd")? {
                let signal = Signal::try_from(info.ssi_signo as i32)
                    .map_err(|e| Error::io("decode signal", e.into()))?;
                return Err(Error::Interrupted(signal));
            }
        }
    }
}

/// sigtimedwait(2): the next of `set`, or None when `timeout` expired.
fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> nix::Result<Option<Signal>> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `set` is a valid sigset, a null siginfo pointer is allowed, `ts_ptr` is null or
    // points to `ts` which outlives the call.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), ts_ptr) };
    if n < 0 {
        return match Errno::last() {
            Errno::EAGAIN => Ok(None),
            e => Err(e),
        };
    }
    Signal::try_from(n).map(Some)
}

/// The contract's exit code for a wait status: the command's code, or 128+N on signal N.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 125,
    }
}

/// Parse the child's one-line report into the error `main` maps to 125/126/127.
fn decode_failure(report: &str) -> Error {
    let line = report.lines().next().unwrap_or_default();
    match line.split_once('\t') {
        Some(("127", what)) => Error::CommandNotFound(what.to_owned()),
        Some(("126", what)) => Error::NotExecutable(what.to_owned()),
        Some((_, message)) => Error::Runtime(message.to_owned()),
        None => Error::Runtime(line.to_owned()),
    }
}

/// The child's report line for `error` (see [`decode_failure`]).
fn encode_failure(error: &Error) -> String {
    let payload = match error {
        Error::CommandNotFound(what) | Error::NotExecutable(what) => what.clone(),
        other => other.to_string(),
    };
    format!("{}\t{}\n", error.exit_code(), payload.replace('\n', " "))
}

/// Raw descriptors as seen in the child (its copies of the parent's pipes).
#[derive(Debug)]
struct ChildFds {
    sync_rx: RawFd,
    err_tx: RawFd,
    parent_ends: [RawFd; 2],
}

/// The child after clone: set everything up, exec; on failure report and exit.
fn child_main(config: &ChildConfig, argv: &[CString], envp: &[CString], fds: &ChildFds) -> isize {
    for fd in fds.parent_ends {
        // SAFETY: these are the child's copies of the parent's pipe ends, unused here.
        unsafe { libc::close(fd) };
    }
    let error = match set_up_and_exec(config, argv, envp, fds.sync_rx) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    // SAFETY: the child's own copy of the error pipe's write end, used once then dropped.
    let mut report = unsafe { File::from_raw_fd(fds.err_tx) };
    let _ = report.write_all(encode_failure(&error).as_bytes());
    error.exit_code() as isize
}

/// Wait for the parent, enter the container's root, exec. Returns only on failure.
fn set_up_and_exec(
    config: &ChildConfig,
    argv: &[CString],
    envp: &[CString],
    sync_rx: RawFd,
) -> Result<std::convert::Infallible> {
    trace::mark("child");
    namespaces::die_with_parent()?;
    // Build the root while the parent places us in our cgroup (a cgroup migration can wait
    // for an RCU grace period): only the user's command must start inside it, so the go
    // signal is awaited just before exec.
    umask(Mode::empty());
    network::setup_container_side(config.network)?;
    namespaces::make_mounts_private()?;
    config.layer.mount()?;
    namespaces::set_hostname(&config.spec.hostname)?;
    let privileged = config.security.privileged;
    volume::mount_all(config.volumes, &config.layer.merged, !privileged)?;
    rootfs::pivot_into(&config.layer.merged)?;
    rootfs::mount_pseudo_filesystems(privileged)?;
    config.etc.provide()?;
    if let Some(tty) = &config.tty {
        tty.set_up()?;
    }
    trace::mark("child-root");
    enter_workdir(&config.spec.workdir)?;
    let program = find_executable(&config.spec.argv[0], &path_of(&config.spec.env))?;
    umask(Mode::from_bits_truncate(0o022));
    trace::mark("child-ready");
    wait_for_parent(sync_rx)?;
    trace::mark("child-go");
    namespaces::reset_signals()?;
    close_inherited_fds()?;
    config.security.apply()?;
    trace::mark("child-exec");
    let error = nix::unistd::execve(&program, argv, envp).unwrap_err();
    Err(exec_error(&config.spec.argv[0], error))
}

/// Block until the parent says go (a byte) or disappears (EOF: exit, never run orphaned).
fn wait_for_parent(sync_rx: RawFd) -> Result<()> {
    // SAFETY: the child's own copy of the sync pipe's read end, consumed here.
    let mut rx = File::from(unsafe { OwnedFd::from_raw_fd(sync_rx) });
    let mut byte = [0u8; 1];
    loop {
        match rx.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(Error::Runtime(
                    "the runtime exited before the container started".into(),
                ))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("wait for the runtime", e)),
        }
    }
}

fn enter_workdir(dir: &str) -> Result<()> {
    rootfs::ensure_dir(Path::new(dir), 0o755)?;
    nix::unistd::chdir(dir).ctx(|| format!("chdir to working directory {dir}"))
}

/// Mark every descriptor above stderr close-on-exec: whatever the runtime's caller leaked to
/// us must not reach the container (the runc CVE-2024-21626 class).
fn close_inherited_fds() -> Result<()> {
    // SAFETY: plain syscall on integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io("close_range", std::io::Error::last_os_error()))
    }
}

/// The container's PATH (set by [`super::spec::merge_env`], docker's default otherwise).
fn path_of(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_owned()
}

/// Resolve `command` like a shell does: as a path when it has a '/', else through `path`.
/// Not found anywhere → 127; found but not an executable file → 126.
pub fn find_executable(command: &str, path: &str) -> Result<CString> {
    if command.is_empty() {
        return Err(Error::CommandNotFound(command.to_owned()));
    }
    let found = if command.contains('/') {
        check_candidate(Path::new(command))
            .map(|()| PathBuf::from(command))
            .map_err(|kind| kind.into_error(command))?
    } else {
        search_path(command, path)?
    };
    CString::new(found.as_os_str().as_bytes())
        .map_err(|_| Error::CommandNotFound(command.to_owned()))
}

fn search_path(command: &str, path: &str) -> Result<PathBuf> {
    let mut saw_non_executable = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(command);
        match check_candidate(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Lookup::NotExecutable) => saw_non_executable = true,
            Err(Lookup::NotFound) => {}
        }
    }
    let kind = if saw_non_executable {
        Lookup::NotExecutable
    } else {
        Lookup::NotFound
    };
    Err(kind.into_error(command))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    NotFound,
    NotExecutable,
}

impl Lookup {
    fn into_error(self, command: &str) -> Error {
        match self {
            Lookup::NotFound => Error::CommandNotFound(command.to_owned()),
            Lookup::NotExecutable => Error::NotExecutable(command.to_owned()),
        }
    }
}

fn check_candidate(path: &Path) -> std::result::Result<(), Lookup> {
    match std::fs::metadata(path) {
        Err(_) => Err(Lookup::NotFound),
        Ok(meta) if !meta.is_file() => Err(Lookup::NotExecutable),
        Ok(_) => match access(path, AccessFlags::X_OK) {
            Ok(()) => Ok(()),
            Err(_) => Err(Lookup::NotExecutable),
        },
    }
}

/// execve failed although the lookup succeeded (bad interpreter, wrong format...).
fn exec_error(command: &str, errno: Errno) -> Error {
    match errno {
        Errno::ENOENT => Error::CommandNotFound(command.to_owned()),
        Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM | Errno::ETXTBSY => {
            Error::NotExecutable(command.to_owned())
        }
        other => Error::Runtime(format!("exec {command}: {}", other.desc())),
    }
}

/// Hands the terminal's foreground back to the runtime's process group when an interactive
/// container (a shell with job control) took it, so the user's shell gets a sane terminal.
#[derive(Debug)]
pub struct TerminalGuard {
    restore: bool,
}

impl TerminalGuard {
    /// Remember whether the runtime is the terminal's foreground job now.
    pub fn capture() -> TerminalGuard {
        let stdin = std::io::stdin();
        let restore = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
            && nix::unistd::tcgetpgrp(stdin.as_fd()).ok() == Some(nix::unistd::getpgrp());
        TerminalGuard { restore }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.restore {
            let stdin = std::io::stdin();
            let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), nix::unistd::getpgrp());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn only(signal: Signal) -> SigSet {
        let mut set = SigSet::empty();
        set.add(signal);
        set
    }

    #[test]
    fn start_up_report_is_read_to_eof() {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let line = format!("125\tmount failed {}\n", std::process::id());
        File::from(tx).write_all(line.as_bytes()).unwrap();
        let report = read_report_unless_signalled(File::from(rx), &only(Signal::SIGHUP));
        assert_eq!(report.unwrap(), line);
    }

    /// A child stuck in set-up keeps its end of the pipe open forever: the signal wins.
    #[test]
    fn a_signal_interrupts_a_start_up_that_never_ends() {
        let set = only(Signal::SIGHUP);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let (rx, _tx_kept_open) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        // SAFETY: signals this very thread, which blocks SIGHUP.
        assert_eq!(
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) },
            0
        );
        let err = read_report_unless_signalled(File::from(rx), &set).unwrap_err();
        assert!(matches!(err, Error::Interrupted(Signal::SIGHUP)), "{err}");
        assert_eq!(err.exit_code(), 128 + libc::SIGHUP);
    }

    #[test]
    fn exit_status_maps_to_contract_codes() {
        let pid = Pid::from_raw(1);
        let code = 1 + (std::process::id() % 120) as i32;
        assert_eq!(exit_code(WaitStatus::Exited(pid, code)), code);
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            137
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)),
            139
        );
    }

    #[test]
    fn failure_report_round_trips_with_its_exit_code() {
        for error in [
            Error::CommandNotFound("nope".into()),
            Error::NotExecutable("/etc/passwd".into()),
            Error::Runtime("mount overlay: EPERM\nsecond line".into()),
        ] {
            let decoded = decode_failure(&encode_failure(&error));
            assert_eq!(decoded.exit_code(), error.exit_code());
            assert_eq!(decoded.to_string(), error.to_string().replace('\n', " "));
        }
    }

    #[test]
    fn path_lookup_finds_first_executable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("tool"), "data").unwrap(); // not executable
        fs::write(b.join("tool"), "#!/bin/true\n").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        let found = find_executable("tool", &path).unwrap();
        assert_eq!(found.to_str().unwrap(), b.join("tool").to_str().unwrap());
    }

    #[test]
    fn path_lookup_distinguishes_missing_from_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("data"), "x").unwrap();
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().display().to_string();
        assert_eq!(
            find_executable("missing", &path).unwrap_err().exit_code(),
            127
        );
        assert_eq!(find_executable("data", &path).unwrap_err().exit_code(), 126);
        let as_path = dir.path().join("data");
        assert_eq!(
            find_executable(as_path.to_str().unwrap(), "")
                .unwrap_err()
                .exit_code(),
            126
        );
        assert_eq!(
            find_executable(dir.path().to_str().unwrap(), "")
                .unwrap_err()
                .exit_code(),
            126,
            "a directory is not executable"
        );
        assert_eq!(
            find_executable("/no/such/file", "")
                .unwrap_err()
                .exit_code(),
            127
        );
    }

    #[test]
    fn exec_errors_map_to_126_and_127() {
        assert_eq!(exec_error("x", Errno::ENOENT).exit_code(), 127);
        assert_eq!(exec_error("x", Errno::ENOEXEC).exit_code(), 126);
        assert_eq!(exec_error("x", Errno::E2BIG).exit_code(), 125);
    }
}
