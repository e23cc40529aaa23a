//! What an image's manifests say: the media types we accept, an index's linux/amd64 entry, a
//! manifest's config and layers, and how each layer is compressed. Documents are parsed here
//! only after [`super::Registry`] has checked them against the digest that named them.

use serde::Deserialize;

use crate::{Error, Result};

/// Media types of image indexes (multi-platform).
pub(super) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Media types of single-platform image manifests.
pub(super) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Image config media types we can run.
pub(super) const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// The platform an index resolves to (the runtime only runs linux/amd64 images).
pub const PLATFORM: (&str, &str) = ("linux", "amd64");

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
    #[serde(default)]
    pub(super) config: Option<Descriptor>,
    #[serde(default)]
    pub(super) layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    pub(super) media_type: String,
    pub(super) digest: String,
    pub(super) size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Index,
    Manifest,
}

pub(super) fn manifest_kind(d: &Document) -> Result<Kind> {
    match d.media_type.as_deref() {
        Some(t) if INDEX_TYPES.contains(&t) => Ok(Kind::Index),
        Some(t) if MANIFEST_TYPES.contains(&t) => Ok(Kind::Manifest),
        Some(t) => Err(Error::Image(format!("unsupported media type {t}"))),
        None if d.schema_version == Some(1) => Err(Error::Image(
            "unsupported media type: docker schema 1 manifest".into(),
        )),
        None if d.manifests.is_some() => Ok(Kind::Index),
        None if d.config.is_some() => Ok(Kind::Manifest),
        None => Err(Error::Image("unsupported manifest (no media type)".into())),
    }
}

/// The linux/amd64 entry of an index.
pub(super) fn pick_platform(index: &Document) -> Result<String> {
    let entries = index.manifests.as_deref().unwrap_or_default();
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == PLATFORM.0 && p.architecture == PLATFORM.1)
                && e.media_type
                    .as_deref()
                    .map_or(true, |t| MANIFEST_TYPES.contains(&t))
        })
        .map(|e| e.digest.clone())
        .ok_or_else(|| {
            Error::Image(format!(
                "no {}/{} image in this index",
                PLATFORM.0, PLATFORM.1
            ))
        })
        .and_then(|d| check_digest_syntax(&d).map(|_| d))
}

pub(super) fn compression_of(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

pub(super) fn check_digest_syntax(d: &str) -> Result<()> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Image(format!(
            "unsupported digest {d:?} (only sha256)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Document {
        serde_json::from_str(json).unwrap()
    }
    #[test]
    fn index_picks_linux_amd64() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let index = doc(&format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"digest":"{a}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"digest":"{b}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        ));
        assert_eq!(manifest_kind(&index).unwrap(), Kind::Index);
        assert_eq!(pick_platform(&index).unwrap(), b);
        let arm_only = doc(&format!(
            r#"{{"manifests":[{{"digest":"{a}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        ));
        assert!(pick_platform(&arm_only).is_err());
    }

    #[test]
    fn media_types() {
        assert!(manifest_kind(&doc(r#"{"schemaVersion":1}"#)).is_err());
        assert!(manifest_kind(&doc(r#"{"mediaType":"application/x-helm"}"#)).is_err());
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            compression_of("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            None
        );
    }
}
