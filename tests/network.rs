//! `run --network host|none|bridge`, through the CLI only. Bridge tests only ever talk to
//! 10.88.0.1 (the host's bridge address) from inside a container, use a random port and
//! payload, and check that no `dx*` veth survives it and that NAT is docker's: one masquerade
//! rule for the bridge's subnet, present while the bridge exists, and never a rule per
//! container. The bridge `devoxx0` and that rule persist by design (like docker0); IPv4
//! forwarding, which the runtime turns on for NAT, is put back as the test found it. `nft` is
//! used here only to look; the runtime itself speaks netlink.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run::{output_within, RUN_TIMEOUT};
use common::{assert_no_leaks, host_mounts, is_root, marker, processes_with, random_in, TestRoot};
use serial_test::serial;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn image(root: &TestRoot) -> String {
    root.install_image(serde_json::json!({"Cmd": ["/bin/sh"]}))
        .0
}

/// Interface names listed in a `/proc/net/dev` text.
fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

/// Host veths whose name starts with `dx`, with their alias (the runtime tags them).
fn dx_veths() -> BTreeSet<(String, String)> {
    fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("dx"))
        .map(|n| {
            let alias =
                fs::read_to_string(format!("/sys/class/net/{n}/ifalias")).unwrap_or_default();
            (n, alias.trim().to_owned())
        })
        .collect()
}

/// The one rule NAT needs, as `nft` prints it.
const SUBNET_RULE: &str = "ip saddr 10.88.0.0/16 oifname != \"devoxx0\" masquerade";

/// Masquerade rule lines of the runtime's nftables table (empty when it does not exist).
fn masquerade_rules() -> Vec<String> {
    masquerade_rules_in(&["list", "table", "ip", "devoxx-docker"])
}

/// Masquerade rule lines `nft ARGS` prints.
fn masquerade_rules_in(args: &[&str]) -> Vec<String> {
    let out = Command::new("nft").args(args).output().expect("run nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("masquerade"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Rules for single container addresses (what an older design added per container).
fn per_container_rules() -> Vec<String> {
    masquerade_rules()
        .into_iter()
        .filter(|r| !r.starts_with(SUBNET_RULE))
        .collect()
}

/// The bridge exists and so does exactly one subnet rule in the runtime's chain (other chains
/// of the table may hold an older version's rules: not this runtime's to judge or remove).
fn assert_subnet_nat() {
    assert!(
        std::path::Path::new("/sys/class/net/devoxx0").exists(),
        "bridge devoxx0 missing"
    );
    let subnet: Vec<_> =
        masquerade_rules_in(&["list", "chain", "ip", "devoxx-docker", "subnet-nat"])
            .into_iter()
            .filter(|r| r.starts_with(SUBNET_RULE))
            .collect();
    assert_eq!(subnet.len(), 1, "want one subnet NAT rule: {subnet:?}");
}

fn have_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Puts IPv4 forwarding back as found when the test ends, however it ends.
struct ForwardingRestorer(String);

impl ForwardingRestorer {
    fn capture() -> Self {
        ForwardingRestorer(fs::read_to_string(IP_FORWARD).expect("read ip_forward"))
    }
}

impl Drop for ForwardingRestorer {
    fn drop(&mut self) {
        let _ = fs::write(IP_FORWARD, self.0.trim());
    }
}

macro_rules! require_bridge_host {
    () => {
        if !is_root() {
            skip!("needs root (network namespaces, veth, nftables)");
        }
        if !have_tool("ip") || !have_tool("nft") {
            skip!("bridge mode needs the ip (iproute2) and nft (nftables) commands");
        }
    };
}

#[test]
#[serial(bridge)] // every run reclaims stale veths: it would race the killed-runtime test
fn none_has_only_loopback_and_it_is_up() {
    if !is_root() {
        skip!("needs root (network namespaces)");
    }
    let root = TestRoot::new();
    let img = image(&root);
    let (mounts, mark) = (host_mounts(), marker());
    let out = root
        .cmd()
        .args(["run", "--network", "none", &img, "sh", "-c"])
        .arg(format!(
            "probe cat /proc/net/dev; ip -o link show lo # {mark}"
        ))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    let (net_dev, link) = out.split_at(out.find("1: lo").expect("ip link output"));
    assert_eq!(interfaces(net_dev), BTreeSet::from(["lo".to_owned()]));
    assert!(link.contains(",UP"), "loopback is down: {link}");
    assert_no_leaks(&root, &mounts, &mark);
}

#[test]
#[serial(bridge)] // bridge tests add and remove host veths
fn host_shares_the_host_interfaces() {
    require_root!();
    let root = TestRoot::new();
    let img = image(&root);
    let (mounts, mark) = (host_mounts(), marker());
    let out = root
        .cmd()
        .args([
            "run",
            "--network",
            "host",
            &img,
            "probe",
            "cat",
            "/proc/net/dev",
            &mark,
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(interfaces(&String::from_utf8_lossy(&out)), host);
    assert_no_leaks(&root, &mounts, &mark);
}

#[test]
#[serial(bridge)] // a failed run reclaims stale state too
fn unknown_network_mode_is_a_usage_error() {
    let root = TestRoot::new();
    let mode = marker();
    let out = root
        .cmd()
        .args(["run", "--network", &mode, "img-none", "true"])
        .assert()
        .code(125)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("devoxx-docker:") && stderr.contains(&mode),
        "{stderr}"
    );
}

/// Bind the test's listener on the bridge address once the runtime has created it.
fn listen_on_bridge(port: u16, deadline: Instant) -> TcpListener {
    loop {
        match TcpListener::bind(SocketAddrV4::new(GATEWAY, port)) {
            Ok(listener) => return listener,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "bridge address never appeared: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
#[serial(bridge)]
fn bridge_reaches_the_host_through_one_subnet_nat_rule_and_leaves_no_veth() {
    require_bridge_host!();
    let _forwarding = ForwardingRestorer::capture();
    let root = TestRoot::new();
    let img = image(&root);
    let (mounts, veths_before, rules_before) = (host_mounts(), dx_veths(), per_container_rules());
    let (payload, port) = (marker(), random_in(20000..=60000) as u16);
    let script = format!(
        "ip -4 -o addr show dev eth0; ip route; \
         for i in $(seq 200); do echo {payload} | nc {GATEWAY} {port} && exit 0; sleep 0.1; done; exit 1"
    );
    let runtime = root
        .std_cmd()
        .args(["run", "--network", "bridge", &img, "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listener = listen_on_bridge(port, Instant::now() + Duration::from_secs(20));
    let (mut conn, peer) = listener.accept().unwrap();
    let mut received = String::new();
    conn.read_to_string(&mut received).unwrap();
    assert_eq!(received.trim(), payload);
    let peer_ip = peer.ip().to_string();
    assert!(
        peer_ip.starts_with("10.88.") && peer_ip != GATEWAY.to_string(),
        "{peer}"
    );
    // While the container lives: its tagged veth exists (so the checks below can see a leak),
    // the subnet rule covers it, and no rule names it.
    let veths_during = dx_veths();
    let new_veth: Vec<_> = veths_during.difference(&veths_before).collect();
    assert!(
        new_veth.len() == 1 && new_veth[0].1.ends_with(&peer_ip),
        "veths while running: {veths_during:?}"
    );
    assert_subnet_nat();
    let rules = masquerade_rules();
    assert!(
        !rules
            .iter()
            .any(|r| r.contains(&format!("saddr {peer_ip} "))),
        "a NAT rule for {peer_ip} alone: {rules:?}"
    );
    drop(conn);
    let out = output_within(runtime, RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("inet {peer_ip}/16")), "{stdout}");
    assert!(
        stdout.contains(&format!("default via {GATEWAY}")),
        "{stdout}"
    );
    assert_eq!(dx_veths(), veths_before, "veth left behind");
    assert_eq!(per_container_rules(), rules_before, "NAT rule left behind");
    assert_subnet_nat();
    assert_no_leaks(&root, &mounts, &payload);
}

#[test]
#[serial(bridge)]
fn veth_of_a_killed_runtime_is_reclaimed_by_the_next_run() {
    require_bridge_host!();
    let _forwarding = ForwardingRestorer::capture();
    let root = TestRoot::new();
    let img = image(&root);
    let (mounts, veths_before, rules_before, mark) =
        (host_mounts(), dx_veths(), per_container_rules(), marker());
    let mut runtime = root
        .std_cmd()
        .args([
            "run",
            "--network",
            "bridge",
            &img,
            "probe",
            "sleep",
            "60",
            &mark,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (veth, container) = loop {
        // Tagged: the runtime names the veth's owner in its alias just after creating it (a
        // veth seen in between would "vanish" from the set once tagged, under a slow guest).
        let new: Vec<_> = dx_veths()
            .difference(&veths_before)
            .filter(|(_, alias)| !alias.is_empty())
            .cloned()
            .collect();
        // The runtime's command line carries the marker too: the container is the one in
        // another network namespace.
        let host_netns = fs::read_link("/proc/self/ns/net").expect("own netns");
        let in_container: Vec<i32> = processes_with(&mark)
            .into_iter()
            .filter(|p| fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|n| n != host_netns))
            .collect();
        if let ([veth], [pid, ..]) = (new.as_slice(), in_container.as_slice()) {
            break (veth.clone(), *pid);
        }
        assert!(
            Instant::now() < deadline,
            "the bridge container never got its veth"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Holding the container's netns keeps the pair alive after the container dies, as a
    // netns pinned by anything else would: only the runtime's reclaim can remove it then.
    let netns = fs::File::open(format!("/proc/{container}/ns/net")).expect("open netns");
    runtime.kill().unwrap(); // SIGKILL: no cleanup code runs
    runtime.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(&mark).is_empty() {
        assert!(
            Instant::now() < deadline,
            "container outlived its SIGKILLed runtime"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dx_veths().iter().any(|(name, _)| *name == veth.0),
        "the veth vanished by itself: nothing to reclaim"
    );
    root.cmd()
        .args(["run", "--network", "none", &img, "true"])
        .assert()
        .success();
    assert_eq!(dx_veths(), veths_before, "stale veth not reclaimed");
    assert_eq!(
        per_container_rules(),
        rules_before,
        "a per-container NAT rule"
    );
    assert_subnet_nat();
    drop(netns);
    assert_no_leaks(&root, &mounts, &mark);
}

#[test]
#[serial(bridge)]
fn concurrent_bridge_containers_get_distinct_addresses() {
    require_bridge_host!();
    let _forwarding = ForwardingRestorer::capture();
    let root = TestRoot::new();
    let img = image(&root);
    let (mounts, veths_before, rules_before, mark) =
        (host_mounts(), dx_veths(), per_container_rules(), marker());
    // Both start together and stay up 2 s, so their allocations overlap.
    let script = format!("ip -4 -o addr show dev eth0; sleep 2 # {mark}");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            root.std_cmd()
                .args(["run", "--network", "bridge", &img, "sh", "-c", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let addresses: BTreeSet<String> = runs
        .into_iter()
        .map(|r| {
            let out = output_within(r, RUN_TIMEOUT);
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let inet = text.split_whitespace().skip_while(|w| *w != "inet").nth(1);
            inet.expect("an inet address").to_owned()
        })
        .collect();
    assert_eq!(addresses.len(), 2, "same address twice: {addresses:?}");
    assert!(addresses
        .iter()
        .all(|a| a.starts_with("10.88.") && a.ends_with("/16")));
    assert_eq!(dx_veths(), veths_before);
    assert_eq!(per_container_rules(), rules_before);
    assert_subnet_nat();
    assert_no_leaks(&root, &mounts, &mark);
}
