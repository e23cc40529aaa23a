//! Fixtures for the volume tests: fingerprints of directory trees (to prove the image store is
//! untouched), host source directories with random content, and a view of a live container's
//! own mount table.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{marker, TestRoot};

/// A digest of everything observable in a tree: relative paths, types, modes, owners, file
/// contents and symlink targets (not times: reading must not count as a change).
pub fn tree_digest(root: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut stack = vec![root.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            entries.push((path, meta));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, meta) in entries {
        let rel = path.strip_prefix(root).expect("under root");
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update(format!(":{:o}:{}:{}:", meta.mode(), meta.uid(), meta.gid()));
        if meta.file_type().is_symlink() {
            hasher.update(
                fs::read_link(&path)
                    .expect("readlink")
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if meta.is_file() {
            hasher.update(fs::read(&path).expect("read"));
        }
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// A fresh host directory inside the test's private root, for use as a bind source.
pub fn host_dir(root: &TestRoot) -> PathBuf {
    let dir = root.dir.path().join(format!("host-{}", marker()));
    fs::create_dir(&dir).expect("create host dir");
    dir
}

/// `SRC:DST[:MODE]` for `-v`.
pub fn spec(source: &Path, target: &str, mode: Option<&str>) -> String {
    match mode {
        Some(mode) => format!("{}:{target}:{mode}", source.display()),
        None => format!("{}:{target}", source.display()),
    }
}

/// Mount points (field 5 of mountinfo) of process `pid`'s own mount namespace.
pub fn mount_points_of(pid: i32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect()
}

/// Names of files anywhere directly under the given host directories that contain `needle`:
/// proof that nothing escaped the container root (checked in /, /etc, /tmp).
pub fn host_entries_named(needle: &str) -> Vec<PathBuf> {
    ["/", "/etc", "/tmp"]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(needle))
        })
        .collect()
}
