//! Apply one layer tarball to a rootfs: whiteouts, links, modes; every path resolved inside the root.
//!
//! Containment: every parent directory is opened with `openat2(RESOLVE_IN_ROOT)` relative to
//! the rootfs, so `..`, absolute symlinks and directories swapped for symlinks all resolve
//! *inside* it; the final component is then created, replaced or removed with `*at` calls that
//! never follow a symlink. Entry names with a `..` component are refused outright (docker
//! refuses them too); absolute names are taken relative to the rootfs.
//!
//! Whiteouts (OCI image spec): `.wh.<name>` deletes `<name>` from lower layers, `.wh..wh..opq`
//! hides every lower child of its directory, wherever they sit in the tar; neither ever removes
//! what the same layer adds (tracked in [`Layer::added`]).
//!
//! An entry's ownership, mode, times and xattrs are read and set in [`meta`]; the primitives
//! that keep every name, lookup and removal inside the root are in [`contained`].

mod contained;
mod meta;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::{Error, Result};

use contained::{bad_layer, clean_path, list_dir, open_dir_in_root, remove_tree_at};
use meta::{apply_xattrs, chown_fd, timestamps, Meta};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What applying a layer did, for progress lines and the image size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries created (files, dirs, links, nodes).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Device nodes skipped because this host does not allow creating them.
    pub skipped_devices: u64,
}

/// Apply the uncompressed layer `tar` on top of the rootfs opened as `root`.
pub fn apply_layer(root: BorrowedFd<'_>, tar: impl Read) -> Result<LayerStats> {
    let mut layer = Layer {
        root,
        added: HashSet::new(),
        ancestors_of_added: HashSet::new(),
        stats: LayerStats::default(),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| bad_layer(format!("not a tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_layer(format!("corrupt tar stream: {e}")))?;
        layer.apply_entry(&mut entry)?;
    }
    Ok(layer.stats)
}

/// Open a directory for [`apply_layer`].
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::path("open", path, e.into()))
}

/// State of one layer being applied.
struct Layer<'a> {
    root: BorrowedFd<'a>,
    /// Paths (relative to the root) this layer created or replaced.
    added: HashSet<PathBuf>,
    /// Every strict ancestor of a path in `added` (so whiteouts keep the way to them).
    ancestors_of_added: HashSet<PathBuf>,
    stats: LayerStats,
}
impl<'a> Layer<'a> {
    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = clean_path(&raw)? else {
            return Ok(()); // the root itself ("./"): keep the rootfs as it is
        };
        let name = rel.file_name().unwrap_or_default().to_owned();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_owned();
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE_MARKER.as_bytes() {
            let dir = self.ensure_dir(&parent_rel)?;
            return self.make_opaque(&dir, &parent_rel);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
                return Ok(()); // other AUFS metadata (.wh..wh.plnk...): nothing to apply
            }
            let target = parent_rel.join(OsStr::from_bytes(hidden));
            return match open_dir_in_root(self.root, &parent_rel) {
                Ok(dir) => self.remove_lower(&dir, OsStr::from_bytes(hidden), &target),
                Err(Errno::NOENT | Errno::NOTDIR) => Ok(()), // nothing there to hide
                Err(e) => Err(fail("open directory", &parent_rel, e)),
            };
        }

        let meta = Meta::of(entry, &rel)?;
        let kind = entry.header().entry_type();
        let dir = self.ensure_dir(&parent_rel)?;
        let at = Target {
            dir: dir.as_fd(),
            name: &name,
            rel: &rel,
        };
        use tar::EntryType as T;
        match kind {
            T::Directory => self.make_dir(&at, &meta)?,
            T::Regular | T::Continuous | T::GNUSparse => self.make_file(&at, &meta, entry)?,
            T::Symlink => {
                let target = link_name(entry, &rel)?;
                self.replace_existing(&at, false)?;
                rfs::symlinkat(&target, at.dir, at.name).map_err(|e| fail("symlink", &rel, e))?;
                self.set_owner_and_times(&at, &meta, true)?;
            }
            T::Link => {
                let target = link_name(entry, &rel)?;
                let Some(target_rel) = clean_path(target.as_os_str().as_bytes())? else {
                    return Err(bad_layer(format!(
                        "{}: hard link to the root",
                        rel.display()
                    )));
                };
                if target_rel == rel {
                    return Ok(());
                }
                self.make_hardlink(&at, &target_rel)?;
            }
            T::Fifo | T::Char | T::Block => self.make_node(&at, &meta, kind, entry)?,
            _ => return Ok(()), // PAX/GNU metadata the tar crate already folded in
        }
        self.mark_added(&rel);
        self.stats.entries += 1;
        Ok(())
    }

    /// Open (creating as needed, each step resolved inside the root) the directory `rel`.
    fn ensure_dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        match open_dir_in_root(self.root, rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(fail("open directory", rel, e)),
        }
        let mut fd =
            open_dir_in_root(self.root, Path::new("")).map_err(|e| fail("open", rel, e))?;
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            sofar.push(comp);
            match rfs::mkdirat(&fd, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => self.mark_added(&sofar),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(fail("create directory", &sofar, e)),
            }
            fd = open_dir_in_root(self.root, &sofar)
                .map_err(|e| fail("open directory", &sofar, e))?;
        }
        Ok(fd)
    }

    fn make_dir(&mut self, at: &Target<'_>, meta: &Meta) -> Result<()> {
        match rfs::statat(at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) => {
                remove_tree_at(at.dir, at.name).map_err(|e| fail("replace", at.rel, e))?;
                rfs::mkdirat(at.dir, at.name, Mode::from_raw_mode(0o700))
                    .map_err(|e| fail("create directory", at.rel, e))?;
            }
            Err(Errno::NOENT) => rfs::mkdirat(at.dir, at.name, Mode::from_raw_mode(0o700))
                .map_err(|e| fail("create directory", at.rel, e))?,
            Err(e) => return Err(fail("stat", at.rel, e)),
        }
        let fd = rfs::openat(
            at.dir,
            at.name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open directory", at.rel, e))?;
        chown_fd(&fd, meta).map_err(|e| fail("chown", at.rel, e))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| fail("chmod", at.rel, e))?;
        apply_xattrs(&fd, meta, at.rel)
    }

    fn make_file<R: Read>(
        &mut self,
        at: &Target<'_>,
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        self.replace_existing(at, false)?;
        let fd = rfs::openat(
            at.dir,
            at.name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fail("create", at.rel, e))?;
        let mut file = std::fs::File::from(fd);
        let written = io::copy(entry, &mut file)
            .map_err(|e| Error::io(format!("write {}", at.rel.display()), e))?;
        self.stats.bytes += written;
        chown_fd(&file, meta).map_err(|e| fail("chown", at.rel, e))?;
        // After chown: chown clears setuid/setgid and `security.capability`, so the mode and
        // the extended attributes go last.
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode)).map_err(|e| fail("chmod", at.rel, e))?;
        apply_xattrs(&file, meta, at.rel)?;
        let ts = timestamps(meta.mtime);
        rfs::futimens(&file, &ts).map_err(|e| fail("set times", at.rel, e))?;
        Ok(())
    }

    fn make_hardlink(&mut self, at: &Target<'_>, target_rel: &Path) -> Result<()> {
        let src_parent = target_rel.parent().unwrap_or(Path::new(""));
        let src_name = target_rel.file_name().unwrap_or_default();
        let src_dir = open_dir_in_root(self.root, src_parent)
            .map_err(|e| fail("hard link target", target_rel, e))?;
        match rfs::statat(&src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(bad_layer(format!(
                    "{}: hard link to a directory",
                    at.rel.display()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(fail("hard link target", target_rel, e)),
        }
        self.replace_existing(at, false)?;
        rfs::linkat(&src_dir, src_name, at.dir, at.name, AtFlags::empty())
            .map_err(|e| fail("hard link", at.rel, e))
    }

    fn make_node<R: Read>(
        &mut self,
        at: &Target<'_>,
        meta: &Meta,
        kind: tar::EntryType,
        entry: &tar::Entry<'_, R>,
    ) -> Result<()> {
        let header = entry.header();
        let (file_type, dev) = match kind {
            tar::EntryType::Fifo => (FileType::Fifo, 0),
            other => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let ft = if other == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                (ft, rfs::makedev(major, minor))
            }
        };
        self.replace_existing(at, false)?;
        match rfs::mknodat(at.dir, at.name, file_type, Mode::from_raw_mode(0o600), dev) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::ACCESS) if file_type != FileType::Fifo => {
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            Err(e) => return Err(fail("mknod", at.rel, e)),
        }
        self.set_owner_and_times(at, meta, false)?;
        // We just created this node (not a symlink), so following is harmless here.
        rfs::chmodat(
            at.dir,
            at.name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| fail("chmod", at.rel, e))
    }

    fn set_owner_and_times(&self, at: &Target<'_>, meta: &Meta, _symlink: bool) -> Result<()> {
        match rfs::chownat(
            at.dir,
            at.name,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(()) | Err(Errno::PERM | Errno::INVAL) => {}
            Err(e) => return Err(fail("chown", at.rel, e)),
        }
        let ts = timestamps(meta.mtime);
        rfs::utimensat(at.dir, at.name, &ts, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fail("set times", at.rel, e))
    }

    /// Make room for a new non-directory entry: whatever is there (from a lower layer or
    /// earlier in this one) goes, never following a symlink.
    fn replace_existing(&self, at: &Target<'_>, _keep_dir: bool) -> Result<()> {
        match remove_tree_at(at.dir, at.name) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(fail("replace", at.rel, e)),
        }
    }

    /// `.wh..wh..opq` in `rel`: hide every lower child, keep what this layer adds.
    fn make_opaque(&mut self, dir: &OwnedFd, rel: &Path) -> Result<()> {
        for child in list_dir(dir).map_err(|e| fail("list", rel, e))? {
            let child_rel = rel.join(&child);
            self.remove_lower(dir, &child, &child_rel)?;
        }
        self.mark_added(rel);
        Ok(())
    }

    /// Remove `name` (at `rel`) from the lower layers: entirely when this layer added nothing
    /// at or below it, otherwise only the lower children around what it added.
    fn remove_lower(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<()> {
        let keeps_something = self.added.contains(rel) || self.ancestors_of_added.contains(rel);
        if !keeps_something {
            return match remove_tree_at(dir.as_fd(), name) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(fail("remove", rel, e)),
            };
        }
        let sub = match rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Added by this layer and not a directory: nothing lower to hide below it.
            Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => return Ok(()),
            Err(e) => return Err(fail("open", rel, e)),
        };
        for child in list_dir(&sub).map_err(|e| fail("list", rel, e))? {
            let child_rel = rel.join(&child);
            self.remove_lower(&sub, &child, &child_rel)?;
        }
        Ok(())
    }

    fn mark_added(&mut self, rel: &Path) {
        let mut p = rel.parent();
        while let Some(a) = p {
            if a.as_os_str().is_empty() || !self.ancestors_of_added.insert(a.to_owned()) {
                break;
            }
            p = a.parent();
        }
        self.added.insert(rel.to_owned());
    }
}

/// Where an entry lands: its (already contained) parent directory and its own name.
struct Target<'a> {
    dir: BorrowedFd<'a>,
    name: &'a OsStr,
    rel: &'a Path,
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, rel: &Path) -> Result<PathBuf> {
    match entry.link_name_bytes() {
        Some(b) if !b.is_empty() => Ok(PathBuf::from(OsStr::from_bytes(&b))),
        _ => Err(bad_layer(format!(
            "{}: link without a target",
            rel.display()
        ))),
    }
}
fn fail(what: &str, rel: &Path, e: Errno) -> Error {
    Error::io(format!("{what} /{}", rel.display()), e.into())
}

#[cfg(test)]
mod tests;
