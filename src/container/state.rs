//! Per-container state on the host: a fresh id, its liveness lock (see [`super::id`]) held
//! for the container's whole life, and the state directory holding its writable layer.
//!
//! Liveness is an flock, not a pid: the kernel drops it when the runtime dies, however it
//! dies, so the next invocation can tell a dead container's leftovers from a live one's and
//! reclaim them (the contract's cleanup promise after a SIGKILLed runtime).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::id::{is_live, lock_path, new_id, LOCK_DIR};
use super::{cgroup, network};
use crate::config::Paths;
use crate::error::IoContext;
use crate::{Error, Result};

/// One container's host state; dropping it removes the state directory, then the lock.
#[derive(Debug)]
pub struct ContainerState {
    /// The container id (also its cgroup and network name).
    pub id: String,
    /// `<root>/.containers/<id>`.
    pub dir: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl ContainerState {
    /// Take the liveness lock, then create the state directory (in this order, so a state
    /// directory without a held lock always belongs to a dead runtime).
    pub fn create(paths: &Paths) -> Result<ContainerState> {
        let id = new_id();
        let lock_path = lock_path(&id);
        let lock = create_locked(&lock_path)?;
        let parent = paths.containers_dir();
        let dir = parent.join(&id);
        let created = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&parent)
            .and_then(|()| fs::DirBuilder::new().mode(0o711).create(&dir));
        if let Err(e) = created {
            let _ = fs::remove_file(&lock_path);
            return Err(Error::path("create", &dir, e));
        }
        Ok(ContainerState {
            id,
            dir,
            lock_path,
            _lock: lock,
        })
    }
}

impl Drop for ContainerState {
    fn drop(&mut self) {
        remove_tree(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Create `path` already flocked: an anonymous O_TMPFILE is locked first and only then linked
/// into place, so no other runtime can ever see the lock file unlocked and reclaim it.
fn create_locked(path: &Path) -> Result<Flock<File>> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(LOCK_DIR)
        .ctx(|| format!("create {LOCK_DIR}"))?;
    let dir = CString::new(LOCK_DIR).map_err(|_| Error::Runtime("bad lock dir".into()))?;
    // SAFETY: valid C string; the returned fd is owned by the File below.
    let fd = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            format!("create a lock in {LOCK_DIR}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| Error::io("lock the container", e.into()))?;
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Runtime("bad lock path".into()))?;
    // SAFETY: linking our own O_TMPFILE descriptor; AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (root).
    let rc = unsafe {
        libc::linkat(
            lock.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(Error::path("link", path, std::io::Error::last_os_error()));
    }
    Ok(lock)
}

/// Reclaim what dead runtimes left: writable layers in this store, their locks, and (through
/// their owners) cgroups and network leftovers. Best effort: a failure here never stops a run.
pub fn reclaim_stale(paths: &Paths) {
    if let Ok(entries) = fs::read_dir(paths.containers_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name.to_string_lossy();
            if !is_live(&id) {
                remove_tree(&entry.path());
            }
        }
    }
    reclaim_stale_locks();
    crate::image::in_use::reclaim_retired(paths, &is_live);
    cgroup::reclaim_stale(&is_live);
    network::reclaim_stale(&is_live);
}

fn reclaim_stale_locks() {
    let Ok(entries) = fs::read_dir(LOCK_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("lock") {
            continue;
        }
        if let Ok(file) = File::open(&path) {
            // Unlink while holding the lock, so a racing reclaimer sees it as live.
            if let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Remove a writable layer. overlayfs leaves its `work/work` directory mode 000, which root
/// removes anyway; a missing tree is fine.
fn remove_tree(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            crate::note!("warning: could not remove {}: {e}", dir.display());
        }
        _ => {}
    }
}
