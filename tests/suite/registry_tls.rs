//! TLS trust against a `docker-registry` serving HTTPS with a test CA under a non-loopback name
//! (`registry.devoxx.test`, resolved to loopback only in the pull's private mount namespace):
//! `SSL_CERT_FILE` trusts it; without it, or with another CA, the pull fails with one line
//! naming the host and how to trust a CA, and the store is unchanged; plain HTTP is never a
//! fallback, except for hosts listed in `DEVOXX_INSECURE_REGISTRIES`.

use crate::common;

use std::fs;
use std::path::Path;

use common::registry::{
    hosts_file, image_config, push_image, registry, spawn_registry_on, test_ca, tls_config,
    with_hosts, Flavour, LayerBuilder,
};
use common::{marker, stored_images, TestRoot};
use serde_json::json;

const HOST: &str = "registry.devoxx.test";

/// Push a one-layer image with a random `/marker` to the shared registry: `(repo, tag, marker)`.
fn push_marker_image() -> (String, String, String) {
    let (repo, tag, content) = (format!("tls-{}", marker()), marker(), marker());
    let layers = vec![LayerBuilder::new()
        .file("marker", content.as_bytes(), 0o644)
        .build()];
    let config = image_config(&layers, "amd64", json!({"Cmd": ["/bin/sh"]}));
    push_image(&repo, &tag, &layers, &config, Flavour::Oci);
    (repo, tag, content)
}

/// `pull reference` in a namespace where `HOST` is loopback, with `env` set (and the TLS
/// variables of the test's own environment removed).
fn pull(
    root: &TestRoot,
    hosts: &Path,
    reference: &str,
    env: &[(&str, &str)],
) -> assert_cmd::assert::Assert {
    let mut cmd = root.std_cmd();
    cmd.env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("DEVOXX_INSECURE_REGISTRIES")
        .args(["pull", reference]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    with_hosts(&mut cmd, hosts);
    assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
}

fn marker_of(root: &TestRoot) -> String {
    let entries = stored_images(&root.store());
    assert_eq!(entries.len(), 1, "{entries:?}");
    fs::read_to_string(root.store().join(&entries[0]).join("rootfs/marker")).expect("marker")
}

/// One `devoxx-docker:` line on stderr, exit 125, empty stdout.
fn one_line_error(a: assert_cmd::assert::Assert) -> String {
    let out = a.code(125).get_output().clone();
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn a_private_ca_is_trusted_through_ssl_cert_file_only() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_ca(dir.path(), &[HOST]);
    let other = tempfile::tempdir().expect("tempdir");
    let (other_ca, _, _) = test_ca(other.path(), &[HOST]);
    let hosts = hosts_file(dir.path(), &[HOST]);
    let (repo, tag, content) = push_marker_image();
    let tls = spawn_registry_on(Some(&registry().storage), &tls_config(&cert, &key), "");
    let port = tls.addr.rsplit(':').next().expect("port");
    let reference = format!("{HOST}:{port}/{repo}:{tag}");

    let root = TestRoot::new();
    for env in [
        vec![],
        vec![("SSL_CERT_FILE", other_ca.to_str().expect("utf-8"))],
    ] {
        let err = one_line_error(pull(&root, &hosts, &reference, &env));
        assert!(
            err.contains(&format!("{HOST}:{port}")),
            "names the host: {err}"
        );
        assert!(err.contains("certificate"), "{err}");
        assert!(
            err.contains("SSL_CERT_FILE"),
            "says how to trust a CA: {err}"
        );
        assert!(stored_images(&root.store()).is_empty(), "store unchanged");
        let staging: Vec<_> = fs::read_dir(root.store().join(".staging"))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            staging
                .iter()
                .all(|n| n.to_string_lossy().ends_with("+lock")),
            "{staging:?}"
        );
    }

    pull(
        &root,
        &hosts,
        &reference,
        &[("SSL_CERT_FILE", ca.to_str().expect("utf-8"))],
    )
    .success();
    assert_eq!(marker_of(&root), content);

    let by_dir = TestRoot::new();
    let certs = tempfile::tempdir().expect("tempdir");
    // SSL_CERT_DIR wants OpenSSL's hashed names; rustls-native-certs reads every file in it.
    fs::copy(&ca, certs.path().join("devoxx-test-ca.pem")).expect("copy ca");
    pull(
        &by_dir,
        &hosts,
        &reference,
        &[("SSL_CERT_DIR", certs.path().to_str().expect("utf-8"))],
    )
    .success();
    assert_eq!(marker_of(&by_dir), content);
}

#[test]
fn plain_http_only_for_hosts_listed_as_insecure() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = hosts_file(dir.path(), &[HOST]);
    let (repo, tag, content) = push_marker_image();
    let port = registry().addr.rsplit(':').next().expect("port").to_owned();
    let host = format!("{HOST}:{port}");
    let reference = format!("{host}/{repo}:{tag}");

    let root = TestRoot::new();
    let err = one_line_error(pull(&root, &hosts, &reference, &[]));
    assert!(err.contains(&host), "{err}");
    assert!(stored_images(&root.store()).is_empty());

    pull(
        &root,
        &hosts,
        &reference,
        &[("DEVOXX_INSECURE_REGISTRIES", host.as_str())],
    )
    .success();
    assert_eq!(marker_of(&root), content);
}
