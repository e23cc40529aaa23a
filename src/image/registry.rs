//! Registry client (oci-client): manifests, configs, blob streams, auth.
//!
//! We fetch manifests raw and parse them ourselves, so every byte is checked against the digest
//! that named it (tag → manifest digest, index entry → platform manifest, manifest → config and
//! layers). Blobs are streamed to a file while hashed; nothing is trusted before its digest
//! matches.
//!
//! What a manifest says is read in [`manifest`]; what went wrong, in one line for the user, is
//! worded in [`errors`] (which also asks a rate-limited registry when to come back).

mod errors;
mod manifest;

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use super::credentials;
use super::endpoint::Endpoint;
use super::reference::ImageRef;
use crate::error::IoContext;
use crate::{Error, Result};
use manifest::{
    check_digest_syntax, compression_of, manifest_kind, pick_platform, Document, Kind,
    CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES,
};
pub use manifest::{Compression, PLATFORM};

/// Manifests and configs are small; anything bigger is hostile.
const MAX_DOCUMENT: usize = 8 << 20;
/// How long connecting to a registry (or its CDN) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent mid-answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One layer to fetch: its blob descriptor and how to decompress it.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub digest: String,
    pub size: u64,
    pub compression: Compression,
}

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Digest of what the reference names (the index when there is one): the store's identity.
    pub digest: String,
    /// Digest of the linux/amd64 image manifest.
    pub manifest_digest: String,
    pub config_digest: String,
    pub config_size: u64,
    pub layers: Vec<LayerRef>,
}

/// A connection to one repository of one registry (or of a mirror standing in for it).
pub struct Registry {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
    display: String,
    /// The host as the user knows it, for messages.
    host: String,
    /// `http` or `https`: how the registry itself is spoken to.
    scheme: &'static str,
}

impl Registry {
    /// `r`'s repository at `endpoint`: HTTPS verified against the system store (or
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`), plain HTTP only where `endpoint` says so; credentials
    /// from docker's `config.json` (or its credential helper) for that host.
    pub fn new(r: &ImageRef, endpoint: &Endpoint) -> Result<Registry> {
        let reference = Reference::with_tag(
            endpoint.host.clone(),
            r.repository.clone(),
            r.tag.clone().unwrap_or_else(|| "latest".into()),
        );
        let protocol = if endpoint.plain_http {
            ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            max_concurrent_download: 1,
            ..Default::default()
        };
        Ok(Registry {
            client: Client::new(config),
            reference,
            auth: credentials::for_host(&endpoint.host)
                .map_err(|e| Error::Registry(format!("{}: {e}", r.canonical())))?,
            display: r.canonical(),
            host: endpoint.display(),
            scheme: if endpoint.plain_http { "http" } else { "https" },
        })
    }

    /// Run a registry call; when the registry refuses our token (it expired mid-pull), ask
    /// the challenge's realm for a new one and try once more.
    async fn renewing<T, F, Fut>(&self, call: F) -> std::result::Result<T, OciDistributionError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        match call().await {
            Err(OciDistributionError::UnauthorizedError { .. }) => {
                self.client
                    .auth(&self.reference, &self.auth, RegistryOperation::Pull)
                    .await?;
                call().await
            }
            other => other,
        }
    }

    /// Reference → manifest digest, the linux/amd64 manifest, its config and layers, all verified.
    pub async fn resolve(&self, pinned: Option<&str>) -> Result<Resolved> {
        let (top, top_digest) = self
            .manifest(
                pinned.unwrap_or_else(|| self.reference.tag().unwrap_or("latest")),
                pinned,
            )
            .await?;
        let (manifest, manifest_digest) = match manifest_kind(&top)? {
            Kind::Index => {
                let entry = pick_platform(&top)?;
                let (m, d) = self.manifest(&entry, Some(&entry)).await?;
                if manifest_kind(&m)? != Kind::Manifest {
                    return Err(Error::Image(format!(
                        "{}: index entry {entry} is not an image manifest",
                        self.display
                    )));
                }
                (m, d)
            }
            Kind::Manifest => (top, top_digest.clone()),
        };
        self.describe(manifest, top_digest, manifest_digest)
    }

    fn describe(&self, m: Document, digest: String, manifest_digest: String) -> Result<Resolved> {
        let config = m
            .config
            .ok_or_else(|| Error::Image(format!("{}: manifest has no config", self.display)))?;
        if !CONFIG_TYPES.contains(&config.media_type.as_str()) {
            return Err(Error::Image(format!(
                "{}: unsupported media type {} (not a container image)",
                self.display, config.media_type
            )));
        }
        check_digest_syntax(&config.digest)?;
        let mut layers = Vec::new();
        for l in m.layers.unwrap_or_default() {
            check_digest_syntax(&l.digest)?;
            layers.push(LayerRef {
                compression: compression_of(&l.media_type).ok_or_else(|| {
                    Error::Image(format!(
                        "{}: unsupported layer media type {}",
                        self.display, l.media_type
                    ))
                })?,
                digest: l.digest,
                size: l.size,
            });
        }
        Ok(Resolved {
            digest,
            manifest_digest,
            config_digest: config.digest,
            config_size: config.size,
            layers,
        })
    }

    /// Fetch one manifest by tag or digest; verify it against `expect` when given.
    async fn manifest(
        &self,
        tag_or_digest: &str,
        expect: Option<&str>,
    ) -> Result<(Document, String)> {
        let reference = if tag_or_digest.starts_with("sha256:") {
            self.reference.clone_with_digest(tag_or_digest.to_owned())
        } else {
            self.reference.clone()
        };
        let accepted: Vec<&str> = INDEX_TYPES
            .iter()
            .chain(MANIFEST_TYPES.iter())
            .copied()
            .collect();
        let body = self
            .renewing(|| {
                self.client
                    .pull_manifest_raw(&reference, &self.auth, &accepted)
            })
            .await;
        let (body, _) = match body {
            Ok(answer) => answer,
            Err(e) => return Err(self.explain(e).await),
        };
        if body.len() > MAX_DOCUMENT {
            return Err(Error::Image(format!(
                "{}: manifest too large",
                self.display
            )));
        }
        let digest = sha256_digest(&body);
        if let Some(want) = expect {
            if want != digest {
                return Err(digest_mismatch(&self.display, "manifest", want, &digest));
            }
        }
        let doc: Document = serde_json::from_slice(&body)
            .map_err(|e| Error::Image(format!("{}: bad manifest: {e}", self.display)))?;
        Ok((doc, digest))
    }

    /// The image config, verified against its digest and size.
    pub async fn config(&self, resolved: &Resolved) -> Result<Vec<u8>> {
        if resolved.config_size > MAX_DOCUMENT as u64 {
            return Err(Error::Image(format!(
                "{}: image config too large",
                self.display
            )));
        }
        let desc = descriptor(&resolved.config_digest, resolved.config_size);
        let mut stream = self.blob_stream(&desc).await?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.stream_error(e))?;
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(Error::Image(format!(
                    "{}: image config too large",
                    self.display
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let got = sha256_digest(&body);
        if got != resolved.config_digest {
            return Err(digest_mismatch(
                &self.display,
                "config",
                &resolved.config_digest,
                &got,
            ));
        }
        Ok(body)
    }

    /// Stream a layer blob into `dest` (never whole in memory), hashing as it goes; fails
    /// unless size and digest match the manifest. `progress` gets the bytes written so far.
    pub async fn download(
        &self,
        layer: &LayerRef,
        dest: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let desc = descriptor(&layer.digest, layer.size);
        let mut stream = self.blob_stream(&desc).await?;
        let file = std::fs::File::create(dest).ctx(|| format!("create {}", dest.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.stream_error(e))?;
            written += chunk.len() as u64;
            if written > layer.size {
                return Err(digest_mismatch(
                    &self.display,
                    "layer",
                    &layer.digest,
                    "a longer blob",
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .ctx(|| format!("write {}", dest.display()))?;
            progress(written);
        }
        out.flush().ctx(|| format!("write {}", dest.display()))?;
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != layer.digest || written != layer.size {
            return Err(digest_mismatch(&self.display, "layer", &layer.digest, &got));
        }
        Ok(())
    }

    /// A blob's byte stream (the registry may redirect it to a CDN).
    async fn blob_stream(&self, desc: &OciDescriptor) -> Result<oci_client::client::SizedStream> {
        match self
            .renewing(|| self.client.pull_blob_stream(&self.reference, desc))
            .await
        {
            Ok(stream) => Ok(stream),
            Err(e) => Err(self.explain(e).await),
        }
    }
}

fn descriptor(digest: &str, size: u64) -> OciDescriptor {
    OciDescriptor {
        digest: digest.to_owned(),
        size: size as i64,
        ..Default::default()
    }
}

/// `sha256:<hex>` of a byte string.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn digest_mismatch(r: &str, what: &str, want: &str, got: &str) -> Error {
    Error::Image(format!(
        "{r}: digest mismatch for {what} {want} (got {got}); nothing stored"
    ))
}
