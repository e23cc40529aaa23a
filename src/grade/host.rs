//! The host each run of a submission sees: its own PID, mount, UTS and network namespaces,
//! made by the grader and read from outside, gone with the run; and what a run may never have
//! (the capabilities that reach another process's or the kernel's memory).

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::thread;

use super::inspect;

/// A network namespace of its own for one run, with `lo` up: the run's "host" network. Links,
/// addresses, routes and netfilter rules a run adds there (a veth it never deletes, a NAT rule
/// left by a crash) die with it, so no run inherits another's.
pub struct RunNet {
    pub(super) fd: std::os::fd::OwnedFd,
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

/// The host a run sees: PID 1 of a PID namespace of the run's own (a `sleep` that keeps it),
/// in mount and UTS namespaces of its own (and the run's network namespace). The runtime joins
/// them all, so the grader's processes are out of its sight and reach, and what it changes on
/// its "host" (a mount left in the table, a hostname set in the wrong place) stays there, is
/// read by the grader from outside, and is gone when the keeper is: no run inherits another's.
/// Its `/` is shared in a peer group of its own, as on a systemd host: a runtime that forgets
/// to make its mounts private leaks them here, exactly as it would on a student's machine.
pub struct RunHost {
    keeper: Child,
    /// The keeper's pid, in the grader's PID namespace.
    pub pid: i32,
    mount_ids: std::collections::BTreeSet<u64>,
    hostname: String,
}

/// The open namespaces of a run's host that the runtime joins: mount, UTS, network.
type HostNamespaces = (
    std::os::fd::OwnedFd,
    std::os::fd::OwnedFd,
    std::os::fd::OwnedFd,
);

impl RunHost {
    /// Start the keeper in a new PID namespace, then `spawn` (given the host) from the same
    /// thread: what it forks lands in that PID namespace, beside the keeper.
    pub(super) fn spawn_with<T: Send + 'static>(
        net: Option<std::os::fd::OwnedFd>,
        spawn: impl FnOnce(&RunHost) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<(RunHost, T)> {
        thread::spawn(move || {
            // Per thread: only what this thread forks from now on is in the new namespace.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)?;
            let host = RunHost::keeper(net)?;
            let spawned = spawn(&host)?;
            Ok((host, spawned))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("run host thread panicked")))
    }

    /// The keeper: the new PID namespace's first process, which makes the mount and UTS
    /// namespaces, a `/proc` of the new PID namespace only, and `/` shared anew.
    fn keeper(net: Option<std::os::fd::OwnedFd>) -> std::io::Result<RunHost> {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("1000000")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, setns, unshare,
        // mount, umount2) on string literals and a descriptor opened before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                drop_untrusted_caps()?;
                if let Some(fd) = &net {
                    enter(fd, libc::CLONE_NEWNET)?;
                }
                check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
                let none = std::ptr::null::<libc::c_char>();
                let private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
                check(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    private,
                    std::ptr::null(),
                ))?;
                // The grader's /proc goes, not just hidden under another: nothing to unmount.
                check(libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH))?;
                let flags = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as libc::c_ulong;
                let proc_ = c"proc".as_ptr();
                check(libc::mount(
                    proc_,
                    c"/proc".as_ptr(),
                    proc_,
                    flags,
                    std::ptr::null(),
                ))?;
                let shared = (libc::MS_REC | libc::MS_SHARED) as libc::c_ulong;
                check(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    shared,
                    std::ptr::null(),
                ))?;
                Ok(())
            });
        }
        let keeper = cmd.spawn()?;
        let pid = keeper.id() as i32;
        // spawn() returned: the keeper's set-up is done (it runs before exec).
        let mut host = RunHost {
            keeper,
            pid,
            mount_ids: Default::default(),
            hostname: String::new(),
        };
        host.mount_ids = inspect::mounts(&pid.to_string())
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        // A copy of ours (no thread can join another UTS namespace from this one: a thread that
        // unshared its PID namespace cannot make threads).
        host.hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(host)
    }

    pub(super) fn namespaces(&self) -> std::io::Result<HostNamespaces> {
        let open = |kind: &str| -> std::io::Result<std::os::fd::OwnedFd> {
            Ok(std::fs::File::open(format!("/proc/{}/ns/{kind}", self.pid))?.into())
        };
        Ok((open("mnt")?, open("uts")?, open("net")?))
    }

    /// Inode of the host's namespace `kind` (`pid`, `mnt`, `uts`, `net`).
    pub fn ns_inode(&self, kind: &str) -> Option<u64> {
        inspect::ns_inode(&self.pid.to_string(), kind)
    }

    /// Mount points the host's table gained since the run started.
    pub fn new_mounts(&self) -> Vec<String> {
        inspect::mounts(&self.pid.to_string())
            .into_iter()
            .filter(|(id, _, _)| !self.mount_ids.contains(id))
            .map(|(_, p, _)| p)
            .collect()
    }

    /// The host's hostname when the run changed it.
    pub fn renamed(&self) -> Option<String> {
        let now = inspect::hostname_of(self.pid)?;
        (now != self.hostname).then_some(now)
    }
}

impl Drop for RunHost {
    /// The keeper's death ends the PID namespace (whatever is left in it is killed) and the
    /// mount and UTS namespaces with it.
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

/// Drop [`UNTRUSTED_CAPS`] from the bounding set (in a forked child, before exec).
pub(super) fn drop_untrusted_caps() -> std::io::Result<()> {
    for cap in UNTRUSTED_CAPS {
        let index = libc::c_ulong::from(cap.index());
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, index, 0, 0, 0) })?;
    }
    Ok(())
}

/// Join the namespace `fd` of type `kind` (in a forked child, before exec).
pub(super) fn enter(fd: &std::os::fd::OwnedFd, kind: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setns on a descriptor we own.
    check(unsafe { libc::setns(fd.as_raw_fd(), kind) })
}

/// A libc status as a result.
fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
