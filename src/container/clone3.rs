//! clone3(2) for the container's init: created straight into its cgroup v2
//! (`CLONE_INTO_CGROUP`, Linux ≥ 5.7) so it never migrates — no `cgroup.procs` write, no
//! cgroup write lock and its RCU grace period on the start path — and with a pidfd
//! (`CLONE_PIDFD`) through which the runtime waits for and signals it.
//!
//! nix (0.31) and rustix have no clone3, hence this one small raw wrapper. Kernels (or seccomp
//! filters around the runtime, e.g. docker's default profile) without clone3 or
//! `CLONE_INTO_CGROUP` answer ENOSYS, EINVAL or E2BIG: the caller then uses clone(2) and a
//! `cgroup.procs` write, as [`forced_off`] makes it do on purpose.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Linux's `CLONE_INTO_CGROUP` (libc declares it as a deprecated, overflowing `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `DEVOXX_NO_CLONE3=1` makes the runtime start containers as on a kernel without clone3
/// (clone(2), then a `cgroup.procs` write): the suite tests that fallback with it.
pub const FORCE_FALLBACK_ENV: &str = "DEVOXX_NO_CLONE3";

/// Which side of [`fork_into_cgroup`] the caller is on.
#[derive(Debug)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the new process's pid and pidfd.
    Parent { pid: Pid, pidfd: OwnedFd },
}

/// Whether `DEVOXX_NO_CLONE3=1` asks for the fallback.
pub fn forced_off() -> bool {
    std::env::var_os(FORCE_FALLBACK_ENV).is_some_and(|v| v == "1")
}

/// Whether `errno` from clone3 means "not supported here" (no clone3, an unknown flag, a
/// larger `clone_args` than the kernel knows), as opposed to a real failure (EAGAIN...).
pub fn unsupported(errno: Errno) -> bool {
    matches!(errno, Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG)
}

/// clone3 with `flags` (namespaces), born in the cgroup v2 directory `cgroup` (an `O_PATH`
/// or `O_DIRECTORY` descriptor), exit signal SIGCHLD, returning a pidfd. Without `CLONE_VM`
/// and without a stack it behaves like fork(2): the child runs on a copy of the caller's
/// address space and stack, returning [`Forked::Child`].
///
/// # Safety
/// As for fork(2): the caller must be single-threaded (no lock can be held by a thread that
/// does not exist in the child), and the child must end in exec or `_exit`, never return into
/// the caller's frames as if it were the parent.
pub unsafe fn fork_into_cgroup(flags: CloneFlags, cgroup: BorrowedFd) -> nix::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is plain integers; all-zero is its "nothing asked" value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = u64::from(flags.bits() as u32) | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP;
    args.pidfd = std::ptr::addr_of_mut!(pidfd) as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: `args` is a valid clone_args of the size passed; `pidfd` outlives the call; no
    // CLONE_VM, so the child has its own copy of memory (the caller's contract covers the rest).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as libc::pid_t),
            // SAFETY: the kernel wrote a fresh descriptor, owned by nobody else.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_support_falls_back() {
        for errno in [Errno::ENOSYS, Errno::EINVAL, Errno::E2BIG] {
            assert!(unsupported(errno), "{errno}");
        }
        for errno in [Errno::EAGAIN, Errno::ENOMEM, Errno::EPERM, Errno::EBUSY] {
            assert!(!unsupported(errno), "{errno} is a real failure");
        }
    }

    /// The flag values the kernel's ABI fixes (include/uapi/linux/sched.h).
    #[test]
    fn abi_constants() {
        assert_eq!(CLONE_INTO_CGROUP, 1 << 33);
        assert_eq!(libc::CLONE_PIDFD, 0x1000);
        assert_eq!(std::mem::size_of::<libc::clone_args>(), 88);
    }
}
