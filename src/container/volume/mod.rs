//! Volumes: parse `-v`, resolve DST inside the root, bind (ro/rw).
//!
//! Two halves, run in two processes:
//! - [`parse`]: [`parse_all`] runs in the parent before anything starts, so a bad spec costs
//!   nothing: every spec is validated first, and only then are named volumes created.
//! - [`mount`]: [`mount_all`] runs in the child, in its private mount namespace, on the merged
//!   overlay root before pivot_root. Every DST is resolved with `openat2(RESOLVE_IN_ROOT)` from
//!   an `O_PATH` fd of that root, so no symlink in the image (absolute or relative,
//!   `/data -> /etc`, `-> ../../..`) can make a mount land outside it; the mount goes onto
//!   `/proc/self/fd/<fd>` of the resolved target, never onto a path the kernel would walk again.
//!
//! Cleanup is structural: the mounts live only in the container's mount namespace (they vanish
//! with it) and the mount points created live in the writable layer (removed with it).

mod mount;
mod parse;

use std::path::PathBuf;

pub use mount::mount_all;
pub use parse::parse_all;

/// One validated `-v SRC:DST[:MODE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host directory or file to bind (a named volume's directory once created).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// `:ro`: the bind and all its submounts are read-only inside (writes fail with EROFS).
    pub read_only: bool,
}

/// A random lower-case name for the tests' files and volumes.
#[cfg(test)]
fn random_name() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..10)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}
