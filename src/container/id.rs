//! Container ids and their liveness, shared by everything that tags host state with an id
//! ([`super::state`], [`super::network`], [`super::cgroup`]) and needs to tell its own
//! leftovers from another tool's, and a dead runtime's from a live one's.
//!
//! Liveness is an flock on `<LOCK_DIR>/<id>.lock`, held by the runtime for the container's
//! whole life (taken by [`super::state`]): the kernel drops it however the runtime dies.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where liveness locks live (host-wide: shared by every store root).
pub const LOCK_DIR: &str = "/run/devoxx-docker";

/// A fresh container id: 12 hex digits (48 random bits).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// Whether `s` has the shape of an id from [`new_id`]: host state tagged with anything else
/// (another tool's, a newer runtime's) is never ours to reclaim.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The liveness lock of container `id`.
pub(super) fn lock_path(id: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{id}.lock"))
}

/// Whether container `id` still has a live runtime holding its lock.
pub fn is_live(id: &str) -> bool {
    let Ok(file) = File::open(lock_path(id)) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn unknown_container_is_not_live() {
        assert!(!is_live(&new_id()));
    }
}
