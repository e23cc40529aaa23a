//! The network modes: host (share the host's stack), none (own netns, loopback only),
//! bridge (own netns, veth pair to a host bridge, NAT to the outside).
//!
//! Bridge mode drives the host's `ip` (iproute2) and `nft` (nftables) commands rather than
//! speaking netlink itself: both are standard on Debian/Ubuntu, their absence is reported in
//! one line, and what they do can be replayed by hand. What each container gets:
//! - a veth pair: `dx<id8>` on the host, enslaved to the bridge `devoxx0` (10.88.0.1/16,
//!   created on first use and left in place), and `eth0` inside with the lowest free address
//!   of 10.88.0.0/16 and a default route via 10.88.0.1;
//! - one `masquerade` rule in the nftables table `ip devoxx-docker`, tagged with the
//!   container id in its comment.
//!
//! Both are removed when [`Network`] is dropped; the veth would also vanish with the
//! container's netns. Which address is taken by whom lives in the host veth's alias
//! (`devoxx-docker <id> <ip>`), so the host holds no other state and [`reclaim_stale`] can
//! tell an orphan from a live container.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::state::is_container_id;
use crate::error::IoContext;
use crate::{Error, Result};

/// Host bridge every bridged container is attached to.
pub const BRIDGE: &str = "devoxx0";
/// The bridge's address: the containers' gateway, and the host as the containers see it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// Prefix length of the container subnet 10.88.0.0/16.
pub const PREFIX_LEN: u8 = 16;
/// nftables table (family `ip`) holding the per-container NAT rules.
pub const NFT_TABLE: &str = "devoxx-docker";
/// Prefix of host-side veth names: `dx` + the first 8 characters of the container id.
pub const VETH_PREFIX: &str = "dx";
/// Alias prefix on host veths: `devoxx-docker <id> <ip>`.
const ALIAS_TAG: &str = "devoxx-docker";
/// Serialises address allocation between concurrent runtimes.
const LOCK_FILE: &str = "/run/devoxx-docker-network.lock";
/// Beside each container's liveness lock, an `<id>.net` marker says "this container may own a
/// NAT rule": written before the rule is added, removed after it is deleted. Only a marker of a
/// dead container makes [`reclaim_stale`] list the nftables chain, so an ordinary run starts
/// no `nft` at all.
const NAT_MARK_DIR: &str = super::state::LOCK_DIR;

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
pub struct Network {
    /// Host end of the veth pair, once created.
    veth: Option<String>,
    /// Handle of the container's masquerade rule in the nftables chain, once added.
    nat_rule: Option<u64>,
    /// The container's address on the bridge.
    address: Option<Ipv4Addr>,
    /// Container id whose NAT marker exists (see [`NAT_MARK_DIR`]).
    nat_mark: Option<String>,
}

impl Network {
    /// The container's eth0 address (bridge mode only), for messages and tests.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.address
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let rule_gone = match self.nat_rule.take() {
            Some(handle) => delete_nat_rule(handle).is_ok(),
            None => true,
        };
        // A rule whose deletion failed keeps its marker: the next run's reclaim retries it.
        if let (true, Some(id)) = (rule_gone, self.nat_mark.take()) {
            let _ = fs::remove_file(nat_mark_path(&id));
        }
        if let Some(veth) = self.veth.take() {
            let _ = run_tool("ip", &["link", "del", &veth], None);
        }
    }
}

fn nat_mark_path(id: &str) -> std::path::PathBuf {
    Path::new(NAT_MARK_DIR).join(format!("{id}.net"))
}

/// Ids of dead containers that may have left a NAT rule behind.
fn stale_nat_marks(is_live: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = fs::read_dir(NAT_MARK_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".net").map(str::to_owned)
        })
        .filter(|id| !is_live(id))
        .collect()
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

/// Remove host-side leftovers (NAT rules, veths) of containers whose runtime died. NAT rules
/// are reclaimed even when the bridge is gone, and a marker goes only once its rules are.
pub fn reclaim_stale(is_live: &dyn Fn(&str) -> bool) {
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        for (veth, id, _) in tagged_veths() {
            if is_container_id(&id) && !is_live(&id) {
                let _ = run_tool("ip", &["link", "del", &veth], None);
            }
        }
    }
    let stale = stale_nat_marks(is_live);
    if stale.is_empty() {
        return;
    }
    let Ok(rules) = nat_rules() else {
        return; // nft failed: keep every marker, the next run tries again
    };
    let mut failed = HashSet::new();
    for (handle, id) in rules {
        if !is_live(&id) && delete_nat_rule(handle).is_err() {
            failed.insert(id);
        }
    }
    for id in stale.iter().filter(|id| !failed.contains(*id)) {
        let _ = fs::remove_file(nat_mark_path(id));
    }
}

// ---------------------------------------------------------------------------------------------
// Bridge mode (parent)
// ---------------------------------------------------------------------------------------------

fn setup_bridge(id: &str, pid: i32) -> Result<Network> {
    require_tools()?;
    let mut network = Network::default();
    let veth = veth_name(id)?;
    ensure_bridge()?;
    enable_ip_forwarding()?;
    {
        let _lock = lock_allocation()?;
        let address = free_address(&used_addresses())?;
        create_veth(&veth, pid)?;
        network.veth = Some(veth.clone());
        run_tool(
            "ip",
            &[
                "link",
                "set",
                &veth,
                "alias",
                &format!("{ALIAS_TAG} {id} {address}"),
                "master",
                BRIDGE,
                "up",
            ],
            None,
        )?;
        network.address = Some(address);
    }
    let address = network.address.unwrap_or(GATEWAY);
    configure_container_end(pid, address)?;
    ensure_nat_chain()?;
    fs::create_dir_all(NAT_MARK_DIR).ctx(|| format!("create {NAT_MARK_DIR}"))?;
    File::create(nat_mark_path(id)).ctx(|| format!("create {}", nat_mark_path(id).display()))?;
    network.nat_mark = Some(id.to_owned());
    network.nat_rule = Some(add_nat_rule(id, address)?);
    Ok(network)
}

/// Both tools, or one line saying which package is missing.
fn require_tools() -> Result<()> {
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(Error::Host(format!(
                "--network bridge needs the `{tool}` command (install {package})"
            )));
        }
    }
    Ok(())
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

/// Create `devoxx0` with 10.88.0.1/16 if missing; tolerate a concurrent runtime doing the same.
fn ensure_bridge() -> Result<()> {
    let sys = Path::new("/sys/class/net").join(BRIDGE);
    if !sys.exists() {
        if let Err(e) = run_tool("ip", &["link", "add", BRIDGE, "type", "bridge"], None) {
            if !sys.exists() {
                return Err(e);
            }
        }
    }
    let shown = run_tool("ip", &["-4", "-o", "addr", "show", "dev", BRIDGE], None)?;
    let cidr = format!("{GATEWAY}/{PREFIX_LEN}");
    if !shown.contains(&format!("inet {cidr} ")) {
        let added = run_tool("ip", &["addr", "add", &cidr, "dev", BRIDGE], None);
        if let Err(e) = added {
            if !e.to_string().contains("File exists") {
                return Err(e);
            }
        }
    }
    run_tool("ip", &["link", "set", BRIDGE, "up"], None).map(drop)
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

/// An exclusive lock held while an address is chosen and its veth (carrying it) is created.
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

/// The pair is created with its container end directly in the container's netns (as eth0),
/// so no temporary name ever exists on the host.
fn create_veth(veth: &str, pid: i32) -> Result<()> {
    let pid = pid.to_string();
    run_tool(
        "ip",
        &[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ],
        None,
    )
    .map(drop)
}

/// Inside the container's netns (the `ip` process joins it before exec): address, up, route.
fn configure_container_end(pid: i32, address: Ipv4Addr) -> Result<()> {
    let netns = File::open(format!("/proc/{pid}/ns/net")).ctx(|| format!("open netns of {pid}"))?;
    let script = format!(
        "addr add {address}/{PREFIX_LEN} dev eth0\nlink set eth0 up\nroute add default via {GATEWAY}\n"
    );
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"]);
    let raw = netns.as_raw_fd();
    // SAFETY: only setns(2) runs between fork and exec (async-signal-safe); `netns` outlives
    // the spawn, so the fd is valid in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    run_command(cmd, "ip -batch (container eth0)", Some(&script)).map(drop)
}

// ---------------------------------------------------------------------------------------------
// NAT (nftables)
// ---------------------------------------------------------------------------------------------

/// Table and postrouting NAT chain; declaring them is idempotent.
fn ensure_nat_chain() -> Result<()> {
    let script = format!(
        "table ip {NFT_TABLE} {{\n  chain postrouting {{\n    \
         type nat hook postrouting priority srcnat; policy accept;\n  }}\n}}\n"
    );
    run_tool("nft", &["-f", "-"], Some(&script)).map(drop)
}

/// Masquerade what the container sends off the bridge; returns the rule's handle.
fn add_nat_rule(id: &str, address: Ipv4Addr) -> Result<u64> {
    let rule = format!(
        "add rule ip {NFT_TABLE} postrouting ip saddr {address} oifname != \"{BRIDGE}\" \
         masquerade comment \"{ALIAS_TAG} {id}\"\n"
    );
    let echoed = run_tool("nft", &["--echo", "--handle", "-f", "-"], Some(&rule))?;
    parse_handle(&echoed).ok_or_else(|| {
        Error::Runtime(format!(
            "nft did not report the NAT rule's handle: {echoed}"
        ))
    })
}

/// The number after `# handle` in nft's `--handle` output.
fn parse_handle(line: &str) -> Option<u64> {
    let (_, after) = line.rsplit_once("# handle ")?;
    after.split_whitespace().next()?.parse().ok()
}

fn delete_nat_rule(handle: u64) -> Result<()> {
    let handle = handle.to_string();
    run_tool(
        "nft",
        &[
            "delete",
            "rule",
            "ip",
            NFT_TABLE,
            "postrouting",
            "handle",
            &handle,
        ],
        None,
    )
    .map(drop)
}

/// `(handle, container id)` of every per-container rule in our chain (none when the table is
/// gone).
fn nat_rules() -> Result<Vec<(u64, String)>> {
    let table_exists = run_tool("nft", &["list", "tables", "ip"], None)?
        .lines()
        .any(|l| l.trim() == format!("table ip {NFT_TABLE}"));
    if !table_exists {
        return Ok(Vec::new());
    }
    let listing = run_tool(
        "nft",
        &["-a", "list", "chain", "ip", NFT_TABLE, "postrouting"],
        None,
    )?;
    Ok(parse_nat_rules(&listing))
}

fn parse_nat_rules(listing: &str) -> Vec<(u64, String)> {
    let tag = format!("comment \"{ALIAS_TAG} ");
    listing
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(&tag)?;
            let id = rest.split('"').next()?;
            is_container_id(id).then(|| Some((parse_handle(line)?, id.to_owned())))?
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn run_tool(tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    run_command(cmd, &format!("{tool} {}", args.join(" ")), stdin)
}

/// Run `cmd`, feeding `stdin`; its stdout on success, else one line with its first error line.
fn run_command(mut cmd: Command, shown: &str, stdin: Option<&str>) -> Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().ctx(|| shown.to_owned())?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .ctx(|| format!("{shown}: write stdin"))?;
    }
    let out = child.wait_with_output().ctx(|| shown.to_owned())?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    Err(Error::Runtime(format!("{shown}: {}", first.trim())))
}

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
    fn alias_and_nft_listing_round_trip() {
        assert_eq!(
            parse_alias("devoxx-docker abc123 10.88.0.7\n"),
            Some(("abc123".into(), Some(Ipv4Addr::new(10, 88, 0, 7))))
        );
        assert_eq!(parse_alias("someone else's"), None);
        let listing = "table ip devoxx-docker {\n\tchain postrouting { # handle 1\n\
            \t\tip saddr 10.88.0.2 oifname != \"devoxx0\" masquerade comment \"devoxx-docker 0123456789ab\" # handle 4\n\
            \t\tip saddr 10.88.0.3 masquerade # handle 5\n\
            \t\tip saddr 10.88.0.0/16 oifname != \"devoxx0\" masquerade comment \"devoxx-docker subnet\" # handle 6\n\
            \t}\n}\n";
        // Only rules tagged with a container id are ours: another version's subnet rule is not.
        assert_eq!(
            parse_nat_rules(listing),
            vec![(4, "0123456789ab".to_owned())]
        );
        assert_eq!(parse_handle("add rule ... # handle 42\n"), Some(42));
    }
}
