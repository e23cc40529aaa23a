//! Registry client: manifests, configs, blob streams, auth — over reqwest, with every wait
//! bounded and every body capped (a hostile or failing registry can hold a pull neither forever
//! nor in memory), and blob downloads retried where that helps.
//!
//! We fetch manifests raw and parse them ourselves, so every byte is checked against the digest
//! that named it (tag → manifest digest, index entry → platform manifest, manifest → config and
//! layers). Blobs are streamed to a file while hashed, never read past their descriptor's size;
//! nothing is trusted before its digest matches.
//!
//! The token flow is in [`auth`]; the bounded requests in [`transport`], their limits in
//! [`limits`]; blobs in [`blob`], tried again as [`retry`] says; what a manifest says in [`manifest`];
//! what went wrong, in one line for the user, in [`errors`].

mod auth;
mod blob;
mod errors;
pub mod limits;
mod manifest;
mod retry;
mod transport;

use reqwest::header::{ACCEPT, RANGE};
use reqwest::Response;
use sha2::{Digest, Sha256};

use super::credentials;
use super::endpoint::Endpoint;
use super::reference::ImageRef;
use crate::{Error, Result};
use auth::Auth;
use errors::Object;
use limits::{Limits, MAX_MANIFEST};
use manifest::{
    check_digest_syntax, compression_of, manifest_kind, pick_platform, Document, Kind,
    CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES,
};
pub use manifest::{Compression, PLATFORM};
use transport::{Clock, Failure};

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
    http: reqwest::Client,
    limits: Limits,
    /// `scheme://host[:port]` of the registry API.
    base: String,
    repository: String,
    tag: String,
    auth: Auth,
    display: String,
    /// The host as the user knows it, for messages.
    host: String,
}

impl Registry {
    /// `r`'s repository at `endpoint`: HTTPS verified against the system store (or
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`), plain HTTP only where `endpoint` says so; credentials
    /// from docker's `config.json` (or its credential helper) for that host.
    pub fn new(r: &ImageRef, endpoint: &Endpoint, limits: Limits) -> Result<Registry> {
        let scheme = if endpoint.plain_http { "http" } else { "https" };
        Ok(Registry {
            http: transport::client(&limits)?,
            limits,
            base: format!("{scheme}://{}", api_host(&endpoint.host)),
            repository: r.repository.clone(),
            tag: r.tag.clone().unwrap_or_else(|| "latest".into()),
            auth: Auth::new(
                credentials::for_host(&endpoint.host)
                    .map_err(|e| Error::Registry(format!("{}: {e}", r.canonical())))?,
            ),
            display: r.canonical(),
            host: endpoint.display(),
        })
    }

    /// Ask for a token (when the registry hands them out) within `clock`.
    async fn authorize(&self, clock: &Clock) -> Result<()> {
        self.auth
            .authorize(&self.http, &self.base, &self.repository, clock)
            .await
            .map_err(|f| self.failure_error(f, &Object::Token, 0))
    }

    /// GET `url` with the current authorization; when the registry refuses it (the token
    /// expired mid-pull), ask for a new one (within the request timeout) and try once more.
    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        from: Option<u64>,
        clock: &Clock,
    ) -> std::result::Result<Response, Failure> {
        let request = || {
            let mut request = self.auth.current().apply(self.http.get(url));
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(from) = from {
                request = request.header(RANGE, format!("bytes={from}-"));
            }
            request
        };
        let renew = || async {
            let token_clock = clock.for_token(&self.limits);
            self.auth
                .authorize(&self.http, &self.base, &self.repository, &token_clock)
                .await
        };
        if self.auth.expired() {
            renew().await?;
        }
        match transport::send(clock, request()).await {
            Err(Failure::Status { code: 401, .. }) => {
                renew().await?;
                transport::send(clock, request()).await
            }
            other => other,
        }
    }

    /// Reference → manifest digest, the linux/amd64 manifest, its config and layers, all
    /// verified; the token and every manifest within the request timeout in all.
    pub async fn resolve(&self, pinned: Option<&str>) -> Result<Resolved> {
        let clock = Clock::deadline(&self.limits, self.limits.request);
        self.authorize(&clock).await?;
        let (top, top_digest) = self
            .manifest(pinned.unwrap_or(self.tag.as_str()), pinned, &clock)
            .await?;
        let (manifest, manifest_digest) = match manifest_kind(&top)? {
            Kind::Index => {
                let entry = pick_platform(&top)?;
                drop(top);
                let (m, d) = self.manifest(&entry, Some(&entry), &clock).await?;
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

    /// Fetch one manifest by tag or digest (at most [`MAX_MANIFEST`] bytes, refused as they
    /// stream in); verify it against `expect` when given.
    async fn manifest(
        &self,
        tag_or_digest: &str,
        expect: Option<&str>,
        clock: &Clock,
    ) -> Result<(Document, String)> {
        let what = Object::Manifest(tag_or_digest.to_owned());
        let url = format!(
            "{}/v2/{}/manifests/{tag_or_digest}",
            self.base, self.repository
        );
        let accepted = INDEX_TYPES
            .iter()
            .chain(MANIFEST_TYPES.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let body = match self.get(&url, Some(&accepted), None, clock).await {
            Ok(answer) => transport::read_capped(clock, answer, MAX_MANIFEST).await,
            Err(f) => Err(f),
        }
        .map_err(|f| self.failure_error(f, &what, 0))?;
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
}

/// Docker Hub's API lives at `index.docker.io` (a reference says `docker.io`).
fn api_host(host: &str) -> &str {
    if host == super::reference::DOCKER_HUB {
        "index.docker.io"
    } else {
        host
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
