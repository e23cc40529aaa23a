//! UTS / PID / mount (/ network) namespace setup in the child.

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

use crate::error::IoContext;
use crate::{Error, Result};
/// The namespaces every container gets (the contract), plus a network namespace when the
/// network mode needs one. Created atomically by clone(2), so the parent can configure the
/// child's cgroup and veth before the child does anything.
pub fn clone_flags(new_netns: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS;
    if new_netns {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// `--cgroupns private|host`: whether the container sees the host's cgroup tree or only its own
/// cgroup as `/` (docker's default on cgroup v2: `/proc/self/cgroup` reads `0::/` inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupNs {
    /// A cgroup namespace rooted at the container's own cgroup.
    Private,
    /// The runtime's cgroup namespace (the host's paths show inside).
    Host,
}

impl CgroupNs {
    /// `value` as given (None: docker's default, private on a cgroup v2 host, else host).
    pub fn parse(value: Option<&str>, host_is_v2: bool) -> Result<CgroupNs> {
        match value {
            None if host_is_v2 => Ok(CgroupNs::Private),
            None => Ok(CgroupNs::Host),
            Some("private") => Ok(CgroupNs::Private),
            Some("host") => Ok(CgroupNs::Host),
            Some(other) => Err(Error::Usage(format!(
                "invalid --cgroupns {other:?}: expected private or host"
            ))),
        }
    }

    /// In the container's init once it is in its cgroup (after the go signal: the clone(2)
    /// fallback is placed by the runtime only then), so the namespace is rooted there. Not a
    /// clone flag: clone3 would root it at the runtime's cgroup, before `CLONE_INTO_CGROUP`.
    pub fn enter(self) -> Result<()> {
        match self {
            CgroupNs::Host => Ok(()),
            CgroupNs::Private => nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .ctx(|| "unshare the cgroup namespace (CLONE_NEWCGROUP)"),
        }
    }
}

/// An existing namespace to join (an OCI config's `linux.namespaces[].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Which kind (one `CLONE_NEW*` flag), checked by setns against the file.
    pub kind: CloneFlags,
    /// `/proc/<pid>/ns/<kind>` or a bind mount of one.
    pub path: std::path::PathBuf,
}

impl Join {
    /// setns(2) into it; the kernel refuses a file of another kind.
    pub fn enter(&self) -> Result<()> {
        self.enter_opened(self.open()?)
    }

    fn open(&self) -> Result<std::fs::File> {
        std::fs::File::open(&self.path).map_err(|e| Error::path("open namespace", &self.path, e))
    }

    fn enter_opened(&self, file: std::fs::File) -> Result<()> {
        nix::sched::setns(file, self.kind).ctx(|| format!("setns {}", self.path.display()))
    }
}

/// Join every namespace in `joins` (in the container's init, before anything else; the PID
/// namespace is joined by the runtime itself, before clone, so that the child is born in it).
/// Every path is opened first, as the runtime sees it, and the mount namespace joined last: a
/// joined mount namespace may not show the other paths.
pub fn join_all(joins: &[Join]) -> Result<()> {
    let opened = joins
        .iter()
        .filter(|j| j.kind != CloneFlags::CLONE_NEWPID)
        .map(|j| Ok((j, j.open()?)))
        .collect::<Result<Vec<_>>>()?;
    let (mount, others): (Vec<_>, Vec<_>) = opened
        .into_iter()
        .partition(|(j, _)| j.kind == CloneFlags::CLONE_NEWNS);
    others
        .into_iter()
        .chain(mount)
        .try_for_each(|(join, file)| join.enter_opened(file))
}

/// Stop mount events from propagating between the host and the container: done first, before
/// any mount, so nothing the container mounts ever shows up in the host's mount table.
pub fn make_mounts_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "make / private (MS_REC|MS_PRIVATE)")
}

/// Give the container its own hostname (only its UTS namespace sees it).
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).ctx(|| format!("sethostname {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupns_defaults_to_private_on_v2_only() {
        assert_eq!(CgroupNs::parse(None, true).unwrap(), CgroupNs::Private);
        assert_eq!(CgroupNs::parse(None, false).unwrap(), CgroupNs::Host);
        for v2 in [true, false] {
            assert_eq!(CgroupNs::parse(Some("host"), v2).unwrap(), CgroupNs::Host);
            assert_eq!(
                CgroupNs::parse(Some("private"), v2).unwrap(),
                CgroupNs::Private
            );
        }
        for bad in ["", "Private", "container:x", "none"] {
            assert_eq!(
                CgroupNs::parse(Some(bad), true).unwrap_err().exit_code(),
                125
            );
        }
    }

    #[test]
    fn network_namespace_only_when_asked() {
        assert!(!clone_flags(false).contains(CloneFlags::CLONE_NEWNET));
        assert!(clone_flags(true).contains(CloneFlags::CLONE_NEWNET));
        assert!(clone_flags(false).contains(
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS
        ));
    }
}
