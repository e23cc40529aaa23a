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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use crate::{Error, Result};

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

fn bad_layer(why: String) -> Error {
    Error::Image(format!("invalid layer: {why}"))
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

/// Ownership, mode, time and extended attributes of an entry, from its tar headers.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    /// `SCHILY.xattr.<name>` PAX records (file capabilities live in `security.capability`).
    xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}

impl Meta {
    /// Read and check the entry's metadata: an owner that is not a valid id is an error (it
    /// would otherwise silently become root).
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>, rel: &Path) -> Result<Meta> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            bad_layer(format!("{}: malformed {what}: {e}", rel.display()))
        };
        let mut xattrs = Vec::new();
        let mut pax_owner = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX header", &e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("PAX record", &e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((
                        OsStr::from_bytes(name).to_owned(),
                        ext.value_bytes().to_vec(),
                    ));
                } else if key == b"uid" || key == b"gid" {
                    pax_owner.push((key.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        // The tar crate folds valid PAX uid/gid into the header and ignores invalid ones.
        for (key, value) in pax_owner {
            let key = String::from_utf8_lossy(&key).into_owned();
            let text = String::from_utf8_lossy(&value).into_owned();
            id_from(text.parse::<u64>().map_err(|e| bad(&key, &e))).map_err(|e| bad(&key, &e))?;
        }
        let header = entry.header();
        Ok(Meta {
            mode: header.mode().map_err(|e| bad("mode", &e))? & 0o7777,
            uid: header_id(&header.as_old().uid, header.uid()).map_err(|e| bad("uid", &e))?,
            gid: header_id(&header.as_old().gid, header.gid()).map_err(|e| bad("gid", &e))?,
            mtime: header.mtime().unwrap_or(0),
            xattrs,
        })
    }
}

/// A header's uid/gid field: an empty one (only NULs or spaces) is 0, as Go's archive/tar
/// reads it; anything else must parse as a valid id.
fn header_id(field: &[u8], parsed: io::Result<u64>) -> std::result::Result<u32, String> {
    if field.iter().all(|&b| b == 0 || b == b' ') {
        return Ok(0);
    }
    id_from(parsed)
}

/// A tar uid/gid as a Linux id: `u32::MAX` is the kernel's "no id" and anything larger
/// would be truncated (to root, for 2^32).
fn id_from<E: std::fmt::Display>(
    value: std::result::Result<u64, E>,
) -> std::result::Result<u32, String> {
    let v = value.map_err(|e| e.to_string())?;
    u32::try_from(v)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| format!("{v} is not a valid id"))
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

/// An entry name made relative to the root: leading `/` and `.` dropped, `..` refused.
/// `None` for the root itself.
fn clean_path(raw: &[u8]) -> Result<Option<PathBuf>> {
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

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, rel: &Path) -> Result<PathBuf> {
    match entry.link_name_bytes() {
        Some(b) if !b.is_empty() => Ok(PathBuf::from(OsStr::from_bytes(&b))),
        _ => Err(bad_layer(format!(
            "{}: link without a target",
            rel.display()
        ))),
    }
}

/// `openat2(root, rel, O_PATH|O_DIRECTORY, RESOLVE_IN_ROOT)`: the kernel keeps every step,
/// `..` and symlinks included, inside `root`.
fn open_dir_in_root(root: BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
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
fn list_dir(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
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
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
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

fn chown_fd(fd: impl AsFd, meta: &Meta) -> rustix::io::Result<()> {
    match rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(meta.uid)),
        Some(rfs::Gid::from_raw(meta.gid)),
    ) {
        // Not root or an unmapped id: ownership is best effort, as docker's rootless mode.
        Err(Errno::PERM | Errno::INVAL) => Ok(()),
        other => other,
    }
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = rfs::Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The entry's `SCHILY.xattr.*` records, set after chown (which clears file capabilities).
/// overlayfs's own `trusted.overlay.*` attributes would steer the container's overlay mount:
/// a layer never sets them. A filesystem without extended attributes is not an error (the
/// attribute is dropped, as docker does); any other failure is.
fn apply_xattrs(fd: impl AsFd, meta: &Meta, rel: &Path) -> Result<()> {
    for (name, value) in &meta.xattrs {
        if name.as_bytes().starts_with(b"trusted.overlay.") {
            continue;
        }
        match rfs::fsetxattr(&fd, name.as_os_str(), value, XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("set {} on /{}", name.to_string_lossy(), rel.display()),
                    e.into(),
                ))
            }
        }
    }
    Ok(())
}

fn fail(what: &str, rel: &Path, e: Errno) -> Error {
    Error::io(format!("{what} /{}", rel.display()), e.into())
}

#[cfg(test)]
mod tests;
