//! Containment: entry names that never climb out (`..` refused), lookups the kernel keeps
//! inside the root (`openat2(RESOLVE_IN_ROOT)`), and listings and removals relative to a
//! directory fd that never follow a symlink.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// A layer that is not a valid tar of valid entries.
pub(super) fn bad_layer(why: String) -> Error {
    Error::Image(format!("invalid layer: {why}"))
}

/// An entry name made relative to the root: leading `/` and `.` dropped, `..` refused.
/// `None` for the root itself.
pub(super) fn clean_path(raw: &[u8]) -> Result<Option<PathBuf>> {
    if raw.contains(&0) {
        return Err(bad_layer("entry name contains NUL".into()));
    }
    let mut out = PathBuf::new();
    for comp in Path::new(OsStr::from_bytes(raw)).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Image(format!(
                    "hostile layer refused: entry {:?} leaves the rootfs through '..'",
                    String::from_utf8_lossy(raw)
                )))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}
/// `openat2(root, rel, O_PATH|O_DIRECTORY, RESOLVE_IN_ROOT)`: the kernel keeps every step,
/// `..` and symlinks included, inside `root`.
pub(super) fn open_dir_in_root(root: BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let path: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut tries = 0;
    loop {
        match rfs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// Names in a directory, without `.` and `..`.
pub(super) fn list_dir(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
    let fd = rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for ent in rfs::Dir::new(fd)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(names)
}

/// Remove `name` in `dir` and everything below it, never following a symlink.
pub(super) fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty());
    }
    let sub = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(&sub)? {
        remove_tree_at(sub.as_fd(), &child)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}
