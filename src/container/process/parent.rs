//! The parent's side: clone the container's init (into its cgroup with clone3 when it can),
//! release it, wait for its exec or its report, then wait for it while forwarding signals.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::init::{child_main, exec_main, ChildFds};
use super::report::{decode_failure, read_report_unless_signalled, HOOK_POINT};
use super::signals::{forwarded_set, wait_signal, FORWARDED};
use super::{ChildConfig, ExecConfig};
use crate::container::clone3;
use crate::container::spec::ProcessSpec;
use crate::error::IoContext;
use crate::{Error, Result};

/// Stack for the cloned child until it execs; lazily backed (calloc → untouched pages).
pub(super) const CHILD_STACK_SIZE: usize = 4 << 20;

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
    spawn(config.spec, flags, cgroup, |argv, envp, fds| {
        child_main(config, argv, envp, fds)
    })
}

/// OCI `exec`: a new process in a running container (the caller has joined its PID namespace;
/// the child joins the others). Same protocol as [`start`]: it waits for
/// [`Child::release_and_wait_exec`], born in `cgroup` with clone3 when given.
pub fn start_exec(config: &ExecConfig, cgroup: Option<BorrowedFd>) -> Result<Child> {
    let flags = nix::sched::CloneFlags::empty();
    spawn(config.spec, flags, cgroup, |argv, envp, fds| {
        exec_main(config, argv, envp, fds)
    })
}

/// Clone a child running `entry` with the sync and report pipes.
fn spawn(
    spec: &ProcessSpec,
    flags: nix::sched::CloneFlags,
    cgroup: Option<BorrowedFd>,
    entry: impl Fn(&[CString], &[CString], &ChildFds) -> isize,
) -> Result<Child> {
    let argv = to_cstrings(&spec.argv)?;
    let envp = to_cstrings(&spec.env)?;
    let (sync_rx, sync_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (err_rx, err_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let fds = ChildFds {
        sync_rx: sync_rx.as_raw_fd(),
        err_tx: err_tx.as_raw_fd(),
        parent_ends: [sync_tx.as_raw_fd(), err_rx.as_raw_fd()],
    };
    let run_child = || entry(&argv, &envp, &fds);
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
pub(super) fn clone_into_cgroup(
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
pub(super) fn clone_classic(
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

pub(super) fn to_cstrings(items: &[String]) -> Result<Vec<CString>> {
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

    /// OCI `create` with hooks: wait until the init stopped before its root switch (Ok) or
    /// reported why it could not get there (its error).
    pub fn wait_hook_point(&mut self) -> Result<()> {
        let Some(rx) = self.err_rx.as_ref() else {
            return Err(Error::Runtime("the init's report pipe is gone".into()));
        };
        let mut byte = [0u8; 1];
        let n = loop {
            match nix::unistd::read(rx, &mut byte) {
                Err(Errno::EINTR) => continue,
                other => break other.map_err(|e| Error::io("wait for the init", e.into()))?,
            }
        };
        if n == 1 && byte[0] == HOOK_POINT {
            return Ok(());
        }
        let mut report = String::from_utf8_lossy(&byte[..n]).into_owned();
        if let Some(rx) = self.err_rx.take() {
            let _ = File::from(rx).read_to_string(&mut report);
        }
        let _ = self.reap_blocking();
        Err(match report.is_empty() {
            true => Error::Runtime("the container's init died during create".into()),
            false => decode_failure(&report),
        })
    }

    /// A new user namespace: write the init's maps, then let it go on (it waits for them
    /// before anything else, then becomes root of the namespace).
    pub fn map_user_namespace(
        &self,
        userns: &crate::container::userns::UserNamespace,
    ) -> Result<()> {
        userns.write_maps(self.pid)?;
        match &self.sync_tx {
            Some(tx) => nix::unistd::write(tx, b"u")
                .map(drop)
                .map_err(|e| Error::io("resume the container's init", e.into())),
            None => Err(Error::Runtime("the init was already released".into())),
        }
    }

    /// After the `create` hooks: let the init go on to its root switch.
    pub fn resume_after_hooks(&self) -> Result<()> {
        match &self.sync_tx {
            Some(tx) => nix::unistd::write(tx, b"h")
                .map(drop)
                .map_err(|e| Error::io("resume the container's init", e.into())),
            None => Err(Error::Runtime("the init was already released".into())),
        }
    }

    /// OCI `create`: the init is set up and waits for `start`; let it live on without us (no
    /// kill on drop). Its parent becomes the caller's subreaper, which reaps it.
    pub fn detach(mut self) -> Pid {
        self.reaped = true;
        self.pid
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

/// The contract's exit code for a wait status: the command's code, or 128+N on signal N.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 125,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
