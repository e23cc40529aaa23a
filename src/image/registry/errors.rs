//! What went wrong talking to a registry, as one line for the user: TLS trust, reachability,
//! access, "not found", and a rate limit with the time it resets — for which one more request
//! reads the headers of the answer that said 429.

use std::time::{Duration, SystemTime};

use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::image::ratelimit;
use crate::image::text::one_line;
use crate::Error;

use super::{Registry, CONNECT_TIMEOUT};

/// The whole of the one request that reads a 429's headers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

impl Registry {
    /// [`Self::registry_error`], with the reset time a 429 answer carried when there is one.
    pub(super) async fn explain(&self, e: OciDistributionError) -> Error {
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

    pub(super) fn stream_error(&self, e: std::io::Error) -> Error {
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
}
