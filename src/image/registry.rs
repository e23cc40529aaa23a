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
//! [`limits`]; when a blob is tried again in [`retry`]; what a manifest says in [`manifest`];
//! what went wrong, in one line for the user, in [`errors`].

mod auth;
mod errors;
pub mod limits;
mod manifest;
mod retry;
mod transport;

use std::io::Write;
use std::path::Path;

use reqwest::header::{ACCEPT, CONTENT_RANGE, RANGE};
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::credentials;
use super::endpoint::Endpoint;
use super::reference::ImageRef;
use crate::error::IoContext;
use crate::{Error, Result};
use auth::Auth;
use errors::Object;
use limits::{Limits, MAX_CONFIG, MAX_MANIFEST};
use manifest::{
    check_digest_syntax, compression_of, manifest_kind, pick_platform, Document, Kind,
    CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES,
};
pub use manifest::{Compression, PLATFORM};
use retry::Retry;
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

/// Where a blob download stands: what was received and hashed so far (a retry resumes there).
struct Partial {
    hasher: Sha256,
    received: u64,
}

/// Where a blob's bytes go: a file for layers, memory for the config.
trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Drop what was written: the registry sends the whole blob again.
    fn restart(&mut self) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.clear();
        Ok(())
    }
}

/// A layer blob being written to its staging file.
struct FileSink<'a> {
    out: std::io::BufWriter<std::fs::File>,
    path: &'a Path,
}

impl Sink for FileSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .ctx(|| format!("write {}", self.path.display()))
    }

    fn restart(&mut self) -> Result<()> {
        use std::io::Seek;
        self.out
            .flush()
            .and_then(|()| self.out.get_mut().set_len(0))
            .and_then(|()| self.out.get_mut().rewind())
            .ctx(|| format!("truncate {}", self.path.display()))
    }
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

    /// The image config (at most [`MAX_CONFIG`] bytes), verified against its digest and size.
    pub async fn config(&self, resolved: &Resolved) -> Result<Vec<u8>> {
        let what = Object::Config(resolved.config_digest.clone());
        if resolved.config_size > MAX_CONFIG {
            return Err(self.failure_error(Failure::TooLarge(MAX_CONFIG), &what, 0));
        }
        let mut body = Vec::new();
        self.blob(
            &what,
            &resolved.config_digest,
            resolved.config_size,
            &mut body,
            &mut |_: u64| {},
        )
        .await?;
        Ok(body)
    }

    /// Stream layer `index` (of `count`) into `dest` (never whole in memory), hashing as it
    /// goes; fails unless size and digest match the manifest. `progress` gets the bytes
    /// received so far.
    pub async fn download(
        &self,
        layer: &LayerRef,
        (index, count): (usize, usize),
        dest: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let file = std::fs::File::create(dest).ctx(|| format!("create {}", dest.display()))?;
        let mut sink = FileSink {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            path: dest,
        };
        let what = Object::Layer(layer.digest.clone(), index + 1, count);
        self.blob(&what, &layer.digest, layer.size, &mut sink, &mut progress)
            .await?;
        sink.out.flush().ctx(|| format!("write {}", dest.display()))
    }

    /// Fetch one blob into `sink`, retrying what may pass (see [`retry`]) from the bytes
    /// already received when the registry serves ranges, from the start otherwise; then check
    /// its digest.
    async fn blob(
        &self,
        what: &Object,
        digest: &str,
        size: u64,
        sink: &mut dyn Sink,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut partial = Partial {
            hasher: Sha256::new(),
            received: 0,
        };
        let mut retry = Retry::new(self.limits);
        loop {
            let attempt = self
                .blob_attempt(digest, size, &mut partial, sink, progress, &retry.clock())
                .await;
            let failure = match attempt {
                Ok(()) => break,
                Err(f) => f,
            };
            let Some(wait) = retry.after(&failure) else {
                return Err(self.failure_error(failure, what, retry.done));
            };
            let why = self.failure_error(failure, what, 0).to_string();
            let why = why
                .strip_prefix(&format!("{}: ", self.display))
                .unwrap_or(&why);
            let resume = match partial.received {
                0 => String::new(),
                n => format!(", resuming at byte {n}"),
            };
            crate::note!(
                "{}: {why}; retry {}/{} in {}{resume}",
                self.display,
                retry.done,
                retry::MAX_RETRIES,
                limits::seconds(wait)
            );
            tokio::time::sleep(wait).await;
        }
        let got = format!("sha256:{}", hex::encode(partial.hasher.finalize()));
        if got != digest || partial.received != size {
            let kind = if matches!(what, Object::Config(_)) {
                "config"
            } else {
                "layer"
            };
            return Err(digest_mismatch(&self.display, kind, digest, &got));
        }
        Ok(())
    }

    /// One GET of a blob (a range from what `partial` holds, when it holds something), its
    /// bytes hashed into `partial` and written to `sink`, never past `size`.
    async fn blob_attempt(
        &self,
        digest: &str,
        size: u64,
        partial: &mut Partial,
        sink: &mut dyn Sink,
        progress: &mut dyn FnMut(u64),
        clock: &Clock,
    ) -> std::result::Result<(), Failure> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let from = (partial.received > 0 && partial.received < size).then_some(partial.received);
        let mut answer = self.get(&url, None, from, clock).await?;
        let resumed = from.is_some()
            && answer.status() == StatusCode::PARTIAL_CONTENT
            && range_start(&answer) == from;
        if !resumed && partial.received > 0 {
            // The registry sends the whole blob again (no ranges, or not the one asked).
            if answer.status() == StatusCode::PARTIAL_CONTENT {
                return Err(Failure::Final(Error::Registry(format!(
                    "{}: registry {} answered a range other than the one asked for {digest}",
                    self.display, self.host
                ))));
            }
            sink.restart().map_err(Failure::Final)?;
            *partial = Partial {
                hasher: Sha256::new(),
                received: 0,
            };
        }
        if answer
            .content_length()
            .is_some_and(|n| partial.received + n > size)
        {
            return Err(Failure::Final(longer_blob(&self.display, digest)));
        }
        while let Some(piece) = transport::chunk(clock, &mut answer).await? {
            if partial.received + piece.len() as u64 > size {
                return Err(Failure::Final(longer_blob(&self.display, digest)));
            }
            partial.hasher.update(&piece);
            sink.write(&piece).map_err(Failure::Final)?;
            partial.received += piece.len() as u64;
            progress(partial.received);
        }
        if partial.received < size {
            // The registry ended the body early (a dropped connection can look like this).
            return Err(Failure::Interrupted(format!(
                "the body ended after {} of {size} bytes",
                partial.received
            )));
        }
        Ok(())
    }
}

/// Where a `206` answer's `Content-Range: bytes START-END/SIZE` starts.
fn range_start(answer: &Response) -> Option<u64> {
    let v = answer.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
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

fn longer_blob(r: &str, digest: &str) -> Error {
    digest_mismatch(r, "blob", digest, "a blob longer than its descriptor says")
}
