//! Registry credentials from docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so private registries work as they do with docker: `auths` entries
//! keyed by host (with or without `https://`), holding base64 `user:password` in `auth` (or
//! `username`/`password`). Anonymous when nothing matches.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::endpoint::is_hub;

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials for `host` (`host[:port]`), anonymous when none are configured.
pub fn for_host(host: &str) -> RegistryAuth {
    let Some(config) = load() else {
        return RegistryAuth::Anonymous;
    };
    lookup(&config, host).unwrap_or(RegistryAuth::Anonymous)
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// A missing or unreadable file means no credentials; a malformed one is ignored with a note.
fn load() -> Option<DockerConfig> {
    let path = config_path()?;
    let text = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            crate::note!("ignoring {}: {e}", path.display());
            None
        }
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:port/` → `host:port`.
fn key_host(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.split('/').next().unwrap_or_default()
}

fn lookup(config: &DockerConfig, host: &str) -> Option<RegistryAuth> {
    let matches = |key: &str| {
        let k = key_host(key);
        k == host || (is_hub(k) && is_hub(host))
    };
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| matches(k))
        .map(|(_, e)| e)?;
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Some(RegistryAuth::Basic(u.clone(), p.clone()));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    fn basic(a: Option<RegistryAuth>) -> Option<(String, String)> {
        match a {
            Some(RegistryAuth::Basic(u, p)) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn auths_by_host() {
        // "bob:s3cr:et" and "hub:pw"
        let c = config(
            r#"{"auths":{"https://reg.example:5000/":{"auth":"Ym9iOnMzY3I6ZXQ="},
               "https://index.docker.io/v1/":{"auth":"aHViOnB3"},
               "other.example":{"username":"u","password":"p"}}}"#,
        );
        assert_eq!(
            basic(lookup(&c, "reg.example:5000")),
            Some(("bob".into(), "s3cr:et".into()))
        );
        assert_eq!(
            basic(lookup(&c, "docker.io")),
            Some(("hub".into(), "pw".into()))
        );
        assert_eq!(
            basic(lookup(&c, "other.example")),
            Some(("u".into(), "p".into()))
        );
        assert!(lookup(&c, "reg.example").is_none());
        assert!(lookup(&config(r#"{"auths":{"x":{"auth":"%%%"}}}"#), "x").is_none());
        assert!(lookup(&config("{}"), "x").is_none());
    }
}
