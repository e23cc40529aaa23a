//! `--tmpfs PATH[:OPTIONS]`: a fresh, private tmpfs inside the container (docker's flag), the
//! usual companion of `--read-only` for the few directories a program must write.
//!
//! Parsed in the runtime before anything is created; mounted by the container's init in its
//! private mount namespace before the volumes and before the root switch, at a target resolved
//! inside the root with `openat2(RESOLVE_IN_ROOT)` (a symlink in the image can never send it
//! out), the mount point created in the writable layer if missing. Mounted first, so a volume
//! inside a tmpfs lands in it; a tmpfs at or inside a volume is refused, since its mount point
//! would have to be made in the user's host directory. Its content dies with the container.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// Mounted by the runtime itself after the tmpfs mounts, which would hide one there.
const RUNTIME_MOUNTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// One validated `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Absolute, normalised path inside the container.
    pub target: PathBuf,
    /// Mount flags: docker's defaults `nosuid,nodev,noexec`, changed by the options.
    pub flags: MsFlags,
    /// tmpfs's own options (`size=`, `mode=`, `uid=`, `gid=`, `nr_inodes=`), comma-separated.
    pub data: String,
}

/// Parse every `--tmpfs`; `volume_targets` are the `-v` destinations, which a tmpfs must not
/// equal or sit under. Nothing is created here.
pub fn parse_all(specs: &[String], volume_targets: &[PathBuf]) -> Result<Vec<Tmpfs>> {
    let mut all: Vec<Tmpfs> = Vec::new();
    for spec in specs {
        let tmpfs = parse(spec)?;
        let bad = |why: String| Error::Usage(format!("invalid --tmpfs {spec:?}: {why}"));
        if all.iter().any(|t| t.target == tmpfs.target) {
            return Err(bad(format!("{} is given twice", tmpfs.target.display())));
        }
        if let Some(volume) = volume_targets.iter().find(|v| tmpfs.target.starts_with(v)) {
            return Err(bad(format!(
                "{} is at or inside volume {} (its mount point would be created in the \
                 volume's host directory)",
                tmpfs.target.display(),
                volume.display()
            )));
        }
        all.push(tmpfs);
    }
    all.sort_by_key(|t| t.target.components().count());
    Ok(all)
}

/// `PATH[:OPTION,...]`.
pub fn parse(spec: &str) -> Result<Tmpfs> {
    let bad = |why: String| Error::Usage(format!("invalid --tmpfs {spec:?}: {why}"));
    let (path, options) = match spec.split_once(':') {
        Some((path, options)) => (path, options),
        None => (spec, ""),
    };
    let target = parse_target(path).map_err(bad)?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data: Vec<String> = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        let flag = |on: bool, flag: MsFlags, flags: &mut MsFlags| flags.set(flag, on);
        match (key, value) {
            ("ro", None) => flag(true, MsFlags::MS_RDONLY, &mut flags),
            ("rw", None) => flag(false, MsFlags::MS_RDONLY, &mut flags),
            ("exec", None) => flag(false, MsFlags::MS_NOEXEC, &mut flags),
            ("noexec", None) => flag(true, MsFlags::MS_NOEXEC, &mut flags),
            ("suid", None) => flag(false, MsFlags::MS_NOSUID, &mut flags),
            ("nosuid", None) => flag(true, MsFlags::MS_NOSUID, &mut flags),
            ("dev", None) => flag(false, MsFlags::MS_NODEV, &mut flags),
            ("nodev", None) => flag(true, MsFlags::MS_NODEV, &mut flags),
            ("size" | "nr_inodes", Some(v)) if is_size(v) => data.push(format!("{key}={v}")),
            ("mode", Some(v)) if is_mode(v) => data.push(format!("mode={v}")),
            ("uid" | "gid", Some(v)) if is_id(v) => data.push(format!("{key}={v}")),
            ("size" | "nr_inodes", Some(v)) => {
                return Err(bad(format!(
                    "{key}={v}: expected a whole number with an optional k, m or g suffix"
                )))
            }
            ("mode", Some(v)) => {
                return Err(bad(format!(
                    "mode={v}: expected octal digits, at most 7777"
                )))
            }
            ("uid" | "gid", Some(v)) => {
                return Err(bad(format!(
                    "{key}={v}: expected a number from 0 to {}",
                    super::user::MAX_ID
                )))
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {option:?} (size=, mode=, uid=, gid=, nr_inodes=, ro, rw, \
                     exec, noexec, suid, nosuid, dev, nodev)"
                )))
            }
        }
    }
    Ok(Tmpfs {
        target,
        flags,
        data: data.join(","),
    })
}

/// Absolute, not `/`, no `.`/`..`, not under the runtime's own mounts; normalised.
fn parse_target(path: &str) -> std::result::Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    let mut clean = PathBuf::from("/");
    for part in path.split('/') {
        match part {
            "" => {}
            "." | ".." => return Err(format!("{path:?} must not contain {part:?}")),
            name => clean.push(name),
        }
    }
    if clean == Path::new("/") {
        return Err("the root itself cannot be a tmpfs (use --read-only and --tmpfs DIR)".into());
    }
    if let Some(top) = RUNTIME_MOUNTS.iter().find(|top| clean.starts_with(top)) {
        return Err(format!(
            "{} is under {top}, which the runtime mounts itself",
            clean.display()
        ));
    }
    Ok(clean)
}

/// tmpfs's size syntax: digits and an optional k/m/g (either case); `0` means no limit.
fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    v.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_mode(v: &str) -> bool {
    !v.is_empty() && v.len() <= 5 && u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777)
}

fn is_id(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && v.parse::<u32>().is_ok_and(|id| id <= super::user::MAX_ID)
}

/// In the container's init, on the merged root before the volumes and the root switch.
pub fn mount_all(all: &[Tmpfs], rootfs: &Path) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let root: OwnedFd = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::path("open container root", rootfs, e.into()))?;
    for tmpfs in all {
        let dir = resolve_dir(&root, &tmpfs.target)?;
        let at = format!("/proc/self/fd/{}", dir.as_raw_fd());
        mount(
            Some("tmpfs"),
            at.as_str(),
            Some("tmpfs"),
            tmpfs.flags,
            Some(tmpfs.data.as_str()),
        )
        .map_err(|e| {
            Error::io(
                format!("mount tmpfs on {}", tmpfs.target.display()),
                e.into(),
            )
        })?;
    }
    Ok(())
}

/// An `O_PATH` fd of directory `target` inside `root`, creating missing directories (0755) in
/// the directory their parent really resolved to; a dangling symlink or a non-directory on the
/// way is refused.
fn resolve_dir(root: &OwnedFd, target: &Path) -> Result<OwnedFd> {
    let fail = |why: String| Error::Runtime(format!("--tmpfs {}: {why}", target.display()));
    let names: Vec<&OsStr> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut current = open_dir_in_root(root, Path::new("."))
        .map_err(|e| fail(format!("open the container root: {e}")))?;
    for i in 0..names.len() {
        let prefix: PathBuf = names[..=i].iter().collect();
        let shown = || format!("/{}", prefix.display());
        current = match open_dir_in_root(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&current, names[i], Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        return Err(fail(format!(
                            "{} is a symlink to a missing path in the image; refusing to follow it",
                            shown()
                        )))
                    }
                    Err(e) => return Err(fail(format!("create {}: {e}", shown()))),
                }
                open_dir_in_root(root, &prefix).map_err(|e| fail(format!("{}: {e}", shown())))?
            }
            Err(Errno::NOTDIR) => {
                return Err(fail(format!("{} is not a directory in the image", shown())))
            }
            Err(e) => return Err(fail(format!("{}: {e}", shown()))),
        };
    }
    Ok(current)
}

fn open_dir_in_root(root: &OwnedFd, path: &Path) -> rustix::io::Result<OwnedFd> {
    loop {
        match rustix::fs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN | Errno::INTR) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_are_dockers_and_options_change_them() {
        let t = parse("/run//cache/").unwrap();
        assert_eq!(t.target, Path::new("/run/cache"));
        assert_eq!(
            t.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        assert_eq!(t.data, "");
        let size = 1 + u64::from(std::process::id() % 1000);
        let t = parse(&format!("/t:size={size}k,mode=1770,exec,ro,uid=12,gid=34")).unwrap();
        assert_eq!(t.data, format!("size={size}k,mode=1770,uid=12,gid=34"));
        assert_eq!(
            t.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn bad_specs_are_usage_errors() {
        for bad in [
            "",
            "rel",
            "/",
            "//",
            "/a/../b",
            "/proc/x",
            "/dev",
            "/sys/fs",
            "/t:size=",
            "/t:size=10x",
            "/t:size=-1",
            "/t:size=1kk",
            "/t:mode=8",
            "/t:mode=17777",
            "/t:uid=-1",
            "/t:gid=4294967295",
            "/t:huge",
            "/t:exec=1",
            "/t:mode",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(
                err.to_string().starts_with("invalid --tmpfs"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn duplicates_and_volume_overlaps_are_refused_parents_mount_first() {
        let volumes = vec![PathBuf::from("/data")];
        let ok = parse_all(&strings(&["/a/b/c", "/a", "/data2"]), &volumes).unwrap();
        let order: Vec<_> = ok.iter().map(|t| t.target.display().to_string()).collect();
        assert_eq!(order, ["/a", "/data2", "/a/b/c"]);
        for bad in [&["/x", "/x/"][..], &["/data"], &["/data/cache"]] {
            let err = parse_all(&strings(bad), &volumes).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad:?}: {err}");
        }
    }
}
