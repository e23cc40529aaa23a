//! Where a pull goes: the reference's own registry, or registry mirrors standing in for
//! Docker Hub (docker's `registry-mirrors`), and which scheme each host is spoken to over.
//!
//! Plain HTTP is never a fallback: it is used for loopback hosts, hosts listed in
//! `DEVOXX_INSECURE_REGISTRIES`, and mirrors given explicitly as `http://…`.

use super::reference::{ImageRef, DOCKER_HUB};
use crate::{Error, Result};

/// Host names that all mean Docker Hub (credentials and mirror decisions treat them alike).
pub const HUB_ALIASES: [&str; 4] = [
    DOCKER_HUB,
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// One registry host to talk to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as it goes into URLs.
    pub host: String,
    /// Speak plain HTTP to it.
    pub plain_http: bool,
    /// True when this endpoint stands in for Docker Hub.
    pub mirror: bool,
}

impl Endpoint {
    /// The reference's own registry.
    pub fn origin(r: &ImageRef) -> Endpoint {
        Endpoint {
            plain_http: r.is_loopback_registry() || is_insecure(&r.registry),
            host: r.registry.clone(),
            mirror: false,
        }
    }

    /// How the user sees this endpoint in messages.
    pub fn display(&self) -> String {
        if self.mirror {
            let scheme = if self.plain_http { "http" } else { "https" };
            format!("mirror {scheme}://{}", self.host)
        } else if is_hub(&self.host) {
            "Docker Hub".to_owned()
        } else {
            self.host.clone()
        }
    }
}

/// True for every name of Docker Hub.
pub fn is_hub(host: &str) -> bool {
    HUB_ALIASES.contains(&host)
}

/// Parse mirror URLs (`https://host[:port]`, `http://host[:port]`, or a bare `host[:port]`,
/// which means HTTPS unless the host is loopback or listed as insecure).
pub fn parse_mirrors(urls: &[String]) -> Result<Vec<Endpoint>> {
    urls.iter()
        .flat_map(|u| u.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_mirror)
        .collect()
}

fn parse_mirror(url: &str) -> Result<Endpoint> {
    let bad = |why: &str| Error::Usage(format!("invalid registry mirror {url:?}: {why}"));
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) => (Some(s.to_ascii_lowercase()), rest),
        None => (None, url),
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') || host.contains('?') {
        return Err(bad("expected [http[s]://]host[:port] without a path"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(bad("bad host name"));
    }
    let plain_http = match scheme.as_deref() {
        Some("http") => true,
        Some("https") => false,
        None => is_loopback_host(host) || is_insecure(host),
        Some(other) => return Err(bad(&format!("unsupported scheme {other}"))),
    };
    Ok(Endpoint {
        host: host.to_owned(),
        plain_http,
        mirror: true,
    })
}

/// The endpoints to try for `r`, in order: mirrors first for Docker Hub references, then the
/// reference's own registry. Other registries are never mirrored.
pub fn candidates(r: &ImageRef, mirrors: &[Endpoint]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if is_hub(&r.registry) {
        out.extend(mirrors.iter().cloned());
    }
    out.push(Endpoint::origin(r));
    out
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Listed in `DEVOXX_INSECURE_REGISTRIES` (comma-separated `host[:port]`).
pub fn is_insecure(host: &str) -> bool {
    std::env::var("DEVOXX_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .any(|h| !h.is_empty() && h == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(s: &str) -> Vec<Endpoint> {
        parse_mirrors(&[s.to_owned()]).unwrap()
    }

    #[test]
    fn mirror_urls() {
        let m = mirrors("http://10.0.0.5:5000, https://mirror.example/ ,127.0.0.1:5000,cache.lan");
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].host.as_str(), m[0].plain_http),
            ("10.0.0.5:5000", true)
        );
        assert_eq!(
            (m[1].host.as_str(), m[1].plain_http),
            ("mirror.example", false)
        );
        assert_eq!(
            (m[2].host.as_str(), m[2].plain_http),
            ("127.0.0.1:5000", true)
        );
        assert_eq!((m[3].host.as_str(), m[3].plain_http), ("cache.lan", false));
        for bad in ["ftp://x", "http://x/path", "http://u@x", "http://", "a b"] {
            assert!(parse_mirrors(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_hub_references_are_mirrored() {
        let m = mirrors("http://10.0.0.5:5000");
        let hub = ImageRef::parse("alpine").unwrap();
        let c = candidates(&hub, &m);
        assert_eq!(c.len(), 2);
        assert!(c[0].mirror && !c[1].mirror);
        assert_eq!(c[1].host, "docker.io");
        assert!(!c[1].plain_http);
        let other = ImageRef::parse("ghcr.io/a/b:1").unwrap();
        assert_eq!(candidates(&other, &m), vec![Endpoint::origin(&other)]);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("127.3.2.1"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("localhost.example"));
    }
}
