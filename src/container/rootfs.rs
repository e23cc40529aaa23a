//! The container root: overlay writable layer, pivot_root, /proc, /dev (the /etc files are in
//! [`super::etc_files`]).
//!
//! Everything here runs in the child, inside its own mount namespace (made private first), so
//! every mount vanishes with the container and none is ever visible on the host (an OCI
//! config without a mount namespace is the exception: see [`super::oci::host_mounts`]). Only the
//! overlay and the volumes are mounted before pivot_root; everything else is mounted after it,
//! when `/` is the container's root and no path (or symlink in the image) can reach the host.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

use crate::error::IoContext;
use crate::{Error, Result};

/// Where one container's writable layer lives: `<root>/.containers/<id>/{upper,work}`, the
/// merged view being mounted on `<id>` itself (in the container's mount namespace only), which
/// saves a directory to create and remove on every run.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The image's rootfs (read-only lower layer, shared by every container of the image).
    pub lower: PathBuf,
    /// The container's own changes.
    pub upper: PathBuf,
    /// overlayfs scratch space (same filesystem as `upper`).
    pub work: PathBuf,
    /// The mount point of the merged view (the state directory), which becomes `/`.
    pub merged: PathBuf,
}

impl Layer {
    /// The layout under a container's state directory `dir`.
    pub fn new(lower: &Path, dir: &Path) -> Layer {
        Layer {
            lower: lower.to_owned(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.to_owned(),
        }
    }

    /// Create the (empty) upper and work directories, in the parent.
    pub fn create_dirs(&self) -> Result<()> {
        for dir in [&self.upper, &self.work] {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .ctx(|| format!("create {}", dir.display()))?;
        }
        Ok(())
    }

    /// overlayfs mount options; paths with the option separators cannot be expressed.
    pub fn overlay_options(&self) -> Result<String> {
        for path in [&self.lower, &self.upper, &self.work] {
            let text = path.to_str().unwrap_or(",");
            if text.contains([',', ':', '\\']) {
                return Err(Error::Runtime(format!(
                    "cannot use {} as an overlay layer: ',', ':' and '\\' are not allowed in store paths",
                    path.display()
                )));
            }
        }
        Ok(format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        ))
    }

    /// Mount the merged view (the image is never written: changes go to `upper`). `volatile`
    /// (Linux 5.10+) skips every sync of the upper layer, above all the one at unmount: without
    /// it, the container's exit runs a syncfs of the whole host filesystem under the store,
    /// waiting for every dirty page of the machine (~0.1 s with 200 MiB dirty). The layer is
    /// thrown away when the container ends, so no write in it needs to be durable. An older
    /// kernel refuses the option (EINVAL): then the plain mount.
    pub fn mount(&self) -> Result<()> {
        let options = self.overlay_options()?;
        let volatile = format!("{options},volatile");
        let mount_with = |options: &str| {
            mount(
                Some("overlay"),
                &self.merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(options),
            )
        };
        match mount_with(&volatile) {
            Err(nix::errno::Errno::EINVAL) => mount_with(&options),
            other => other,
        }
        .ctx(|| format!("mount overlay on {}", self.merged.display()))
    }
}

/// Where the container's root comes from: the two front ends differ only here.
#[derive(Debug, Clone, Copy)]
pub enum Root<'a> {
    /// `run`: the image seen through a per-container writable layer.
    Layer(&'a Layer),
    /// An OCI bundle's root directory (`root.path`), used in place as runc does: bind-mounted
    /// onto itself so that it is a mount point pivot_root accepts.
    Bundle(&'a Path),
}

impl Root<'_> {
    /// The host path that becomes `/` (valid in the container's mount namespace).
    pub fn path(&self) -> &Path {
        match self {
            Root::Layer(layer) => &layer.merged,
            Root::Bundle(path) => path,
        }
    }

    /// Mount it, in the child, once its mounts are private.
    pub fn mount(&self) -> Result<()> {
        match self {
            Root::Layer(layer) => layer.mount(),
            Root::Bundle(path) => mount(
                Some(*path),
                *path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind the root {} onto itself", path.display())),
        }
    }
}

/// Make `new_root` the root: pivot_root(".", ".") stacks the old root on the new one, and the
/// lazy unmount detaches the host's whole tree from this namespace. The cwd is reset to `/`
/// so no host directory stays reachable through it. Where pivot_root is impossible (EINVAL:
/// the runtime's root is the initramfs, or a chroot), [`super::no_pivot`] moves and chroots.
pub fn pivot_into(new_root: &Path) -> Result<()> {
    nix::unistd::chdir(new_root).ctx(|| format!("chdir {}", new_root.display()))?;
    if super::no_pivot::forced() {
        return super::no_pivot::move_root();
    }
    match nix::unistd::pivot_root(".", ".") {
        Err(nix::errno::Errno::EINVAL) => return super::no_pivot::move_root(),
        other => other.ctx(|| "pivot_root")?,
    }
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

/// A container in the runtime's mount namespace ([`super::oci::host_mounts`]): enter its root
/// with `chroot` (pivot_root would move the host's own root), then `cd /`.
pub fn chroot_into(new_root: &Path) -> Result<()> {
    nix::unistd::chdir(new_root).ctx(|| format!("chdir {}", new_root.display()))?;
    nix::unistd::chroot(".").ctx(|| format!("chroot {}", new_root.display()))?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

/// Make the mount at `path` and every mount under it private: in the runtime's mount
/// namespace, so that nothing mounted there for the container propagates to the host's peers.
pub fn make_private(path: &Path) -> Result<()> {
    let flags = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .ctx(|| format!("make {} private", path.display()))
}

/// `--read-only`: remount the container's root mount read-only, once the runtime's own files
/// (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, the working directory) are in place.
/// Only the root mount changes: /proc, /dev (and /dev/shm), tmpfs mounts and volumes keep their
/// own flags.
pub fn make_root_read_only() -> Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    super::userns::remount_keeping_locked(Path::new("/"), flags).ctx(|| "remount / read-only")
}

/// /proc of the container's PID namespace, /sys read-only, a minimal /dev, then runc's masked
/// and read-only paths; `--privileged` gets a writable /sys and nothing masked, as in docker.
pub fn mount_pseudo_filesystems(privileged: bool) -> Result<()> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", hardened, None)?;
    let sys_flags = match privileged {
        true => hardened,
        false => hardened | MsFlags::MS_RDONLY,
    };
    mount_fs("sysfs", "/sys", "sysfs", sys_flags, None)?;
    populate_dev()?;
    if privileged {
        return Ok(());
    }
    harden(&MASKED_PATHS, &READONLY_PATHS)
}

/// Mask `masked` (runc's rule: files under /dev/null, directories under an empty read-only
/// tmpfs) and make `readonly` read-only; paths this kernel lacks are skipped. `run` passes
/// docker's lists, an OCI bundle its config's `maskedPaths` and `readonlyPaths`.
pub fn harden<S: AsRef<str>>(masked: &[S], readonly: &[S]) -> Result<()> {
    masked.iter().try_for_each(|p| mask(p.as_ref()))?;
    readonly.iter().try_for_each(|p| make_read_only(p.as_ref()))
}

/// The devices and links the OCI runtime spec requires in every container's /dev, created
/// (after pivot_root) where the config's mounts left them missing; a /dev the config bound
/// from elsewhere keeps what it has.
pub fn provide_default_devices() -> Result<()> {
    if !Path::new("/dev").is_dir() {
        return Ok(());
    }
    for (name, major, minor) in DEVICES {
        let path = format!("/dev/{name}");
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        make_device(&path, major, minor)?;
    }
    for (link, target) in DEV_LINKS {
        if fs::symlink_metadata(link).is_err() {
            symlink(target, link).ctx(|| format!("symlink {link}"))?;
        }
    }
    Ok(())
}

fn make_device(path: &str, major: u64, minor: u64) -> Result<()> {
    mknod(
        path,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        libc::makedev(major as u32, minor as u32),
    )
    .ctx(|| format!("mknod {path}"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666)).ctx(|| format!("chmod {path}"))
}

/// What the kernel exposes that a container must not read (runc's and docker's defaults): host
/// memory, keys and timing details. Files are covered by /dev/null, directories by an empty
/// read-only tmpfs.
pub const MASKED_PATHS: [&str; 7] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
];

/// What a container may read but never write: the host kernel's settings (`/proc/sys`,
/// `/proc/sysrq-trigger`...), shared by every namespace.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mask(path: &str) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(()); // not on this kernel
    };
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            ro,
            Some("size=0,mode=555"),
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    }
    .ctx(|| format!("mask {path}"))
}

fn make_read_only(path: &str) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(path), path, None::<&str>, bind, None::<&str>)
        .ctx(|| format!("bind {path} for read-only"))?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .ctx(|| format!("make {path} read-only"))
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    ensure_dir(Path::new(target), 0o755)?;
    mount(Some(source), target, Some(fstype), flags, data)
        .ctx(|| format!("mount {fstype} on {target}"))
}

/// The character devices every container gets: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A tmpfs /dev with the standard nodes, its own devpts instance (the host's ptys stay
/// invisible), /dev/shm and the /proc/self/fd links.
fn populate_dev() -> Result<()> {
    mount_fs(
        "tmpfs",
        "/dev",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        make_device(&format!("/dev/{name}"), major, minor)?;
    }
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_fs(
        "shm",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    for (link, target) in DEV_LINKS {
        symlink(target, link).ctx(|| format!("symlink {link}"))?;
    }
    Ok(())
}

/// The links every /dev has: (link, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// `mkdir -p` with `mode` (the child runs with umask 0).
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::path("create", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_name_every_layer() {
        let layer = Layer::new(
            Path::new("/fs/img/rootfs"),
            Path::new("/fs/.containers/abc"),
        );
        assert_eq!(
            layer.overlay_options().unwrap(),
            "lowerdir=/fs/img/rootfs,upperdir=/fs/.containers/abc/upper,workdir=/fs/.containers/abc/work"
        );
        assert_eq!(layer.merged, Path::new("/fs/.containers/abc"));
    }

    #[test]
    fn overlay_refuses_separator_characters() {
        let layer = Layer::new(
            Path::new("/fs/a,b/rootfs"),
            Path::new("/fs/.containers/abc"),
        );
        assert_eq!(layer.overlay_options().unwrap_err().exit_code(), 125);
    }
}
