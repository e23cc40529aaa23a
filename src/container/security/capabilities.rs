//! Which capabilities a container keeps: docker's default list minus `CAP_MKNOD` (the device
//! policy: a container cannot make a node for a host device), tweaked by `--cap-add` and
//! `--cap-drop` with docker's rules.

use caps::{CapSet, Capability, CapsHashSet};

use crate::{Error, Result};

/// Docker's default capabilities without `CAP_MKNOD`: enough for package managers, servers on
/// low ports and `ping`; nothing that reaches the host kernel's configuration.
pub const DEFAULT: [Capability; 13] = [
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

/// One `--cap-add`/`--cap-drop` value: a capability as docker spells it (`NET_ADMIN`,
/// `cap_net_admin`, `CAP_NET_ADMIN`) or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapName {
    All,
    One(Capability),
}

impl CapName {
    /// Parse a name; an unknown one is a usage error (exit 125) naming it.
    pub fn parse(flag: &str, name: &str) -> Result<CapName> {
        if name.eq_ignore_ascii_case("all") {
            return Ok(CapName::All);
        }
        caps::to_canonical(name)
            .parse()
            .map(CapName::One)
            .map_err(|_| Error::Usage(format!("invalid {flag} {name:?}: unknown capability")))
    }
}

/// Docker's rules: `--cap-add ALL` starts from every capability, `--cap-drop ALL` from none,
/// otherwise from [`DEFAULT`]; then the named additions, then the named removals.
pub fn resolve(add: &[CapName], drop: &[CapName]) -> CapsHashSet {
    let mut set: CapsHashSet = if add.contains(&CapName::All) {
        caps::all()
    } else if drop.contains(&CapName::All) {
        CapsHashSet::new()
    } else {
        DEFAULT.into_iter().collect()
    };
    set.extend(add.iter().filter_map(one));
    for cap in drop.iter().filter_map(one) {
        set.remove(&cap);
    }
    set
}

fn one(name: &CapName) -> Option<Capability> {
    match name {
        CapName::All => None,
        CapName::One(cap) => Some(*cap),
    }
}

/// The five capability sets of the container's command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    /// `run`'s sets: `keep` bounding, permitted and effective; nothing inheritable or ambient.
    pub fn uniform(keep: CapsHashSet) -> CapSets {
        CapSets {
            bounding: keep.clone(),
            effective: keep.clone(),
            permitted: keep,
            ..CapSets::default()
        }
    }
}

/// In the container's init just before exec: shrink the bounding set (so no execve, setuid
/// binary or file capability can regain more), run `switch_user` (which may need capabilities
/// the sets lack, and keeps the permitted set), then set the inheritable, effective and
/// permitted sets and raise the ambient ones (empty for `run`).
pub fn limit_to(sets: &CapSets, switch_user: impl FnOnce() -> Result<()>) -> Result<()> {
    let fail = |what: &str, e: caps::errors::CapsError| {
        Error::Runtime(format!("capabilities: {what}: {e}"))
    };
    let held = caps::read(None, CapSet::Permitted).map_err(|e| fail("permitted set", e))?;
    let wanted = sets.bounding.iter().chain(&sets.permitted);
    if let Some(missing) = wanted.into_iter().find(|cap| !held.contains(cap)) {
        return Err(Error::Host(format!(
            "cannot grant {missing}: the runtime itself does not hold it (drop it from --cap-add)"
        )));
    }
    for cap in caps::runtime::thread_all_supported() {
        if !sets.bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| fail("bounding set", e))?;
        }
    }
    switch_user()?;
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient set", e))?;
    caps::set(None, CapSet::Inheritable, &sets.inheritable)
        .map_err(|e| fail("inheritable set", e))?;
    caps::set(None, CapSet::Effective, &sets.effective).map_err(|e| fail("effective set", e))?;
    caps::set(None, CapSet::Permitted, &sets.permitted).map_err(|e| fail("permitted set", e))?;
    for cap in &sets.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| fail("ambient set", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<CapName> {
        list.iter()
            .map(|n| CapName::parse("--cap-add", n).unwrap())
            .collect()
    }

    #[test]
    fn names_are_spelt_as_docker_does() {
        let cap = CapName::One(Capability::CAP_NET_ADMIN);
        for spelling in ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", "cap_Net_Admin"] {
            assert_eq!(CapName::parse("--cap-add", spelling).unwrap(), cap);
        }
        assert_eq!(CapName::parse("--cap-drop", "all").unwrap(), CapName::All);
        let err = CapName::parse("--cap-add", "NET_ADMINN").unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("NET_ADMINN"), "{err}");
    }

    #[test]
    fn default_has_no_admin_module_or_mknod() {
        let set = resolve(&[], &[]);
        assert_eq!(set.len(), DEFAULT.len());
        for cap in [
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_SYS_MODULE,
            Capability::CAP_MKNOD,
            Capability::CAP_NET_ADMIN,
        ] {
            assert!(!set.contains(&cap), "{cap}");
        }
    }

    #[test]
    fn add_and_drop_follow_dockers_rules() {
        let set = resolve(&names(&["NET_ADMIN"]), &names(&["CHOWN"]));
        assert!(set.contains(&Capability::CAP_NET_ADMIN));
        assert!(!set.contains(&Capability::CAP_CHOWN));
        assert_eq!(set.len(), DEFAULT.len());
        let only = resolve(&names(&["KILL"]), &names(&["ALL"]));
        assert_eq!(only, [Capability::CAP_KILL].into_iter().collect());
        let all_but = resolve(&names(&["ALL"]), &names(&["SYS_ADMIN"]));
        assert_eq!(all_but.len(), caps::all().len() - 1);
        assert!(!all_but.contains(&Capability::CAP_SYS_ADMIN));
    }
}
