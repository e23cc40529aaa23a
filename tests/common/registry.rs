//! A real registry for the pull tests, and an image builder that pushes to it.
//!
//! [`registry()`] starts Debian's `docker-registry` (or `$DEVOXX_REGISTRY`) once per test
//! binary on a free loopback port with its own temp storage. It runs under a small `sh` that
//! holds a pipe to this process: when the test binary ends, even killed, the pipe closes and
//! the shell stops the registry and deletes its storage.
//!
//! [`LayerBuilder`] makes layers in Rust (files, dirs, links, setuid, whiteouts, opaque dirs,
//! raw hostile entries) and [`push_image`]/[`push_index`] push them with oci-client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The running fixture registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its filesystem storage root.
    pub storage: PathBuf,
    _keeper: Mutex<Child>,
}

/// The registry shared by every test of this binary, started on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| spawn_registry("", ""))
}

/// The registry binary: `$DEVOXX_REGISTRY`, else Debian's `docker-registry`.
pub fn registry_binary() -> PathBuf {
    std::env::var_os("DEVOXX_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

/// A loopback port nobody listens on (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// Another registry of this test's own, stopped (and its storage deleted) when dropped.
/// `http_extra` goes under `http:` (indented two spaces, e.g. a `tls:` block), `extra` at the
/// top level (e.g. `proxy:` or `auth:`).
pub fn spawn_registry(http_extra: &str, extra: &str) -> Registry {
    spawn_registry_on(None, http_extra, extra)
}

/// [`spawn_registry`] serving `storage` (another registry's, read-only use) instead of its own.
pub fn spawn_registry_on(storage: Option<&Path>, http_extra: &str, extra: &str) -> Registry {
    let bin = registry_binary();
    assert!(
        bin.exists(),
        "{} missing: apt-get install docker-registry (or set DEVOXX_REGISTRY)",
        bin.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("devoxx-registry-")
        .tempdir()
        .expect("registry temp dir")
        .keep();
    let storage = match storage {
        Some(s) => s.to_owned(),
        None => {
            let own = dir.join("storage");
            fs::create_dir(&own).expect("storage dir");
            own
        }
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http_extra}{extra}",
            storage.display()
        ),
    )
    .expect("registry config");
    let keeper = Command::new("sh")
        .arg("-c")
        .arg(r#""$1" serve "$2" >"$3/registry.log" 2>&1 & p=$!; read _ignored; kill $p; wait $p; rm -rf "$3""#)
        .arg("sh")
        .arg(&bin)
        .arg(&config)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the registry");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Any answer will do: a TLS registry answers plain HTTP with 400, a token one with 401.
    while http_status(&addr, "/v2/").is_none() {
        assert!(
            Instant::now() < deadline,
            "registry did not answer on {addr}: {}",
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        addr,
        storage,
        _keeper: Mutex::new(keeper),
    }
}

/// Status code of `GET path` on `addr`, `None` when nothing answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Registry {
    /// A reference to `repo:tag` on this registry.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// Where the registry keeps the bytes of a blob.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer ready to push: the gzip blob, its digest, and the uncompressed diff_id.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

/// Builds one layer tarball entry by entry.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        LayerBuilder { b }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    /// An entry whose name and link name are written raw (the tar crate's setters refuse
    /// `..`), for hostile layers.
    pub fn raw(
        mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.b.append(&h, data).expect("append raw");
        self
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.without_data(tar::EntryType::Directory, path, mode)
    }

    /// An entry of `kind` that holds no data (a directory, a fifo).
    fn without_data(mut self, kind: tar::EntryType, path: &str, mode: u32) -> Self {
        let mut h = Self::header(kind, mode, 0);
        self.b
            .append_data(&mut h, path, &b""[..])
            .unwrap_or_else(|e| panic!("append {kind:?} {path}: {e}"));
        self
    }

    /// A link entry of `kind` (symbolic or hard) from `path` to `target`.
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str, mode: u32) -> Self {
        let mut h = Self::header(kind, mode, 0);
        self.b
            .append_link(&mut h, path, target)
            .unwrap_or_else(|e| panic!("append {kind:?} {path}: {e}"));
        self
    }

    pub fn file(self, path: &str, content: &[u8], mode: u32) -> Self {
        self.file_owned(path, content, mode, 0, 0)
    }

    pub fn file_owned(mut self, path: &str, content: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, content.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b
            .append_data(&mut h, path, content)
            .expect("append file");
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, path, target, 0o777)
    }

    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, path, target, 0o644)
    }

    pub fn fifo(self, path: &str, mode: u32) -> Self {
        self.without_data(tar::EntryType::Fifo, path, mode)
    }

    /// `.wh.<name>` beside `path`: deletes `path` from lower layers.
    pub fn whiteout(self, path: &str) -> Self {
        let p = Path::new(path);
        let name = p.file_name().expect("name").to_string_lossy();
        let wh = p.with_file_name(format!(".wh.{name}"));
        self.file(&wh.to_string_lossy(), b"", 0o644)
    }

    /// `.wh..wh..opq` in `dir`: hides every lower child of it.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// Every entry of a host directory (symlinks kept as symlinks).
    pub fn tree(mut self, dir: &Path) -> Self {
        self.b.append_dir_all(".", dir).expect("append dir tree");
        self
    }

    /// Finish: gzip, digest, diff_id.
    pub fn build(self) -> Layer {
        let tar = self.b.into_inner().expect("finish tar");
        let diff_id = sha256(&tar);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let blob = gz.finish().expect("gzip");
        Layer {
            digest: sha256(&blob),
            blob,
            diff_id,
        }
    }
}

/// The standard base: busybox-static + probe + random `/marker`, as `build_rootfs` makes it.
/// Returns the layer, the expected tree ([`snapshot`] of what it was made from) and the marker.
pub fn base_layer() -> &'static (Layer, BTreeMap<String, Node>, String) {
    static BASE: OnceLock<(Layer, BTreeMap<String, Node>, String)> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("devoxx-base-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        let marker = super::build_rootfs(&rootfs);
        let layer = LayerBuilder::new().tree(&rootfs).build();
        (layer, snapshot(&rootfs), marker)
    })
}

/// Manifest flavour to push.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavour {
    Oci,
    Docker,
}

/// A pushed manifest: its digest, size and media type (for building an index).
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: String,
    pub size: usize,
    pub media_type: &'static str,
}

/// An image config for `layers`, with `extra` as the runtime `config` object.
pub fn image_config(layers: &[Layer], arch: &str, extra: Value) -> Value {
    json!({
        "architecture": arch,
        "os": "linux",
        "config": extra,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    })
}

/// Push blobs, config and a manifest for `repo:tag` (tag may be a digest-free label only).
pub fn push_image(
    repo: &str,
    tag: &str,
    layers: &[Layer],
    config: &Value,
    flavour: Flavour,
) -> Pushed {
    push_image_with_layer_type(repo, tag, layers, config, flavour, None)
}

/// Push `layers` as the OCI image `repo:tag` with a plain amd64 config (nothing but the layers).
pub fn push_layers(repo: &str, tag: &str, layers: &[Layer]) -> Pushed {
    let config = image_config(layers, "amd64", json!({}));
    push_image(repo, tag, layers, &config, Flavour::Oci)
}

/// What an image's manifest points to: its layers' blobs and its config, with their digests.
fn image_blobs(layers: &[Layer], config_bytes: &[u8]) -> Vec<(Vec<u8>, String)> {
    let mut blobs: Vec<(Vec<u8>, String)> = layers
        .iter()
        .map(|l| (l.blob.clone(), l.digest.clone()))
        .collect();
    blobs.push((config_bytes.to_vec(), sha256(config_bytes)));
    blobs
}

/// Same as [`push_image`], with every layer announced as `layer_type` (unsupported types).
pub fn push_image_with_layer_type(
    repo: &str,
    tag: &str,
    layers: &[Layer],
    config: &Value,
    flavour: Flavour,
    layer_type: Option<&str>,
) -> Pushed {
    let (manifest_type, config_type, default_layer_type) = match flavour {
        Flavour::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
        Flavour::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
    };
    let config_bytes = serde_json::to_vec(config).expect("config json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": sha256(&config_bytes), "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": layer_type.unwrap_or(default_layer_type),
            "digest": l.digest, "size": l.blob.len(),
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let blobs = image_blobs(layers, &config_bytes);
    push(repo, tag, blobs, &manifest_bytes, manifest_type);
    Pushed {
        digest: sha256(&manifest_bytes),
        size: manifest_bytes.len(),
        media_type: manifest_type,
    }
}

/// Push an index (OCI, or a docker manifest list) of `(manifest, architecture)` at `repo:tag`.
pub fn push_index(repo: &str, tag: &str, entries: &[(Pushed, &str)], flavour: Flavour) -> Pushed {
    let media_type = match flavour {
        Flavour::Oci => OCI_INDEX,
        Flavour::Docker => DOCKER_LIST,
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": entries.iter().map(|(p, arch)| json!({
            "mediaType": p.media_type, "digest": p.digest, "size": p.size,
            "platform": {"os": "linux", "architecture": arch},
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&index).expect("index json");
    push(repo, tag, Vec::new(), &bytes, media_type);
    Pushed {
        digest: sha256(&bytes),
        size: bytes.len(),
        media_type,
    }
}

/// Push an OCI image to another registry than the shared one (`addr` = `127.0.0.1:PORT`).
pub fn push_image_to(addr: &str, repo: &str, tag: &str, layers: &[Layer], config: &Value) {
    let config_bytes = serde_json::to_vec(config).expect("config json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config_bytes), "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.blob.len(),
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let blobs = image_blobs(layers, &config_bytes);
    push_at(addr, repo, tag, blobs, &manifest_bytes, OCI_MANIFEST);
}

/// Push `blobs` then the manifest at `repo:tag` and at its digest.
fn push(repo: &str, tag: &str, blobs: Vec<(Vec<u8>, String)>, manifest: &[u8], media_type: &str) {
    push_at(&registry().addr, repo, tag, blobs, manifest, media_type)
}

fn push_at(
    addr: &str,
    repo: &str,
    tag: &str,
    blobs: Vec<(Vec<u8>, String)>,
    manifest: &[u8],
    media_type: &str,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            use_monolithic_push: true,
            ..Default::default()
        });
        let reference: Reference = format!("{addr}/{repo}:{tag}").parse().expect("reference");
        client
            .auth(
                &reference,
                &RegistryAuth::Anonymous,
                RegistryOperation::Push,
            )
            .await
            .expect("auth");
        for (data, digest) in blobs {
            client
                .push_blob(&reference, data, &digest)
                .await
                .expect("push blob");
        }
        let ct = http::HeaderValue::from_str(media_type).expect("content type");
        client
            .push_manifest_raw(&reference, manifest.to_vec(), ct)
            .await
            .expect("push manifest");
    });
}

/// Flip bytes in the middle of a stored blob, keeping its size (the registry serves it as is).
pub fn corrupt_blob(digest: &str) {
    let path = registry().blob_data(digest);
    let mut data = fs::read(&path).expect("read blob");
    let mid = data.len() / 2;
    let end = (mid + 16).min(data.len());
    for b in &mut data[mid..end] {
        *b ^= 0xff;
    }
    fs::write(&path, data).expect("write blob");
}

/// One filesystem entry as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        sha: String,
        links: u64,
    },
    Symlink {
        target: String,
    },
    Fifo {
        mode: u32,
    },
    Other,
}

/// Every entry under `root` (relative path → [`Node`]), never following symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let md = fs::symlink_metadata(&p).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            let node = if ft.is_dir() {
                stack.push(p.clone());
                Node::Dir {
                    mode,
                    uid: md.uid(),
                    gid: md.gid(),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&p)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned(),
                }
            } else if ft.is_file() {
                Node::File {
                    mode,
                    uid: md.uid(),
                    gid: md.gid(),
                    sha: sha256(&fs::read(&p).expect("read")),
                    links: md.nlink(),
                }
            } else if ft.is_fifo() {
                Node::Fifo { mode }
            } else {
                Node::Other
            };
            out.insert(rel, node);
        }
    }
    out
}

/// The [`Node`] a file with this content, mode and owner should become.
pub fn file_node(content: &[u8], mode: u32, uid: u32, gid: u32, links: u64) -> Node {
    Node::File {
        mode,
        uid,
        gid,
        sha: sha256(content),
        links,
    }
}

/// A test CA and a server certificate it signed for `names`, as PEM files in `dir`:
/// `ca.pem`, `cert.pem`, `key.pem`.
pub fn test_ca(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("devoxx test CA {}", super::marker()),
    );
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf cert");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    fs::write(&paths.0, ca.pem()).expect("write ca.pem");
    fs::write(&paths.1, leaf.pem()).expect("write cert.pem");
    fs::write(&paths.2, leaf_key.serialize_pem()).expect("write key.pem");
    paths
}

/// `http:` lines serving TLS with this certificate and key.
pub fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    )
}

/// Make `cmd` run with `/etc/hosts` replaced by `hosts` in a private mount namespace of its
/// own: the names resolve there only, the host's file never changes.
pub fn with_hosts(cmd: &mut Command, hosts: &Path) {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::process::CommandExt;
    let hosts = std::ffi::CString::new(hosts.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: only syscalls between fork and exec (no allocation: the path is prepared above).
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some(hosts.as_c_str()),
                c"/etc/hosts",
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        });
    }
}

/// A hosts file in `dir` resolving `names` (and localhost) to 127.0.0.1.
pub fn hosts_file(dir: &Path, names: &[&str]) -> PathBuf {
    let path = dir.join("hosts");
    fs::write(
        &path,
        format!("127.0.0.1 localhost {}\n::1 localhost\n", names.join(" ")),
    )
    .expect("write hosts");
    path
}
