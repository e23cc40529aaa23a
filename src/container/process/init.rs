//! The child's side, between clone and exec: its root, hostname, mounts and limits, then the
//! parent's go, then exec; any failure becomes the report line and the exit code.

use std::ffi::CString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::stat::{umask, Mode};

use super::lookup::{exec_error, find_executable, path_of};
use super::report::{encode_failure, HOOK_POINT, READY};
use super::signals::{die_with_parent, reset_signals};
use super::{ChildConfig, ExecConfig, Filesystems};
use crate::container::network;
use crate::container::rootfs;
use crate::container::{mounts, namespaces, rlimit, tmpfs, volume};
use crate::error::IoContext;
use crate::{trace, Error, Result};

/// Raw descriptors as seen in the child (its copies of the parent's pipes).
#[derive(Debug)]
pub(super) struct ChildFds {
    pub(super) sync_rx: RawFd,
    pub(super) err_tx: RawFd,
    pub(super) parent_ends: [RawFd; 2],
}

impl ChildFds {
    /// Close the child's copies of the parent's pipe ends, unused in the child.
    fn close_parent_ends(&self) {
        for fd in self.parent_ends {
            // SAFETY: the child's own copies of the parent's ends, closed once, never used.
            unsafe { libc::close(fd) };
        }
    }
}

/// The child after clone: set everything up, exec; on failure report and exit.
pub(super) fn child_main(
    config: &ChildConfig,
    argv: &[CString],
    envp: &[CString],
    fds: &ChildFds,
) -> isize {
    fds.close_parent_ends();
    // SAFETY: the child's own copy of the error pipe's write end, owned from here on.
    let mut report = Some(unsafe { File::from_raw_fd(fds.err_tx) });
    let error = match set_up_and_exec(config, argv, envp, fds.sync_rx, &mut report) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    match report {
        Some(mut report) => {
            let _ = report.write_all(encode_failure(&error).as_bytes());
        }
        // After an OCI `create` returned nobody reads the pipe: the caller's stderr instead.
        None => eprintln!("devoxx-docker: {error}"),
    }
    error.exit_code() as isize
}

/// OCI `exec`'s child: join the container, wait for the parent (which places it in the
/// container's cgroup), take the process's identity and limits, exec; on failure report.
pub(super) fn exec_main(
    config: &ExecConfig,
    argv: &[CString],
    envp: &[CString],
    fds: &ChildFds,
) -> isize {
    fds.close_parent_ends();
    let error = match join_and_exec(config, argv, envp, fds.sync_rx) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    // SAFETY: the child's own copy of the error pipe's write end, used once then dropped.
    let mut report = unsafe { File::from_raw_fd(fds.err_tx) };
    let _ = report.write_all(encode_failure(&error).as_bytes());
    error.exit_code() as isize
}

fn join_and_exec(
    config: &ExecConfig,
    argv: &[CString],
    envp: &[CString],
    sync_rx: RawFd,
) -> Result<std::convert::Infallible> {
    if !config.detach {
        die_with_parent()?;
    }
    namespaces::join_all(config.joins)?;
    if let Some(root) = &config.chroot {
        rootfs::chroot_into(root)?;
    }
    // In the container's mount namespace (or root) now: the pty comes from its devpts.
    if let Some(tty) = &config.tty {
        tty.set_up()?;
    }
    wait_for_parent(sync_rx)?;
    umask(Mode::from_bits_truncate(config.spec.umask));
    enter_workdir(&config.spec.workdir)?;
    let program = find_executable(&config.spec.argv[0], &path_of(&config.spec.env))?;
    reset_signals()?;
    close_inherited_fds(3 + config.preserve_fds)?;
    config.security.apply(&config.spec.user)?;
    rlimit::apply(&config.spec.rlimits)?;
    let error = nix::unistd::execve(&program, argv, envp).unwrap_err();
    Err(exec_error(&config.spec.argv[0], error))
}

/// Wait for the parent, enter the container's root, exec. Returns only on failure.
pub(super) fn set_up_and_exec(
    config: &ChildConfig,
    argv: &[CString],
    envp: &[CString],
    sync_rx: RawFd,
    report: &mut Option<File>,
) -> Result<std::convert::Infallible> {
    trace::mark("child");
    if config.user_namespace {
        await_byte(sync_rx, "its user namespace's maps")?;
        crate::container::userns::become_root()?;
    }
    if config.gate.is_none() {
        die_with_parent()?;
    }
    namespaces::join_all(config.joins)?;
    // Build the root while the parent places us in our cgroup (a cgroup migration can wait
    // for an RCU grace period): only the user's command must start inside it, so the go
    // signal is awaited just before exec.
    umask(Mode::empty());
    network::setup_container_side(config.network)?;
    let shares_mount_ns = matches!(
        config.filesystems,
        Filesystems::Oci {
            shares_mount_ns: true,
            ..
        }
    );
    match config.filesystems {
        // The host's `/` keeps its propagation: only the root's own bind is made private.
        Filesystems::Oci {
            shares_mount_ns: true,
            ..
        } => {}
        Filesystems::Oci { propagation, .. } => propagation.prepare()?,
        Filesystems::Docker => namespaces::make_mounts_private()?,
    }
    let root = config.root.path();
    config.root.mount()?;
    if shares_mount_ns {
        rootfs::make_private(root)?;
    }
    if !config.spec.hostname.is_empty() {
        namespaces::set_hostname(&config.spec.hostname)?;
    }
    let privileged = config.security.privileged;
    tmpfs::mount_all(config.tmpfs, root)?;
    volume::mount_all(config.volumes, root, !privileged)?;
    if let Filesystems::Oci {
        mounts,
        sysctl,
        devices,
        ..
    } = config.filesystems
    {
        mounts::mount_all(mounts, root)?;
        crate::container::oci::sysctl::apply(sysctl)?;
        if config.user_namespace {
            let paths: Vec<&str> = devices.iter().map(|d| d.path.as_str()).collect();
            crate::container::userns::bind_devices(root, &paths)?;
        }
    }
    if config.hooks.is_some_and(|h| h.pause_before_root) {
        pause_for_hooks(sync_rx, report)?;
    }
    match shares_mount_ns {
        true => rootfs::chroot_into(root)?,
        false => rootfs::pivot_into(root)?,
    }
    match config.filesystems {
        Filesystems::Docker => rootfs::mount_pseudo_filesystems(privileged)?,
        Filesystems::Oci {
            masked,
            readonly,
            devices,
            ..
        } => {
            if !config.user_namespace {
                crate::container::oci::devices::create_all(devices)?;
            }
            rootfs::provide_default_devices()?;
            rootfs::harden(masked, readonly)?;
        }
    }
    if let Some(etc) = config.etc {
        etc.provide()?;
    }
    if let Some(tty) = &config.tty {
        tty.set_up()?;
    }
    trace::mark("child-root");
    enter_workdir(&config.spec.workdir)?;
    if config.read_only {
        rootfs::make_root_read_only()?;
    }
    match config.filesystems {
        // Everything made since (masks, devices) private too: nothing reaches the host's peers.
        Filesystems::Oci {
            shares_mount_ns: true,
            ..
        } => rootfs::make_private(Path::new("/"))?,
        Filesystems::Oci { propagation, .. } => propagation.apply_to_root()?,
        Filesystems::Docker => {}
    }
    let program = find_executable(&config.spec.argv[0], &path_of(&config.spec.env))?;
    umask(Mode::from_bits_truncate(config.spec.umask));
    trace::mark("child-ready");
    wait_for_parent(sync_rx)?;
    trace::mark("child-go");
    config.cgroupns.enter()?;
    if let Some(gate) = config.gate {
        announce_ready(report)?;
        wait_for_start(gate)?;
    }
    if let Some(child_hooks) = config.hooks {
        child_hooks.run_start_container()?;
    }
    if let Some(score) = config.spec.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .ctx(|| "write /proc/self/oom_score_adj")?;
    }
    reset_signals()?;
    close_inherited_fds(3 + config.preserve_fds)?;
    config.security.apply(&config.spec.user)?;
    rlimit::apply(&config.spec.rlimits)?;
    trace::mark("child-exec");
    let error = nix::unistd::execve(&program, argv, envp).unwrap_err();
    Err(exec_error(&config.spec.argv[0], error))
}

/// Block until the parent says go (a byte) or disappears (EOF: exit, never run orphaned).
pub(super) fn wait_for_parent(sync_rx: RawFd) -> Result<()> {
    // SAFETY: the child's own copy of the sync pipe's read end, consumed (closed) here.
    let rx = unsafe { OwnedFd::from_raw_fd(sync_rx) };
    match read_sync_byte(rx.as_fd()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Runtime(
            "the runtime exited before the container started".into(),
        )),
        Err(e) => Err(Error::io("wait for the runtime", e.into())),
    }
}

/// One byte from the runtime on the sync pipe: `true`, or `false` at EOF (the runtime is gone).
fn read_sync_byte(rx: BorrowedFd) -> nix::Result<bool> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(rx, &mut byte) {
            Ok(n) => return Ok(n == 1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// OCI `create` with hooks: tell the runtime the namespaces and mounts are ready
/// ([`HOOK_POINT`] on the report pipe), then wait for its byte on the sync pipe (the hooks
/// ran); the pipe stays open for the go before exec.
fn pause_for_hooks(sync_rx: RawFd, report: &mut Option<File>) -> Result<()> {
    if let Some(pipe) = report.as_mut() {
        pipe.write_all(&[HOOK_POINT])
            .map_err(|e| Error::io("tell the runtime to run the hooks", e))?;
    }
    await_byte(sync_rx, "the create hooks")
}

/// Block until the runtime's byte on the sync pipe says `what` is done (the pipe stays open
/// for the go before exec); EOF means the runtime is gone.
fn await_byte(sync_rx: RawFd, what: &str) -> Result<()> {
    // SAFETY: the child's copy of the sync pipe's read end, open until wait_for_parent.
    let rx = unsafe { BorrowedFd::borrow_raw(sync_rx) };
    match read_sync_byte(rx) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Runtime(format!(
            "the runtime exited while waiting for {what}"
        ))),
        Err(e) => Err(Error::io(format!("wait for {what}"), e.into())),
    }
}

/// Tell the runtime (`create`) that everything is set up: the [`READY`] byte on the report
/// pipe, which is then closed (a later failure goes to stderr: nobody reads the pipe any more).
fn announce_ready(report: &mut Option<File>) -> Result<()> {
    if let Some(mut pipe) = report.take() {
        pipe.write_all(&[READY])
            .map_err(|e| Error::io("tell the runtime the container is ready", e))?;
    }
    Ok(())
}

/// Block until `start` writes to the exec FIFO whose read end is `gate` (opened non-blocking
/// by the runtime: poll for the byte, then read it). Signals stay blocked meanwhile, as
/// before any container starts: only SIGKILL ends a created container.
fn wait_for_start(gate: RawFd) -> Result<()> {
    // SAFETY: the child's own copy of the FIFO's read end, consumed here.
    let mut fifo = File::from(unsafe { OwnedFd::from_raw_fd(gate) });
    let mut byte = [0u8; 1];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            fifo.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::io("wait for start", e.into())),
        }
        match fifo.read(&mut byte) {
            Ok(1) => return Ok(()),
            // A writer came and went without a byte: keep waiting for a real start.
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("wait for start", e)),
        }
    }
}

pub(super) fn enter_workdir(dir: &str) -> Result<()> {
    rootfs::ensure_dir(Path::new(dir), 0o755)?;
    nix::unistd::chdir(dir).ctx(|| format!("chdir to working directory {dir}"))
}

/// Mark every descriptor from `first` on (3: everything above stderr) close-on-exec: whatever
/// the runtime's caller leaked to us must not reach the container (the runc CVE-2024-21626
/// class); only those an OCI caller asked to pass (`--preserve-fds`) stay below `first`.
pub(super) fn close_inherited_fds(first: u32) -> Result<()> {
    // SAFETY: plain syscall on integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
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
