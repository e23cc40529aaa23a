//! The on-disk store: `<root>/<name>/config.json` + `<root>/<name>/rootfs/` + `image.json`.
//!
//! Atomicity: a pull builds `<root>/.staging/<name>+<random>/` and renames it into place
//! (`RENAME_EXCHANGE` when replacing) only after every check passed, so no reader ever sees a
//! half image. Pulls and removals of one name are serialised by `flock` on
//! `<root>/.staging/<name>+lock`; `+` never occurs in a store name, so one name's staging
//! entries can never be mistaken for another's.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, RenameFlags, CWD};
use serde::{Deserialize, Serialize};

use crate::config::Paths;
use crate::error::IoContext;
use crate::{Error, Result};

/// File beside `config.json` recording where the image came from, so a re-pull at the same
/// digest downloads nothing and `images` can list it.
pub const META_FILE: &str = "image.json";

/// What `image.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageMeta {
    /// Normalised reference (`docker.io/library/alpine:latest`).
    pub reference: String,
    /// Digest of what the reference resolved to (the index when there is one).
    pub digest: String,
    /// Digest of the linux/amd64 image manifest.
    pub manifest_digest: String,
    /// Digest of the image config (`config.json`).
    pub config_digest: String,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Bytes used by the unpacked rootfs (hard links counted once).
    pub size: u64,
}

/// Read `image.json` of a stored image; `None` for images placed by hand.
pub fn read_meta(dir: &Path) -> Option<ImageMeta> {
    let bytes = fs::read(dir.join(META_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Create the store and its staging area when missing.
pub fn prepare(paths: &Paths) -> Result<()> {
    fs::create_dir_all(&paths.root)
        .ctx(|| format!("create image store {}", paths.root.display()))?;
    let staging = paths.staging_dir();
    match fs::DirBuilder::new().mode(0o700).create(&staging) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::path("create", staging, e)),
    }
}

/// Exclusive hold on one store name (released when dropped, or when the process dies).
/// Dropping it also removes the lock file and, when nothing else is staged, `.staging`
/// itself: a failed pull leaves the store exactly as it was.
pub struct NameLock {
    file: fs::File,
    path: PathBuf,
    staging: PathBuf,
}

/// Wait for, then take, the lock on `name` (creating the store and staging area as needed).
pub fn lock(paths: &Paths, name: &str) -> Result<NameLock> {
    let path = paths.staging_dir().join(format!("{name}+lock"));
    loop {
        prepare(paths)?;
        let file = match fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            // A previous holder removed an empty `.staging` meanwhile: create it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::path("open lock", &path, e)),
        };
        take(&file, &path, name)?;
        // The previous holder unlinks the file before unlocking: only a lock on the file
        // that is still at `path` counts.
        if still_linked_at(&file, &path) {
            return Ok(NameLock {
                file,
                path,
                staging: paths.staging_dir(),
            });
        }
    }
}

/// How long a held lock is waited for without a word: a `run` holds it for the milliseconds of
/// its start, a pull in another terminal for seconds.
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Lock `file`; when another process holds it longer than [`QUIET_WAIT`] (a pull of the same
/// image in another terminal), say so once and wait for it: its pull is bounded, and what it
/// stores this one reuses.
fn take(file: &fs::File, path: &Path, name: &str) -> Result<()> {
    let quiet_until = std::time::Instant::now() + QUIET_WAIT;
    loop {
        match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < quiet_until => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(rustix::io::Errno::WOULDBLOCK) => break,
            Err(e) => return Err(Error::path("lock", path, e.into())),
        }
    }
    crate::note!("waiting for another pull or removal of {name} to finish");
    rustix::fs::flock(file, FlockOperation::LockExclusive)
        .map_err(|e| Error::path("lock", path, e.into()))
}

fn still_linked_at(file: &fs::File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then let the close release it.
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.staging);
        let _ = &self.file;
    }
}

/// Remove what an interrupted pull of `name` left in staging (caller holds the name's lock).
pub fn clean_stale(paths: &Paths, name: &str) {
    let prefix = format!("{name}+");
    let Ok(rd) = fs::read_dir(paths.staging_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && !n.ends_with("+lock") {
            let _ = remove_any(&e.path());
        }
    }
}

/// A pull in progress: removed on drop unless committed.
pub struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// A fresh, private staging directory for `name`, with an empty `rootfs/` and `blobs/`.
    pub fn new(paths: &Paths, name: &str) -> Result<Staging> {
        let dir = paths
            .staging_dir()
            .join(format!("{name}+{:016x}", rand::random::<u64>()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::path("create", &dir, e))?;
        let staging = Staging {
            dir,
            committed: false,
        };
        for sub in ["rootfs", "blobs"] {
            let p = staging.dir.join(sub);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(|e| Error::path("create", &p, e))?;
        }
        Ok(staging)
    }

    /// The rootfs being built.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Where a downloaded layer blob waits for extraction.
    pub fn blob(&self, index: usize) -> PathBuf {
        self.dir.join("blobs").join(index.to_string())
    }

    /// Write a file at the image's top level (`config.json`, `image.json`).
    pub fn write(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let p = self.dir.join(file);
        fs::write(&p, bytes).map_err(|e| Error::path("write", &p, e))
    }

    /// Make the staged image `<root>/<name>` in one rename (exchanging with a present one,
    /// which is retired: `is_live` as for [`super::in_use::retire`]).
    pub fn commit(
        mut self,
        paths: &Paths,
        name: &str,
        is_live: &dyn Fn(&str) -> bool,
    ) -> Result<()> {
        let blobs = self.dir.join("blobs");
        fs::remove_dir_all(&blobs).map_err(|e| Error::path("remove", &blobs, e))?;
        sync_tree(&self.dir);
        let target = paths.root.join(name);
        match rustix::fs::renameat_with(CWD, &self.dir, CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(rustix::io::Errno::EXIST) => {
                rustix::fs::renameat_with(CWD, &self.dir, CWD, &target, RenameFlags::EXCHANGE)
                    .map_err(|e| Error::path("replace", &target, e.into()))?;
                // self.dir now holds the previous image: running containers may still use it,
                // so it is retired (deleted when unused). If even that fails, Drop removes it.
                match super::in_use::retire(paths, &self.dir, is_live) {
                    Ok(()) => self.committed = true,
                    Err(e) => crate::note!("warning: {e}"),
                }
                Ok(())
            }
            Err(e) => Err(Error::path("rename into", &target, e.into())),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.dir);
        }
    }
}

/// Flush the staged image to disk before it becomes visible (best effort: `syncfs`).
fn sync_tree(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = rustix::fs::syncfs(&f);
    }
}

/// Remove a file or a whole directory tree (never following symlinks).
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Bytes used by a tree, hard links counted once.
pub fn tree_size(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && (md.nlink() == 1 || seen.insert((md.dev(), md.ino()))) {
                total += md.len();
            }
        }
    }
    total
}

/// Stored images, sorted by name: (name, metadata when pulled by us).
pub fn list(root: &Path) -> Result<Vec<(String, Option<ImageMeta>)>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::path("read", root, e)),
    };
    let mut out: Vec<_> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let dir = e.path();
            (!name.starts_with('.') && dir.join("rootfs").is_dir()).then(|| {
                let meta = read_meta(&dir);
                (name, meta)
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Take `<root>/<name>` out of the store: renamed away first (atomic), then deleted.
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let target = paths.root.join(name);
    let trash = paths
        .staging_dir()
        .join(format!("{name}+rm{:016x}", rand::random::<u64>()));
    fs::rename(&target, &trash).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::ImageNotFound(name.to_owned()),
        _ => Error::path("remove", &target, e),
    })?;
    remove_any(&trash).map_err(|e| Error::path("remove", &trash, e))
}

/// What `run` needs from an image config (OCI image-spec `config` object).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `USER[:GROUP]` the command runs as unless `run -u` says otherwise.
    #[serde(default)]
    pub user: Option<String>,
}

/// A stored, complete image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Store name (one path component).
    pub name: String,
    /// `<root>/<name>`.
    pub dir: PathBuf,
    /// `<root>/<name>/rootfs`.
    pub rootfs: PathBuf,
    /// The runtime part of the image config (defaults when the image has no config.json,
    /// e.g. a rootfs placed by hand the workshop's way).
    pub config: ImageConfig,
}

impl Image {
    /// Open a complete image `<root>/<name>`. The image config is optional so that a rootfs
    /// placed by hand the workshop's way (`/fs/<name>/rootfs`) runs too.
    pub fn open(root: &std::path::Path, name: &str) -> crate::Result<Image> {
        let dir = root.join(name);
        let rootfs = dir.join("rootfs");
        if !rootfs.is_dir() {
            return Err(crate::Error::ImageNotFound(name.to_owned()));
        }
        let config = match std::fs::read(dir.join("config.json")) {
            Ok(bytes) => parse_runtime_config(&bytes)
                .map_err(|e| crate::Error::Image(format!("{name}: bad config.json: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageConfig::default(),
            Err(e) => return Err(crate::Error::path("read", dir.join("config.json"), e)),
        };
        Ok(Image {
            name: name.to_owned(),
            dir,
            rootfs,
            config,
        })
    }
}

/// The `config` object of an OCI/Docker image config document.
fn parse_runtime_config(bytes: &[u8]) -> serde_json::Result<ImageConfig> {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(default)]
        config: Option<ImageConfig>,
    }
    Ok(serde_json::from_slice::<Document>(bytes)?
        .config
        .unwrap_or_default())
}
