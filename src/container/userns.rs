//! User namespaces (an OCI config's `linux.namespaces` type `user` with `linux.uidMappings` and
//! `linux.gidMappings`), the way runc does it: the init is cloned with `CLONE_NEWUSER` together
//! with its other new namespaces (so they are owned by it: proc, mqueue and sysfs can be
//! mounted there), the runtime writes its `uid_map` and `gid_map` as host root while the init
//! waits on the sync pipe (`setgroups` stays `allow`, as with runc), then the init becomes
//! root of its namespace ([`become_root`]) before any mount. What a mapped root cannot do is
//! done otherwise: device nodes are bound from the host ([`bind_devices`]),
//! `sysfs` without a network namespace of its own is the host's `/sys` bound, and cgroup2 is
//! the container's own cgroup directory bound ([`adapt_mounts`]).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::unistd::{Gid, Pid, Uid};

use super::mounts::{Kind, Mount};
use super::volume::{fd_path, open_root, target_in_root};
use crate::error::IoContext;
use crate::{Error, Result};

/// The kernel's limit on lines in one `uid_map`/`gid_map` (Linux 4.15+).
const MAX_LINES: usize = 340;

/// One line of a map: `size` ids from `container` inside are `host` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdRange {
    /// The host id of `id` inside, when this range maps it.
    fn host_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.size).then(|| self.host + offset)
    }

    /// `[start, end)` as u64, so that the end of a range ending at 2^32 fits.
    fn span(start: u32, size: u32) -> (u64, u64) {
        (u64::from(start), u64::from(start) + u64::from(size))
    }
}

/// A validated `uid_map` or `gid_map`: what the kernel would refuse is refused here with one
/// line, before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap(Vec<IdRange>);

impl IdMap {
    /// `field` (`linux.uidMappings`) as given: non-empty, every size above 0, no range past
    /// 2^32, no two ranges overlapping inside or on the host, id 0 mapped (the init becomes
    /// root of the namespace), at most [`MAX_LINES`] lines.
    pub fn parse(field: &str, ranges: &[IdRange]) -> Result<IdMap> {
        let bad = |why: String| Error::Usage(format!("config.json: {field}: {why}"));
        if ranges.is_empty() {
            return Err(bad("a user namespace needs at least one mapping".into()));
        }
        if ranges.len() > MAX_LINES {
            return Err(bad(format!("more than {MAX_LINES} mappings")));
        }
        for (i, r) in ranges.iter().enumerate() {
            let (_, inside_end) = IdRange::span(r.container, r.size);
            let (_, host_end) = IdRange::span(r.host, r.size);
            if r.size == 0 {
                return Err(bad(format!("[{i}]: size must be at least 1")));
            }
            if inside_end > 1 << 32 || host_end > 1 << 32 {
                return Err(bad(format!("[{i}]: the range goes past id 4294967295")));
            }
            let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
            for (j, other) in ranges[..i].iter().enumerate() {
                let inside = overlaps(
                    IdRange::span(r.container, r.size),
                    IdRange::span(other.container, other.size),
                );
                let host = overlaps(
                    IdRange::span(r.host, r.size),
                    IdRange::span(other.host, other.size),
                );
                if inside || host {
                    return Err(bad(format!("[{i}] overlaps [{j}]")));
                }
            }
        }
        let map = IdMap(ranges.to_vec());
        if map.host_of(0).is_none() {
            return Err(bad("id 0 must be mapped (the container's root)".into()));
        }
        Ok(map)
    }

    /// The host id of `id` inside, if mapped.
    pub fn host_of(&self, id: u32) -> Option<u32> {
        self.0.iter().find_map(|r| r.host_of(id))
    }

    /// Whether host id `host` is mapped to some id inside.
    fn maps_host(&self, host: u32) -> bool {
        self.0.iter().any(|r| {
            host.checked_sub(r.host)
                .is_some_and(|offset| offset < r.size)
        })
    }

    /// The text of `/proc/PID/uid_map`: one `container host size` line per range.
    fn text(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
            .collect()
    }
}

/// A new user namespace's two maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    pub uids: IdMap,
    pub gids: IdMap,
}

impl UserNamespace {
    /// In the runtime, while the init waits: write its maps (each in one write, as the kernel
    /// requires), uid first. As host root, `setgroups` may stay `allow`.
    pub fn write_maps(&self, pid: Pid) -> Result<()> {
        for (file, map) in [("uid_map", &self.uids), ("gid_map", &self.gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, map.text()).map_err(|e| Error::path("write", &path, e))?;
        }
        Ok(())
    }
}

impl UserNamespace {
    /// The container's root is `root_uid`/`root_gid` on the host, with no supplementary
    /// group and capabilities only over files whose owner and group are both mapped: it must
    /// be able to search every directory down to `rootfs` (runc's rule too), or its first
    /// mount fails. Checked before anything is created, naming the directory.
    pub fn check_reachable(&self, rootfs: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = (self.uids.host_of(0), self.gids.host_of(0));
        for dir in rootfs.ancestors().collect::<Vec<_>>().into_iter().rev() {
            let meta = std::fs::metadata(dir).map_err(|e| Error::path("stat", dir, e))?;
            let mode = meta.mode();
            let searchable = mode & 0o001 != 0
                || (Some(meta.uid()) == uid && mode & 0o100 != 0)
                || (Some(meta.gid()) == gid && mode & 0o010 != 0)
                || (self.uids.maps_host(meta.uid()) && self.gids.maps_host(meta.gid()));
            if !searchable {
                return Err(Error::Usage(format!(
                    "config.json: root.path: {} (mode {:o}, owner {}:{}) cannot be searched by \
                     the container's root (host uid {}, gid {}): a user namespace's root must \
                     reach its rootfs",
                    dir.display(),
                    mode & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    uid.unwrap_or_default(),
                    gid.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// In the init, once its maps are written: become root of the namespace (ids 0, no
/// supplementary group), keeping every capability the namespace gave it, and dumpable again
/// (the id change cleared it), so its `/proc/self` files stay its own until exec.
pub fn become_root() -> Result<()> {
    let fail = |what: &str, e: nix::Error| Error::io(what, e.into());
    let root_gid = Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(|e| fail("setresgid 0", e))?;
    nix::unistd::setgroups(&[]).map_err(|e| fail("setgroups", e))?;
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(|e| fail("setresuid 0", e))?;
    nix::sys::prctl::set_dumpable(true).map_err(|e| fail("PR_SET_DUMPABLE", e))
}

/// The flags of the mount at `path` that a user namespace locks (nosuid, nodev, noexec and
/// the atime ones, from statvfs): a bind remount from inside one must repeat them, or the
/// kernel refuses it (EPERM). runc's rule; for the remount's retry after EPERM.
pub fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(stat) = statvfs(path) else {
        return MsFlags::empty();
    };
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| stat.flags().contains(*st))
    .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
}

/// A bind remount of `at` with `flags`; after EPERM (a user namespace's locked flags) once
/// more with the mount's [`locked_flags`] added. Outside a user namespace root never gets
/// EPERM here, so nothing changes for it.
pub fn remount_keeping_locked(at: &Path, flags: MsFlags) -> nix::Result<()> {
    let remount = |flags| mount(None::<&str>, at, None::<&str>, flags, None::<&str>);
    match remount(flags) {
        Err(nix::errno::Errno::EPERM) => remount(flags | locked_flags(at)),
        other => other,
    }
}

/// The device nodes every container gets; mknod(2) is refused in a user namespace, so each
/// is the host's node bound, as runc does.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// In the init, before the root switch (the host's `/dev` is still reachable): bind the
/// host's node at each of `config_paths` (the config's `linux.devices`, checked at `create`),
/// then each default device the config's mounts left missing from the root's `/dev` (none
/// without a `/dev` directory in the root). Targets are resolved inside the root, like every
/// mount target.
pub fn bind_devices(rootfs: &Path, config_paths: &[&str]) -> Result<()> {
    let root = open_root(rootfs)?;
    for path in config_paths {
        bind_host_node(&root, Path::new(path))?;
    }
    match std::fs::symlink_metadata(rootfs.join("dev")) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(()),
    }
    for name in DEVICES {
        let path = Path::new("/dev").join(name);
        if std::fs::symlink_metadata(rootfs.join("dev").join(name)).is_err() {
            bind_host_node(&root, &path)?;
        }
    }
    Ok(())
}

/// Bind the host's `path` onto the same path inside `root` (an empty file made there first).
fn bind_host_node(root: &std::os::fd::OwnedFd, path: &Path) -> Result<()> {
    let target = target_in_root(root, path, false)?;
    mount(
        Some(path),
        &fd_path(std::os::fd::AsFd::as_fd(&target)),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind the host's {} into the container", path.display()))
}

/// The config's mounts as a mapped root can make them: `sysfs` needs a network namespace the
/// user namespace owns, so without a new one it is the host's `/sys` bound recursively (runc's
/// rule); a cgroup2 mount needs a cgroup namespace it owns, so it is the container's own
/// cgroup directory (`cgroup_dir`) bound. Flags stay (applied by the bind's remount).
pub fn adapt_mounts(mounts: &[Mount], new_netns: bool, cgroup_dir: Option<&Path>) -> Vec<Mount> {
    let mut out = mounts.to_vec();
    for m in &mut out {
        let Kind::Fs { fstype, .. } = &m.kind else {
            continue;
        };
        let source = match fstype.as_str() {
            "sysfs" if !new_netns => PathBuf::from("/sys"),
            "cgroup2" => match cgroup_dir {
                Some(dir) => dir.to_owned(),
                None => continue,
            },
            _ => continue,
        };
        let recursive = fstype == "sysfs";
        m.kind = Kind::Bind { source, recursive };
        m.data.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(container: u32, host: u32, size: u32) -> IdRange {
        IdRange {
            container,
            host,
            size,
        }
    }

    /// A host id base drawn per run, as the suite's tests draw theirs.
    fn drawn() -> u32 {
        100_000 + (std::process::id() % 50_000) * 7
    }

    #[test]
    fn a_drawn_mapping_gives_each_id_its_host_id_and_the_kernels_text() {
        let host = drawn();
        let size = 1 + std::process::id() % 65_536;
        let map = IdMap::parse(
            "linux.uidMappings",
            &[range(0, host, size), range(size, 1, 1)],
        )
        .unwrap();
        assert_eq!(map.host_of(0), Some(host));
        assert_eq!(map.host_of(size - 1), Some(host + size - 1));
        assert_eq!(map.host_of(size), Some(1));
        assert_eq!(map.host_of(size + 1), None);
        assert_eq!(map.text(), format!("0 {host} {size}\n{size} 1 1\n"));
    }

    #[test]
    fn a_range_ending_exactly_at_the_last_id_is_accepted() {
        let size = drawn();
        let map = IdMap::parse("m", &[range(0, u32::MAX - size + 1, size)]).unwrap();
        assert_eq!(map.host_of(size - 1), Some(u32::MAX));
    }

    #[test]
    fn maps_the_kernel_would_refuse_are_refused_with_one_line() {
        let host = drawn();
        for (ranges, needle) in [
            (vec![], "at least one mapping"),
            (vec![range(0, host, 0)], "[0]: size"),
            (vec![range(0, u32::MAX, 2)], "[0]: the range goes past"),
            (vec![range(1, host, 10)], "id 0 must be mapped"),
            (
                vec![range(0, host, 10), range(5, host + 100, 10)],
                "[1] overlaps [0]",
            ),
            (
                vec![range(0, host, 10), range(10, host + 9, 1)],
                "[1] overlaps [0]",
            ),
            (vec![range(0, host, 1); MAX_LINES + 1], "more than 340"),
        ] {
            let err = IdMap::parse("linux.gidMappings", &ranges).unwrap_err();
            let line = err.to_string();
            assert!(
                line.starts_with("config.json: linux.gidMappings: ") && line.contains(needle),
                "{needle}: {line}"
            );
            assert!(!line.contains('\n'));
            assert_eq!(err.exit_code(), 125);
        }
    }

    #[test]
    fn a_rootfs_the_mapped_root_cannot_search_is_refused_naming_the_directory() {
        use std::os::unix::fs::PermissionsExt;
        let host = drawn();
        let userns = UserNamespace {
            uids: IdMap::parse("u", &[range(0, host, 65_536)]).unwrap(),
            gids: IdMap::parse("g", &[range(0, host, 65_536)]).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("bundle").join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = userns.check_reachable(&rootfs).unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains(&format!("root.path: {} (mode 700", bundle.display()))
                && line.contains(&format!("host uid {host}, gid {host}")),
            "{line}"
        );
        assert_eq!(err.exit_code(), 125);
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o701)).unwrap();
        userns.check_reachable(&rootfs).unwrap();
    }

    #[test]
    fn sysfs_is_bound_without_a_network_namespace_and_cgroup2_is_the_containers_dir() {
        let fs = |fstype: &str| Mount {
            destination: PathBuf::from(format!("/{fstype}")),
            kind: Kind::Fs {
                fstype: fstype.into(),
                source: fstype.into(),
            },
            flags: MsFlags::MS_RDONLY,
            propagation: MsFlags::empty(),
            data: "x=1".into(),
        };
        let dir = PathBuf::from(format!("/sys/fs/cgroup/c{}", drawn()));
        let given = [fs("sysfs"), fs("cgroup2"), fs("proc")];
        let out = adapt_mounts(&given, false, Some(&dir));
        assert_eq!(
            out[0].kind,
            Kind::Bind {
                source: "/sys".into(),
                recursive: true
            }
        );
        assert_eq!(
            out[1].kind,
            Kind::Bind {
                source: dir.clone(),
                recursive: false
            }
        );
        assert_eq!(out[1].flags, MsFlags::MS_RDONLY);
        assert_eq!(out[2], given[2]);
        let with_netns = adapt_mounts(&given, true, Some(&dir));
        assert_eq!(with_netns[0], given[0]);
    }
}
