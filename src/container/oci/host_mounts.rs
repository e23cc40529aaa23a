//! A container without a mount namespace of its own (no `mount` in `linux.namespaces`: the
//! spec's "inherited from the runtime") is set up in the runtime's mount namespace, the
//! host's, so every mount made for it lands in the host's table: the root's bind onto itself,
//! the config's mounts, /dev's nodes, masked and read-only paths. They are found by difference
//! (the mounts at or under the root that were not there before the init was cloned), recorded
//! in the state, and unmounted children first by `delete` and by a `create` that fails.
//!
//! Each is unmounted only while the mount at its point is still the recorded one (its mount
//! id), never by path alone: a mount the host made there since is left alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use rustix::fs::{AtFlags, StatxFlags, CWD};
use serde::{Deserialize, Serialize};

use crate::container::no_pivot::{parse, Entry};
use crate::{Error, Result};

/// One mount `create` made in the host's table for the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMount {
    /// The kernel's mount id (mountinfo's first field).
    pub id: u64,
    /// Its mount point as the runtime sees it.
    pub point: PathBuf,
}

/// The host's mounts before the init was cloned; dropped armed (a failed `create`), it
/// unmounts every mount made since at or under the root.
#[derive(Debug)]
pub struct Watch {
    root: PathBuf,
    before: HashSet<u64>,
    armed: bool,
}

impl Watch {
    /// Remember the mount ids present now, before anything is mounted under `root`.
    pub fn start(root: &Path) -> Result<Watch> {
        Ok(Watch {
            root: root.to_owned(),
            before: table()?.into_iter().map(|e| e.id).collect(),
            armed: true,
        })
    }

    /// The mounts made at or under the root since [`Watch::start`], in table order.
    pub fn made(&self) -> Result<Vec<HostMount>> {
        Ok(table()?
            .into_iter()
            .filter(|e| !self.before.contains(&e.id) && e.point.starts_with(&self.root))
            .map(|e| HostMount {
                id: e.id,
                point: e.point,
            })
            .collect())
    }

    /// `create` succeeded: the mounts are the state's to undo now.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.made().and_then(|made| unmount(&made)) {
            eprintln!("devoxx-docker: warning: after the failed create: {e}");
        }
    }
}

fn table() -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    Ok(parse(&text))
}

/// Unmount the recorded mounts still present, each after every recorded mount on top of or
/// under it; one busy (a process still has a file open there) is detached lazily. The first
/// failure is returned after trying all the others.
pub fn unmount(recorded: &[HostMount]) -> Result<()> {
    let mut first_error = None;
    for entry in children_first(still_present(recorded, table()?)) {
        if let Err(e) = unmount_one(&entry) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The entries of `table` that are recorded ones (same id at the same point).
fn still_present(recorded: &[HostMount], table: Vec<Entry>) -> Vec<Entry> {
    table
        .into_iter()
        .filter(|e| recorded.iter().any(|r| r.id == e.id && r.point == e.point))
        .collect()
}

/// `entries` ordered so that each comes after every entry mounted on it (its children,
/// stacked mounts included): the order in which they can be unmounted.
fn children_first(mut left: Vec<Entry>) -> Vec<Entry> {
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let (leaves, rest): (Vec<Entry>, Vec<Entry>) = left
            .iter()
            .cloned()
            .partition(|e| !left.iter().any(|other| other.parent == e.id));
        if leaves.is_empty() {
            break; // a cycle cannot happen in a mount tree; never loop on a bad table
        }
        order.extend(leaves);
        left = rest;
    }
    order
}

/// Unmount `entry` if the mount at its point is still it (a later mount over it is not ours).
fn unmount_one(entry: &Entry) -> Result<()> {
    let shown = entry.point.display();
    let on_top = rustix::fs::statx(
        CWD,
        &entry.point,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::MNT_ID,
    )
    .map(|s| s.stx_mnt_id);
    match on_top {
        Ok(id) if id == entry.id => {}
        Ok(_) => {
            return Err(Error::Runtime(format!(
                "{shown}: another mount now covers the container's; left mounted"
            )))
        }
        Err(e) => return Err(Error::io(format!("statx {shown}"), e.into())),
    }
    match umount2(&entry.point, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(
            &entry.point,
            MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH,
        )
        .map_err(|e| Error::io(format!("detach {shown}"), e.into())),
        Err(e) => Err(Error::io(format!("unmount {shown}"), e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, parent: u64, point: &str) -> Entry {
        Entry {
            id,
            parent,
            point: PathBuf::from(point),
        }
    }

    #[test]
    fn children_and_stacked_mounts_come_before_what_they_sit_on() {
        // Table order, ids not monotonic: root 40, proc 12 on it, a mask 90 on proc, a
        // second mount 7 stacked on the root's point (parent 40).
        let table = vec![
            entry(40, 1, "/b/r"),
            entry(12, 40, "/b/r/proc"),
            entry(90, 12, "/b/r/proc/kcore"),
            entry(7, 40, "/b/r"),
        ];
        let order: Vec<u64> = children_first(table).iter().map(|e| e.id).collect();
        let pos = |id| order.iter().position(|&x| x == id).unwrap();
        assert_eq!(order.len(), 4);
        assert!(
            pos(90) < pos(12) && pos(12) < pos(40) && pos(7) < pos(40),
            "{order:?}"
        );
    }

    #[test]
    fn only_mounts_with_the_recorded_id_at_the_recorded_point_are_undone() {
        let recorded = [
            HostMount {
                id: 40,
                point: "/b/r".into(),
            },
            HostMount {
                id: 41,
                point: "/b/r/proc".into(),
            },
        ];
        // 41 is gone and its id reused elsewhere; 55 is the host's own, never recorded.
        let table = vec![
            entry(40, 1, "/b/r"),
            entry(41, 1, "/mnt/other"),
            entry(55, 40, "/b/r/dev"),
        ];
        let kept = still_present(&recorded, table);
        assert_eq!(kept, [entry(40, 1, "/b/r")]);
    }
}
