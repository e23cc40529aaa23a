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

impl Image {
    /// Open a complete image `<root>/<name>`. The image config is optional so that a rootfs
    /// placed by hand the workshop's way (`/fs/<name>/rootfs`) runs too.
    pub fn open(root: &std::path::Path, name: &str) -> crate::Result<Image> {
        let dir = root.join(name);
        let rootfs = dir.join("rootfs");
        if !rootfs.is_dir() {
            return Err(crate::Error::ImageNotFound(name.to_owned()));
        }
        let config = match std::fs::read(dir.join("config.json")) {
            Ok(bytes) => parse_runtime_config(&bytes)
                .map_err(|e| crate::Error::Image(format!("{name}: bad config.json: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageConfig::default(),
            Err(e) => return Err(crate::Error::path("read", dir.join("config.json"), e)),
        };
        Ok(Image {
            name: name.to_owned(),
            dir,
            rootfs,
            config,
        })
    }
}

/// The `config` object of an OCI/Docker image config document.
fn parse_runtime_config(bytes: &[u8]) -> serde_json::Result<ImageConfig> {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(default)]
        config: Option<ImageConfig>,
    }
    Ok(serde_json::from_slice::<Document>(bytes)?
        .config
        .unwrap_or_default())
}
