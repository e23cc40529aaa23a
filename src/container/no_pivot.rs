//! The root switch where `pivot_root(2)` is impossible: the runtime's own root is the initramfs
//! (`rootfs` cannot be pivoted away, as in a minimal VM whose store lives there) or a directory
//! it was chrooted into (not a mount point). `pivot_root` answers EINVAL; like runc's
//! `--no-pivot` and initramfs' `switch_root`, the container's root mount is moved onto `/`
//! (`MS_MOVE`) and entered with `chroot`.
//!
//! Unlike pivot_root, that leaves the old root underneath, so before the chroot every other
//! mount of the (private) namespace is detached: the host's /proc, /sys, /dev, the store's file
//! system... What cannot be detached is the old root's own file system (the initramfs itself),
//! which a process holding `CAP_SYS_CHROOT` could reach again with the classic chroot escape;
//! that is why pivot_root stays the normal path and this one is used only when it fails.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rustix::fs::{AtFlags, StatxFlags, CWD};

use crate::error::IoContext;
use crate::{trace, Error, Result};

/// Set to 1 to use the fallback even where pivot_root works (the suite tests both paths, as
/// `DEVOXX_NO_CLONE3` does for clone3).
pub const FORCE_ENV: &str = "DEVOXX_NO_PIVOT";

/// Whether [`FORCE_ENV`] asks for the fallback.
pub fn forced() -> bool {
    std::env::var(FORCE_ENV).is_ok_and(|v| v == "1")
}

/// With the current directory at the root of the container's root mount: move that mount onto
/// `/`, detach every mount that is neither it nor under it, chroot into it, `cd /`.
pub fn move_root() -> Result<()> {
    trace::mark("child-no-pivot");
    let keep = mount_id_of_cwd()?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .ctx(|| "move the container root onto / (MS_MOVE)")?;
    // Our root is still the old one (under the moved mount), so absolute paths still reach
    // the old mounts, and /proc is still there to list them.
    let table = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .ctx(|| "read /proc/thread-self/mountinfo")?;
    for point in mounts_to_detach(&parse(&table), keep) {
        match umount2(&point, MntFlags::MNT_DETACH) {
            // Gone with an earlier one (a stacked mount), or no longer a mount point.
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("detach {} from the old root", point.display()),
                    e.into(),
                ))
            }
        }
    }
    nix::unistd::chroot(".").ctx(|| "chroot into the container root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

fn mount_id_of_cwd() -> Result<u64> {
    rustix::fs::statx(CWD, ".", AtFlags::empty(), StatxFlags::MNT_ID)
        .map(|stat| stat.stx_mnt_id)
        .map_err(|e| Error::io("statx the container root", e.into()))
}

/// One mountinfo line: id, parent id, mount point (relative to our root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) parent: u64,
    pub(crate) point: PathBuf,
}

pub(crate) fn parse(table: &str) -> Vec<Entry> {
    table
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            let point = f.nth(2)?;
            Some(Entry {
                id,
                parent,
                point: PathBuf::from(OsString::from_vec(unescape(point))),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i + 1..i + 4) {
            Some(d) if bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount points to detach: every mount that is not `keep` or below it, and not `/` (the
/// old root itself, which cannot go, and `keep` now on it), outermost only (detaching a mount
/// takes what is below it along).
fn mounts_to_detach(entries: &[Entry], keep: u64) -> Vec<PathBuf> {
    let mut kept: HashSet<u64> = HashSet::from([keep]);
    // Parents are listed before children in mountinfo, but a move can reorder: iterate.
    loop {
        let before = kept.len();
        for e in entries {
            if kept.contains(&e.parent) {
                kept.insert(e.id);
            }
        }
        if kept.len() == before {
            break;
        }
    }
    let old: HashSet<u64> = entries
        .iter()
        .filter(|e| !kept.contains(&e.id) && e.point != std::path::Path::new("/"))
        .map(|e| e.id)
        .collect();
    entries
        .iter()
        .filter(|e| old.contains(&e.id) && !old.contains(&e.parent))
        .map(|e| e.point.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_roots_outermost_mounts_are_detached() {
        // 1 rootfs; 2 /proc, 3 /sys, 4 /sys/fs/cgroup, 5 /tmp (the store); 9 the container
        // root moved onto /, 10 a volume in it, 11 a tmpfs in that volume.
        let table = "1 1 0:2 / / rw - rootfs rootfs rw\n\
            2 1 0:3 / /proc rw - proc proc rw\n\
            3 1 0:4 / /sys rw - sysfs sysfs rw\n\
            4 3 0:5 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
            5 1 0:6 / /tmp/my\\040store rw - tmpfs tmpfs rw\n\
            9 1 0:7 / / rw - overlay overlay rw\n\
            10 9 0:6 /v /data rw - tmpfs tmpfs rw\n\
            11 10 0:8 / /data/t rw - tmpfs tmpfs rw\n";
        let entries = parse(table);
        assert_eq!(entries[4].point, PathBuf::from("/tmp/my store"));
        let detach = mounts_to_detach(&entries, 9);
        let want: Vec<PathBuf> = ["/proc", "/sys", "/tmp/my store"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(detach, want);
    }
}
