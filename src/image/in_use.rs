//! Which running containers use which image tree, so that no tree is deleted or swapped
//! under a running container.
//!
//! A container records the identity (device and inode) of the rootfs it mounts in its state
//! directory, while holding the image's name lock, and keeps that lock until its overlay is
//! mounted: `rmi` and `pull` take the same lock, so they always see every user. `rmi` of an
//! image in use fails (`--force` retires it instead); a re-pull retires the tree it replaces.
//! A retired tree waits in `<root>/.retired/` until no live container uses it, and is deleted
//! by whichever runtime notices first (the last user's own exit, the next run, rmi or pull).
//!
//! Which container is still running is the caller's to say (`is_live(id)`, the containers'
//! liveness locks): images know nothing about containers beyond these records.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Paths;
use crate::{Error, Result};

/// The record's file name in a container's state directory: `<store name>\n<dev>:<ino>\n`.
pub const RECORD: &str = "image";

/// The identity of an image tree: stable across renames (a re-pull's exchange, a retirement).
pub fn tree_id(rootfs: &Path) -> Result<String> {
    let md = fs::metadata(rootfs).map_err(|e| Error::path("stat", rootfs, e))?;
    Ok(format!("{}:{}", md.dev(), md.ino()))
}

/// Record, in the container's state directory, that it uses image `name` at `rootfs`.
pub fn record(state_dir: &Path, name: &str, rootfs: &Path) -> Result<()> {
    let path = state_dir.join(RECORD);
    let text = format!("{name}\n{}\n", tree_id(rootfs)?);
    fs::write(&path, text).map_err(|e| Error::path("write", &path, e))
}

/// Ids of the live containers of this store using the tree `tree` (from [`tree_id`]);
/// `is_live(id)` tells whether container `id` still has a live runtime.
pub fn users(paths: &Paths, tree: &str, is_live: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = fs::read_dir(paths.containers_dir()) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().into_string().ok()?;
            let text = fs::read_to_string(e.path().join(RECORD)).ok()?;
            (text.lines().nth(1) == Some(tree) && is_live(&id)).then_some(id)
        })
        .collect();
    ids.sort();
    ids
}

fn retired_dir(paths: &Paths) -> PathBuf {
    paths.root.join(".retired")
}

/// Take the image directory `dir` out of sight (one rename, same file system) and delete it
/// as soon as no live container uses it (`is_live` as for [`users`]): now, or when its last
/// user exits.
pub fn retire(paths: &Paths, dir: &Path, is_live: &dyn Fn(&str) -> bool) -> Result<()> {
    let retired = retired_dir(paths);
    match fs::create_dir(&retired) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::path("create", &retired, e)),
    }
    let name = dir.file_name().map_or_else(
        || "image".to_owned(),
        |n| n.to_string_lossy().replace('+', "-"),
    );
    let target = retired.join(format!("{name}+{:016x}", rand::random::<u64>()));
    fs::rename(dir, &target).map_err(|e| Error::path("retire", dir, e))?;
    reclaim_retired(paths, is_live);
    Ok(())
}

/// Delete every retired tree no live container uses any more (`is_live` as for [`users`];
/// best effort).
pub fn reclaim_retired(paths: &Paths, is_live: &dyn Fn(&str) -> bool) {
    let retired = retired_dir(paths);
    let Ok(entries) = fs::read_dir(&retired) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let unused = match tree_id(&dir.join("rootfs")) {
            Ok(tree) => users(paths, &tree, is_live).is_empty(),
            Err(_) => true, // not an image tree (an interrupted deletion): nothing can use it
        };
        if unused {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    crate::note!("warning: could not remove {}: {e}", dir.display());
                }
            }
        }
    }
    let _ = fs::remove_dir(&retired); // only when empty
}
