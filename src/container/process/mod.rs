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
//!
//! One file per side and concern: [`parent`] (spawn, wait, forward), [`init`] (the child until
//! exec), [`report`] (the error pipe), [`signals`], [`lookup`] (PATH), [`terminal`].

mod init;
mod lookup;
mod parent;
mod report;
mod signals;
mod terminal;

pub use lookup::find_executable;
pub use parent::{exit_code, start, start_exec, Child, Exit};
pub use signals::{block_signals, FORWARDED};
pub use terminal::TerminalGuard;

use std::os::fd::RawFd;

use super::etc_files::EtcFiles;
use super::network::NetworkMode;
use super::rootfs::Root;
use super::security::Security;
use super::spec::ProcessSpec;
use super::{mounts, namespaces, tmpfs, volume};

/// Everything the child needs, resolved by the parent before clone. Both front ends fill it:
/// `run` from the image and its options, `create` from an OCI bundle.
#[derive(Debug)]
pub struct ChildConfig<'a> {
    pub spec: &'a ProcessSpec,
    pub root: Root<'a>,
    pub volumes: &'a [volume::Volume],
    pub network: NetworkMode,
    /// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (`run`; an OCI config mounts its own).
    pub etc: Option<&'a EtcFiles>,
    pub security: &'a Security,
    /// `-t`: the child's side of the container's terminal (see [`super::tty`]).
    pub tty: Option<super::tty::ChildTty>,
    pub tmpfs: &'a [tmpfs::Tmpfs],
    pub read_only: bool,
    pub cgroupns: namespaces::CgroupNs,
    /// What is mounted besides the root and the volumes.
    pub filesystems: Filesystems<'a>,
    /// Existing namespaces to join (an OCI config's `linux.namespaces[].path`), first of all.
    pub joins: &'a [namespaces::Join],
    /// Cloned with `CLONE_NEWUSER`: the init first waits for its maps (a byte on the sync
    /// pipe once the runtime wrote them), then becomes root of the namespace
    /// ([`super::userns`]).
    pub user_namespace: bool,
    /// OCI `create`: after its set-up the init says it is ready, then waits on this descriptor
    /// (the read end of the state directory's `exec.fifo`) until `start` writes to it. `None`
    /// (`run`): the init dies with the runtime and execs as soon as it is released.
    pub gate: Option<RawFd>,
    /// Descriptors 3 to 3+N-1 the command inherits (`create --preserve-fds N`; 0 for `run`).
    pub preserve_fds: u32,
    /// OCI `create` with hooks: where the init stops for them and what it runs itself.
    pub hooks: Option<super::oci::hooks::ChildHooks<'a>>,
}

/// OCI `exec`: a process to start in a running container, resolved before clone.
#[derive(Debug)]
pub struct ExecConfig<'a> {
    pub spec: &'a ProcessSpec,
    pub security: &'a Security,
    /// The container's namespaces but the PID one (joined by the caller), its mount one last.
    pub joins: &'a [namespaces::Join],
    /// `--detach`: the process outlives the runtime (no death signal when it exits).
    pub detach: bool,
    pub preserve_fds: u32,
    /// `process.terminal`: the pty made in the container, its master sent to the console
    /// socket (see [`super::oci::console`]).
    pub tty: Option<super::tty::ChildTty>,
    /// A container in the runtime's mount namespace: its init's root (`/proc/<pid>/root`),
    /// entered with `chroot` after the joins.
    pub chroot: Option<std::path::PathBuf>,
}

/// The file systems the container gets besides its root.
#[derive(Debug, Clone, Copy)]
pub enum Filesystems<'a> {
    /// `run`: /proc, /sys, a minimal /dev, docker's masked paths (none when privileged).
    Docker,
    /// An OCI config: its `mounts` in order (before pivot_root), the spec's default devices,
    /// its `maskedPaths` and `readonlyPaths`.
    Oci {
        mounts: &'a [mounts::Mount],
        masked: &'a [String],
        readonly: &'a [String],
        /// `linux.sysctl`, written in the container's namespaces before the root switch.
        sysctl: &'a [super::oci::sysctl::Sysctl],
        /// `linux.devices`, made after the root switch, before the default ones.
        devices: &'a [super::oci::devices::Device],
        /// `linux.rootfsPropagation`: the namespace's before the root switch, `/`'s last.
        propagation: super::oci::propagation::RootPropagation,
        /// No mount namespace of its own: the root is bound and made private in the
        /// runtime's, entered with `chroot`, the host's `/` never touched
        /// ([`super::oci::host_mounts`]).
        shares_mount_ns: bool,
    },
}
