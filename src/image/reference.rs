//! Docker-style image references and their store names.
//!
//! A reference is normalised the way docker does it: `alpine` is
//! `docker.io/library/alpine:latest`, `user/app` is `docker.io/user/app:latest`, and a first
//! component containing `.` or `:` (or equal to `localhost`) names a registry.
//!
//! Store names (`<root>/<name>`): a Docker Hub official image at tag `latest` keeps its bare name
//! (`alpine`); every other reference becomes `<slug>-<hash>`, where `<slug>` is the normalised
//! reference without `docker.io/` and `library/`, every character outside `[A-Za-z0-9._-]`
//! replaced by `_`, cut to 100 characters, and `<hash>` is the first 12 hex digits of the
//! SHA-256 of the full normalised reference (so two references never share a name).
//! Example: `127.0.0.1:5000/demo:v1` → `127.0.0.1_5000_demo_v1-<12 hex>`.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Docker Hub's registry name in normalised references.
pub const DOCKER_HUB: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_SLUG_LEN: usize = 100;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port), `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, `library/alpine` for official images.
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse and normalise a docker reference; a malformed one is a usage error (exit 125).
    pub fn parse(input: &str) -> Result<ImageRef> {
        parse(input)
            .map_err(|why| Error::Usage(format!("invalid image reference {input:?}: {why}")))
    }

    /// The fully qualified form (`docker.io/library/alpine:latest`), stored in `image.json`.
    pub fn canonical(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }

    /// True for `docker.io/library/<name>:latest`, the only references stored under a bare name.
    fn is_official_latest(&self) -> bool {
        self.registry == DOCKER_HUB
            && self.repository.starts_with("library/")
            && self.tag.as_deref() == Some(DEFAULT_TAG)
            && self.digest.is_none()
    }

    /// True when the registry is on loopback, spoken to over plain HTTP as docker does.
    pub fn is_loopback_registry(&self) -> bool {
        let host = host_of(&self.registry);
        host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// The store directory name for a reference (see the module documentation for the mapping).
pub fn store_name(reference: &str) -> Result<String> {
    Ok(name_for(&ImageRef::parse(reference)?))
}

/// [`store_name`] for an already parsed reference.
pub fn name_for(r: &ImageRef) -> String {
    if r.is_official_latest() {
        return r.repository["library/".len()..].to_owned();
    }
    let canonical = r.canonical();
    let short = canonical
        .strip_prefix("docker.io/library/")
        .or_else(|| canonical.strip_prefix("docker.io/"))
        .unwrap_or(&canonical);
    let mut slug: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_SLUG_LEN)
        .collect();
    if slug.starts_with('.') {
        slug.insert(0, '_');
    }
    let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
    format!("{slug}-{}", &hash[..12])
}

/// The host part of `host[:port]` (brackets kept for IPv6).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |i| &registry[..=i]);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn parse(input: &str) -> std::result::Result<ImageRef, String> {
    if input.is_empty() {
        return Err("empty".into());
    }
    if input.len() > MAX_NAME_LEN + 200
        || input.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("contains whitespace or is too long".into());
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (input, None),
    };
    let (name, tag) = split_tag(rest);
    let tag = tag.map(parse_tag).transpose()?;
    let (registry, repository) = split_registry(name)?;
    validate_repository(&repository)?;
    if repository.len() > MAX_NAME_LEN {
        return Err("repository name longer than 255 characters".into());
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_owned()),
        _ => tag,
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `name:tag` → (`name`, `tag`); a `:` before the last `/` belongs to a registry port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

fn split_registry(name: &str) -> std::result::Result<(String, String), String> {
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    match rest {
        Some(rest) if first.contains(['.', ':']) || first == "localhost" => {
            validate_registry(first)?;
            Ok((first.to_owned(), rest.to_owned()))
        }
        _ if !name.contains('/') => Ok((DOCKER_HUB.to_owned(), format!("library/{name}"))),
        _ => Ok((DOCKER_HUB.to_owned(), name.to_owned())),
    }
}

fn validate_registry(host: &str) -> std::result::Result<(), String> {
    let (h, port) = if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        let after = &host[end + 2..];
        let port = after.strip_prefix(':');
        if !after.is_empty() && port.is_none() {
            return Err(format!("bad registry {host:?}"));
        }
        (&host[1..=end], port)
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    let host_ok = !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !h.starts_with(['.', '-']);
    let port_ok = port.map_or(true, |p| {
        !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok()
    });
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("bad registry {host:?}"))
    }
}

/// Docker's path-component grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_repository(repo: &str) -> std::result::Result<(), String> {
    for component in repo.split('/') {
        if !valid_component(component) {
            return Err(format!(
                "bad repository component {component:?} (lowercase letters, digits, and . _ - between them)"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn parse_tag(tag: &str) -> std::result::Result<String, String> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(tag.to_owned())
    } else {
        Err(format!("bad tag {tag:?}"))
    }
}

fn parse_digest(digest: &str) -> std::result::Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x)) =>
        {
            Ok(digest.to_owned())
        }
        _ => Err(format!(
            "bad digest {digest:?} (want sha256:<64 lowercase hex>)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn canon(s: &str) -> String {
        ImageRef::parse(s).expect(s).canonical()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(canon("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(canon("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(canon("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            canon("docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(canon("localhost/app"), "localhost/app:latest");
        assert_eq!(canon("localhost:5000/a/b:t1"), "localhost:5000/a/b:t1");
        assert_eq!(
            canon("registry.example:5000/a/b:tag"),
            "registry.example:5000/a/b:tag"
        );
        assert_eq!(canon("127.0.0.1:5000/demo"), "127.0.0.1:5000/demo:latest");
        assert_eq!(canon("[::1]:5000/demo"), "[::1]:5000/demo:latest");
        assert_eq!(
            canon(&format!("alpine@{D}")),
            format!("docker.io/library/alpine@{D}")
        );
        assert_eq!(
            canon(&format!("alpine:3@{D}")),
            format!("docker.io/library/alpine:3@{D}")
        );
        assert_eq!(
            canon("a__b/c-d---e.f:V_1.2-x"),
            "docker.io/a__b/c-d---e.f:V_1.2-x"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            ":tag",
            "alpine@sha256:abc",
            "alpine@md5:00",
            "a//b",
            "/alpine",
            "alpine/",
            "a b",
            "a..b",
            "-a",
            "a_",
            "alpine:-x",
            "host:99999/a",
            "host:/a",
            "a:b:c",
            "..",
            ".",
            "a/../b",
            "a@",
            "x.io/UPPER",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }

    #[test]
    fn loopback_detection() {
        for r in [
            "127.0.0.1:5000/a",
            "127.9.8.7/a",
            "localhost/a",
            "localhost:1/a",
            "[::1]:80/a",
        ] {
            assert!(ImageRef::parse(r).unwrap().is_loopback_registry(), "{r}");
        }
        for r in [
            "alpine",
            "128.0.0.1:5000/a",
            "example.com/a",
            "localhostx.io/a",
        ] {
            assert!(!ImageRef::parse(r).unwrap().is_loopback_registry(), "{r}");
        }
    }

    #[test]
    fn official_latest_keeps_bare_name() {
        assert_eq!(store_name("alpine").unwrap(), "alpine");
        assert_eq!(store_name("alpine:latest").unwrap(), "alpine");
        assert_eq!(store_name("docker.io/library/busybox").unwrap(), "busybox");
    }

    #[test]
    fn other_names_are_unique_and_path_safe() {
        let refs = [
            "alpine:3.19".to_owned(),
            "alpine_3.19".to_owned(),
            "user/alpine".to_owned(),
            "user_alpine".to_owned(),
            "127.0.0.1:5000/demo".to_owned(),
            "127.0.0.1:5001/demo".to_owned(),
            "127.0.0.1:5000/demo:v2".to_owned(),
            format!("alpine@{D}"),
            format!("alpine:latest@{D}"),
            format!("x.io/{}:t", vec!["abcdefghij"; 20].join("/")),
        ];
        let names: Vec<String> = refs.iter().map(|r| store_name(r).unwrap()).collect();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for n in &names {
            assert!(
                !n.is_empty() && !n.starts_with('.') && n.len() <= MAX_NAME_LEN,
                "{n}"
            );
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{n}"
            );
        }
        assert!(
            names[4].starts_with("127.0.0.1_5000_demo_latest-"),
            "{}",
            names[4]
        );
        // Same reference, spelled differently → same name.
        assert_eq!(
            store_name("user/alpine").unwrap(),
            store_name("docker.io/user/alpine:latest").unwrap()
        );
    }
}
