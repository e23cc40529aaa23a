//! Links, addresses and routes through rtnetlink: the bridge, the container's veth pair and
//! the container end's configuration. Each function is one or two netlink requests.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::Netlink;

/// A link message naming its interface (the kernel looks names up when the index is 0).
fn named(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    message
}

/// Mark `message` as "bring the link up".
fn up(message: &mut LinkMessage) {
    message.header.flags |= LinkFlags::Up;
    message.header.change_mask |= LinkFlags::Up;
}

/// Create a bridge named `name`; `Ok(false)` when it already exists.
pub fn create_bridge(nl: &mut Netlink, name: &str) -> io::Result<bool> {
    let mut message = named(name);
    message
        .attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    match nl.request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The interface index of `name` in the socket's namespace.
pub fn index(nl: &mut Netlink, name: &str) -> io::Result<u32> {
    let mut found = None;
    nl.query(RouteNetlinkMessage::GetLink(named(name)), 0, |reply| {
        if let RouteNetlinkMessage::NewLink(link) = reply {
            found = Some(link.header.index);
        }
    })?;
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name}")))
}

/// Add `address/prefix_len` to link `index`; an address already there is fine.
pub fn add_address(
    nl: &mut Netlink,
    index: u32,
    address: Ipv4Addr,
    prefix_len: u8,
) -> io::Result<()> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
    ];
    match nl.request(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(e),
        _ => Ok(()),
    }
}

/// Set link `name` up, and optionally its alias.
pub fn set_up(nl: &mut Netlink, name: &str, alias: Option<&str>) -> io::Result<()> {
    let mut message = named(name);
    up(&mut message);
    if let Some(alias) = alias {
        message
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
    }
    nl.request(RouteNetlinkMessage::SetLink(message), 0)
}

/// Create the pair `host` (enslaved to bridge `bridge_index`, up, tagged with `alias`) and
/// `eth0` directly in the namespace `netns`: no temporary name ever exists on the host.
pub fn create_veth(
    nl: &mut Netlink,
    host: &str,
    bridge_index: u32,
    alias: &str,
    netns: &File,
) -> io::Result<()> {
    let mut peer = named("eth0");
    peer.attributes
        .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
    let mut message = named(host);
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    message
        .attributes
        .push(LinkAttribute::Controller(bridge_index));
    nl.request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    // The alias is not applied on creation; it and the link state are set together.
    set_up(nl, host, Some(alias))
}

/// Delete link `name`.
pub fn delete(nl: &mut Netlink, name: &str) -> io::Result<()> {
    nl.request(RouteNetlinkMessage::DelLink(named(name)), 0)
}

/// Inside the container's namespace (through `nl`): `eth0` gets `address/prefix_len`, goes
/// up, and the default route points at `gateway`.
pub fn configure_container_end(
    nl: &mut Netlink,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> io::Result<()> {
    let eth0 = index(nl, "eth0")?;
    add_address(nl, eth0, address, prefix_len)?;
    set_up(nl, "eth0", None)?;
    let mut route = RouteMessage::default();
    route.header = RouteHeader {
        address_family: AddressFamily::Inet,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    route.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(eth0),
    ];
    nl.request(
        RouteNetlinkMessage::NewRoute(route),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}
