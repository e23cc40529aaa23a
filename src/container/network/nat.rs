//! NAT the way docker does it: one masquerade rule for the whole bridge subnet, installed with
//! the bridge, never per container. Containers come and go without touching nftables, so no
//! rule can be forgotten by a runtime that dies.
//!
//! The rule lives alone in the base chain `subnet-nat` of the table `ip devoxx-docker`, and is
//! written over nfnetlink in one transaction (table, chain, flush chain, rule), which makes
//! installing it idempotent and atomic. In nft's words:
//! `ip saddr 10.88.0.0/16 oifname != "devoxx0" masquerade comment "devoxx-docker subnet"`.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Hook, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload,
    Register, RuleAttribute, RuleMessage, TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use super::netlink::Netlink;

/// nftables table (family `ip`) holding the runtime's NAT.
pub const TABLE: &str = "devoxx-docker";
/// Base chain (postrouting, srcnat priority) holding the one subnet rule.
pub const CHAIN: &str = "subnet-nat";
/// The rule's comment, as `nft list` shows it.
pub const COMMENT: &str = "devoxx-docker subnet";

const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NF_ACCEPT`, the chain's policy.
const POLICY_ACCEPT: u32 = 1;
/// `NF_IP_PRI_NAT_SRC` (nft's `srcnat`).
const PRIORITY_SRCNAT: u32 = 100;
/// `NFT_PAYLOAD_NETWORK_HEADER`.
const NETWORK_HEADER: u32 = 1;
/// Offset of the source address in the IPv4 header.
const IPV4_SADDR_OFFSET: u32 = 12;
/// `NFTNL_UDATA_RULE_COMMENT`, the user-data type nft stores comments under.
const UDATA_RULE_COMMENT: u8 = 0;

/// Install (or re-install, idempotently) the masquerade rule for `subnet/prefix_len` leaving
/// through any interface but `bridge`.
pub fn install_subnet_rule(subnet: Ipv4Addr, prefix_len: u8, bridge: &str) -> io::Result<()> {
    let messages = vec![
        (control(ControlMessage::BatchBegin), 0),
        (
            nft(NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(TABLE.to_owned())],
            })),
            NLM_F_CREATE | NLM_F_ACK,
        ),
        (
            nft(NfTablesMessage::NewChain(chain())),
            NLM_F_CREATE | NLM_F_ACK,
        ),
        // A rule message naming only the chain deletes all its rules: no duplicate, ever.
        (
            nft(NfTablesMessage::DeleteRule(RuleMessage {
                attributes: rule_location(),
            })),
            NLM_F_ACK,
        ),
        (
            nft(NfTablesMessage::NewRule(subnet_rule(
                subnet, prefix_len, bridge,
            ))),
            NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
        ),
        (control(ControlMessage::BatchEnd), 0),
    ];
    Netlink::netfilter()?.exchange(messages, |_| {})
}

fn control(message: ControlMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        NetfilterMessageInner::None(message),
    )
}

fn nft(message: NfTablesMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
        NetfilterMessageInner::NfTables(message),
    )
}

fn chain() -> ChainMessage {
    ChainMessage {
        attributes: vec![
            ChainAttribute::Table(TABLE.to_owned()),
            ChainAttribute::Name(CHAIN.to_owned()),
            ChainAttribute::Hook(vec![
                Hook::Number(InetHookNumber::PostRouting.into()),
                Hook::Priority(PRIORITY_SRCNAT),
            ]),
            ChainAttribute::Policy(POLICY_ACCEPT),
            ChainAttribute::Type("nat".to_owned()),
        ],
    }
}

fn rule_location() -> Vec<RuleAttribute> {
    vec![
        RuleAttribute::Table(TABLE.to_owned()),
        RuleAttribute::Chain(CHAIN.to_owned()),
    ]
}

/// `ip saddr SUBNET/LEN oifname != BRIDGE masquerade comment COMMENT`, expression by
/// expression as nft itself would emit it.
fn subnet_rule(subnet: Ipv4Addr, prefix_len: u8, bridge: &str) -> RuleMessage {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    let network = u32::from(subnet) & mask;
    let mut ifname = [0u8; libc::IFNAMSIZ];
    for (dst, src) in ifname.iter_mut().zip(bridge.bytes()) {
        *dst = src;
    }
    let expressions = vec![
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(NETWORK_HEADER),
            Payload::Offset(IPV4_SADDR_OFFSET),
            Payload::Len(4),
        ])
        .into(),
        Expressions::Bitwise(vec![
            Bitwise::SourceRegister(Register::Reg1),
            Bitwise::DestinationRegister(Register::Reg1),
            Bitwise::Length(4),
            Bitwise::Mask(DataAttribute::Value(mask.to_be_bytes().to_vec())),
            Bitwise::Xor(DataAttribute::Value(vec![0; 4])),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(network.to_be_bytes().to_vec())),
        ])
        .into(),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::Oifname),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::NotEqual),
            Cmp::Data(DataAttribute::Value(ifname.to_vec())),
        ])
        .into(),
        ListAttribute::Element(vec![ExpressionAttribute::Name("masq".to_owned())]),
    ];
    let mut attributes = rule_location();
    attributes.push(RuleAttribute::Expressions(expressions));
    attributes.push(RuleAttribute::UserData(comment_user_data(COMMENT)));
    RuleMessage { attributes }
}

/// nft's user-data TLV for a rule comment (type, length including the NUL, text, NUL).
fn comment_user_data(comment: &str) -> Vec<u8> {
    let mut data = vec![UDATA_RULE_COMMENT, (comment.len() + 1) as u8];
    data.extend_from_slice(comment.as_bytes());
    data.push(0);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_a_nul_terminated_tlv() {
        assert_eq!(comment_user_data("ab"), vec![0, 3, b'a', b'b', 0]);
    }

    #[test]
    fn subnet_rule_masks_the_prefix() {
        let rule = subnet_rule(Ipv4Addr::new(10, 88, 7, 1), 16, "devoxx0");
        let text = format!("{rule:?}");
        assert!(text.contains("[255, 255, 0, 0]"), "{text}");
        assert!(text.contains("[10, 88, 0, 0]"), "{text}");
        assert!(text.contains("masq"), "{text}");
    }
}
