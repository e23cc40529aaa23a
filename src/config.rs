//! Where things live on the host. Resolved once from CLI/env so every module agrees.

use std::path::PathBuf;

/// Default image store (the workshop's `/fs`).
pub const DEFAULT_ROOT: &str = "/fs";
/// Default named-volume root (the seed's `/volumes`).
pub const DEFAULT_VOLUMES: &str = "/volumes";

/// Host paths the runtime works with.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Image store: `<root>/<name>/{config.json,rootfs}`.
    pub root: PathBuf,
    /// Named volumes: `<volumes>/<name>/`.
    pub volumes: PathBuf,
}

impl Paths {
    /// Per-container state (writable layers, pid files) lives beside the images, on the same
    /// filesystem, under a name no image can take (image names never start with a dot).
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join(".containers")
    }

    /// OCI containers (`create`...`delete`): `<root>/.oci/<id>/`, beside the images and `run`'s
    /// containers, under a name no image can take; `run`'s reclaim never looks there.
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join(".oci")
    }

    /// Staging area for pulls in progress; renamed into place only when complete.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(".staging")
    }
}
