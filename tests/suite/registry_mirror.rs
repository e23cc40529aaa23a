//! Registry mirrors (`--registry-mirror`, `DEVOXX_REGISTRY_MIRROR`) for Docker Hub references,
//! against real `docker-registry` processes on loopback: the shared one plays the mirror
//! (images pushed under `library/…`), others of the test's own play a different registry, an
//! upstream and a pull-through cache (the teacher's recipe in docs/usage.md).

use crate::common;

use std::fs;
use std::time::{Duration, Instant};

use common::registry::{
    free_port, http_status, image_config, push_image, push_image_to, registry, sha256,
    spawn_registry, Flavour, Layer, LayerBuilder,
};
use common::{images_listing, marker, TestRoot};
use serde_json::json;

/// A one-layer image whose `/marker` holds `content`.
fn marker_image(content: &str) -> (Vec<Layer>, serde_json::Value) {
    let layer = LayerBuilder::new()
        .file("marker", content.as_bytes(), 0o644)
        .build();
    let layers = vec![layer];
    let config = image_config(&layers, "amd64", json!({"Cmd": ["/bin/sh"]}));
    (layers, config)
}

/// `/marker` of the stored image whose store name starts with `prefix`.
fn stored_marker(root: &TestRoot, prefix: &str) -> String {
    let name = fs::read_dir(root.store())
        .expect("store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no image {prefix}* in the store"));
    fs::read_to_string(root.store().join(&name).join("rootfs/marker"))
        .unwrap_or_else(|e| panic!("{name}/rootfs/marker: {e}"))
}

/// The stderr of `cmd`, which must succeed.
fn success_stderr(cmd: &mut assert_cmd::Command) -> String {
    stderr(cmd.assert().success().get_output())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hub_reference_is_pulled_from_the_mirror() {
    require_root!();
    let root = TestRoot::new();
    let (tag, content) = (marker(), marker());
    let (layers, config) = marker_image(&content);
    push_image("library/alpine", &tag, &layers, &config, Flavour::Oci);
    let mirror = format!("http://{}", registry().addr);
    let err = success_stderr(root.cmd().args([
        "pull",
        "--registry-mirror",
        &mirror,
        &format!("alpine:{tag}"),
    ]));
    assert!(
        err.contains(&format!("pulling from mirror {mirror}")),
        "one line must say the mirror was used: {err}"
    );
    assert_eq!(stored_marker(&root, &format!("alpine_{tag}-")), content);
    let listed = images_listing(&root);
    assert!(
        listed.contains(&format!("docker.io/library/alpine:{tag}")),
        "stored under its Hub name: {listed}"
    );
}

#[test]
fn a_dead_mirror_is_skipped_for_the_next_one() {
    require_root!();
    let root = TestRoot::new();
    let (tag, content) = (marker(), marker());
    let (layers, config) = marker_image(&content);
    push_image("library/busybox", &tag, &layers, &config, Flavour::Oci);
    let dead = format!("127.0.0.1:{}", free_port());
    let working = registry().addr.clone();
    let err = success_stderr(
        root.cmd()
            .env("DEVOXX_REGISTRY_MIRROR", format!("http://{dead},{working}"))
            .args(["pull", &format!("docker.io/library/busybox:{tag}")]),
    );
    assert!(
        err.contains(&format!("pulling from mirror http://{working}")),
        "{err}"
    );
    assert_eq!(stored_marker(&root, &format!("busybox_{tag}-")), content);
}

#[test]
fn a_registry_that_is_not_the_hub_is_never_mirrored() {
    require_root!();
    let root = TestRoot::new();
    let (repo, tag) = (format!("app-{}", marker()), marker());
    let (own, mirrored) = (marker(), marker());
    // The same repository and tag on both: only the content tells which one answered.
    let other = spawn_registry("", "");
    let (layers, config) = marker_image(&own);
    push_image_to(&other.addr, &repo, &tag, &layers, &config);
    let (layers, config) = marker_image(&mirrored);
    push_image(&repo, &tag, &layers, &config, Flavour::Oci);
    let reference = format!("{}/{repo}:{tag}", other.addr);
    let out = root
        .cmd()
        .env(
            "DEVOXX_REGISTRY_MIRROR",
            format!("http://{}", registry().addr),
        )
        .args(["pull", &reference])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!stderr(&out).contains("mirror"), "{}", stderr(&out));
    assert_eq!(stored_marker(&root, "127.0.0.1_"), own);
}

#[test]
fn a_bad_mirror_url_is_a_usage_error() {
    let root = TestRoot::new();
    let out = root
        .cmd()
        .args(["pull", "--registry-mirror", "ftp://x/y", "alpine"])
        .assert()
        .code(125)
        .get_output()
        .clone();
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("invalid registry mirror"), "{err}");
}

/// The teacher's recipe: a `proxy: remoteurl:` registry in front of an upstream serves a second
/// pull (into an empty store) after the upstream is gone.
#[test]
fn a_pull_through_cache_serves_the_second_pull_without_its_upstream() {
    require_root!();
    let (tag, content) = (marker(), marker());
    let (layers, config) = marker_image(&content);
    let upstream = spawn_registry("", "");
    push_image_to(&upstream.addr, "library/debian", &tag, &layers, &config);
    let cache = spawn_registry(
        "",
        &format!("proxy:\n  remoteurl: http://{}\n", upstream.addr),
    );
    let mirror = format!("http://{}", cache.addr);
    let reference = format!("debian:{tag}");
    let name = format!("debian_{tag}-");

    let first = TestRoot::new();
    first
        .cmd()
        .args(["pull", "--registry-mirror", &mirror, &reference])
        .assert()
        .success();
    assert_eq!(stored_marker(&first, &name), content);
    // The cache stores a blob while (and just after) serving it: wait until it holds them all.
    let mut digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    digests.push(sha256(&serde_json::to_vec(&config).expect("config json")));
    let deadline = Instant::now() + Duration::from_secs(20);
    let linked = |d: &String| {
        let hex = d.trim_start_matches("sha256:");
        cache
            .storage
            .join("docker/registry/v2/repositories/library/debian/_layers/sha256")
            .join(hex)
            .join("link")
            .is_file()
    };
    while !digests
        .iter()
        .all(|d| cache.blob_data(d).is_file() && linked(d))
    {
        assert!(
            Instant::now() < deadline,
            "the cache never stored the blobs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let upstream_addr = upstream.addr.clone();
    drop(upstream);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&upstream_addr, "/v2/").is_some() {
        assert!(Instant::now() < deadline, "upstream still answers");
        std::thread::sleep(Duration::from_millis(50));
    }

    let second = TestRoot::new();
    let out = second
        .cmd()
        .args(["pull", "--registry-mirror", &mirror, &reference])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        stderr(&out).contains(&format!("pulling from mirror {mirror}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(stored_marker(&second, &name), content);
}
