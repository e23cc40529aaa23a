//! The network modes: host (share the host's stack), none (own netns, loopback only),
//! bridge (own netns, veth pair to a host bridge, NAT to the outside).
//!
//! API pinned for `container::process` (bodies are provisional stubs).

use crate::{Error, Result};

/// `--network MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    None,
    Bridge,
}

impl NetworkMode {
    /// Parse `--network` (unknown modes → `Error::Usage`).
    pub fn parse(mode: &str) -> Result<NetworkMode> {
        match mode {
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            other => Err(Error::Usage(format!(
                "invalid --network {other:?}: expected host, none or bridge"
            ))),
        }
    }

    /// Whether the container gets its own network namespace (CLONE_NEWNET).
    pub fn needs_netns(self) -> bool {
        self != NetworkMode::Host
    }
}

/// Host-side network resources of one container (veth, NAT rule); removed when dropped.
#[derive(Debug, Default)]
pub struct Network {}

/// Parent side, once the child exists in its new netns and before its command starts:
/// create and configure what `mode` needs for container `id` whose init is `pid`.
pub fn setup_host_side(mode: NetworkMode, id: &str, pid: i32) -> Result<Network> {
    let _ = (id, pid);
    match mode {
        NetworkMode::Bridge => Err(Error::Usage(
            "--network bridge is not implemented yet".into(),
        )),
        _ => Ok(Network::default()),
    }
}

/// Child side, inside the new netns: bring loopback up (and, for bridge, nothing else: the
/// parent configured the container end of the veth already).
pub fn setup_container_side(mode: NetworkMode) -> Result<()> {
    let _ = mode;
    Ok(())
}

/// Remove host-side leftovers (NAT rules, veths) of containers whose runtime died.
pub fn reclaim_stale(is_live: &dyn Fn(&str) -> bool) {
    let _ = is_live;
}
