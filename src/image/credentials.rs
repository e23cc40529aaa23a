//! Registry credentials from docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so private registries work as they do with docker: a credential
//! helper (`credHelpers` for the host, else `credsStore`) when one is configured, else `auths`
//! entries keyed by host (with or without `https://`), holding base64 `user:password` in `auth`
//! (or `username`/`password`). Anonymous when nothing matches.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::endpoint::is_hub;
use super::text::one_line;
use crate::{Error, Result};

/// The key docker files Docker Hub's credentials under (`auths`, credential helpers).
const HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// What a helper prints (exit status 1) when it holds nothing for the server: anonymous.
const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name with which a helper hands out an identity token instead of a password.
const TOKEN_USER: &str = "<token>";

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    /// Helper for every registry without its own (`docker-credential-<name>`).
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    /// Helper per registry, keyed like `auths`.
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// A helper's answer to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Credentials for `host` (`host[:port]`), anonymous when none are configured. Fails (as
/// `docker pull` does) when the configured credential helper is missing or fails.
pub fn for_host(host: &str) -> Result<RegistryAuth> {
    let Some(config) = load() else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(helper) = helper_for(&config, host) {
        return from_helper(helper, &server_url(host));
    }
    Ok(lookup(&config, host).unwrap_or(RegistryAuth::Anonymous))
}

/// What docker names the registry to its helpers: the Hub's v1 URL, else `host[:port]`.
fn server_url(host: &str) -> String {
    if is_hub(host) {
        HUB_SERVER_URL.to_owned()
    } else {
        host.to_owned()
    }
}

/// The helper docker would ask for `host`: its own `credHelpers` entry, else `credsStore`.
fn helper_for<'a>(config: &'a DockerConfig, host: &str) -> Option<&'a str> {
    config
        .cred_helpers
        .iter()
        .find(|(k, _)| same_registry(k, host))
        .map(|(_, helper)| helper.as_str())
        .or(config.creds_store.as_deref())
        .filter(|h| !h.is_empty())
}

/// Run `docker-credential-<helper> get` with the server URL on stdin, as docker does.
fn from_helper(helper: &str, server: &str) -> Result<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let fail = |why: String| {
        Error::Registry(format!(
            "credential helper {program} (docker config.json) failed for {server}: {why}"
        ))
    };
    if helper.contains('/') {
        return Err(fail("a helper name cannot contain '/'".into()));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail("not found in PATH".into()),
            _ => fail(e.to_string()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading fails below with its own words.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        if stdout == NOT_FOUND {
            return Ok(RegistryAuth::Anonymous);
        }
        let said = [stdout.as_str(), String::from_utf8_lossy(&out.stderr).trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(one_line)
            .unwrap_or_else(|| out.status.to_string());
        return Err(fail(said));
    }
    let answer: HelperAnswer =
        serde_json::from_str(&stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    Ok(credentials(server, answer.username, answer.secret))
}

/// A user and secret as docker reads them: `<token>` means the secret is an identity token
/// (an OAuth refresh token), which oci-client cannot use: anonymous, with a note.
fn credentials(server: &str, user: String, secret: String) -> RegistryAuth {
    if user == TOKEN_USER {
        identity_token_unsupported(server)
    } else if user.is_empty() && secret.is_empty() {
        RegistryAuth::Anonymous
    } else {
        RegistryAuth::Basic(user, secret)
    }
}

fn identity_token_unsupported(server: &str) -> RegistryAuth {
    crate::note!(
        "{server}: identity tokens (docker login through a browser) are not supported; \
         pulling anonymously (docker login with a user and password or access token instead)"
    );
    RegistryAuth::Anonymous
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

/// A config key (`https://host:port/`, `host:port`, any Hub alias) names `host`.
fn same_registry(key: &str, host: &str) -> bool {
    let k = key_host(key);
    k == host || (is_hub(k) && is_hub(host))
}

fn lookup(config: &DockerConfig, host: &str) -> Option<RegistryAuth> {
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| same_registry(k, host))
        .map(|(_, e)| e)?;
    if entry
        .identitytoken
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        return Some(identity_token_unsupported(&server_url(host)));
    }
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

    #[test]
    fn helper_per_registry_then_store() {
        let c = config(
            r#"{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud",
               "https://index.docker.io/v1/":"hub"},"auths":{"gcr.io":{}}}"#,
        );
        assert_eq!(helper_for(&c, "gcr.io"), Some("gcloud"));
        assert_eq!(helper_for(&c, "docker.io"), Some("hub"));
        assert_eq!(helper_for(&c, "reg.example:5000"), Some("desktop"));
        assert_eq!(helper_for(&config(r#"{"credsStore":""}"#), "x"), None);
        assert_eq!(helper_for(&config("{}"), "x"), None);
        assert_eq!(server_url("registry-1.docker.io"), HUB_SERVER_URL);
        assert_eq!(server_url("reg.example:5000"), "reg.example:5000");
    }

    #[test]
    fn helper_answers() {
        let basic = credentials("s", "u".into(), "p".into());
        assert!(matches!(basic, RegistryAuth::Basic(u, p) if u == "u" && p == "p"));
        assert!(matches!(
            credentials("s", TOKEN_USER.into(), "refresh".into()),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            credentials("s", String::new(), String::new()),
            RegistryAuth::Anonymous
        ));
        let missing = from_helper(&format!("absent-{}", std::process::id()), "s");
        assert!(
            matches!(&missing, Err(Error::Registry(m)) if m.contains("not found in PATH")),
            "{missing:?}"
        );
    }
}
