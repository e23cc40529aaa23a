//! Volumes: parse -v, resolve DST inside the root, bind (ro/rw), clean up.
//!
//! API pinned for `container::process` (bodies are provisional stubs).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One validated `-v SRC:DST[:MODE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host directory or file to bind (a named volume's directory once created).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

/// Validate every `-v` spec in the parent, before anything is started (named volumes are
/// created here). Errors are `Error::Usage` (exit 125) and leave nothing mounted.
pub fn parse_all(specs: &[String], volumes_root: &Path) -> Result<Vec<Volume>> {
    let _ = volumes_root;
    match specs.first() {
        None => Ok(Vec::new()),
        Some(s) => Err(Error::Usage(format!(
            "volume {s}: volumes are not implemented yet"
        ))),
    }
}

/// Mount every volume under `rootfs` (the container's merged root, in the container's own
/// mount namespace, before pivot_root), resolving each target inside `rootfs`.
pub fn mount_all(volumes: &[Volume], rootfs: &Path) -> Result<()> {
    let _ = (volumes, rootfs);
    Ok(())
}
