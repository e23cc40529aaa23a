//! Registry client (oci-client): manifests, configs, blob streams, auth.
//!
//! We fetch manifests raw and parse them ourselves, so every byte is checked against the digest
//! that named it (tag → manifest digest, index entry → platform manifest, manifest → config and
//! layers). Blobs are streamed to a file while hashed; nothing is trusted before its digest
//! matches.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::credentials;
use super::endpoint::Endpoint;
use super::ratelimit;
use super::reference::ImageRef;
use super::text::one_line;
use crate::error::IoContext;
use crate::{Error, Result};

/// Media types of image indexes (multi-platform).
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Media types of single-platform image manifests.
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Image config media types we can run.
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Manifests and configs are small; anything bigger is hostile.
const MAX_DOCUMENT: usize = 8 << 20;
/// How long connecting to a registry (or its CDN) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent mid-answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The whole of the one request that reads a 429's headers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// The platform an index resolves to (the runtime only runs linux/amd64 images).
pub const PLATFORM: (&str, &str) = ("linux", "amd64");

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
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

    /// [`Self::registry_error`], with the reset time a 429 answer carried when there is one.
    async fn explain(&self, e: OciDistributionError) -> Error {
        let reset = match rate_limited_url(&e) {
            Some(url) => self.reset_time(url).await,
            None => None,
        };
        self.registry_error(e, reset.as_deref())
    }

    /// One more request (HEAD, which no registry counts against the limit) to the URL that
    /// answered 429, to read the headers oci-client does not pass on. The registry's own URLs
    /// get a fresh pull token (Docker Hub answers 401, without limits, to anonymous requests);
    /// a CDN's get nothing. `None` when it fails or says no reset time.
    async fn reset_time(&self, url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        // reqwest's defaults are oci-client's: the same TLS roots (system store, or
        // SSL_CERT_FILE / SSL_CERT_DIR), and no `Authorization` kept across a redirect.
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(PROBE_TIMEOUT)
            .build()
            .ok()?;
        let mut request = client.head(url.clone());
        if self.is_registry_url(&url) {
            request = self.authorize(request).await;
        }
        let answer = request.send().await.ok()?;
        ratelimit::describe(answer.headers(), SystemTime::now())
    }

    /// Same scheme, host and port as the registry (never a CDN a blob was redirected to).
    fn is_registry_url(&self, url: &reqwest::Url) -> bool {
        let registry = format!("{}://{}", self.scheme, self.reference.resolve_registry());
        reqwest::Url::parse(&registry).is_ok_and(|r| same_origin(&r, url))
    }

    /// `request` with this pull's credentials: a bearer token when the registry hands one
    /// out, else the configured user and password, else nothing.
    async fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let token = self
            .client
            .auth(&self.reference, &self.auth, RegistryOperation::Pull)
            .await;
        match (token, &self.auth) {
            (Ok(Some(token)), _) => request.bearer_auth(token),
            (_, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            _ => request,
        }
    }

    /// One line for the user: what went wrong talking to the registry; `reset` is when a
    /// rate limit ends, as [`ratelimit::describe`] words it.
    fn registry_error(&self, e: OciDistributionError, reset: Option<&str>) -> Error {
        let r = &self.display;
        let host = &self.host;
        match e {
            OciDistributionError::RequestError(e) if is_certificate_error(&e) => {
                Error::Registry(format!(
                    "{r}: TLS certificate of {host} is not trusted ({}); to trust a private CA, \
                     set SSL_CERT_FILE=/path/to/ca.pem or install it in \
                     /usr/local/share/ca-certificates and run update-ca-certificates",
                    root_cause(&e)
                ))
            }
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                Error::Registry(format!(
                    "{r}: cannot reach registry {host}: {}",
                    root_cause(&e)
                ))
            }
            OciDistributionError::RequestError(e) => {
                Error::Registry(format!("{r}: request to {host} failed: {}", root_cause(&e)))
            }
            OciDistributionError::ImageManifestNotFoundError(_) => {
                Error::Registry(format!("{r}: image or tag not found"))
            }
            OciDistributionError::AuthenticationFailure(why) => Error::Registry(format!(
                "{r}: authentication refused by {host}: {}",
                one_line(&why)
            )),
            OciDistributionError::UnauthorizedError { .. } => Error::Registry(format!(
                "{r}: access denied by {host} (image missing or private)"
            )),
            OciDistributionError::RegistryError { envelope, .. } => {
                Error::Registry(envelope_message(r, host, &envelope, reset))
            }
            OciDistributionError::ServerError { code: 404, .. } => {
                Error::Registry(format!("{r}: image or tag not found"))
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => Error::Registry(format!("{r}: access denied by {host}")),
            OciDistributionError::ServerError {
                code: 429, message, ..
            } => Error::Registry(rate_limited(r, host, &one_line(&message), reset)),
            OciDistributionError::ServerError { code, message, .. } => Error::Registry(format!(
                "{r}: registry {host} answered HTTP {code}: {}",
                one_line(&message)
            )),
            OciDistributionError::DigestError(e) => {
                Error::Image(format!("{r}: digest mismatch: {e}"))
            }
            other => Error::Registry(format!("{r}: {}", one_line(&other.to_string()))),
        }
    }

    fn stream_error(&self, e: std::io::Error) -> Error {
        let text = one_line(&e.to_string());
        if text.to_lowercase().contains("digest") {
            Error::Image(format!(
                "{}: digest mismatch while downloading: {text}",
                self.display
            ))
        } else {
            Error::Registry(format!("{}: download interrupted: {text}", self.display))
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Index,
    Manifest,
}

fn manifest_kind(d: &Document) -> Result<Kind> {
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
fn pick_platform(index: &Document) -> Result<String> {
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

fn compression_of(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

fn check_digest_syntax(d: &str) -> Result<()> {
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

/// A TLS handshake refused the server's certificate (unknown CA, wrong name, expired).
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().to_lowercase();
        if text.contains("certificate") || text.contains("unknownissuer") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// One line for an OCI error envelope, by its error codes (compared as the enum: the Hub's
/// `TOOMANYREQUESTS` is `Toomanyrequests`, whose Debug text once failed a string comparison).
fn envelope_message(r: &str, host: &str, envelope: &OciEnvelope, reset: Option<&str>) -> String {
    let has =
        |wanted: &dyn Fn(&OciErrorCode) -> bool| envelope.errors.iter().any(|e| wanted(&e.code));
    let msg: Vec<&str> = envelope.errors.iter().map(|e| e.message.as_str()).collect();
    let msg = msg.join("; ");
    if has(&|c| matches!(c, OciErrorCode::Toomanyrequests)) {
        rate_limited(r, host, &msg, reset)
    } else if has(&|c| {
        matches!(
            c,
            OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound
                | OciErrorCode::BlobUnknown
        )
    }) {
        format!("{r}: image or tag not found ({msg})")
    } else if has(&|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
        format!("{r}: access denied by {host}: {msg}")
    } else {
        format!("{r}: registry {host} refused: {msg}")
    }
}

/// HTTP 429: the registry's pull rate limit, and when it resets if the registry said.
fn rate_limited(r: &str, host: &str, msg: &str, reset: Option<&str>) -> String {
    let why = if msg.is_empty() {
        String::new()
    } else {
        format!(" ({msg})")
    };
    let when = reset.map(|w| format!("; {w}")).unwrap_or_default();
    format!(
        "{r}: rate limited by {host}{why}{when}; retry later, log in (docker config.json) or \
         use a registry mirror (--registry-mirror)"
    )
}

/// The URL that answered 429 (a bare status, or the Hub's `TOOMANYREQUESTS` envelope).
fn rate_limited_url(e: &OciDistributionError) -> Option<&str> {
    match e {
        OciDistributionError::ServerError { code: 429, url, .. } => Some(url),
        OciDistributionError::RegistryError { envelope, url }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Toomanyrequests)) =>
        {
            Some(url)
        }
        _ => None,
    }
}

/// Scheme, host and port alike (as oci-client decides where credentials may go).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Document {
        serde_json::from_str(json).unwrap()
    }

    fn envelope(code: &str, message: &str) -> OciEnvelope {
        serde_json::from_value(serde_json::json!({"errors": [{"code": code, "message": message}]}))
            .unwrap()
    }

    /// The error bodies registries send, as the distribution spec spells the codes.
    #[test]
    fn envelope_codes_give_their_own_line() {
        let line =
            |code: &str| envelope_message("img", "reg.example", &envelope(code, "why"), None);
        assert!(
            line("TOOMANYREQUESTS").contains("rate limited by reg.example (why)"),
            "{}",
            line("TOOMANYREQUESTS")
        );
        let with_reset = envelope_message(
            "img",
            "reg.example",
            &envelope("TOOMANYREQUESTS", "why"),
            Some("resets in 3 s (at X)"),
        );
        assert!(
            with_reset.contains("rate limited by reg.example (why); resets in 3 s (at X); retry"),
            "{with_reset}"
        );
        for code in [
            "MANIFEST_UNKNOWN",
            "NAME_UNKNOWN",
            "NOT_FOUND",
            "BLOB_UNKNOWN",
        ] {
            assert!(
                line(code).contains("image or tag not found (why)"),
                "{code}"
            );
        }
        for code in ["UNAUTHORIZED", "DENIED"] {
            assert!(
                line(code).contains("access denied by reg.example: why"),
                "{code}"
            );
        }
        assert!(line("SOMETHING_ELSE").contains("registry reg.example refused: why"));
    }

    /// Only a 429 (bare, or the Hub's envelope) leads to the extra request, at its own URL.
    #[test]
    fn rate_limited_urls() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "https://cdn.example/b?sig=1".into(),
            message: String::new(),
        };
        assert_eq!(
            rate_limited_url(&server(429)),
            Some("https://cdn.example/b?sig=1")
        );
        assert_eq!(rate_limited_url(&server(503)), None);
        let registry = |code: &str| OciDistributionError::RegistryError {
            envelope: envelope(code, "why"),
            url: "https://reg.example/v2/a/manifests/1".into(),
        };
        assert_eq!(
            rate_limited_url(&registry("TOOMANYREQUESTS")),
            Some("https://reg.example/v2/a/manifests/1")
        );
        assert_eq!(rate_limited_url(&registry("DENIED")), None);
    }

    /// Credentials go to the registry's own origin only, never to a CDN or over plain HTTP.
    #[test]
    fn origins() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let registry = url("https://reg.example");
        assert!(same_origin(&registry, &url("https://reg.example:443/v2/x")));
        assert!(!same_origin(&registry, &url("http://reg.example/v2/x")));
        assert!(!same_origin(
            &registry,
            &url("https://reg.example:5000/v2/x")
        ));
        assert!(!same_origin(
            &registry,
            &url("https://cdn.reg.example/v2/x")
        ));
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
