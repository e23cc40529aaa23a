//! The network modes: host (share the host's stack), none (own netns, loopback only),
//! bridge (own netns, veth pair to a host bridge, NAT to the outside).
//!
//! Bridge mode speaks netlink itself ([`link`] for rtnetlink, [`nat`] for nftables): no
//! `ip` or `nft` process runs, and no command output is parsed. What each container gets is
//! a veth pair: `dx<id8>` on the host, enslaved to the bridge `devoxx0`, and `eth0` inside with
//! the lowest free address of 10.88.0.0/16 and a default route via 10.88.0.1.
//!
//! The bridge (10.88.0.1/16) is created on first use and left in place, like `docker0`, and
//! with it the one masquerade rule for its whole subnet ([`nat`]); once both exist the bridge's
//! alias says so, and later containers touch neither. The veth is removed when [`Network`] is
//! dropped (and would vanish with the container's netns anyway). Which address is taken by whom
//! lives in the host veth's alias (`devoxx-docker <id> <ip>`), so the host holds no other
//! state and [`reclaim_stale`] can tell an orphan from a live container.

mod link;
mod nat;
mod netlink;

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::id::is_container_id;
use crate::error::IoContext;
use crate::{Error, Result};
use netlink::Netlink;

pub use nat::{CHAIN as NFT_CHAIN, TABLE as NFT_TABLE};

/// Host bridge every bridged container is attached to.
pub const BRIDGE: &str = "devoxx0";
/// The bridge's address: the containers' gateway, and the host as the containers see it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// Prefix length of the container subnet 10.88.0.0/16.
pub const PREFIX_LEN: u8 = 16;
/// Prefix of host-side veth names: `dx` + the first 8 characters of the container id.
pub const VETH_PREFIX: &str = "dx";
/// Alias prefix on host veths: `devoxx-docker <id> <ip>`.
const ALIAS_TAG: &str = "devoxx-docker";
/// The bridge's alias once its address, link state and NAT rule are in place.
const BRIDGE_READY_ALIAS: &str = "devoxx-docker bridge 10.88.0.0/16 nat";
/// Serialises bridge creation and address allocation between concurrent runtimes.
const LOCK_FILE: &str = "/run/devoxx-docker-network.lock";

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

/// Host-side network resources of one container (its veth); removed when dropped.
#[derive(Debug, Default)]
pub struct Network {
    /// Host end of the veth pair, once created.
    veth: Option<String>,
    /// The container's address on the bridge.
    address: Option<Ipv4Addr>,
}

impl Network {
    /// The container's eth0 address (bridge mode only), for messages and tests.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.address
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(veth) = self.veth.take() {
            delete_link(&veth);
        }
    }
}

/// Best effort: a veth that cannot be deleted now is reclaimed by a later run.
fn delete_link(name: &str) {
    if let Ok(mut nl) = Netlink::route() {
        let _ = link::delete(&mut nl, name);
    }
}

/// Parent side, once the child exists in its new netns and before its command starts:
/// create and configure what `mode` needs for container `id` whose init is `pid`.
pub fn setup_host_side(mode: NetworkMode, id: &str, pid: i32) -> Result<Network> {
    match mode {
        NetworkMode::Bridge => setup_bridge(id, pid),
        NetworkMode::Host | NetworkMode::None => Ok(Network::default()),
    }
}

/// Child side, inside the new netns: bring loopback up (and, for bridge, nothing else: the
/// parent configured the container end of the veth already).
pub fn setup_container_side(mode: NetworkMode) -> Result<()> {
    match mode {
        NetworkMode::Host => Ok(()),
        NetworkMode::None | NetworkMode::Bridge => bring_loopback_up(),
    }
}

/// Remove the host veths of containers whose runtime died (only veths whose alias names a
/// container id). NAT needs no reclaim: its one rule belongs to the bridge, not to containers.
pub fn reclaim_stale(is_live: &dyn Fn(&str) -> bool) {
    for (veth, id, _) in tagged_veths() {
        if is_container_id(&id) && !is_live(&id) {
            delete_link(&veth);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bridge mode (parent)
// ---------------------------------------------------------------------------------------------

fn setup_bridge(id: &str, pid: i32) -> Result<Network> {
    let netlink_err = |what: &str, e: io::Error| Error::Runtime(format!("{what}: {e}"));
    let veth = veth_name(id)?;
    let netns = File::open(format!("/proc/{pid}/ns/net")).ctx(|| format!("open netns of {pid}"))?;
    let mut nl = Netlink::route().map_err(|e| netlink_err("open rtnetlink socket", e))?;
    let mut network = Network::default();
    {
        let _lock = lock_allocation()?;
        let bridge = ensure_bridge(&mut nl)?;
        let address = free_address(&used_addresses())?;
        let alias = format!("{ALIAS_TAG} {id} {address}");
        // Owned from the request on: a half-created pair is deleted by the guard.
        network.veth = Some(veth.clone());
        link::create_veth(&mut nl, &veth, bridge, &alias, &netns)
            .map_err(|e| netlink_err(&format!("create veth {veth} on {BRIDGE}"), e))?;
        network.address = Some(address);
    }
    let address = network.address.unwrap_or(GATEWAY);
    let mut inside =
        Netlink::route_in(&netns).map_err(|e| netlink_err("join the container's netns", e))?;
    link::configure_container_end(&mut inside, address, PREFIX_LEN, GATEWAY)
        .map_err(|e| netlink_err("configure the container's eth0", e))?;
    Ok(network)
}

/// `dx` + the first 8 alphanumerics of the id: unique enough, within IFNAMSIZ, and never a
/// name an option parser could misread.
fn veth_name(id: &str) -> Result<String> {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    if short.is_empty() {
        return Err(Error::Runtime(format!(
            "container id {id:?} cannot name a veth"
        )));
    }
    Ok(format!("{VETH_PREFIX}{short}"))
}

/// The bridge's index, once it exists with its address, up, with IPv4 forwarding on and the
/// subnet's NAT rule installed. Runs under the allocation lock; a bridge whose alias says it
/// is ready costs one sysfs read, so only the first bridged container of a boot pays for it.
fn ensure_bridge(nl: &mut Netlink) -> Result<u32> {
    let sys = Path::new("/sys/class/net").join(BRIDGE);
    let alias = fs::read_to_string(sys.join("ifalias")).unwrap_or_default();
    if alias.trim() == BRIDGE_READY_ALIAS {
        if let Some(index) = read_index(&sys) {
            return Ok(index);
        }
    }
    let fail = |what: &str, e: io::Error| Error::Host(format!("{what} {BRIDGE}: {e}"));
    link::create_bridge(nl, BRIDGE).map_err(|e| fail("create bridge", e))?;
    let index = link::index(nl, BRIDGE).map_err(|e| fail("look up bridge", e))?;
    link::add_address(nl, index, GATEWAY, PREFIX_LEN).map_err(|e| fail("address bridge", e))?;
    link::set_up(nl, BRIDGE, None).map_err(|e| fail("bring up bridge", e))?;
    enable_ip_forwarding()?;
    nat::install_subnet_rule(GATEWAY, PREFIX_LEN, BRIDGE)
        .map_err(|e| Error::Host(format!("install the NAT rule for {BRIDGE} (nftables): {e}")))?;
    link::set_up(nl, BRIDGE, Some(BRIDGE_READY_ALIAS)).map_err(|e| fail("tag bridge", e))?;
    Ok(index)
}

fn read_index(sys: &Path) -> Option<u32> {
    fs::read_to_string(sys.join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// NAT needs the host to route: like docker, turn IPv4 forwarding on (and leave it on, since
/// other containers may rely on it).
fn enable_ip_forwarding() -> Result<()> {
    let knob = "/proc/sys/net/ipv4/ip_forward";
    let current = fs::read_to_string(knob).ctx(|| format!("read {knob}"))?;
    if current.trim() != "1" {
        fs::write(knob, "1").ctx(|| format!("enable IPv4 forwarding ({knob})"))?;
    }
    Ok(())
}

/// An exclusive lock held while the bridge is checked, an address chosen and its veth
/// (carrying it) created.
fn lock_allocation() -> Result<OwnedFd> {
    let fd = rustix::fs::open(
        LOCK_FILE,
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Error::path("open", LOCK_FILE, e.into()))?;
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::path("lock", LOCK_FILE, e.into()))?;
    Ok(fd)
}

/// `(veth, container id, address)` of every host veth this runtime tagged.
fn tagged_veths() -> Vec<(String, String, Option<Ipv4Addr>)> {
    let Ok(entries) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(VETH_PREFIX))
        .filter_map(|name| {
            let alias = fs::read_to_string(format!("/sys/class/net/{name}/ifalias")).ok()?;
            let (id, address) = parse_alias(&alias)?;
            Some((name, id, address))
        })
        .collect()
}

/// `devoxx-docker <id> <ip>` → `(id, ip)`.
fn parse_alias(alias: &str) -> Option<(String, Option<Ipv4Addr>)> {
    let mut words = alias.split_whitespace();
    if words.next()? != ALIAS_TAG {
        return None;
    }
    let id = words.next()?.to_owned();
    Some((id, words.next().and_then(|a| a.parse().ok())))
}

fn used_addresses() -> Vec<Ipv4Addr> {
    tagged_veths()
        .into_iter()
        .filter_map(|(_, _, a)| a)
        .collect()
}

/// Lowest address of 10.88.0.0/16 that is not the network, the gateway, the broadcast or
/// taken by a live veth.
fn free_address(used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    let base = u32::from(GATEWAY) & !(u32::MAX >> PREFIX_LEN);
    let broadcast = base | (u32::MAX >> PREFIX_LEN);
    (base + 2..broadcast)
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(a))
        .ok_or_else(|| Error::Runtime(format!("no free address left on {BRIDGE}")))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// SIOCSIFFLAGS on `lo`: no external tool, so it works after pivot_root too.
fn bring_loopback_up() -> Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::io("socket for loopback", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh, valid fd nobody else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for these two ioctls; `sock` is open.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::io("get loopback flags", io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::io("bring loopback up", io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_keep_only_alphanumerics() {
        assert_eq!(veth_name("0123456789abcdef").unwrap(), "dx01234567");
        assert_eq!(veth_name("a-b_c").unwrap(), "dxabc");
        assert!(veth_name("--").is_err());
        assert!(veth_name("ffffffffffffffffffff").unwrap().len() < libc::IFNAMSIZ);
    }

    #[test]
    fn free_address_skips_network_gateway_and_used() {
        let used = [Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 4)];
        assert_eq!(free_address(&[]).unwrap(), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(
            free_address(&used[..1]).unwrap(),
            Ipv4Addr::new(10, 88, 0, 3)
        );
        let all: Vec<Ipv4Addr> = (u32::from(Ipv4Addr::new(10, 88, 0, 2))
            ..u32::from(Ipv4Addr::new(10, 88, 255, 255)))
            .map(Ipv4Addr::from)
            .collect();
        assert!(free_address(&all).is_err());
    }

    #[test]
    fn alias_round_trip() {
        assert_eq!(
            parse_alias("devoxx-docker abc123 10.88.0.7\n"),
            Some(("abc123".into(), Some(Ipv4Addr::new(10, 88, 0, 7))))
        );
        assert_eq!(parse_alias("someone else's"), None);
        // The bridge's own alias never reads as a container's.
        let (id, _) = parse_alias(BRIDGE_READY_ALIAS).expect("tagged");
        assert!(!is_container_id(&id));
    }
}
