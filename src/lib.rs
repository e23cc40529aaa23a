//! devoxx-docker: a lean Linux container runtime.
//!
//! Data flows one way: reference → registry → unpack → store → spec → process
//! (namespaces, rootfs, cgroup, volumes, network) → wait → cleanup. Each step owns its
//! cleanup through a guard, so a failure anywhere undoes exactly what came before.

pub mod config;
pub mod container;
pub mod error;
pub mod grade;
pub mod image;
pub mod trace;

pub use error::{Error, Result};

/// A runtime message on stderr, with the contract's `devoxx-docker:` prefix, so the
/// container's own output is never mixed with (or mistaken for) runtime chatter.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("devoxx-docker: {}", format_args!($($arg)*))
    };
}

/// Fail with the contract's one-line error (exit 125) unless we run as root.
pub fn require_root(what: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::Host(format!(
            "{what} needs root privileges (namespaces, mounts, cgroups): run it with sudo"
        )))
    }
}
