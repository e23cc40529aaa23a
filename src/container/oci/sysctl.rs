//! `linux.sysctl`: only keys a namespace of the container's own isolates (runc's rule), so a
//! config can never change the host: `net.*` with a new network namespace, the IPC ones
//! (`kernel.msg*`, `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`) with a new IPC namespace,
//! `kernel.hostname`/`kernel.domainname` with a new UTS namespace. Written by the container's
//! init before its root switch through `/proc/sys` (a sysctl file acts on the namespaces of
//! the process that opens it, whatever /proc mount it is reached through).

use nix::sched::CloneFlags;

use crate::error::IoContext;
use crate::{Error, Result};

/// The IPC namespace's keys (besides `fs.mqueue.*`).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// One validated `key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

/// `linux.sysctl` checked against the new namespaces in `flags` (joined ones do not count:
/// they may be the host's), in key order.
pub fn parse(
    given: &std::collections::HashMap<String, String>,
    flags: CloneFlags,
) -> Result<Vec<Sysctl>> {
    let mut out: Vec<Sysctl> = given
        .iter()
        .map(|(key, value)| check(key, value, flags))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn check(key: &str, value: &str, flags: CloneFlags) -> Result<Sysctl> {
    let usage = |why: &str| Error::Usage(format!("config.json: linux.sysctl {key:?}: {why}"));
    let well_formed = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !well_formed {
        return Err(usage("not a sysctl name"));
    }
    if value.contains('\n') {
        return Err(usage("the value spans lines"));
    }
    let needs = if key.starts_with("net.") {
        (CloneFlags::CLONE_NEWNET, "network")
    } else if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        (CloneFlags::CLONE_NEWIPC, "ipc")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (CloneFlags::CLONE_NEWUTS, "uts")
    } else {
        return Err(usage("not namespaced: it would change the host"));
    };
    if !flags.contains(needs.0) {
        return Err(usage(&format!(
            "needs a new {} namespace in linux.namespaces",
            needs.1
        )));
    }
    Ok(Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// In the container's init, in its new namespaces, before the root switch.
pub fn apply(sysctls: &[Sysctl]) -> Result<()> {
    for sysctl in sysctls {
        let path = format!("/proc/sys/{}", sysctl.key.replace('.', "/"));
        std::fs::write(&path, &sysctl.value)
            .ctx(|| format!("linux.sysctl {}: write {path}", sysctl.key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(key: &str, flags: CloneFlags) -> Result<Vec<Sysctl>> {
        parse(
            &[(key.to_owned(), "1".to_owned())].into_iter().collect(),
            flags,
        )
    }

    #[test]
    fn namespaced_keys_need_their_namespace_and_others_are_refused() {
        let all = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
        for key in [
            "net.ipv4.ip_forward",
            "kernel.shmmni",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert_eq!(one(key, all).unwrap()[0].key, key);
            let err = one(key, CloneFlags::CLONE_NEWNS).unwrap_err();
            assert!(err.to_string().contains("needs a new"), "{err}");
        }
        for (key, needle) in [
            ("kernel.pid_max", "not namespaced"),
            ("vm.overcommit_memory", "not namespaced"),
            ("net/../../kernel/pid_max", "not a sysctl name"),
            ("net..x", "not a sysctl name"),
        ] {
            let err = one(key, all).unwrap_err();
            let line = err.to_string();
            assert!(
                line.contains(needle) && line.starts_with("config.json: linux.sysctl"),
                "{line}"
            );
            assert_eq!(err.exit_code(), 125);
        }
    }
}
