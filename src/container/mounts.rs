//! An OCI config's `mounts`: parsed once in the runtime (a bad entry costs one line, nothing
//! created), mounted by the container's init in the listed order before pivot_root, each
//! destination resolved inside the root exactly as volumes are ([`super::volume`]), so no
//! symlink in the bundle can make a mount land on the host.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::volume::{fd_path, open_root, target_in_root};
use crate::error::IoContext;
use crate::{Error, Result};

/// The file systems a config may mount (besides binds).
const FILESYSTEMS: [&str; 5] = ["tmpfs", "proc", "sysfs", "mqueue", "devpts"];

/// cgroup2's hierarchy-wide options (cgroup-v2.rst, "Mounting").
const CGROUP2_ROOT_FLAGS: [&str; 6] = [
    "nsdelegate",
    "favordynmods",
    "memory_localevents",
    "memory_recursiveprot",
    "memory_hugetlb_accounting",
    "pids_localevents",
];

/// runc's option extensions this runtime does not implement: refused, never ignored.
const UNSUPPORTED_OPTIONS: [&str; 8] = [
    "tmpcopyup",
    "idmap",
    "ridmap",
    "rro",
    "rrw",
    "rnosuid",
    "rnodev",
    "rnoexec",
];

/// One entry of `mounts`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute, normalised path inside the container.
    pub destination: PathBuf,
    /// What is mounted there.
    pub kind: Kind,
    /// Flags from the options (`ro`, `nosuid`, ...); for a bind, applied by a remount.
    pub flags: MsFlags,
    /// `private`, `rslave`...: applied after the mount.
    pub propagation: MsFlags,
    /// The file system's own options (`mode=755`, `size=64k`, `newinstance`...); on a bind,
    /// accepted as runc does and ignored (the kernel ignores data with `MS_BIND`).
    pub data: String,
}

/// A bind of a host path, or a new instance of a file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `bind`/`rbind`: `source` is a host path (absolute, or relative to the bundle).
    Bind { source: PathBuf, recursive: bool },
    /// `tmpfs`, `proc`, `sysfs`, `mqueue`, `devpts`, `cgroup2` (`cgroup` on a v2 host).
    Fs { fstype: String, source: String },
    /// `cgroup` on a v1 host, as runc mounts it: a tmpfs holding, per hierarchy, a bind of the
    /// container's own cgroup directory (`memory/`, `cpu,cpuacct/` with `cpu` and `cpuacct`
    /// links). `dirs` are those host directories, known once `create` has made the cgroup
    /// ([`with_cgroup_dirs`]); `levels` is how deep they are below their hierarchy's root.
    CgroupV1 { dirs: Vec<PathBuf>, levels: usize },
}

/// Parse one mount of the config (`index` names it in errors). `bundle` anchors relative bind
/// sources; `host_is_v2` decides what `cgroup` means.
pub fn parse(
    index: usize,
    destination: &Path,
    typ: Option<&str>,
    source: Option<&Path>,
    options: &[String],
    bundle: &Path,
    host_is_v2: bool,
) -> Result<Mount> {
    let field = format!("mounts[{index}]");
    let bad = |why: String| Error::Usage(format!("config.json: {field}: {why}"));
    let destination = normalise(destination).ok_or_else(|| {
        bad(format!(
            "destination {destination:?} must be an absolute path"
        ))
    })?;
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut bind = None;
    let mut data = Vec::new();
    for option in options {
        if UNSUPPORTED_OPTIONS.contains(&option.as_str()) {
            return Err(bad(format!("option {option:?} is not supported")));
        }
        match option.as_str() {
            "bind" => bind = Some(false),
            "rbind" => bind = Some(true),
            other => match flag(other) {
                Some(Flag::Set(f)) => flags |= f,
                Some(Flag::Clear(f)) => flags &= !f,
                Some(Flag::Propagation(f)) => propagation = f,
                None => data.push(other.to_owned()),
            },
        }
    }
    let typ = typ.unwrap_or("");
    let kind = if bind.is_some() || typ == "bind" {
        let source = source.ok_or_else(|| bad("a bind mount needs a source".into()))?;
        Kind::Bind {
            source: bundle.join(source),
            recursive: bind.unwrap_or(false),
        }
    } else {
        match typ {
            "cgroup" | "cgroup2" if host_is_v2 => {
                // Mounted in the host's cgroup namespace, cgroup2 applies its options to the
                // whole hierarchy: keep the host's (nsdelegate...) or the mount clears them.
                data.extend(cgroup2_root_flags(&read_mountinfo()));
                fs_kind("cgroup2", source)
            }
            "cgroup" => Kind::CgroupV1 {
                dirs: Vec::new(),
                levels: 0,
            },
            fstype if FILESYSTEMS.contains(&fstype) => fs_kind(fstype, source),
            other => return Err(bad(format!("type {other:?} is not supported"))),
        }
    };
    // A bind's file-system data (`mode=755`...) is kept but means nothing: runc passes it to
    // mount(2), which ignores data with MS_BIND; this runtime does not pass it at all.
    Ok(Mount {
        destination,
        kind,
        flags,
        propagation,
        data: data.join(","),
    })
}

/// `mounts` with the container's cgroup directories (`dirs`, at `rel` below each hierarchy's
/// root) filled into its v1 `cgroup` entries: they exist only once `create` made the cgroup.
pub fn with_cgroup_dirs(mounts: &[Mount], dirs: &[PathBuf], rel: &Path) -> Vec<Mount> {
    let mut out = mounts.to_vec();
    for m in &mut out {
        if let Kind::CgroupV1 { .. } = m.kind {
            m.kind = Kind::CgroupV1 {
                dirs: dirs.to_vec(),
                levels: rel.components().count(),
            };
        }
    }
    out
}

fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The hierarchy-wide options of the host's cgroup2 mount at `/sys/fs/cgroup`, from
/// `mountinfo` (its super options, after the ` - cgroup2 SOURCE ` separator).
fn cgroup2_root_flags(mountinfo: &str) -> Vec<String> {
    let line = mountinfo.lines().find(|l| {
        l.split(' ').nth(4) == Some(crate::container::cgroup::layout::V2_MOUNT)
            && l.contains(" - cgroup2 ")
    });
    let Some(super_options) = line.and_then(|l| l.split(" - ").nth(1)?.split(' ').nth(2)) else {
        return Vec::new();
    };
    super_options
        .split(',')
        .filter(|o| CGROUP2_ROOT_FLAGS.contains(o))
        .map(str::to_owned)
        .collect()
}

fn fs_kind(fstype: &str, source: Option<&Path>) -> Kind {
    Kind::Fs {
        fstype: fstype.to_owned(),
        source: source.map_or_else(|| fstype.to_owned(), |s| s.to_string_lossy().into_owned()),
    }
}

/// `/a/./b//c` → `/a/b/c`; `None` for a relative path or one with `..`.
fn normalise(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

enum Flag {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
}

/// mount(8)'s option words that are flags, not file-system data (runc's table).
fn flag(option: &str) -> Option<Flag> {
    use MsFlags as F;
    let set = |f| Some(Flag::Set(f));
    let clear = |f| Some(Flag::Clear(f));
    let propagation = |f| Some(Flag::Propagation(f));
    match option {
        "ro" => set(F::MS_RDONLY),
        "rw" => clear(F::MS_RDONLY),
        "nosuid" => set(F::MS_NOSUID),
        "suid" => clear(F::MS_NOSUID),
        "nodev" => set(F::MS_NODEV),
        "dev" => clear(F::MS_NODEV),
        "noexec" => set(F::MS_NOEXEC),
        "exec" => clear(F::MS_NOEXEC),
        "sync" => set(F::MS_SYNCHRONOUS),
        "async" => clear(F::MS_SYNCHRONOUS),
        "dirsync" => set(F::MS_DIRSYNC),
        "mand" => set(F::MS_MANDLOCK),
        "nomand" => clear(F::MS_MANDLOCK),
        "atime" => clear(F::MS_NOATIME),
        "noatime" => set(F::MS_NOATIME),
        "diratime" => clear(F::MS_NODIRATIME),
        "nodiratime" => set(F::MS_NODIRATIME),
        "relatime" => set(F::MS_RELATIME),
        "norelatime" => clear(F::MS_RELATIME),
        "strictatime" => set(F::MS_STRICTATIME),
        "nostrictatime" => clear(F::MS_STRICTATIME),
        "private" => propagation(F::MS_PRIVATE),
        "rprivate" => propagation(F::MS_PRIVATE | F::MS_REC),
        "shared" => propagation(F::MS_SHARED),
        "rshared" => propagation(F::MS_SHARED | F::MS_REC),
        "slave" => propagation(F::MS_SLAVE),
        "rslave" => propagation(F::MS_SLAVE | F::MS_REC),
        "unbindable" => propagation(F::MS_UNBINDABLE),
        "runbindable" => propagation(F::MS_UNBINDABLE | F::MS_REC),
        _ => None,
    }
}

/// In the container's init, before pivot_root: mount every entry under `rootfs`, in order.
pub fn mount_all(mounts: &[Mount], rootfs: &Path) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let root = open_root(rootfs)?;
    for m in mounts {
        mount_one(&root, m)?;
    }
    Ok(())
}

/// Apply `m`'s flags to the mount just made at its destination by a bind remount (the only way
/// to set per-mount flags such as read-only). The new mount hides the path's old target, so the
/// destination is resolved again to reach it; `what` names the step in the error.
fn remount_with_flags(
    root: &std::os::fd::OwnedFd,
    m: &Mount,
    is_dir: bool,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let top = target_in_root(root, &m.destination, is_dir)?;
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | m.flags;
    super::userns::remount_keeping_locked(&fd_path(top.as_fd()), remount).ctx(what)
}

fn mount_one(root: &std::os::fd::OwnedFd, m: &Mount) -> Result<()> {
    let shown = m.destination.display();
    let is_dir = match &m.kind {
        Kind::Bind { source, .. } => std::fs::metadata(source)
            .ctx(|| format!("mount source {} for {shown}", source.display()))?
            .is_dir(),
        Kind::Fs { .. } | Kind::CgroupV1 { .. } => true,
    };
    let target = target_in_root(root, &m.destination, is_dir)?;
    let at = fd_path(target.as_fd());
    match &m.kind {
        Kind::Bind { source, recursive } => {
            let mut flags = MsFlags::MS_BIND;
            flags.set(MsFlags::MS_REC, *recursive);
            mount(Some(source), &at, None::<&str>, flags, None::<&str>)
                .ctx(|| format!("bind {} on {shown}", source.display()))?;
            if !m.flags.is_empty() {
                remount_with_flags(root, m, is_dir, || {
                    format!("remount {shown} with its options")
                })?;
            }
        }
        Kind::Fs { fstype, source } => {
            // Read-only only as a per-mount flag, by a bind remount: mount(2) with MS_RDONLY
            // of a file system whose superblock is shared (cgroup2, the host network's sysfs)
            // would make that superblock, the host's, read-only.
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            let flags = m.flags - MsFlags::MS_RDONLY;
            mount(
                Some(source.as_str()),
                &at,
                Some(fstype.as_str()),
                flags,
                data,
            )
            .ctx(|| format!("mount {fstype} on {shown}"))?;
            if m.flags.contains(MsFlags::MS_RDONLY) {
                remount_with_flags(root, m, is_dir, || format!("make {shown} read-only"))?;
            }
        }
        Kind::CgroupV1 { dirs, levels } => {
            mount_cgroup_v1(root, m, &at, dirs, *levels)?;
            if m.flags.contains(MsFlags::MS_RDONLY) {
                remount_with_flags(root, m, is_dir, || format!("make {shown} read-only"))?;
            }
        }
    }
    if !m.propagation.is_empty() {
        let top = target_in_root(root, &m.destination, is_dir)?;
        mount(
            None::<&str>,
            &fd_path(top.as_fd()),
            None::<&str>,
            m.propagation,
            None::<&str>,
        )
        .ctx(|| format!("set the propagation of {shown}"))?;
    }
    Ok(())
}

/// A v1 `cgroup` mount at `at`: a tmpfs, then each of the container's cgroup directories bound
/// at `<destination>/<hierarchy>` with the mount's flags (read-only as engines ask), and the
/// names of co-mounted controllers (`cpu` for `cpu,cpuacct`) as links.
fn mount_cgroup_v1(
    root: &std::os::fd::OwnedFd,
    m: &Mount,
    at: &Path,
    dirs: &[PathBuf],
    levels: usize,
) -> Result<()> {
    let shown = m.destination.display();
    let flags = m.flags - MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some("mode=755"))
        .ctx(|| format!("mount tmpfs on {shown}"))?;
    for dir in dirs {
        let Some(name) = dir.ancestors().nth(levels).and_then(Path::file_name) else {
            continue;
        };
        let hierarchy = Mount {
            destination: m.destination.join(name),
            kind: Kind::Bind {
                source: dir.clone(),
                recursive: false,
            },
            flags: m.flags,
            propagation: MsFlags::empty(),
            data: String::new(),
        };
        mount_one(root, &hierarchy)?;
        // The tmpfs hides `at`'s directory: reach the tmpfs itself for the links.
        let top = target_in_root(root, &m.destination, true)?;
        let name = name.to_string_lossy();
        for controller in name.split(',').filter(|c| *c != name) {
            let link = fd_path(top.as_fd()).join(controller);
            std::os::unix::fs::symlink(&*name, &link)
                .ctx(|| format!("link {shown}/{controller}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn parse_one(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
        parse(
            3,
            Path::new(dest),
            Some(typ),
            Some(Path::new(source)),
            &strings(options),
            Path::new("/bundle"),
            false,
        )
    }

    #[test]
    fn flags_and_data_are_split_like_mount8() {
        let size = format!("size={}k", 64 + std::process::id() % 100);
        let m = parse_one(
            "/run//x/.",
            "tmpfs",
            "tmpfs",
            &["nosuid", "ro", "mode=755", &size],
        )
        .unwrap();
        assert_eq!(m.destination, Path::new("/run/x"));
        assert_eq!(m.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(m.data, format!("mode=755,{size}"));
        assert!(matches!(m.kind, Kind::Fs { ref fstype, .. } if fstype == "tmpfs"));
    }

    #[test]
    fn cgroup2_mounts_keep_the_hosts_hierarchy_wide_options() {
        let info = "29 24 0:25 / /sys/fs/cgroup rw,relatime shared:4 - cgroup2 cgroup2 \
                    rw,nsdelegate,memory_recursiveprot\n30 24 0:26 / /x rw - tmpfs t rw,size=4k\n";
        assert_eq!(
            cgroup2_root_flags(info),
            vec!["nsdelegate".to_string(), "memory_recursiveprot".to_string()]
        );
        assert!(cgroup2_root_flags("").is_empty());
    }

    #[test]
    fn binds_take_relative_sources_from_the_bundle() {
        let m = parse_one("/data", "bind", "vol", &["rbind", "ro", "rprivate"]).unwrap();
        assert_eq!(
            m.kind,
            Kind::Bind {
                source: PathBuf::from("/bundle/vol"),
                recursive: true
            }
        );
        assert_eq!(m.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let m = parse_one("/data", "none", "/abs", &["bind"]).unwrap();
        assert!(matches!(
            m.kind,
            Kind::Bind {
                recursive: false,
                ..
            }
        ));
    }

    #[test]
    fn a_binds_file_system_data_is_accepted_as_runc_does_and_its_flags_kept() {
        let mode = format!("mode={:o}", 0o700 + std::process::id() % 0o77);
        let m = parse_one("/d", "bind", "src", &["rbind", &mode, "ro", "uid=7"]).unwrap();
        assert!(matches!(
            m.kind,
            Kind::Bind {
                recursive: true,
                ..
            }
        ));
        assert_eq!(m.flags, MsFlags::MS_RDONLY);
        assert_eq!(m.data, format!("{mode},uid=7"));
    }

    #[test]
    fn a_v1_cgroup_mount_gets_the_containers_directories_at_create() {
        let m = parse_one("/sys/fs/cgroup", "cgroup", "cgroup", &["ro", "nosuid"]).unwrap();
        assert_eq!(m.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        let rel = Path::new("p/c1");
        let dirs = vec![PathBuf::from("/sys/fs/cgroup/memory/p/c1")];
        let filled = with_cgroup_dirs(&[m], &dirs, rel);
        assert_eq!(filled[0].kind, Kind::CgroupV1 { dirs, levels: 2 });
    }

    #[test]
    fn unsupported_types_options_and_paths_are_refused_naming_the_entry() {
        for (dest, typ, options) in [
            ("/x", "nfs", vec![]),
            ("/x", "tmpfs", vec!["tmpcopyup"]),
            ("relative", "tmpfs", vec![]),
            ("/a/../b", "tmpfs", vec![]),
            ("/x", "bind", vec!["bind", "mode=755", "rro"]),
            ("/x", "none", vec!["rbind", "idmap"]),
        ] {
            let err = parse_one(dest, typ, "src", &options).unwrap_err();
            assert!(
                err.to_string().starts_with("config.json: mounts[3]: "),
                "{err}"
            );
        }
    }
}
