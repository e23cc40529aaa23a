//! What an entry's tar headers say about ownership, mode, time and extended attributes, checked
//! as they are read (an owner that is not a valid Linux id fails the layer, it never becomes
//! root), and the calls that set them on what was created.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::{Error, Result};

use super::contained::bad_layer;

/// Ownership, mode, time and extended attributes of an entry, from its tar headers.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: u64,
    /// `SCHILY.xattr.<name>` PAX records (file capabilities live in `security.capability`).
    pub(super) xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}

impl Meta {
    /// Read and check the entry's metadata: an owner that is not a valid id is an error (it
    /// would otherwise silently become root).
    pub(super) fn of<R: Read>(entry: &mut tar::Entry<'_, R>, rel: &Path) -> Result<Meta> {
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
pub(super) fn chown_fd(fd: impl AsFd, meta: &Meta) -> rustix::io::Result<()> {
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

pub(super) fn timestamps(mtime: u64) -> Timestamps {
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
pub(super) fn apply_xattrs(fd: impl AsFd, meta: &Meta, rel: &Path) -> Result<()> {
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
