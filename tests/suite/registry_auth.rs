//! `pull` the way Docker Hub really serves it, offline (tests/common/hub.rs): TLS with a test
//! CA, a `Bearer` challenge answered by a token server, blob GETs redirected to a CDN host.

use crate::common;

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use base64::Engine;
use common::hub::{unix_now, Hub, TokenPolicy, CDN_HOST};
use common::registry::{image_config, push_image, registry, with_hosts, Flavour, LayerBuilder};
use common::{marker, random_in, TestRoot};
use serde_json::json;

/// Push a one-layer image with a random `/marker` to the shared storage: its marker.
fn push_marker_image(repo: &str, tag: &str) -> String {
    let content = marker();
    let layers = vec![LayerBuilder::new()
        .file("marker", content.as_bytes(), 0o644)
        .build()];
    let config = image_config(&layers, "amd64", json!({"Cmd": ["/bin/sh"]}));
    push_image(repo, tag, &layers, &config, Flavour::Oci);
    content
}

/// `devoxx-docker ARGS` in the hub's name space, trusting its CA, with `env`.
fn pull(
    hub: &Hub,
    root: &TestRoot,
    args: &[&str],
    env: &[(&str, &str)],
) -> assert_cmd::assert::Assert {
    let mut cmd = root.std_cmd();
    cmd.env_remove("SSL_CERT_DIR")
        .env_remove("DEVOXX_REGISTRY_MIRROR")
        .env("SSL_CERT_FILE", &hub.ca)
        .env(
            "DOCKER_CONFIG",
            root.store().with_file_name("no-docker-config"),
        )
        .arg("pull")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    with_hosts(&mut cmd, &hub.hosts);
    assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
}

fn marker_of(root: &TestRoot) -> String {
    let entries: Vec<_> = fs::read_dir(root.store())
        .expect("store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    fs::read_to_string(root.store().join(&entries[0]).join("rootfs/marker")).expect("marker")
}

fn is_empty_store(root: &Path) -> bool {
    fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.'))
        })
        .unwrap_or(true)
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn alpine_through_a_mirror_shaped_like_the_hub() {
    require_root!();
    let tag = marker();
    let content = push_marker_image("library/alpine", &tag);
    let hub = Hub::start(TokenPolicy::default());
    let root = TestRoot::new();
    let a = pull(
        &hub,
        &root,
        &[&format!("alpine:{tag}")],
        &[("DEVOXX_REGISTRY_MIRROR", &format!("https://{}", hub.host))],
    )
    .success();
    assert!(
        stderr(&a).contains(&format!("pulling from mirror https://{}", hub.host)),
        "{}",
        stderr(&a)
    );
    assert_eq!(marker_of(&root), content);
    // One anonymous token for the repository, reused for manifest, config and layer.
    let tokens = hub.tokens_for("library/alpine");
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert!(!tokens[0].headers.contains_key("authorization"));
    // Both blobs came from the CDN, which never saw a token.
    let cdn = hub.cdn_requests.lock().expect("lock").clone();
    assert!(
        cdn.len() >= 2,
        "blobs must go through the redirect: {cdn:#?}"
    );
    for r in &cdn {
        assert!(
            !r.headers.contains_key("authorization"),
            "token leaked to {CDN_HOST}: {r:#?}"
        );
        assert!(
            r.headers
                .get("host")
                .is_some_and(|h| h.starts_with(CDN_HOST)),
            "{r:#?}"
        );
    }
}

/// docker's `registry-mirrors` semantics past the manifest: a mirror that resolves the reference
/// but then fails a blob is dropped for the next one, which serves the whole image; one line
/// names the source and what the first mirror failed at. The blob's failure is a 429 that
/// resets in an hour, final at once: the test depends on no deadline (the TLS handshakes of a
/// slow emulated machine take seconds), and waits for nothing if the mirror is not skipped.
#[test]
fn a_mirror_failing_after_the_manifest_is_skipped_for_the_next() {
    require_root!();
    let tag = marker();
    let content = push_marker_image("library/alpine", &tag);
    let hub = Hub::start(TokenPolicy::default());
    *hub.cdn_rate_limit.lock().expect("lock") =
        Some(vec![("Retry-After".to_owned(), "3600".to_owned())]);
    let next = format!("http://{}", registry().addr);
    let root = TestRoot::new();
    let mirrors = format!("https://{},{next}", hub.host);
    let a = pull(
        &hub,
        &root,
        &[&format!("alpine:{tag}")],
        &[("DEVOXX_REGISTRY_MIRROR", &mirrors)],
    )
    .success();
    let err = stderr(&a);
    let served: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&format!("pulling from mirror {next}")))
        .collect();
    assert_eq!(served.len(), 1, "{err}");
    assert!(
        served[0].contains(&format!("earlier mirrors failed: {}", hub.host))
            && served[0].contains("rate limited")
            && served[0].contains("resets in"),
        "{err}"
    );
    assert!(
        !err.lines().any(common::hostile::is_retry_line),
        "a 429 resetting in an hour is not waited for: {err}"
    );
    assert!(
        !hub.cdn_requests.lock().expect("lock").is_empty(),
        "the first mirror resolved and was asked for a blob"
    );
    assert_eq!(marker_of(&root), content);
    assert_eq!(
        fs::read_dir(root.store().join(".staging"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "the first mirror's staging was dropped"
    );
}

/// A hub whose `private/` repositories need a random user and password, serving one of them.
struct Private {
    hub: Hub,
    user: String,
    password: String,
    repo: String,
    tag: String,
    reference: String,
    /// The image's marker.
    content: String,
}

fn private_hub() -> Private {
    let (user, password) = (marker(), format!("{}:{}", marker(), marker()));
    let repo = format!("private/app-{}", marker());
    let tag = marker();
    let content = push_marker_image(&repo, &tag);
    let hub = Hub::start(TokenPolicy {
        private_user: Some((user.clone(), password.clone())),
        ..Default::default()
    });
    let reference = format!("{}/{repo}:{tag}", hub.host);
    Private {
        hub,
        user,
        password,
        repo,
        tag,
        reference,
        content,
    }
}

#[test]
fn private_registry_with_credentials_from_docker_config() {
    require_root!();
    let p = private_hub();

    let root = TestRoot::new();
    let a = pull(&p.hub, &root, &[&p.reference], &[]).code(125);
    let err = stderr(&a);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("authentication refused"), "{err}");
    assert!(is_empty_store(&root.store()));

    let config_dir = tempfile::tempdir().expect("tempdir");
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", p.user, p.password));
    fs::write(
        config_dir.path().join("config.json"),
        json!({"auths": {format!("https://{}", p.hub.host): {"auth": auth}}}).to_string(),
    )
    .expect("config.json");
    pull(
        &p.hub,
        &root,
        &[&p.reference],
        &[("DOCKER_CONFIG", config_dir.path().to_str().expect("utf-8"))],
    )
    .success();
    assert_eq!(marker_of(&root), p.content);
    let tokens = p.hub.tokens_for(&p.repo);
    let with_auth: Vec<_> = tokens
        .iter()
        .filter(|r| r.headers.contains_key("authorization"))
        .collect();
    assert_eq!(with_auth.len(), 1, "{tokens:#?}");
    for r in p.hub.cdn_requests.lock().expect("lock").iter() {
        assert!(!r.headers.contains_key("authorization"), "{r:#?}");
    }
}

#[test]
fn a_refused_token_is_renewed_once() {
    require_root!();
    let repo = format!("renew-{}", marker());
    let tag = marker();
    let content = push_marker_image(&repo, &tag);
    let policy = TokenPolicy::default();
    policy.refused_tokens.store(1, Ordering::SeqCst);
    let hub = Hub::start(policy);
    let root = TestRoot::new();
    pull(&hub, &root, &[&format!("{}/{repo}:{tag}", hub.host)], &[]).success();
    assert_eq!(marker_of(&root), content);
    assert_eq!(hub.tokens_for(&repo).len(), 2, "one refused, one renewed");
}

/// Seconds a token lives in [`a_clock_expired_token_is_renewed_mid_pull`]: long enough for
/// the manifest and the config's registry GET to share one even under TCG on a busy host.
const SHORT_LIFETIME: u64 = 20;

#[test]
fn a_clock_expired_token_is_renewed_mid_pull() {
    require_root!();
    let repo = format!("expiring-{}", marker());
    let tag = marker();
    let content = push_marker_image(&repo, &tag);
    let hub = Hub::start(TokenPolicy {
        lifetime: Some(SHORT_LIFETIME),
        ..Default::default()
    });
    hub.cdn_hold_until_expiry.store(true, Ordering::SeqCst);
    let root = TestRoot::new();
    pull(&hub, &root, &[&format!("{}/{repo}:{tag}", hub.host)], &[]).success();
    assert_eq!(marker_of(&root), content);
    // Token 1 serves the manifest and the config's GET; the CDN holds the config until that
    // token is past its exp; the layer's GET needs token 2. Nothing was refused (the registry
    // allows 60 s of leeway): the client saw the expiry on its own clock.
    let tokens = hub.tokens_for(&repo);
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    let gap = tokens[1]
        .at
        .duration_since(tokens[0].at)
        .expect("token requests in order");
    assert!(
        gap >= std::time::Duration::from_secs(SHORT_LIFETIME),
        "renewed after {gap:?}, before the first token expired"
    );
    let blobs = hub.cdn_requests.lock().expect("lock").len();
    assert_eq!(blobs, 2, "config and layer from the CDN");
}

/// Pull `reference` while the CDN answers 429 with `headers`, with the default deadlines (a
/// shorter request timeout, to shorten the retries, also cut the token and manifest requests
/// over TLS: in an emulated VM they took over 15 s): the error line, after checking it is the only line besides retry progress, exit
/// 125, nothing stored, and the CDN asked with GETs only, never with credentials (the reset
/// time is read from the 429 itself).
fn rate_limited_line(hub: &Hub, reference: &str, headers: &[(&str, String)]) -> String {
    hub.cdn_requests.lock().expect("lock").clear();
    *hub.cdn_rate_limit.lock().expect("lock") = Some(
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    );
    let root = TestRoot::new();
    let a = pull(hub, &root, &[reference], &[]).code(125);
    let err = stderr(&a);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !common::hostile::is_retry_line(l))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(err.lines().last(), Some(lines[0]), "{err}");
    assert!(err.contains("rate limited"), "{err}");
    assert!(is_empty_store(&root.store()));
    let cdn = hub.cdn_requests.lock().expect("lock").clone();
    assert!(
        !cdn.is_empty() && cdn.iter().all(|r| r.method == "GET"),
        "{cdn:#?}"
    );
    assert!(cdn.iter().all(|r| r.target == cdn[0].target));
    assert!(cdn.iter().all(|r| !r.headers.contains_key("authorization")));
    lines[0].trim_end().to_owned()
}

/// A hub serving a fresh image (its CDN to be rate-limited), and that image's reference.
fn busy_hub() -> (Hub, String) {
    let repo = format!("busy-{}", marker());
    let tag = marker();
    push_marker_image(&repo, &tag);
    let hub = Hub::start(TokenPolicy::default());
    let reference = format!("{}/{repo}:{tag}", hub.host);
    (hub, reference)
}

/// A Unix time as the runtime prints it.
fn utc(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .expect("time")
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

#[test]
fn rate_limit_is_one_line() {
    require_root!();
    let (hub, reference) = busy_hub();
    // No reset time in the answer: the line says so by saying nothing about it.
    let line = rate_limited_line(&hub, &reference, &[]);
    assert!(!line.contains("resets"), "{line}");
    assert!(
        line.ends_with("use a registry mirror (--registry-mirror)"),
        "{line}"
    );
}

#[test]
fn rate_limit_says_when_it_resets() {
    require_root!();
    let (hub, reference) = busy_hub();

    // Past the 60 s retry window: reported, not waited for.
    let wait = random_in(61..=119);
    let line = rate_limited_line(&hub, &reference, &[("Retry-After", wait.to_string())]);
    assert!(
        line.contains(&format!("; resets in {wait} s (at ")),
        "{line}"
    );

    // Retry-After as an HTTP date.
    let at = unix_now() + random_in(7_200..=80_000);
    let date = chrono::DateTime::from_timestamp(at as i64, 0)
        .expect("time")
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let line = rate_limited_line(&hub, &reference, &[("Retry-After", date)]);
    assert!(line.contains(" h "), "{line}");
    assert!(line.contains(&format!("(at {})", utc(at))), "{line}");

    // Docker Hub's headers: a Unix time to reset at, and what is left.
    let at = unix_now() + random_in(130..=7_000);
    let left = random_in(0..=9);
    let line = rate_limited_line(
        &hub,
        &reference,
        &[
            ("X-RateLimit-Reset", at.to_string()),
            ("RateLimit-Remaining", format!("{left};w=21600")),
        ],
    );
    assert!(
        line.contains(&format!(
            " min (at {}), {left} pulls left; retry later",
            utc(at)
        )),
        "{line}"
    );
}

/// A fake `docker-credential-<name>` in its own directory: records its arguments and stdin
/// next to itself, then runs `body` (shell). Returns the name and the directory to put on PATH.
fn fake_helper(dir: &Path, body: &str) -> String {
    let name = format!("t{}", marker());
    let script = dir.join(format!("docker-credential-{name}"));
    let log = dir.join("asked");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"$*\" > '{args}'\ncat > '{log}'\n{body}\n",
            args = dir.join("args").display(),
            log = log.display()
        ),
    )
    .expect("write helper");
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod helper");
    name
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn credential_helpers_from_docker_config() {
    require_root!();
    let p = private_hub();
    let bin = tempfile::tempdir().expect("tempdir");
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_dir.path().to_str().expect("utf-8").to_owned();
    let path = path_with(bin.path());
    let env = [("DOCKER_CONFIG", config.as_str()), ("PATH", path.as_str())];

    // credHelpers for this host wins over credsStore and over a wrong `auths` entry.
    let helper = fake_helper(
        bin.path(),
        &format!(
            r#"printf '{{"ServerURL":"%s","Username":"{}","Secret":"{}"}}' "$(cat '{}')""#,
            p.user,
            p.password,
            bin.path().join("asked").display()
        ),
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode("nobody:wrong");
    fs::write(
        config_dir.path().join("config.json"),
        json!({
            "credsStore": format!("absent-{}", marker()),
            "credHelpers": {p.hub.host.clone(): helper},
            "auths": {p.hub.host.clone(): {"auth": wrong}},
        })
        .to_string(),
    )
    .expect("config.json");
    let root = TestRoot::new();
    pull(&p.hub, &root, &[&p.reference], &env).success();
    assert_eq!(marker_of(&root), p.content);
    assert_eq!(
        fs::read_to_string(bin.path().join("asked")).expect("helper ran"),
        p.hub.host,
        "docker asks a private registry's helper for host:port"
    );
    assert_eq!(
        fs::read_to_string(bin.path().join("args")).expect("args"),
        "get"
    );
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", p.user, p.password))
    );
    let authorized: Vec<_> = p
        .hub
        .tokens_for(&p.repo)
        .into_iter()
        .filter(|r| r.headers.get("authorization") == Some(&want))
        .collect();
    assert_eq!(authorized.len(), 1, "{:#?}", p.hub.tokens_for(&p.repo));

    // A failing credsStore: one line naming the helper and what it said; store unchanged.
    let why = format!("keychain locked {}", marker());
    let failing = fake_helper(bin.path(), &format!("echo '{why}'; exit 1"));
    fs::write(
        config_dir.path().join("config.json"),
        json!({"credsStore": failing}).to_string(),
    )
    .expect("config.json");
    let a = pull(&p.hub, &root, &[&p.reference], &env).code(125);
    let err = stderr(&a);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("docker-credential-{failing}")) && err.contains(&why),
        "{err}"
    );
    assert_eq!(marker_of(&root), p.content);

    // A helper that holds nothing for the host means anonymous, as with docker: a public
    // repository still pulls.
    let public = format!("public-{}", marker());
    let public_content = push_marker_image(&public, &p.tag);
    let empty = fake_helper(
        bin.path(),
        "echo 'credentials not found in native keychain'; exit 1",
    );
    fs::write(
        config_dir.path().join("config.json"),
        json!({"credsStore": empty}).to_string(),
    )
    .expect("config.json");
    let other = TestRoot::new();
    pull(
        &p.hub,
        &other,
        &[&format!("{}/{public}:{}", p.hub.host, p.tag)],
        &env,
    )
    .success();
    assert_eq!(marker_of(&other), public_content);
    assert!(p
        .hub
        .tokens_for(&public)
        .iter()
        .all(|r| !r.headers.contains_key("authorization")));
}
