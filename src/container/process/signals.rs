//! Signals: those the runtime forwards to the container and blocks until it waits for them,
//! and the clean slate the container's command starts with (default dispositions, empty mask,
//! death with its runtime).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::error::IoContext;
use crate::Result;

/// Signals sent to the runtime that are passed on to the container (the contract).
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

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

pub(super) fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    FORWARDED.iter().for_each(|s| set.add(*s));
    set
}

/// sigtimedwait(2): the next of `set`, or None when `timeout` expired.
pub(super) fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> nix::Result<Option<Signal>> {
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

/// The container dies with its runtime (SIGKILL when the parent thread exits), so a killed
/// runtime can never leave a running container behind.
pub(super) fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "prctl(PR_SET_PDEATHSIG)")
}

/// The runtime blocks the forwarded signals and ignores SIGTTOU/SIGPIPE; a command must start
/// with an empty mask and default dispositions, as if started by a shell.
pub(super) fn reset_signals() -> Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler to be unsafe about.
        unsafe { sigaction(signal, &default) }.ctx(|| format!("reset {signal}"))?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .ctx(|| "reset signal mask")
}
