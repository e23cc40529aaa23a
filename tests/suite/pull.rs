//! `pull`, `images`, `rmi` through the binary, against a real registry on loopback
//! (tests/common/registry.rs). Every image carries random content.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::registry::{
    base_layer, corrupt_blob, file_node, free_port, image_config, push_image,
    push_image_with_layer_type, push_index, push_layers, registry, snapshot, Flavour, Layer,
    LayerBuilder, Node,
};
use common::run::{wait_bounded, Background, RUN_TIMEOUT};
use common::{images_listing, is_root, marker, stored_images, TestRoot};
use predicates::prelude::*;
use rstest::rstest;
use serde_json::json;

/// What a pull left in staging besides its lock files (must be nothing).
pub(crate) fn staging_leftovers(store: &Path) -> Vec<String> {
    fs::read_dir(store.join(".staging"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with("+lock"))
                .collect()
        })
        .unwrap_or_default()
}

/// The store name of a reference, as the runtime reports it in `images`.
fn image_dir(root: &TestRoot, reference: &str) -> PathBuf {
    let text = images_listing(root);
    let canonical =
        if reference.contains(':') && reference.rsplit('/').next().unwrap().contains(':') {
            reference.to_owned()
        } else {
            format!("{reference}:latest")
        };
    let name = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(canonical.as_str()))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{canonical} not listed by images:\n{text}"));
    root.store().join(name)
}

/// Assert a failed command: exit 125, stdout empty, one `devoxx-docker:` line mentioning `what`.
fn assert_fails_cleanly(assert: assert_cmd::assert::Assert, what: &str) {
    let out = assert.code(125).get_output().clone();
    assert!(
        out.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("devoxx-docker: "), "stderr: {err}");
    assert!(
        last.to_lowercase().contains(&what.to_lowercase()),
        "stderr should mention {what:?}: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("devoxx-docker:"))
            .count(),
        1,
        "{err}"
    );
}

/// The file `path` of the image stored at `img` holds `content`.
fn assert_file(img: &Path, path: &str, content: &str) {
    let got = fs::read_to_string(img.join("rootfs").join(path));
    assert_eq!(got.unwrap(), content, "{path} in {}", img.display());
}

/// `pull REFERENCE` fails as [`assert_fails_cleanly`] wants, mentioning `what`, and stores no
/// image.
fn assert_pull_fails_and_stores_nothing(root: &TestRoot, reference: &str, what: &str) {
    assert_fails_cleanly(root.cmd().args(["pull", reference]).assert(), what);
    assert!(stored_images(&root.store()).is_empty());
}

fn small_layer(path: &str, content: &str) -> Layer {
    LayerBuilder::new()
        .file(path, content.as_bytes(), 0o644)
        .build()
}

#[test]
fn multi_layer_pull_gives_the_exact_tree() {
    require_root!();
    let root = TestRoot::new();
    let (base, base_tree, base_marker) = base_layer();
    let (conf, suid, new_marker, opq_new) = (marker(), marker(), marker(), marker());
    let (uid, gid) = (
        common::random_in(1000..=60000) as u32,
        common::random_in(1000..=60000) as u32,
    );
    let l2 = LayerBuilder::new()
        .dir("etc/app", 0o750)
        .file_owned(
            "etc/app/conf",
            conf.as_bytes(),
            0o640,
            uid as u64,
            gid as u64,
        )
        .dir("usr", 0o755)
        .dir("usr/local", 0o755)
        .dir("usr/local/bin", 0o755)
        .file("usr/local/bin/suid", suid.as_bytes(), 0o4755)
        .hardlink("usr/local/bin/hl", "usr/local/bin/suid")
        .symlink("usr/abs", "/bin/busybox")
        .symlink("usr/rel", "../bin/busybox")
        .file("opq/a", b"lower-a", 0o644)
        .file("opq/sub/b", b"lower-b", 0o644)
        .file("gone/x", b"x", 0o644)
        .file("gone2", b"y", 0o600)
        .fifo("run/fifo", 0o620)
        .build();
    let l3 = LayerBuilder::new()
        .whiteout("gone")
        .whiteout("gone2")
        .whiteout("bin/cat")
        .file("opq/new", opq_new.as_bytes(), 0o644)
        .opaque("opq")
        .file("marker", new_marker.as_bytes(), 0o644)
        .build();
    let layers = vec![base.clone(), l2, l3];
    let env = format!("MARK={}", marker());
    let config = image_config(&layers, "amd64", json!({"Env": [env], "Cmd": ["/bin/sh"]}));
    let repo = format!("multi-{}", marker());
    let pushed = push_image(&repo, "v1", &layers, &config, Flavour::Oci);
    let reference = registry().reference(&repo, "v1");

    root.cmd()
        .args(["pull", &reference])
        .assert()
        .success()
        .stdout(predicate::str::is_empty());

    let mut expected: BTreeMap<String, Node> = base_tree.clone();
    let dir = |mode| Node::Dir {
        mode,
        uid: 0,
        gid: 0,
    };
    expected.insert("etc/app".into(), dir(0o750));
    expected.insert(
        "etc/app/conf".into(),
        file_node(conf.as_bytes(), 0o640, uid, gid, 1),
    );
    for d in ["usr", "usr/local", "usr/local/bin", "opq", "run"] {
        expected.insert(d.into(), dir(0o755));
    }
    expected.insert(
        "usr/local/bin/suid".into(),
        file_node(suid.as_bytes(), 0o4755, 0, 0, 2),
    );
    expected.insert(
        "usr/local/bin/hl".into(),
        file_node(suid.as_bytes(), 0o4755, 0, 0, 2),
    );
    expected.insert(
        "usr/abs".into(),
        Node::Symlink {
            target: "/bin/busybox".into(),
        },
    );
    expected.insert(
        "usr/rel".into(),
        Node::Symlink {
            target: "../bin/busybox".into(),
        },
    );
    expected.insert(
        "opq/new".into(),
        file_node(opq_new.as_bytes(), 0o644, 0, 0, 1),
    );
    expected.insert("run/fifo".into(), Node::Fifo { mode: 0o620 });
    expected.insert(
        "marker".into(),
        file_node(new_marker.as_bytes(), 0o644, 0, 0, 1),
    );
    assert!(expected.remove("bin/cat").is_some(), "base has bin/cat");
    let img = image_dir(&root, &reference);
    let got = snapshot(&img.join("rootfs"));
    let diff: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", got.get(k)))
        .chain(
            got.keys()
                .filter(|k| !expected.contains_key(*k))
                .map(|k| format!("unexpected {k}")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "rootfs differs from the expected tree:\n{}",
        diff.join("\n")
    );
    assert_ne!(base_marker, &new_marker);

    let config_json: serde_json::Value =
        serde_json::from_slice(&fs::read(img.join("config.json")).unwrap()).unwrap();
    assert_eq!(config_json, config, "config.json is the pushed config");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(img.join("image.json")).unwrap()).unwrap();
    assert_eq!(meta["digest"], pushed.digest.as_str());
    assert_eq!(meta["reference"], reference.as_str());
    assert!(staging_leftovers(&root.store()).is_empty());
}

#[test]
fn index_resolves_to_linux_amd64_and_docker_schema2_works() {
    require_root!();
    let root = TestRoot::new();
    let (base, _, _) = base_layer();
    let (amd, arm) = (marker(), marker());
    let repo = format!("multiarch-{}", marker());
    let mk = |arch: &str, content: &str| {
        let layers = vec![base.clone(), small_layer("platform", content)];
        let config = image_config(&layers, arch, json!({}));
        push_image(
            &repo,
            &format!("only-{arch}"),
            &layers,
            &config,
            Flavour::Docker,
        )
    };
    let arm_m = mk("arm64", &arm);
    let amd_m = mk("amd64", &amd);
    // arm64 first, so taking the first entry would be caught.
    let index = push_index(
        &repo,
        "multi",
        &[(arm_m, "arm64"), (amd_m, "amd64")],
        Flavour::Docker,
    );
    let reference = registry().reference(&repo, "multi");
    root.cmd().args(["pull", &reference]).assert().success();
    let img = image_dir(&root, &reference);
    assert_file(&img, "platform", &amd);
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(img.join("image.json")).unwrap()).unwrap();
    assert_eq!(
        meta["digest"],
        index.digest.as_str(),
        "identity is the index digest"
    );
}

#[test]
fn pinned_digest_pull() {
    require_root!();
    let root = TestRoot::new();
    let content = marker();
    let repo = format!("pinned-{}", marker());
    let layers = vec![small_layer("content", &content)];
    let pushed = push_layers(&repo, "t", &layers);
    let reference = format!("{}/{repo}@{}", registry().addr, pushed.digest);
    root.cmd().args(["pull", &reference]).assert().success();
    let names = stored_images(&root.store());
    assert_eq!(names.len(), 1);
    assert_file(&root.store().join(&names[0]), "content", &content);
}

#[test]
fn corrupted_blob_fails_and_stores_nothing() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("corrupt-{}", marker());
    let layers = vec![small_layer("data", &marker().repeat(100))];
    push_layers(&repo, "t", &layers);
    corrupt_blob(&layers[0].digest);
    assert_pull_fails_and_stores_nothing(&root, &registry().reference(&repo, "t"), "digest");
    assert!(staging_leftovers(&root.store()).is_empty());
}

#[test]
fn wrong_diff_id_fails_and_stores_nothing() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("diffid-{}", marker());
    let layers = vec![small_layer("data", &marker())];
    let mut config = image_config(&layers, "amd64", json!({}));
    config["rootfs"]["diff_ids"][0] = json!(common::registry::sha256(marker().as_bytes()));
    push_image(&repo, "t", &layers, &config, Flavour::Oci);
    assert_pull_fails_and_stores_nothing(&root, &registry().reference(&repo, "t"), "diff_id");
    assert!(staging_leftovers(&root.store()).is_empty());
}

#[test]
fn repull_at_same_digest_downloads_nothing() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("repull-{}", marker());
    let content = marker();
    let layers = vec![small_layer("content", &content)];
    let config = image_config(&layers, "amd64", json!({}));
    push_image(&repo, "t", &layers, &config, Flavour::Oci);
    let reference = registry().reference(&repo, "t");
    root.cmd().args(["pull", &reference]).assert().success();
    let img = image_dir(&root, &reference);
    let before = fs::metadata(img.join("rootfs"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();

    // Without its layer and config blobs the registry can no longer serve a download...
    let config_digest = common::registry::sha256(&serde_json::to_vec(&config).unwrap());
    fs::remove_file(registry().blob_data(&layers[0].digest)).unwrap();
    fs::remove_file(registry().blob_data(&config_digest)).unwrap();
    let fresh = TestRoot::new();
    fresh.cmd().args(["pull", &reference]).assert().code(125);
    // ...yet the re-pull succeeds: it downloaded nothing and left the image as it was.
    root.cmd()
        .args(["pull", &reference])
        .assert()
        .success()
        .stderr(predicate::str::contains("up to date"));
    let after = fs::metadata(img.join("rootfs"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_eq!(before, after, "image untouched");
    assert_file(&img, "content", &content);
}

#[test]
fn moved_tag_replaces_the_image_atomically() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("moved-{}", marker());
    let (v1, v2) = (marker(), marker());
    let reference = registry().reference(&repo, "t");
    let l1 = vec![small_layer("v", &v1), small_layer("only-v1", "x")];
    push_layers(&repo, "t", &l1);
    root.cmd().args(["pull", &reference]).assert().success();
    let l2 = vec![small_layer("v", &v2)];
    push_layers(&repo, "t", &l2);
    root.cmd().args(["pull", &reference]).assert().success();
    let img = image_dir(&root, &reference);
    assert_file(&img, "v", &v2);
    assert!(!img.join("rootfs/only-v1").exists());
    assert_eq!(stored_images(&root.store()).len(), 1);
    assert!(staging_leftovers(&root.store()).is_empty());
}

#[test]
fn concurrent_pulls_of_one_image_are_safe() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("concurrent-{}", marker());
    let content = marker();
    let layers = vec![base_layer().0.clone(), small_layer("content", &content)];
    push_layers(&repo, "t", &layers);
    let reference = registry().reference(&repo, "t");
    let children: Vec<_> = (0..3)
        .map(|_| {
            root.std_cmd()
                .args(["pull", &reference])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        let status = wait_bounded(&mut c, RUN_TIMEOUT).expect("pull did not finish in time");
        assert!(status.success());
    }
    let img = image_dir(&root, &reference);
    assert_file(&img, "content", &content);
    assert_eq!(stored_images(&root.store()).len(), 1);
    assert!(staging_leftovers(&root.store()).is_empty());
}

/// The host places hostile layers aim at: a directory beside the store with a sentinel.
struct HostTarget {
    dir: PathBuf,
    sentinel: String,
}

impl HostTarget {
    fn new(root: &TestRoot) -> Self {
        let dir = root.dir.path().join("host");
        fs::create_dir(&dir).unwrap();
        let sentinel = marker();
        fs::write(dir.join("secret"), &sentinel).unwrap();
        HostTarget { dir, sentinel }
    }

    fn assert_untouched(&self, root: &TestRoot) {
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "host dir gained entries");
        let md = fs::metadata(self.dir.join("secret")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&md), 1);
        assert_eq!(
            fs::read_to_string(self.dir.join("secret")).unwrap(),
            self.sentinel
        );
        let mut top: Vec<_> = fs::read_dir(root.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["fs", "host", "volumes"],
            "files appeared beside the store"
        );
    }
}

/// A layer holding one regular file at `path` (any name, even one leading out of the rootfs).
fn regular_at(path: &str) -> LayerBuilder {
    LayerBuilder::new().raw(path, tar::EntryType::Regular, None, b"x")
}

/// A layer holding a hard link `h` to `target` (any name, even one out of the rootfs).
fn hardlink_to(target: &str) -> LayerBuilder {
    LayerBuilder::new().raw("h", tar::EntryType::Link, Some(target), b"")
}

/// A hostile layer, made by `layer(up, abs)` from `up`, a relative way out of the store to the
/// host directory, and `abs`, its absolute path: pulling it must fail (`must_fail`) or may only
/// write inside the store, never to the host.
#[rstest]
#[case::dotdot("dotdot", |up: &str, _: &str| regular_at(&format!("{up}/pwned")), true)]
#[case::dotdot_secret("dotdot-secret", |up: &str, _: &str| regular_at(&format!("{up}/secret")), true)]
#[case::abs_name("abs-name", |_: &str, abs: &str| regular_at(&format!("{abs}/pwned")), false)]
#[case::hardlink_out("hardlink-out", |up: &str, _: &str| hardlink_to(&format!("{up}/secret")), true)]
#[case::hardlink_abs("hardlink-abs", |_: &str, abs: &str| hardlink_to(&format!("{abs}/secret")), false)]
#[case::symlink_write_rel(
    "symlink-write-rel",
    |up: &str, _: &str| LayerBuilder::new().symlink("evil", up).file("evil/secret", b"x", 0o644),
    false
)]
#[case::symlink_write_abs(
    "symlink-write-abs",
    |_: &str, abs: &str| LayerBuilder::new().symlink("evil", abs).file("evil/pwned", b"x", 0o644),
    false
)]
#[case::dir_swapped(
    "dir-swapped",
    |_: &str, abs: &str| LayerBuilder::new()
        .dir("d", 0o755)
        .raw("d", tar::EntryType::Symlink, Some(abs), b"")
        .file("d/pwned", b"x", 0o644),
    false
)]
#[case::whiteout_through_symlink(
    "whiteout-through-symlink",
    |_: &str, abs: &str| LayerBuilder::new().symlink("l", abs).whiteout("l/secret"),
    false
)]
fn hostile_layers_are_refused_or_contained(
    #[case] what: &str,
    #[case] layer: fn(&str, &str) -> LayerBuilder,
    #[case] must_fail: bool,
) {
    require_root!();
    let root = TestRoot::new();
    let host = HostTarget::new(&root);
    let abs = host.dir.display().to_string();
    let repo = format!("hostile-{what}-{}", marker());
    let layers = vec![layer("../../../../host", &abs).build()];
    push_layers(&repo, "t", &layers);

    let out = root
        .cmd()
        .args(["pull", &registry().reference(&repo, "t")])
        .output()
        .unwrap();

    host.assert_untouched(&root);
    assert!(out.stdout.is_empty(), "{what}: stdout not empty");
    if must_fail {
        assert_eq!(out.status.code(), Some(125), "{what} must be refused");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("hostile"),
            "{what}"
        );
    }
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(125), "{what}");
        assert!(
            !stored_images(&root.store())
                .iter()
                .any(|n| n.contains(what)),
            "{what}: half image stored"
        );
    }
    assert!(staging_leftovers(&root.store()).is_empty(), "{what}");
}

#[test]
fn images_lists_and_rmi_removes() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("list-{}", marker());
    let mut refs = Vec::new();
    for tag in ["a", "b"] {
        let layers = vec![small_layer("f", &marker())];
        let p = push_layers(&repo, tag, &layers);
        let r = registry().reference(&repo, tag);
        root.cmd().args(["pull", &r]).assert().success();
        refs.push((r, p.digest));
    }
    let text = images_listing(&root);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "REFERENCE", "DIGEST", "SIZE"]
    );
    for (r, digest) in &refs {
        assert!(
            text.lines()
                .any(|l| l.contains(r.as_str()) && l.contains(digest.as_str())),
            "{r} {digest} not in:\n{text}"
        );
    }
    // rmi by reference, then by store name.
    root.cmd()
        .args(["rmi", &refs[0].0])
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    assert_fails_cleanly(root.cmd().args(["rmi", &refs[0].0]).assert(), "not found");
    let name = image_dir(&root, &refs[1].0)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    root.cmd().args(["rmi", &name]).assert().success();
    assert!(stored_images(&root.store()).is_empty());
    assert!(staging_leftovers(&root.store()).is_empty());
    assert_eq!(
        images_listing(&root).lines().count(),
        1,
        "only the header is left"
    );
    assert_fails_cleanly(
        root.cmd()
            .args(["rmi", &format!("nothing-{}", marker())])
            .assert(),
        "not found",
    );
}

#[test]
fn malformed_references_fail_before_touching_the_store() {
    let root = TestRoot::new();
    for bad in [
        "",
        "UPPER",
        "a b",
        "alpine:",
        "alpine@sha256:123",
        "a//b",
        "x-",
        "host:99999/a",
        "../etc",
    ] {
        assert_fails_cleanly(
            root.cmd().args(["pull", bad]).assert(),
            "invalid image reference",
        );
        assert_eq!(
            fs::read_dir(root.store()).unwrap().count(),
            0,
            "{bad:?} touched the store"
        );
    }
}

#[test]
fn registry_down_fails_cleanly() {
    require_root!();
    let root = TestRoot::new();
    let reference = format!("127.0.0.1:{}/nothing-{}:t", free_port(), marker());
    assert_pull_fails_and_stores_nothing(&root, &reference, "cannot reach");
}

#[test]
fn unknown_image_or_tag_fails_cleanly() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("known-{}", marker());
    let layers = vec![small_layer("f", "x")];
    push_layers(&repo, "t", &layers);
    for reference in [
        registry().reference(&repo, &marker()),
        registry().reference(&marker(), "t"),
    ] {
        assert_pull_fails_and_stores_nothing(&root, &reference, "not found");
    }
}

#[test]
fn unsupported_media_type_fails_cleanly() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("weird-{}", marker());
    let layers = vec![small_layer("f", "x")];
    let config = image_config(&layers, "amd64", json!({}));
    push_image_with_layer_type(
        &repo,
        "t",
        &layers,
        &config,
        Flavour::Oci,
        Some("application/vnd.example.weird"),
    );
    assert_pull_fails_and_stores_nothing(&root, &registry().reference(&repo, "t"), "unsupported");
}

#[test]
fn pull_as_non_root_fails_cleanly() {
    if !is_root() {
        let root = TestRoot::new();
        assert_fails_cleanly(root.cmd().args(["pull", "alpine"]).assert(), "root");
        return;
    }
    let root = TestRoot::new();
    let mut cmd = assert_cmd::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::runtime())
        .args(["pull", &registry().reference("anything", "t")])
        .env("DEVOXX_ROOT", root.store());
    assert_fails_cleanly(cmd.assert(), "root");
    assert_eq!(fs::read_dir(root.store()).unwrap().count(), 0);
}

#[test]
fn disk_full_fails_cleanly_and_stores_nothing() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("diskfull-{}", marker());
    let layers = vec![base_layer().0.clone(), small_layer("f", &marker())];
    push_layers(&repo, "t", &layers);
    let mounts_before = common::host_mounts();
    // A tiny tmpfs as the store, mounted in a private mount namespace: the host never sees it.
    let script = r#"mount -t tmpfs -o size=512k devoxx-test-full "$1" || exit 99
"$2" pull "$3"; rc=$?
echo "entries:$(ls -A "$1" | tr '\n' ' ')"
exit $rc"#;
    let out = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(root.store())
        .arg(common::runtime())
        .arg(registry().reference(&repo, "t"))
        .env("DEVOXX_ROOT", root.store())
        .output()
        .expect("run unshare");
    if out.status.code() == Some(99) {
        skip!("cannot mount a tmpfs in a private mount namespace here");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("devoxx-docker: ") && last.contains("No space left"),
        "{stderr}"
    );
    assert!(
        stdout.contains("entries:\n"),
        "the store must be left exactly as it was (empty): {stdout}"
    );
    // A neighbour's own mounts (an engine test's) may come and go meanwhile: this test's only.
    let changes = common::mount_changes(&root, &mounts_before, &repo);
    assert!(changes.is_empty(), "host mount table changed: {changes:#?}");
}

#[test]
fn leftovers_of_an_interrupted_pull_are_reclaimed() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("stale-{}", marker());
    let layers = vec![small_layer("f", &marker())];
    push_layers(&repo, "t", &layers);
    let reference = registry().reference(&repo, "t");
    root.cmd().args(["pull", &reference]).assert().success();
    let name = image_dir(&root, &reference)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // What a SIGKILLed pull leaves: a staging dir with a partial rootfs.
    let stale = root.store().join(".staging").join(format!(
        "{name}+{:016x}",
        common::random_in(1..=u64::MAX - 1)
    ));
    fs::create_dir_all(stale.join("rootfs/half")).unwrap();
    root.cmd().args(["pull", &reference]).assert().success();
    assert!(!stale.exists(), "stale staging dir not reclaimed");
    assert!(staging_leftovers(&root.store()).is_empty());
}

/// Files named `name` with `content` anywhere under `dir`: proof a tree is still stored.
fn files_with(dir: &Path, name: &str, content: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t)
                    if t.is_file()
                        && e.file_name() == name
                        && fs::read_to_string(&path).is_ok_and(|c| c == content) =>
                {
                    found.push(path)
                }
                _ => {}
            }
        }
    }
    found
}

/// A container of `image` that prints `ready` once running, then sleeps with `hold` in its
/// command line; its host pid and container id.
fn running_container(root: &TestRoot, image: &str, hold: &str) -> (Background, i32, String) {
    let script = format!("echo ready; exec /bin/probe sleep 60 {hold}");
    let args = [
        "run",
        "--stop-timeout",
        "1",
        image,
        "/bin/sh",
        "-c",
        &script,
    ];
    let mut bg = Background::spawn(root, &args);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    // `ready` comes from the shell just before it execs the probe: wait (bounded) for it.
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    let mut pids = common::probes_with(hold);
    while pids.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        pids = common::probes_with(hold);
    }
    assert_eq!(pids.len(), 1, "the container's process: {pids:?}");
    let ids: Vec<String> = root
        .leftover_containers()
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(ids.len(), 1, "one container state: {ids:?}");
    (bg, pids[0], ids[0].clone())
}

fn stop(mut bg: Background) {
    bg.signal(nix::sys::signal::Signal::SIGTERM);
    let ran = bg.wait(RUN_TIMEOUT);
    // The probe as PID 1 ignores SIGTERM: killed after the 1 s stop timeout.
    assert_eq!(ran.code, 137, "{ran:?}");
}

/// An image a running container uses is never deleted under it: `rmi` fails with 125 and
/// names the container; `rmi --force` takes it out of the store at once, but its files stay
/// (the container still reads them) until the container has exited.
#[test]
fn rmi_of_an_image_in_use_fails_and_force_defers_the_removal() {
    require_root!();
    let root = TestRoot::new();
    let (image, mark) = root.install_image(json!({}));
    let hold = marker();
    let (bg, pid, id) = running_container(&root, &image, &hold);
    let out = root.cmd().args(["rmi", &image]).output().expect("rmi");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "rmi of an image in use: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("devoxx-docker:") && stderr.contains(&id),
        "names the container {id}: {stderr}"
    );
    assert_eq!(stored_images(&root.store()), std::slice::from_ref(&image));

    root.cmd()
        .args(["rmi", "--force", &image])
        .assert()
        .success();
    assert!(stored_images(&root.store()).is_empty(), "rmi --force");
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/root/marker")).expect("read inside"),
        mark,
        "the running container lost its image's files"
    );
    assert!(!files_with(&root.store(), "marker", &mark).is_empty());
    stop(bg);
    assert_eq!(
        files_with(&root.store(), "marker", &mark),
        Vec::<PathBuf>::new(),
        "the image's files outlived its last container"
    );
    assert!(root.leftover_containers().is_empty());
}

/// A re-pull that moves the image to new content keeps the old tree for the containers still
/// running on it, and deletes it once they are gone.
#[test]
fn repull_keeps_the_old_tree_until_its_containers_exit() {
    require_root!();
    let root = TestRoot::new();
    let repo = format!("inuse-{}", marker());
    let reference = registry().reference(&repo, "t");
    let (v1, v2) = (marker(), marker());
    let base = base_layer().0.clone();
    let l1 = vec![base.clone(), small_layer("v", &v1)];
    push_layers(&repo, "t", &l1);
    root.cmd().args(["pull", &reference]).assert().success();
    let hold = marker();
    let (bg, pid, _) = running_container(&root, &reference, &hold);

    let l2 = vec![base, small_layer("v", &v2)];
    push_layers(&repo, "t", &l2);
    root.cmd().args(["pull", &reference]).assert().success();
    let img = image_dir(&root, &reference);
    assert_file(&img, "v", &v2);
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/root/v")).expect("read inside"),
        v1,
        "the running container's image tree was swapped or deleted"
    );
    stop(bg);
    assert_eq!(files_with(&root.store(), "v", &v1), Vec::<PathBuf>::new());
    assert_eq!(stored_images(&root.store()).len(), 1);
    assert!(staging_leftovers(&root.store()).is_empty());
}
