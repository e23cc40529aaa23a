//! `-u/--user USER[:GROUP]` and the image config's `User`: who the command runs as.
//!
//! Resolved in the runtime before anything is created (an unknown name costs nothing: one line,
//! exit 125), against the image's own `/etc/passwd` and `/etc/group`, read inside the image
//! rootfs with `openat2(RESOLVE_IN_ROOT)` so a symlink in the image can never make the runtime
//! read a host file. The rules are runc's (`GetExecUser`), which docker uses:
//! - USER is a name, or a number (then matched by uid only); a number with no passwd entry is
//!   used as is, with gid 0 and `HOME=/`; a name with no entry is an error;
//! - GROUP, when given, is a name or a number, looked up the same way, and replaces the
//!   primary group; then there are no supplementary groups;
//! - without GROUP, the supplementary groups are those whose member list names the user;
//! - the groups set always include the primary gid (docker since CVE-2023-25173), so no group
//!   of the runtime's caller ever reaches the container.
//!
//! Applied by the container's init right before exec ([`User::switch`]), between the
//! bounding-set drop and the capability sets, as runc does.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::unistd::{Gid, Uid};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// Largest uid/gid accepted (runc's limit: ids are `int32` in the OCI spec).
pub const MAX_ID: u32 = i32::MAX as u32;

/// Longest passwd/group file read; a bigger one is not an account database.
const MAX_FILE: u64 = 4 << 20;

/// The identity the command gets, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary gid first, without duplicates.
    pub groups: Vec<u32>,
    /// `HOME` unless the image's Env or `-e` sets it: the passwd entry's directory.
    pub home: String,
}

impl Default for User {
    /// root, as a container without `-u` or image `User` (and without a passwd entry) runs.
    fn default() -> Self {
        User {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into(),
        }
    }
}

/// `USER[:GROUP]` split and checked for shape, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    user: String,
    group: Option<String>,
}

impl UserSpec {
    /// Parse `value` from `source` (`--user` or the image's `User`, for the error line).
    pub fn parse(source: &str, value: &str) -> Result<UserSpec> {
        let bad = |why: &str| Error::Usage(format!("invalid {source} {value:?}: {why}"));
        let (user, group) = match value.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (value, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(bad("expected USER[:GROUP] (a name or a number each)"));
        }
        if group.is_some_and(|g| g.contains(':')) {
            return Err(bad("expected USER[:GROUP] (one ':' at most)"));
        }
        for part in std::iter::once(user).chain(group) {
            numeric(part).map_err(|why| bad(&why))?;
        }
        Ok(UserSpec {
            user: user.to_owned(),
            group: group.map(str::to_owned),
        })
    }
}

/// `Some(id)` when `part` is all digits (in range, else an error), `None` for a name.
fn numeric(part: &str) -> std::result::Result<Option<u32>, String> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match part.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(format!("id {part} is out of range (0 to {MAX_ID})")),
    }
}

/// One `/etc/passwd` line: `name:x:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line: `name:x:gid:member,member`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lines that are not `name:...` records with numeric ids are skipped, as libc does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or("", |h| h).to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map_or("", |m| m)
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.first().is_some_and(|n| !n.is_empty()))
}

/// Resolve `spec` (None: the default user, uid 0) against the image's account files (None
/// when the image has no such file): docker's rules, see the module documentation.
pub fn resolve(spec: Option<&UserSpec>, passwd: Option<&str>, group: Option<&str>) -> Result<User> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let Some(spec) = spec else {
        // No user asked for: root, with root's entry (HOME, memberships) when there is one.
        let entry = users.iter().find(|u| u.uid == 0);
        let mut user = User::default();
        if let Some(entry) = entry {
            user.gid = entry.gid;
            user.home = home_of(entry);
            user.groups = with_primary(entry.gid, member_of(&groups, &entry.name));
        }
        return Ok(user);
    };
    let by_id = numeric(&spec.user).map_err(Error::Usage)?;
    let entry = users.iter().find(|u| match by_id {
        Some(id) => u.uid == id,
        None => u.name == spec.user,
    });
    let (uid, mut gid, home, name) = match (entry, by_id) {
        (Some(e), _) => (e.uid, e.gid, home_of(e), Some(e.name.as_str())),
        (None, Some(id)) => (id, 0, "/".to_owned(), None),
        (None, None) => {
            return Err(Error::Usage(format!(
                "unable to find user {}: no matching entries in passwd file",
                spec.user
            )))
        }
    };
    let supplementary = match &spec.group {
        Some(wanted) => {
            gid = find_group(&groups, wanted)?;
            Vec::new()
        }
        None => name.map(|n| member_of(&groups, n)).unwrap_or_default(),
    };
    Ok(User {
        uid,
        gid,
        groups: with_primary(gid, supplementary),
        home,
    })
}

fn home_of(entry: &PasswdEntry) -> String {
    match entry.home.as_str() {
        "" => "/".to_owned(),
        home => home.to_owned(),
    }
}

fn find_group(groups: &[GroupEntry], wanted: &str) -> Result<u32> {
    let by_id = numeric(wanted).map_err(Error::Usage)?;
    let found = groups.iter().find(|g| match by_id {
        Some(id) => g.gid == id,
        None => g.name == wanted,
    });
    match (found, by_id) {
        (Some(g), _) => Ok(g.gid),
        (None, Some(id)) => Ok(id),
        (None, None) => Err(Error::Usage(format!(
            "unable to find group {wanted}: no matching entries in group file"
        ))),
    }
}

fn member_of(groups: &[GroupEntry], name: &str) -> Vec<u32> {
    groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == name))
        .map(|g| g.gid)
        .collect()
}

fn with_primary(gid: u32, supplementary: Vec<u32>) -> Vec<u32> {
    let mut all = vec![gid];
    for g in supplementary {
        if !all.contains(&g) {
            all.push(g);
        }
    }
    all
}

/// Read `<rootfs>/<path>` with every lookup scoped to `rootfs` (`None` when it is missing).
pub fn read_in_image(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let root: OwnedFd = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::path("open image rootfs", rootfs, e.into()))?;
    let opened = loop {
        match rustix::fs::openat2(
            &root,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN | Errno::INTR) => continue,
            other => break other,
        }
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
        Err(e) => return Err(Error::path("read the image's", path, e.into())),
    };
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::path("read the image's", path, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Resolve `spec` inside the image at `rootfs` (see [`resolve`]).
pub fn resolve_in_image(spec: Option<&UserSpec>, rootfs: &Path) -> Result<User> {
    let passwd = read_in_image(rootfs, "etc/passwd")?;
    let group = read_in_image(rootfs, "etc/group")?;
    resolve(spec, passwd.as_deref(), group.as_deref())
}

impl User {
    /// In the container's init: groups, then gid, then uid (each needs the previous step's
    /// privilege). `PR_SET_KEEPCAPS` keeps the permitted set across a switch away from uid 0,
    /// so the caller can still set the capability sets it wants; the kernel recomputes them
    /// at exec for a non-root uid, as docker's containers have them.
    pub fn switch(&self) -> Result<()> {
        let fail = |what: &str, e: nix::Error| Error::io(what, e.into());
        let groups: Vec<Gid> = self.groups.iter().copied().map(Gid::from_raw).collect();
        nix::unistd::setgroups(&groups).map_err(|e| fail("setgroups", e))?;
        let gid = Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| fail("setresgid", e))?;
        if self.uid != 0 {
            nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("PR_SET_KEEPCAPS", e))?;
        }
        let uid = Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| fail("setresuid", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        alice:x:1234:2345:Alice:/home/alice:/bin/sh\n\
        bob:x:1500:1500::/srv/bob:/bin/false\n\
        broken:x:notanumber:1:::\n\
        nohome:x:1600:1600:::\n";
    const GROUP: &str = "root:x:0:\n\
        alicegrp:x:2345:\n\
        wheel:x:10:root,alice\n\
        audio:x:29:bob, alice\n\
        staff:x:50:bob\n\
        4242:x:77:\n";

    fn spec(value: &str) -> UserSpec {
        UserSpec::parse("--user", value).unwrap()
    }

    fn resolved(value: &str) -> Result<User> {
        resolve(Some(&spec(value)), Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn a_name_gets_its_ids_home_and_memberships() {
        let user = resolved("alice").unwrap();
        assert_eq!((user.uid, user.gid), (1234, 2345));
        assert_eq!(user.groups, vec![2345, 10, 29]);
        assert_eq!(user.home, "/home/alice");
        assert_eq!(
            resolved("1234").unwrap(),
            user,
            "a uid finds the same entry"
        );
    }

    #[test]
    fn an_explicit_group_replaces_primary_and_supplementary_groups() {
        let user = resolved("alice:staff").unwrap();
        assert_eq!((user.uid, user.gid, user.groups), (1234, 50, vec![50]));
        assert_eq!(resolved("bob:9999").unwrap().groups, vec![9999]);
        // A number matches by gid only, even when a group is named like it.
        assert_eq!(resolved("bob:4242").unwrap().gid, 4242);
    }

    #[test]
    fn unknown_numbers_are_used_as_is_unknown_names_fail() {
        let user = resolved("31337:31338").unwrap();
        assert_eq!(
            (user.uid, user.gid, user.groups),
            (31337, 31338, vec![31338])
        );
        assert_eq!(user.home, "/");
        assert_eq!(resolved("31337").unwrap().gid, 0);
        let err = resolved("mallory").unwrap_err();
        assert_eq!(err.exit_code(), 125);
        assert_eq!(
            err.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        let err = resolved("alice:nogroup").unwrap_err();
        assert!(
            err.to_string().contains("unable to find group nogroup"),
            "{err}"
        );
        assert_eq!(resolved("nohome").unwrap().home, "/");
    }

    #[test]
    fn default_is_root_with_roots_entry() {
        let user = resolve(None, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((user.uid, user.gid, user.groups), (0, 0, vec![0, 10]));
        assert_eq!(user.home, "/root");
        assert_eq!(resolve(None, None, None).unwrap(), User::default());
        let err = resolve(Some(&spec("alice")), None, None).unwrap_err();
        assert!(
            err.to_string().contains("unable to find user alice"),
            "{err}"
        );
    }

    #[test]
    fn malformed_specs_are_usage_errors() {
        for bad in [
            "",
            ":",
            "alice:",
            ":staff",
            "a:b:c",
            "4294967296",
            "1:2147483648",
        ] {
            let err = UserSpec::parse("--user", bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(
                err.to_string().starts_with("invalid --user"),
                "{bad}: {err}"
            );
        }
        assert!(UserSpec::parse("--user", "2147483647:0").is_ok());
    }

    #[test]
    fn image_files_are_read_inside_the_rootfs_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = format!("evil:x:{}:0::/:/bin/sh\n", std::process::id());
        std::fs::write(outside.path().join("passwd"), &secret).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        // An absolute link resolves inside the rootfs, where nothing is: no host file is read.
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("etc/passwd"))
            .unwrap();
        assert_eq!(read_in_image(dir.path(), "etc/passwd").unwrap(), None);
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(
            read_in_image(dir.path(), "etc/group").unwrap().as_deref(),
            Some(GROUP)
        );
    }
}
