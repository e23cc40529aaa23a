//! The on-disk store: `<root>/<name>/config.json` + `<root>/<name>/rootfs/`.

use std::path::PathBuf;

/// What `run` needs from an image config (OCI image-spec `config` object).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

/// A stored, complete image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Store name (one path component).
    pub name: String,
    /// `<root>/<name>`.
    pub dir: PathBuf,
    /// `<root>/<name>/rootfs`.
    pub rootfs: PathBuf,
    /// The runtime part of the image config (defaults when the image has no config.json,
    /// e.g. a rootfs placed by hand the workshop's way).
    pub config: ImageConfig,
}
