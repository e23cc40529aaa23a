//! The container root: overlay writable layer, pivot_root, /proc, /dev, /etc files.
//!
//! Everything here runs in the child, inside its own mount namespace (made private first), so
//! every mount vanishes with the container and none is ever visible on the host. Only the
//! overlay and the volumes are mounted before pivot_root; everything else is mounted after it,
//! when `/` is the container's root and no path (or symlink in the image) can reach the host.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

    /// Mount the merged view (the image is never written: changes go to `upper`).
    pub fn mount(&self) -> Result<()> {
        let options = self.overlay_options()?;
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .ctx(|| format!("mount overlay on {}", self.merged.display()))
    }
}

/// Make `new_root` the root: pivot_root(".", ".") stacks the old root on the new one, and the
/// lazy unmount detaches the host's whole tree from this namespace. The cwd is reset to `/`
/// so no host directory stays reachable through it.
pub fn pivot_into(new_root: &Path) -> Result<()> {
    nix::unistd::chdir(new_root).ctx(|| format!("chdir {}", new_root.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
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
    MASKED_PATHS.iter().try_for_each(|p| mask(p))?;
    READONLY_PATHS.iter().try_for_each(|p| make_read_only(p))
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
        let path = format!("/dev/{name}");
        mknod(
            path.as_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            libc::makedev(major as u32, minor as u32),
        )
        .ctx(|| format!("mknod {path}"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .ctx(|| format!("chmod {path}"))?;
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
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, link).ctx(|| format!("symlink {link}"))?;
    }
    Ok(())
}

/// Contents of the container's /etc/{hostname,hosts,resolv.conf}, prepared by the parent
/// (it can still read the host's files).
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
    /// the container's root). Where the image has a regular file, a file made on the /dev
    /// tmpfs is bind-mounted over it (as docker does): no copy-up into the writable layer, so
    /// nothing to write to or delete from disk. Otherwise the file is written into the
    /// writable layer, replacing whatever was there (even a symlink). A read-only /etc
    /// (a `:ro` volume) is left alone. Inside a volume (`volume_targets`), nothing is ever
    /// created, replaced or deleted: that is the user's host data; an existing file there is
    /// only covered by a bind mount, which leaves it untouched on the host.
    pub fn install(&self, volume_targets: &[&Path]) -> Result<()> {
        ensure_dir(Path::new("/etc"), 0o755)?;
        let in_volume = |name: &str| {
            let path = Path::new("/etc").join(name);
            volume_targets.iter().any(|t| path.starts_with(t))
        };
        provide("hostname", &self.hostname, in_volume("hostname"))?;
        provide("hosts", &self.hosts, in_volume("hosts"))?;
        if let Some(resolv) = &self.resolv_conf {
            provide("resolv.conf", resolv, in_volume("resolv.conf"))?;
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

fn provide(name: &str, content: &str, in_volume: bool) -> Result<()> {
    let target = format!("/etc/{name}");
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_file() => bind_from_dev(name, &target, content),
        _ if in_volume => Ok(()),
        _ => replace_file(&target, content),
    }
}

/// Write `content` to a scratch file on the /dev tmpfs, bind it over `target`, then unlink
/// the scratch name (the bind mount keeps the file alive).
fn bind_from_dev(name: &str, target: &str, content: &str) -> Result<()> {
    let scratch = format!("/dev/.{name}");
    write_new(&scratch, content)?;
    let bound = mount(
        Some(scratch.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind {target}"));
    let _ = fs::remove_file(&scratch);
    bound
}

fn replace_file(path: &str, content: &str) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => return Ok(()),
        Err(e) => return Err(Error::path("replace", path, e)),
    }
    write_new(path, content)
}

/// Create `path` (never following a symlink, never reusing a file) with `content`.
fn write_new(path: &str, content: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("create {path}"))?;
    file.write_all(content.as_bytes())
        .ctx(|| format!("write {path}"))
}

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

    #[test]
    fn hosts_names_the_container() {
        let name = format!("h{}", std::process::id());
        let files = EtcFiles::for_container(&name, false);
        assert_eq!(files.hostname, format!("{name}\n"));
        assert!(files.hosts.contains(&format!("127.0.1.1\t{name}\n")));
        assert!(files.hosts.starts_with("127.0.0.1\tlocalhost\n"));
    }
}
