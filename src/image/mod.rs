//! Images: parse a reference, fetch it from a registry, unpack its layers safely, and keep it
//! in the store at `<root>/<name>/{config.json,rootfs}`.

pub mod credentials;
pub mod endpoint;
pub mod in_use;
pub mod progress;
pub mod ratelimit;
pub mod reference;
pub mod registry;
pub mod store;
mod text;
pub mod unpack;

use std::io::{self, Read};
use std::os::fd::AsFd;

use sha2::{Digest, Sha256};

use crate::config::Paths;
use crate::error::IoContext;
use crate::{Error, Result};
use endpoint::Endpoint;
use reference::ImageRef;
use registry::limits::Limits;
use registry::{Compression, Registry};
use store::{ImageMeta, Staging};

pub use store::{Image, ImageConfig};

/// `devoxx-docker pull`: fetch the image unless the same digest is already stored.
///
/// `mirrors` (URLs, comma-separated lists allowed) are tried in order before Docker Hub for
/// Docker Hub references. Runs its own single-threaded tokio runtime and drops it before
/// returning: `run` forks afterwards and must not inherit threads. `is_live(id)` tells
/// whether container `id` still runs: a tree a re-pull replaces stays until no such user is left.
pub fn pull(
    paths: &Paths,
    reference: &str,
    mirrors: &[String],
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Image> {
    let r = ImageRef::parse(reference)?;
    let mirrors = endpoint::parse_mirrors(mirrors)?;
    crate::require_root("pull")?;
    let limits = Limits::from_env()?;
    let name = reference::name_for(&r);
    let _lock = store::lock(paths, &name)?;
    store::clean_stale(paths, &name);
    if let Some(image) = present_at_pinned_digest(paths, &r, &name)? {
        return Ok(image);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "start the download runtime")?;
    let result = runtime.block_on(fetch(paths, &r, &name, &mirrors, limits, is_live));
    drop(runtime);
    result
}

/// The image for `run`: from the store, pulled first when missing (`is_live` as for [`pull`]).
pub fn ensure(
    paths: &Paths,
    reference: &str,
    mirrors: &[String],
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Image> {
    let name = reference::store_name(reference)?;
    match Image::open(&paths.root, &name) {
        Err(crate::Error::ImageNotFound(_)) => pull(paths, reference, mirrors, is_live),
        found => found,
    }
}

/// `devoxx-docker images`: one line per stored image (name, reference, digest, size).
pub fn print_images(paths: &Paths) -> Result<()> {
    let rows: Vec<[String; 4]> = store::list(&paths.root)?
        .into_iter()
        .map(|(name, meta)| match meta {
            Some(m) => [name, m.reference, m.digest, human_size(m.size)],
            None => {
                let size = store::tree_size(&paths.root.join(&name).join("rootfs"));
                [name, "-".into(), "-".into(), human_size(size)]
            }
        })
        .collect();
    let header = ["NAME", "REFERENCE", "DIGEST", "SIZE"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    use std::io::Write;
    io::stdout()
        .write_all(out.as_bytes())
        .ctx(|| "write to stdout")
}

/// `devoxx-docker rmi`: remove one stored image (by reference, or by its store name). An
/// image a running container uses is refused, naming the containers; with `force` it leaves
/// the store now and its files are deleted when the last of them exits. `is_live(id)` tells
/// whether container `id` still runs.
pub fn remove(
    paths: &Paths,
    reference: &str,
    force: bool,
    is_live: &dyn Fn(&str) -> bool,
) -> Result<()> {
    crate::require_root("rmi")?;
    let name = match ImageRef::parse(reference) {
        Ok(r) if paths.root.join(reference::name_for(&r)).is_dir() => reference::name_for(&r),
        _ if is_store_name(reference) && paths.root.join(reference).join("rootfs").is_dir() => {
            reference.to_owned()
        }
        Ok(_) => return Err(Error::ImageNotFound(reference.to_owned())),
        Err(e) => return Err(e),
    };
    let _lock = store::lock(paths, &name)?;
    let dir = paths.root.join(&name);
    let users = match in_use::tree_id(&dir.join("rootfs")) {
        Ok(tree) => in_use::users(paths, &tree, is_live),
        Err(_) => return Err(Error::ImageNotFound(reference.to_owned())),
    };
    if users.is_empty() {
        store::remove(paths, &name)?;
        crate::note!("removed {name}");
    } else if force {
        in_use::retire(paths, &dir, is_live)?;
        crate::note!(
            "removed {name}; its files stay until container(s) {} exit",
            users.join(", ")
        );
    } else {
        return Err(Error::Runtime(format!(
            "image {name} is in use by running container(s) {}: stop them first, or use \
             rmi --force to remove it when they exit",
            users.join(", ")
        )));
    }
    Ok(())
}

/// A single path component the store could hold (as listed by `images`).
fn is_store_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A digest-pinned reference already stored at that digest needs no network at all.
fn present_at_pinned_digest(paths: &Paths, r: &ImageRef, name: &str) -> Result<Option<Image>> {
    let Some(digest) = &r.digest else {
        return Ok(None);
    };
    let dir = paths.root.join(name);
    match store::read_meta(&dir) {
        Some(m) if &m.digest == digest && dir.join("rootfs").is_dir() => {
            crate::note!("{}: up to date ({digest})", r.canonical());
            Image::open(&paths.root, name).map(Some)
        }
        _ => Ok(None),
    }
}

/// Pull `r` from the first endpoint that delivers all of it: mirrors in order, then its own
/// registry. As with docker's `registry-mirrors`, a mirror that fails at any step — resolving
/// the reference, or a blob after the manifest — is skipped for the next endpoint (the staging
/// it filled is dropped; every digest is verified whoever serves it); a local failure (disk,
/// permissions) ends the pull, as the next endpoint would only repeat it.
async fn fetch(
    paths: &Paths,
    r: &ImageRef,
    name: &str,
    mirrors: &[Endpoint],
    limits: Limits,
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Image> {
    let mut failures = Vec::new();
    for ep in endpoint::candidates(r, mirrors) {
        match fetch_from(paths, r, name, (&ep, limits), &failures, is_live).await {
            Ok(image) => return Ok(image),
            Err(e @ (Error::Registry(_) | Error::Image(_))) if ep.mirror => {
                failures.push(format!("{}: {}", ep.host, mirror_reason(&e)));
            }
            Err(e) if failures.is_empty() => return Err(e),
            Err(e) => {
                return Err(Error::Registry(format!(
                    "{e} (after every mirror failed: {})",
                    failures.join("; ")
                )))
            }
        }
    }
    Err(Error::Registry(format!(
        "{}: no registry to pull from",
        r.canonical()
    )))
}

/// One line saying which source serves the pull once it resolved, when mirrors were in play,
/// with what the mirrors before it failed at.
fn announce_source(r: &ImageRef, ep: &Endpoint, failures: &[String]) {
    let failed = failures.join("; ");
    match (ep.mirror, failures.is_empty()) {
        (true, true) => crate::note!("{}: pulling from {}", r.canonical(), ep.display()),
        (true, false) => crate::note!(
            "{}: pulling from {} (earlier mirrors failed: {failed})",
            r.canonical(),
            ep.display()
        ),
        (false, false) => crate::note!(
            "{}: every mirror failed ({failed}); pulling from {}",
            r.canonical(),
            ep.display()
        ),
        (false, true) => {}
    }
}

/// A mirror's error without the reference it repeats.
fn mirror_reason(e: &Error) -> String {
    let text = match e {
        Error::Registry(m) | Error::Image(m) => m.clone(),
        other => other.to_string(),
    };
    text.split_once(": ")
        .map_or(text.clone(), |(_, rest)| rest.to_owned())
}

/// The whole pull from one endpoint: resolve, config, layers, commit.
async fn fetch_from(
    paths: &Paths,
    r: &ImageRef,
    name: &str,
    (ep, limits): (&Endpoint, Limits),
    failures: &[String],
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Image> {
    let registry = Registry::new(r, ep, limits)?;
    let resolved = registry.resolve(r.digest.as_deref()).await?;
    announce_source(r, ep, failures);
    let dir = paths.root.join(name);
    if let Some(meta) = store::read_meta(&dir) {
        if meta.digest == resolved.digest && dir.join("rootfs").is_dir() {
            crate::note!("{}: up to date ({})", r.canonical(), resolved.digest);
            return Image::open(&paths.root, name);
        }
    }
    let config = registry.config(&resolved).await?;
    let diff_ids = diff_ids(&config, resolved.layers.len())?;
    let staging = Staging::new(paths, name)?;
    let root = unpack::open_root(&staging.rootfs())?;
    let mut bars = progress::Progress::new(&resolved.layers);
    let mut skipped_devices = 0;
    for (i, layer) in resolved.layers.iter().enumerate() {
        let blob = staging.blob(i);
        registry
            .download(layer, (i, resolved.layers.len()), &blob, |n| {
                bars.downloaded(i, n)
            })
            .await?;
        bars.extracting(i);
        skipped_devices +=
            extract(root.as_fd(), &blob, layer.compression, &diff_ids[i])?.skipped_devices;
        std::fs::remove_file(&blob).map_err(|e| Error::path("remove", &blob, e))?;
        bars.done(i);
    }
    drop(root);
    report_skipped_devices(skipped_devices);
    let meta = ImageMeta {
        reference: r.canonical(),
        digest: resolved.digest.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        config_digest: resolved.config_digest.clone(),
        layers: resolved.layers.iter().map(|l| l.digest.clone()).collect(),
        size: store::tree_size(&staging.rootfs()),
    };
    commit(paths, name, staging, &config, &meta, is_live)?;
    crate::note!("pulled {} as {name} ({})", meta.reference, meta.digest);
    Image::open(&paths.root, name)
}

fn commit(
    paths: &Paths,
    name: &str,
    staging: Staging,
    config: &[u8],
    meta: &ImageMeta,
    is_live: &dyn Fn(&str) -> bool,
) -> Result<()> {
    staging.write("config.json", config)?;
    let meta_json = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::Runtime(format!("encode image.json: {e}")))?;
    staging.write(store::META_FILE, &meta_json)?;
    staging.commit(paths, name, is_live)
}

/// The config's `rootfs.diff_ids`, one per layer.
fn diff_ids(config: &[u8], layers: usize) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(|e| Error::Image(format!("bad image config: {e}")))?;
    if c.rootfs.diff_ids.len() != layers {
        return Err(Error::Image(format!(
            "image config lists {} diff_ids for {layers} layers",
            c.rootfs.diff_ids.len()
        )));
    }
    Ok(c.rootfs.diff_ids)
}

/// One line per pull (never one per node, never silence) when layers held device nodes this
/// host refused to create (inside a user namespace, under a device policy...).
fn report_skipped_devices(count: u64) {
    if count > 0 {
        crate::note!(
            "skipped {count} device node(s) this host does not allow creating (containers get \
             their own /dev)"
        );
    }
}

/// Decompress and apply one verified blob, then check the uncompressed stream's diff_id.
fn extract(
    root: std::os::fd::BorrowedFd<'_>,
    blob: &std::path::Path,
    compression: Compression,
    diff_id: &str,
) -> Result<unpack::LayerStats> {
    let file = std::fs::File::open(blob).map_err(|e| Error::path("open", blob, e))?;
    let file = io::BufReader::with_capacity(1 << 20, file);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|e| Error::Image(format!("zstd layer: {e}")))?,
        ),
    };
    let mut hashing = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
    };
    let stats = unpack::apply_layer(root, &mut hashing)?;
    // The tar may end before the stream does (padding): hash every byte.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| Error::Image(format!("corrupt layer stream: {e}")))?;
    let got = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    if got != diff_id {
        return Err(Error::Image(format!(
            "diff_id mismatch: layer unpacks to {got}, config says {diff_id}; nothing stored"
        )));
    }
    Ok(stats)
}

/// Hashes everything read through it (the layer's diff_id).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Sizes as docker prints them (SI units).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_210_000), "4.2MB");
        assert_eq!(human_size(2_000_000_000), "2.0GB");
    }

    #[test]
    fn diff_ids_must_match_layer_count() {
        let c = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        assert_eq!(diff_ids(c, 2).unwrap().len(), 2);
        assert!(diff_ids(c, 3).is_err());
        assert!(diff_ids(b"{}", 0).is_err());
    }
}
