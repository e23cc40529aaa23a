//! The child's side, between clone and exec: its root, hostname, mounts and limits, then the
//! parent's go, then exec; any failure becomes the report line and the exit code.

use std::ffi::CString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::stat::{umask, Mode};

use super::lookup::{exec_error, find_executable, path_of};
use super::report::encode_failure;
use super::signals::{die_with_parent, reset_signals};
use super::ChildConfig;
use crate::container::network;
use crate::container::rootfs;
use crate::container::{namespaces, rlimit, tmpfs, volume};
use crate::error::IoContext;
use crate::{trace, Error, Result};

/// Raw descriptors as seen in the child (its copies of the parent's pipes).
#[derive(Debug)]
pub(super) struct ChildFds {
    pub(super) sync_rx: RawFd,
    pub(super) err_tx: RawFd,
    pub(super) parent_ends: [RawFd; 2],
}

/// The child after clone: set everything up, exec; on failure report and exit.
pub(super) fn child_main(
    config: &ChildConfig,
    argv: &[CString],
    envp: &[CString],
    fds: &ChildFds,
) -> isize {
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
pub(super) fn set_up_and_exec(
    config: &ChildConfig,
    argv: &[CString],
    envp: &[CString],
    sync_rx: RawFd,
) -> Result<std::convert::Infallible> {
    trace::mark("child");
    die_with_parent()?;
    // Build the root while the parent places us in our cgroup (a cgroup migration can wait
    // for an RCU grace period): only the user's command must start inside it, so the go
    // signal is awaited just before exec.
    umask(Mode::empty());
    network::setup_container_side(config.network)?;
    namespaces::make_mounts_private()?;
    config.layer.mount()?;
    namespaces::set_hostname(&config.spec.hostname)?;
    let privileged = config.security.privileged;
    tmpfs::mount_all(config.tmpfs, &config.layer.merged)?;
    volume::mount_all(config.volumes, &config.layer.merged, !privileged)?;
    rootfs::pivot_into(&config.layer.merged)?;
    rootfs::mount_pseudo_filesystems(privileged)?;
    config.etc.provide()?;
    if let Some(tty) = &config.tty {
        tty.set_up()?;
    }
    trace::mark("child-root");
    enter_workdir(&config.spec.workdir)?;
    if config.read_only {
        rootfs::make_root_read_only()?;
    }
    let program = find_executable(&config.spec.argv[0], &path_of(&config.spec.env))?;
    umask(Mode::from_bits_truncate(0o022));
    trace::mark("child-ready");
    wait_for_parent(sync_rx)?;
    trace::mark("child-go");
    config.cgroupns.enter()?;
    reset_signals()?;
    close_inherited_fds()?;
    config.security.apply(&config.spec.user)?;
    rlimit::apply(&config.spec.rlimits)?;
    trace::mark("child-exec");
    let error = nix::unistd::execve(&program, argv, envp).unwrap_err();
    Err(exec_error(&config.spec.argv[0], error))
}

/// Block until the parent says go (a byte) or disappears (EOF: exit, never run orphaned).
pub(super) fn wait_for_parent(sync_rx: RawFd) -> Result<()> {
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

pub(super) fn enter_workdir(dir: &str) -> Result<()> {
    rootfs::ensure_dir(Path::new(dir), 0o755)?;
    nix::unistd::chdir(dir).ctx(|| format!("chdir to working directory {dir}"))
}

/// Mark every descriptor above stderr close-on-exec: whatever the runtime's caller leaked to
/// us must not reach the container (the runc CVE-2024-21626 class).
pub(super) fn close_inherited_fds() -> Result<()> {
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
