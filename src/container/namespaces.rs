//! UTS / PID / mount (/ network) namespace setup in the child.

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::error::IoContext;
use crate::Result;

/// The namespaces every container gets (the contract), plus a network namespace when the
/// network mode needs one. Created atomically by clone(2), so the parent can configure the
/// child's cgroup and veth before the child does anything.
pub fn clone_flags(new_netns: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS;
    if new_netns {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// The container dies with its runtime (SIGKILL when the parent thread exits), so a killed
/// runtime can never leave a running container behind.
pub fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "prctl(PR_SET_PDEATHSIG)")
}

/// Stop mount events from propagating between the host and the container: done first, before
/// any mount, so nothing the container mounts ever shows up in the host's mount table.
pub fn make_mounts_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "make / private (MS_REC|MS_PRIVATE)")
}

/// Give the container its own hostname (only its UTS namespace sees it).
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).ctx(|| format!("sethostname {name}"))
}

/// The runtime blocks the forwarded signals and ignores SIGTTOU/SIGPIPE; a command must start
/// with an empty mask and default dispositions, as if started by a shell.
pub fn reset_signals() -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_namespace_only_when_asked() {
        assert!(!clone_flags(false).contains(CloneFlags::CLONE_NEWNET));
        assert!(clone_flags(true).contains(CloneFlags::CLONE_NEWNET));
        assert!(clone_flags(false).contains(
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS
        ));
    }
}
