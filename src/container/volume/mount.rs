//! The child's half, in its private mount namespace before pivot_root: each volume bound onto
//! its target resolved inside the container root, then made read-only and `nodev` as asked.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatVfsMountFlags, StatxFlags};
use rustix::io::Errno;
use rustix::mount::MountFlags;

use crate::error::IoContext;
use crate::{Error, Result};

use super::parse::Volume;

/// Mount every volume under `rootfs` (the container's merged root, in the container's own
/// mount namespace, before pivot_root), resolving each target inside `rootfs`. With `nodev`
/// (every container but `--privileged` ones) a device node in a volume cannot be opened: the
/// device policy's second half, beside the missing `CAP_MKNOD`.
pub fn mount_all(volumes: &[Volume], rootfs: &Path, nodev: bool) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    let root = open_root(rootfs)?;
    for volume in in_mount_order(volumes) {
        mount_one(&root, volume, nodev)?;
    }
    Ok(())
}

/// Parents before children (`/a` before `/a/b`), so a nested target lands on the outer volume
/// instead of being hidden under it.
fn in_mount_order(volumes: &[Volume]) -> Vec<&Volume> {
    let mut ordered: Vec<&Volume> = volumes.iter().collect();
    ordered.sort_by_key(|v| v.target.components().count());
    ordered
}

/// An `O_PATH` fd of `target` resolved inside `root` (an `O_PATH` fd of the container root),
/// missing components created (the leaf as a directory when `dir`, else as an empty file):
/// the same scoped walk volumes get, for the OCI config's mounts ([`crate::container::mounts`]).
pub(crate) fn target_in_root(root: &OwnedFd, target: &Path, dir: bool) -> Result<OwnedFd> {
    let leaf = if dir { Leaf::Dir } else { Leaf::File };
    resolve_in_root(root, target, leaf)
}

/// The container root opened `O_PATH`, for [`target_in_root`].
pub(crate) fn open_root(rootfs: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::path("open container root", rootfs, e.into()))
}

fn mount_one(root: &OwnedFd, volume: &Volume, nodev: bool) -> Result<()> {
    let source_is_dir = fs::metadata(&volume.source)
        .ctx(|| format!("volume source {}", volume.source.display()))?
        .is_dir();
    let leaf = if source_is_dir { Leaf::Dir } else { Leaf::File };
    let target = resolve_in_root(root, &volume.target, leaf)?;
    check_leaf_kind(&target, volume, source_is_dir)?;
    refuse_shared_mount(&target, &volume.target)?;
    rustix::mount::mount_bind_recursive(&volume.source, fd_path(target.as_fd()))
        .map_err(|e| mount_error("bind", volume, e))?;
    let mut attrs = Attrs::empty();
    attrs.set(Attrs::RDONLY, volume.read_only);
    attrs.set(Attrs::NODEV, nodev);
    if attrs.is_empty() {
        return Ok(());
    }
    restrict(root, volume, &target, attrs)
}

bitflags::bitflags! {
    /// Mount attributes a volume may get (values of `MOUNT_ATTR_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Attrs: u64 {
        const RDONLY = libc::MOUNT_ATTR_RDONLY;
        const NODEV = libc::MOUNT_ATTR_NODEV;
    }
}

/// What to create when the last component of a target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Dir,
    File,
}

/// An `O_PATH` fd of `target` resolved inside `root`, creating missing components (directories,
/// and the leaf as `leaf`) in the directory their parent really resolved to. Every lookup is
/// scoped by `RESOLVE_IN_ROOT`: `..` and absolute symlinks stop at `root`.
fn resolve_in_root(root: &OwnedFd, target: &Path, leaf: Leaf) -> Result<OwnedFd> {
    let names: Vec<&OsStr> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut current = open_in_root(root, Path::new("."))
        .map_err(|e| Error::path("open container root", target, e.into()))?;
    for (i, name) in names.iter().enumerate() {
        let prefix: PathBuf = names[..=i].iter().collect();
        current = match open_in_root(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let kind = if i + 1 == names.len() {
                    leaf
                } else {
                    Leaf::Dir
                };
                create_entry(&current, name, kind, target, &prefix)?;
                open_in_root(root, &prefix)
                    .map_err(|e| Error::path("volume target", target, e.into()))?
            }
            Err(e) => return Err(Error::path("volume target", target, e.into())),
        };
    }
    Ok(current)
}

/// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, retried on EAGAIN
/// (the kernel asks for a retry when a concurrent rename could have escaped the root).
fn open_in_root(root: &OwnedFd, path: &Path) -> rustix::io::Result<OwnedFd> {
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

/// Create `name` in `parent` (a directory fd already resolved inside the root). EEXIST here means
/// the name exists but did not resolve: a dangling symlink, which we refuse rather than follow.
fn create_entry(
    parent: &OwnedFd,
    name: &OsStr,
    kind: Leaf,
    target: &Path,
    at: &Path,
) -> Result<()> {
    let created = match kind {
        Leaf::Dir => rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)),
        Leaf::File => rustix::fs::openat(
            parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop),
    };
    match created {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => Err(Error::Runtime(format!(
            "volume target {}: /{} is a symlink to a missing path in the image; refusing to follow it",
            target.display(),
            at.display()
        ))),
        Err(Errno::ROFS) => Err(Error::Runtime(format!(
            "volume target {}: cannot create /{} on a read-only file system (inside a read-only \
             volume?): create it in that volume's source first",
            target.display(),
            at.display()
        ))),
        Err(e) => Err(Error::path("create volume mount point", target, e.into())),
    }
}

/// A directory binds only onto a directory and a file only onto a non-directory; say so
/// clearly instead of letting mount(2) answer ENOTDIR.
fn check_leaf_kind(target: &OwnedFd, volume: &Volume, source_is_dir: bool) -> Result<()> {
    let stat = rustix::fs::fstat(target)
        .map_err(|e| Error::path("volume target", &volume.target, e.into()))?;
    let target_is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
    match (source_is_dir, target_is_dir) {
        (true, false) => Err(Error::Runtime(format!(
            "volume {}: source is a directory but {} is not a directory in the image",
            volume.source.display(),
            volume.target.display()
        ))),
        (false, true) => Err(Error::Runtime(format!(
            "volume {}: source is a file but {} is a directory in the image",
            volume.source.display(),
            volume.target.display()
        ))),
        _ => Ok(()),
    }
}

/// Defence in depth: a bind under a shared mount would propagate to its peers (possibly the
/// host). The run path makes the namespace private first; refuse loudly if it did not.
fn refuse_shared_mount(target: &OwnedFd, shown: &Path) -> Result<()> {
    let mnt_id = mount_id(target.as_fd()).map_err(|e| Error::path("volume target", shown, e))?;
    let mountinfo = fs::read_to_string("/proc/thread-self/mountinfo")
        .ctx(|| "read /proc/thread-self/mountinfo")?;
    if mount_is_shared(&mountinfo, mnt_id) {
        return Err(Error::Runtime(format!(
            "refusing to mount volume at {}: its mount is shared and the bind would propagate \
             outside the container",
            shown.display()
        )));
    }
    Ok(())
}

fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let stx = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?;
    Ok(stx.stx_mnt_id)
}

/// Whether mount `id` carries a `shared:N` optional field in a mountinfo table.
fn mount_is_shared(mountinfo: &str, id: u64) -> bool {
    mountinfo.lines().any(|line| {
        let mut fields = line.split(' ');
        fields.next().and_then(|f| f.parse::<u64>().ok()) == Some(id)
            && fields
                .skip(5)
                .take_while(|f| *f != "-")
                .any(|f| f.starts_with("shared:"))
    })
}

/// The magic link that names exactly the object `fd` refers to, so mount(2) does not walk a
/// path again (a path walk is where a symlink could redirect it).
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_error(what: &str, volume: &Volume, e: Errno) -> Error {
    Error::io(
        format!(
            "{what} volume {} on {}",
            volume.source.display(),
            volume.target.display()
        ),
        e.into(),
    )
}

/// Give the new bind (and its submounts) `attrs`, then check it really has them. `under` is
/// the mount point below the bind; the bind's own root is found by resolving the target again.
fn restrict(root: &OwnedFd, volume: &Volume, under: &OwnedFd, attrs: Attrs) -> Result<()> {
    let top = open_in_root(root, &volume.target)
        .map_err(|e| Error::path("volume target", &volume.target, e.into()))?;
    let (below, above) = (
        mount_id(under.as_fd()).map_err(|e| Error::path("volume target", &volume.target, e))?,
        mount_id(top.as_fd()).map_err(|e| Error::path("volume target", &volume.target, e))?,
    );
    if below == above {
        return Err(Error::Runtime(format!(
            "volume {}: bind mount not found after mounting it",
            volume.target.display()
        )));
    }
    match set_attrs_recursive(top.as_fd(), attrs) {
        Ok(()) => {}
        Err(Errno::NOSYS) => remount_with(top.as_fd(), volume, attrs)?,
        Err(e) => return Err(mount_error("restrict", volume, e)),
    }
    verify_attrs(top.as_fd(), volume, attrs)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {attr_set: attrs})` (Linux 5.12+):
/// for the bind and every submount it copied. rustix has no wrapper.
fn set_attrs_recursive(fd: BorrowedFd<'_>, attrs: Attrs) -> rustix::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs.bits(),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated string, `attr` lives across the call and its
    // size is passed; the fd is borrowed for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// Older kernels: `MS_REMOUNT | MS_BIND` with `attrs` on the bind's root only (submounts stay
/// as they were), keeping the nosuid/nodev/noexec flags it already had.
fn remount_with(fd: BorrowedFd<'_>, volume: &Volume, attrs: Attrs) -> Result<()> {
    let current = rustix::fs::fstatvfs(fd)
        .map_err(|e| Error::path("statvfs volume", &volume.target, e.into()))?
        .f_flag;
    let mut flags = MountFlags::BIND;
    flags.set(MountFlags::RDONLY, attrs.contains(Attrs::RDONLY));
    flags.set(MountFlags::NODEV, attrs.contains(Attrs::NODEV));
    for (st, ms) in [
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    rustix::mount::mount_remount(fd_path(fd), flags, "")
        .map_err(|e| mount_error("remount", volume, e))
}

fn verify_attrs(fd: BorrowedFd<'_>, volume: &Volume, attrs: Attrs) -> Result<()> {
    let flags = rustix::fs::fstatvfs(fd)
        .map_err(|e| Error::path("statvfs volume", &volume.target, e.into()))?
        .f_flag;
    for (attr, flag, what) in [
        (
            Attrs::RDONLY,
            StatVfsMountFlags::RDONLY,
            "writable after the read-only remount",
        ),
        (
            Attrs::NODEV,
            StatVfsMountFlags::NODEV,
            "still allows devices after the nodev remount",
        ),
    ] {
        if attrs.contains(attr) && !flags.contains(flag) {
            return Err(Error::Runtime(format!(
                "volume {} is {what}",
                volume.target.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse::random_name;
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn mount_order_puts_parents_first() {
        let v = |t: &str| Volume {
            source: "/s".into(),
            target: t.into(),
            read_only: false,
        };
        let vols = [v("/a/b/c"), v("/a"), v("/a/b")];
        let order: Vec<_> = in_mount_order(&vols)
            .iter()
            .map(|v| v.target.clone())
            .collect();
        assert_eq!(order, [PathBuf::from("/a"), "/a/b".into(), "/a/b/c".into()]);
    }

    #[test]
    fn mountinfo_shared_flag_is_read_from_optional_fields() {
        let info = "21 1 0:20 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    42 21 0:30 / /x rw master:3 - tmpfs tmpfs rw\n";
        assert!(mount_is_shared(info, 21));
        assert!(!mount_is_shared(info, 42));
        assert!(!mount_is_shared(info, 7));
    }

    // --- privileged: each runs on its own thread in a private mount namespace --------------

    /// Run `f` on a fresh thread that unshared its mount namespace and made it private, so
    /// nothing it mounts is visible to (or propagates to) the host; the namespace dies with
    /// the thread. `None` (after a visible skip line) when not root.
    fn in_private_mount_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED volume unit test: needs root (mount namespaces)");
            return None;
        }
        let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let result = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            rustix::mount::mount_change(
                "/",
                rustix::mount::MountPropagationFlags::PRIVATE
                    | rustix::mount::MountPropagationFlags::REC,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap();
        assert_eq!(fs::read_to_string("/proc/self/mountinfo").unwrap(), before);
        Some(result)
    }

    /// A container-like root and a host source dir holding one random file.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        source: PathBuf,
        file: String,
        content: String,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let source = tmp.path().join("source");
        for d in ["etc", "tmp", "data"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::create_dir(&source).unwrap();
        let (file, content) = (random_name(), random_name());
        fs::write(source.join(&file), &content).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            source,
            file,
            content,
        }
    }

    fn vol(source: &Path, target: &str, read_only: bool) -> Volume {
        Volume {
            source: source.to_owned(),
            target: target.into(),
            read_only,
        }
    }

    #[test]
    fn hostile_symlinks_resolve_inside_the_root() {
        let fx = fixture();
        let (a, b, c) = (random_name(), random_name(), random_name());
        symlink("/etc", fx.root.join("evil")).unwrap();
        symlink("../../..", fx.root.join("up")).unwrap();
        symlink("data/../../../../..", fx.root.join("rel")).unwrap();
        let vols = vec![
            vol(&fx.source, &format!("/evil/{a}"), false),
            vol(&fx.source, &format!("/up/tmp/{b}"), false),
            vol(&fx.source, &format!("/rel/{c}"), false),
        ];
        let (root, file, content) = (fx.root.clone(), fx.file.clone(), fx.content.clone());
        in_private_mount_ns(move || {
            mount_all(&vols, &root, true).unwrap();
            for inside in [format!("etc/{a}"), format!("tmp/{b}"), c.clone()] {
                let seen = fs::read_to_string(root.join(&inside).join(&file)).unwrap();
                assert_eq!(seen, content, "{inside}");
            }
            for outside in [format!("/etc/{a}"), format!("/tmp/{b}"), format!("/{c}")] {
                assert!(
                    !Path::new(&outside).exists(),
                    "{outside} created outside the root"
                );
            }
        });
    }

    #[test]
    fn read_only_is_recursive_and_really_read_only() {
        let fx = fixture();
        fs::create_dir(fx.source.join("sub")).unwrap();
        let vols = vec![vol(&fx.source, "/data/ro", true)];
        let (root, source) = (fx.root.clone(), fx.source.clone());
        in_private_mount_ns(move || {
            rustix::mount::mount(
                "tmpfs",
                source.join("sub"),
                "tmpfs",
                MountFlags::empty(),
                None,
            )
            .unwrap();
            mount_all(&vols, &root, true).unwrap();
            for dir in ["data/ro", "data/ro/sub"] {
                let err = fs::write(root.join(dir).join("w"), "x").unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{dir}");
            }
            fs::write(source.join("w"), "host side stays writable").unwrap();
        });
    }

    #[test]
    fn file_source_creates_a_file_mount_point() {
        let fx = fixture();
        let src = fx.source.join(&fx.file);
        let vols = vec![vol(&src, "/etc/deep/conf", false)];
        let (root, content) = (fx.root.clone(), fx.content.clone());
        in_private_mount_ns(move || {
            mount_all(&vols, &root, true).unwrap();
            assert_eq!(
                fs::read_to_string(root.join("etc/deep/conf")).unwrap(),
                content
            );
        });
        assert!(
            fx.root.join("etc/deep/conf").is_file(),
            "mount point is a plain file"
        );
    }

    #[test]
    fn dangling_symlink_and_kind_mismatch_are_refused() {
        let fx = fixture();
        symlink("/nowhere/deep", fx.root.join("dangling")).unwrap();
        fs::write(fx.root.join("etc/afile"), "").unwrap();
        let cases = vec![
            vol(&fx.source, "/dangling/x", false),
            vol(&fx.source, "/etc/afile", false),
            vol(&fx.source.join(&fx.file), "/data", false),
        ];
        let root = fx.root.clone();
        in_private_mount_ns(move || {
            let before = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            for case in cases {
                let err = mount_all(std::slice::from_ref(&case), &root, true).unwrap_err();
                assert!(!err.to_string().contains('\n'), "{err}");
                let after = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
                assert_eq!(after, before, "{case:?} mounted something");
            }
        });
        assert!(!fx.root.join("nowhere").exists());
    }

    #[test]
    fn shared_root_is_refused() {
        let fx = fixture();
        let vols = vec![vol(&fx.source, "/data", false)];
        let root = fx.root.clone();
        in_private_mount_ns(move || {
            rustix::mount::mount("tmpfs", &root, "tmpfs", MountFlags::empty(), None).unwrap();
            rustix::mount::mount_change(&root, rustix::mount::MountPropagationFlags::SHARED)
                .unwrap();
            let err = mount_all(&vols, &root, true).unwrap_err();
            assert!(err.to_string().contains("shared"), "{err}");
        });
    }
}
