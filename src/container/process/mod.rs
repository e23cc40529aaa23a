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
pub use parent::{exit_code, start, Child, Exit};
pub use signals::{block_signals, FORWARDED};
pub use terminal::TerminalGuard;

use super::etc_files::EtcFiles;
use super::network::NetworkMode;
use super::rootfs::Layer;
use super::security::Security;
use super::spec::ProcessSpec;
use super::{namespaces, tmpfs, volume};

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
    pub tmpfs: &'a [tmpfs::Tmpfs],
    pub read_only: bool,
    pub cgroupns: namespaces::CgroupNs,
}
