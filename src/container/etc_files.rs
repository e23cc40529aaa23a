//! The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
//!
//! The parent prepares their contents (it can still read the host's files); the child provides
//! them after pivot_root. Where each file may be written is decided by *mount identity* (the
//! `statx` mount id), never by path text: the runtime creates, replaces or deletes a file only
//! when both `/etc` (wherever the image's symlinks route it) and the entry itself sit on the
//! container's own root mount, the writable layer. Anything reached on another mount (a
//! volume: the user's host data; a pseudo file system) is at most covered by a bind mount,
//! which leaves the file underneath untouched.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, CWD};
use rustix::io::Errno;

use super::rootfs::ensure_dir;
use crate::error::IoContext;
use crate::{Error, Result};

/// Contents of the container's /etc/{hostname,hosts,resolv.conf}, prepared by the parent.
#[derive(Debug, Clone, Default)]
pub struct EtcFiles {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: Option<String>,
}

impl EtcFiles {
    /// Names resolve like on the host: the host's resolv.conf (the systemd-resolved upstream
    /// list when the host points at its loopback stub and the container has its own netns),
    /// localhost and the container's hostname in /etc/hosts, plus the host's entries when the
    /// container shares the host network.
    pub fn for_container(hostname: &str, host_network: bool) -> EtcFiles {
        let mut hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        if host_network {
            if let Ok(host) = fs::read_to_string("/etc/hosts") {
                hosts.push_str(&host);
            }
        }
        EtcFiles {
            hostname: format!("{hostname}\n"),
            hosts,
            resolv_conf: host_resolv_conf(host_network),
        }
    }

    /// Provide the files inside the container (after pivot_root, so every path resolves in
    /// the container's root). See the module documentation for where writing is allowed.
    pub fn provide(&self) -> Result<()> {
        ensure_dir(Path::new("/etc"), 0o755)?;
        let Some(etc) = EtcDir::open()? else {
            return Ok(()); // /etc is not a directory (or a dangling link): nothing to provide
        };
        etc.provide("hostname", &self.hostname)?;
        etc.provide("hosts", &self.hosts)?;
        if let Some(resolv) = &self.resolv_conf {
            etc.provide("resolv.conf", resolv)?;
        }
        Ok(())
    }
}

fn host_resolv_conf(host_network: bool) -> Option<String> {
    let main = fs::read_to_string("/etc/resolv.conf").ok()?;
    let uses_stub = main.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|ip| ip.starts_with("127."))
    });
    if uses_stub && !host_network {
        if let Ok(upstream) = fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return Some(upstream);
        }
    }
    Some(main)
}

/// The directory `/etc` really resolved to, and whether it lies on the container's own layer.
struct EtcDir {
    fd: OwnedFd,
    mount: u64,
    on_layer: bool,
}

/// What the runtime may do with one of its files, given what the image (or a volume) has there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Nothing there, on the layer: create it.
    Create,
    /// A regular file: cover it with a bind mount (nothing written to disk).
    Cover,
    /// A symlink or special file on the layer: delete the entry (never what it points to),
    /// then create the file.
    Replace,
    /// Someone else's data (a volume, another mount): leave it exactly as it is.
    Leave,
}

/// The decision table, on mount identities only: `entry_mount` is None when the entry is absent.
fn decide(on_layer: bool, dir_mount: u64, entry: Option<(FileType, u64)>) -> Action {
    match entry {
        None if on_layer => Action::Create,
        None => Action::Leave,
        // A mount point of its own (`-v ./hosts:/etc/hosts`): the user chose that file.
        Some((_, mount)) if mount != dir_mount => Action::Leave,
        Some((FileType::RegularFile, _)) => Action::Cover,
        Some((FileType::Directory, _)) => Action::Leave,
        Some(_) if on_layer => Action::Replace,
        Some(_) => Action::Leave,
    }
}

impl EtcDir {
    /// Open `/etc` (following the image's symlinks: pivot_root made `/` the container's root)
    /// and compare its mount with the root's. None when /etc does not resolve to a directory.
    fn open() -> Result<Option<EtcDir>> {
        let root_mount = mount_of(CWD, "/", AtFlags::empty()).ctx(|| "statx /")?;
        let fd = match rustix::fs::open(
            "/etc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
            Err(e) => return Err(Error::path("open", "/etc", e.into())),
        };
        let mount = mount_of(fd.as_fd(), "", AtFlags::EMPTY_PATH).ctx(|| "statx /etc")?;
        Ok(Some(EtcDir {
            fd,
            mount,
            on_layer: mount == root_mount,
        }))
    }

    fn provide(&self, name: &str, content: &str) -> Result<()> {
        let shown = format!("/etc/{name}");
        let entry = match rustix::fs::statx(
            &self.fd,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::TYPE | StatxFlags::MNT_ID,
        ) {
            Ok(stx) => Some((
                FileType::from_raw_mode(stx.stx_mode.into()),
                checked_mount_id(&stx)?,
            )),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Error::path("statx", &shown, e.into())),
        };
        match decide(self.on_layer, self.mount, entry) {
            Action::Create => self.create(name, content),
            Action::Cover => self.cover(name, content),
            Action::Replace => match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => self.create(name, content),
                Err(Errno::ROFS) => Ok(()),
                Err(e) => Err(Error::path("replace", &shown, e.into())),
            },
            Action::Leave => Ok(()),
        }
    }

    /// Create `name` in /etc (never following a symlink, never reusing a file).
    fn create(&self, name: &str, content: &str) -> Result<()> {
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => fd,
            Err(Errno::ROFS) => return Ok(()), // a read-only /etc is left alone
            Err(e) => return Err(Error::path("create", format!("/etc/{name}"), e.into())),
        };
        fs::File::from(fd)
            .write_all(content.as_bytes())
            .ctx(|| format!("write /etc/{name}"))
    }

    /// Write `content` to a scratch file on the /dev tmpfs, bind it over the entry (by fd, so
    /// no path is walked again), then unlink the scratch name (the bind keeps the file alive).
    fn cover(&self, name: &str, content: &str) -> Result<()> {
        let target = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::path("open", format!("/etc/{name}"), e.into()))?;
        let scratch = format!("/dev/.{name}");
        write_new(&scratch, content)?;
        let bound = mount(
            Some(scratch.as_str()),
            format!("/proc/self/fd/{}", target.as_raw_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind /etc/{name}"));
        let _ = fs::remove_file(&scratch);
        bound
    }
}

/// The mount id of `path` at `dir` (the kernel's identity of a mount, unique while it exists).
fn mount_of(dir: impl AsFd, path: impl AsRef<OsStr>, flags: AtFlags) -> std::io::Result<u64> {
    let stx = rustix::fs::statx(dir, path.as_ref(), flags, StatxFlags::MNT_ID)?;
    checked_mount_id(&stx).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The mount id a statx returned; an error on kernels older than 5.8, which do not report it
/// (guessing would risk writing into a volume).
fn checked_mount_id(stx: &rustix::fs::Statx) -> Result<u64> {
    if StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::MNT_ID) {
        Ok(stx.stx_mnt_id)
    } else {
        Err(Error::Host(
            "this kernel does not report mount ids (statx STATX_MNT_ID, Linux 5.8+)".into(),
        ))
    }
}

/// Create `path` (never following a symlink, never reusing a file) with `content`.
fn write_new(path: &str, content: &str) -> Result<()> {
    let fd = rustix::fs::open(
        path,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| Error::path("create", path, e.into()))?;
    fs::File::from(fd)
        .write_all(content.as_bytes())
        .ctx(|| format!("write {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_container() {
        let name = format!("h{}", std::process::id());
        let files = EtcFiles::for_container(&name, false);
        assert_eq!(files.hostname, format!("{name}\n"));
        assert!(files.hosts.contains(&format!("127.0.1.1\t{name}\n")));
        assert!(files.hosts.starts_with("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn only_the_layer_is_ever_written() {
        let (layer, volume) = (7, 7 + std::process::id() as u64 % 100 + 1);
        let file = Some((FileType::RegularFile, layer));
        let link = Some((FileType::Symlink, layer));
        assert_eq!(decide(true, layer, None), Action::Create);
        assert_eq!(decide(true, layer, file), Action::Cover);
        assert_eq!(decide(true, layer, link), Action::Replace);
        // /etc routed into a volume: nothing created, replaced or deleted there.
        let in_volume = |t| Some((t, volume));
        assert_eq!(decide(false, volume, None), Action::Leave);
        assert_eq!(
            decide(false, volume, in_volume(FileType::Symlink)),
            Action::Leave
        );
        assert_eq!(
            decide(false, volume, in_volume(FileType::RegularFile)),
            Action::Cover
        );
        // A volume mounted on the file itself is the user's choice.
        assert_eq!(
            decide(true, layer, Some((FileType::RegularFile, volume))),
            Action::Leave
        );
        assert_eq!(
            decide(true, layer, Some((FileType::Directory, layer))),
            Action::Leave
        );
    }
}
