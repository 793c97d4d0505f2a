//! `enum sy_dir_reason`: the director's outcome counters (`sy_dir_counters`), the XDP
//! program's and the health probes' (TC egress).

/// `enum sy_dir_reason`: what the director did with a packet (index of `sy_dir_counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum DirReason {
    /// Encapsulated with GUE and sent.
    EncapGue = 0,
    /// Encapsulated with FOU and sent.
    EncapFou = 1,
    /// Encapsulated with IPIP and sent.
    EncapIpip = 2,
    /// An ICMP error about a VIP flow, sent to the flow's node.
    IcmpToNode = 3,
    /// Too big once encapsulated: frag-needed / packet-too-big sent back.
    FragNeeded = 4,
    /// A VIP no node serves: dropped.
    DropNoNode = 5,
    /// A VIP's table is missing: dropped.
    DropTableMissing = 6,
    /// A slot's node is missing: dropped.
    DropNodeMissing = 7,
    /// Truncated transport header or ICMP quote: passed to the stack.
    PassMalformed = 8,
    /// An IP fragment: passed to the stack.
    PassFragment = 9,
    /// No director address of the node's family: dropped.
    DropNoSource = 10,
    /// No route or next-hop MAC to the node: dropped.
    DropNoRoute = 11,
    /// Frame resize failed: dropped.
    DropResize = 12,
    /// Too big, and no answer could be built: dropped.
    DropNoAnswer = 13,
    /// No configuration: dropped.
    DropNoConfig = 14,
    /// Of the encapsulated TCP packets: carried the slot's previous node (second chance).
    SecondChance = 15,
    /// A health probe of the director's own, encapsulated to its node (TC egress).
    ProbeEncap = 16,
    /// A health probe that could not be encapsulated: dropped.
    DropProbe = 17,
}

impl DirReason {
    /// Every reason, in counter order.
    pub const ALL: [DirReason; 18] = [
        DirReason::EncapGue,
        DirReason::EncapFou,
        DirReason::EncapIpip,
        DirReason::IcmpToNode,
        DirReason::FragNeeded,
        DirReason::DropNoNode,
        DirReason::DropTableMissing,
        DirReason::DropNodeMissing,
        DirReason::PassMalformed,
        DirReason::PassFragment,
        DirReason::DropNoSource,
        DirReason::DropNoRoute,
        DirReason::DropResize,
        DirReason::DropNoAnswer,
        DirReason::DropNoConfig,
        DirReason::SecondChance,
        DirReason::ProbeEncap,
        DirReason::DropProbe,
    ];
    /// `SY_DIR_REASON_MAX`.
    pub const MAX: u32 = 32;

    /// The name used in metrics and `status`.
    pub fn name(self) -> &'static str {
        match self {
            DirReason::EncapGue => "encap_gue",
            DirReason::EncapFou => "encap_fou",
            DirReason::EncapIpip => "encap_ipip",
            DirReason::IcmpToNode => "icmp_to_node",
            DirReason::FragNeeded => "frag_needed",
            DirReason::DropNoNode => "drop_no_node",
            DirReason::DropTableMissing => "drop_table_missing",
            DirReason::DropNodeMissing => "drop_node_missing",
            DirReason::PassMalformed => "pass_malformed",
            DirReason::PassFragment => "pass_fragment",
            DirReason::DropNoSource => "drop_no_source",
            DirReason::DropNoRoute => "drop_no_route",
            DirReason::DropResize => "drop_resize",
            DirReason::DropNoAnswer => "drop_no_answer",
            DirReason::DropNoConfig => "drop_no_config",
            DirReason::SecondChance => "second_chance",
            DirReason::ProbeEncap => "probe_encap",
            DirReason::DropProbe => "drop_probe",
        }
    }
}
