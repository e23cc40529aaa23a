//! Volumes: parse `-v`, resolve DST inside the root, bind (ro/rw).
//!
//! Two halves, run in two processes:
//! - [`parse`]: [`parse_all`] runs in the parent before anything starts, so a bad spec costs
//!   nothing: every spec is validated first, and only then are named volumes created
//!   ([`targets`]: the validated DSTs alone, creating nothing, for `--tmpfs` to check against).
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

pub use mount::mount_all;
pub(crate) use mount::{fd_path, open_root, target_in_root};
pub use parse::{parse_all, targets, Volume};
