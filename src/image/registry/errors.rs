//! What went wrong talking to a registry, as one line for the user naming the registry, the
//! object (token, manifest, config, layer) and what happened: TLS trust, reachability, a stall
//! or a deadline, a size cap, access, "not found", and a rate limit with the time it resets
//! (read from the very answer that said 429).

use std::fmt;
use std::time::SystemTime;

use serde::Deserialize;

use super::limits::seconds;
use super::transport::Failure;
use super::Registry;
use crate::image::ratelimit;
use crate::image::text::one_line;
use crate::Error;

/// What a request was fetching, for messages.
#[derive(Debug, Clone)]
pub(super) enum Object {
    Token,
    Manifest(String),
    Config(String),
    /// Digest, position (from 1) and count.
    Layer(String, usize, usize),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Token => write!(f, "pull token"),
            Object::Manifest(r) => write!(f, "manifest {}", short(r)),
            Object::Config(d) => write!(f, "config {}", short(d)),
            Object::Layer(d, i, n) => write!(f, "layer {i}/{n} {}", short(d)),
        }
    }
}

/// `sha256:` + 12 hex (tags as they are).
fn short(r: &str) -> String {
    match r.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.chars().take(12).collect::<String>()),
        None => r.to_owned(),
    }
}

/// An OCI error body (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`).
#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Registry {
    /// One line for the user: `failure` while fetching `what`, after `retries` retries.
    pub(super) fn failure_error(&self, failure: Failure, what: &Object, retries: u32) -> Error {
        let r = &self.display;
        let host = &self.host;
        let after = match retries {
            0 => String::new(),
            n => format!(" (gave up after {} tries)", n + 1),
        };
        match failure {
            Failure::Request(e) if is_certificate_error(&e) => Error::Registry(format!(
                "{r}: TLS certificate of {host} is not trusted ({}); to trust a private CA, set \
                 SSL_CERT_FILE=/path/to/ca.pem or install it in \
                 /usr/local/share/ca-certificates and run update-ca-certificates",
                root_cause(&e)
            )),
            Failure::Request(e) if e.is_connect() => Error::Registry(format!(
                "{r}: cannot reach registry {host} for the {what}: {}{after}",
                root_cause(&e)
            )),
            Failure::Request(e) => Error::Registry(format!(
                "{r}: request to {host} for the {what} failed: {}{after}",
                root_cause(&e)
            )),
            Failure::Stalled(d) => Error::Registry(format!(
                "{r}: registry {host} sent nothing for {} while sending the {what}{after}",
                seconds(d)
            )),
            Failure::Deadline(d) => Error::Registry(format!(
                "{r}: registry {host} did not finish sending the {what} within {}{after}",
                seconds(d)
            )),
            Failure::Interrupted(why) => Error::Registry(format!(
                "{r}: download of the {what} from {host} interrupted: {why}{after}"
            )),
            Failure::TooLarge(cap) => Error::Image(format!(
                "{r}: the {what} from {host} is larger than {} MiB; refused, nothing stored",
                cap >> 20
            )),
            Failure::Status {
                code,
                headers,
                body,
            } => Error::Registry(status_message(r, host, what, code, &headers, &body, &after)),
            Failure::Final(e) => e,
        }
    }
}

/// The line for a failure status: by the error codes of its body when it has an OCI error
/// envelope, else by the status itself.
fn status_message(
    r: &str,
    host: &str,
    what: &Object,
    code: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    after: &str,
) -> String {
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let has = |codes: &[&str]| {
        envelope
            .errors
            .iter()
            .any(|e| codes.contains(&e.code.as_str()))
    };
    let msg = envelope
        .errors
        .iter()
        .map(|e| one_line(&e.message))
        .collect::<Vec<_>>()
        .join("; ");
    let msg = if msg.is_empty() && envelope.errors.is_empty() {
        one_line(&String::from_utf8_lossy(body))
    } else {
        msg
    };
    let why = if msg.is_empty() {
        String::new()
    } else {
        format!(" ({msg})")
    };
    if code == 429 || has(&["TOOMANYREQUESTS"]) {
        let reset = ratelimit::describe(headers, SystemTime::now());
        return rate_limited(r, host, &msg, reset.as_deref());
    }
    if matches!(what, Object::Token) {
        return format!("{r}: authentication refused by {host}: HTTP {code}{why}");
    }
    if has(&[
        "MANIFEST_UNKNOWN",
        "NAME_UNKNOWN",
        "NOT_FOUND",
        "BLOB_UNKNOWN",
    ]) || code == 404
    {
        return format!("{r}: image or tag not found ({what}){why}");
    }
    match code {
        401 => format!("{r}: access denied by {host} (image missing or private){why}"),
        403 => format!("{r}: access denied by {host}{why}"),
        _ if has(&["UNAUTHORIZED", "DENIED"]) => format!("{r}: access denied by {host}{why}"),
        _ => format!("{r}: registry {host} answered HTTP {code} for the {what}{why}{after}"),
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

/// A TLS handshake refused the server's certificate (unknown CA, wrong name, expired).
pub(super) fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
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

/// The innermost cause, as one line.
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn line(code: u16, what: Object, body: &str, headers: &[(&'static str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        status_message("img", "reg.example", &what, code, &h, body.as_bytes(), "")
    }

    fn envelope(code: &str) -> String {
        serde_json::json!({"errors": [{"code": code, "message": "why"}]}).to_string()
    }

    fn manifest() -> Object {
        Object::Manifest("latest".into())
    }

    /// The error bodies registries send, as the distribution spec spells the codes.
    #[test]
    fn envelope_codes_give_their_own_line() {
        let l = line(429, manifest(), &envelope("TOOMANYREQUESTS"), &[]);
        assert!(
            l.contains("rate limited by reg.example (why); retry"),
            "{l}"
        );
        let l = line(
            503,
            manifest(),
            &envelope("TOOMANYREQUESTS"),
            &[("retry-after", "3")],
        );
        assert!(l.contains("(why); resets in 3 s (at "), "{l}");
        for code in [
            "MANIFEST_UNKNOWN",
            "NAME_UNKNOWN",
            "NOT_FOUND",
            "BLOB_UNKNOWN",
        ] {
            let l = line(400, manifest(), &envelope(code), &[]);
            assert!(
                l.contains("image or tag not found (manifest latest) (why)"),
                "{l}"
            );
        }
        for code in ["UNAUTHORIZED", "DENIED"] {
            let l = line(400, manifest(), &envelope(code), &[]);
            assert!(l.contains("access denied by reg.example (why)"), "{l}");
        }
        let l = line(400, manifest(), &envelope("SOMETHING_ELSE"), &[]);
        assert!(
            l.contains("answered HTTP 400 for the manifest latest (why)"),
            "{l}"
        );
    }

    #[test]
    fn bare_statuses_name_the_object() {
        let layer = Object::Layer(format!("sha256:{}", "ab".repeat(32)), 2, 5);
        let l = line(502, layer, "<html>bad\ngateway</html>", &[]);
        assert!(
            l.contains("HTTP 502 for the layer 2/5 sha256:abababababab (<html>bad gateway</html>)"),
            "{l}"
        );
        let l = line(401, Object::Token, "no", &[]);
        assert!(
            l.contains("authentication refused by reg.example: HTTP 401 (no)"),
            "{l}"
        );
        assert!(line(404, manifest(), "", &[]).contains("image or tag not found"));
        assert!(line(401, manifest(), "", &[]).contains("(image missing or private)"));
    }
}
