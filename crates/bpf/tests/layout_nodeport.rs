//! The per-packet mirrors in `nodeport_abi` must lay out exactly like the per-packet section of
//! `include/switchyard.h` (build.rs runs `c/layout_probe_nodeport.c`). No root needed.

use std::{collections::BTreeMap, mem::offset_of};

use switchyard_bpf::nodeport_abi::*;

include!(concat!(env!("OUT_DIR"), "/c_layout_nodeport.rs"));

#[test]
fn every_per_packet_struct_has_the_size_and_alignment_of_the_header() {
    let rust = BTreeMap::from([
        ("sy_ct_key", (size_of::<CtKey>(), align_of::<CtKey>())),
        ("sy_ct_entry", (size_of::<CtEntry>(), align_of::<CtEntry>())),
        ("sy_nat_entry", (size_of::<NatEntry>(), align_of::<NatEntry>())),
        ("sy_src_range_key", (size_of::<SrcRangeKey>(), align_of::<SrcRangeKey>())),
        ("sy_pkt_config", (size_of::<PktConfig>(), align_of::<PktConfig>())),
        ("sy_xdp_dev", (size_of::<XdpDev>(), align_of::<XdpDev>())),
        ("sy_gue_dsr", (size_of::<GueDsr>(), align_of::<GueDsr>())),
    ]);
    let c: BTreeMap<_, _> = C_PKT_SIZES.iter().map(|&(n, s, a)| (n, (s, a))).collect();
    assert_eq!(rust, c, "(size, align) per struct: left Rust, right C");
}

#[test]
fn every_per_packet_field_has_the_offset_of_the_header() {
    macro_rules! o {
        ($($c:literal => $t:ty, $f:ident);* $(;)?) => {
            BTreeMap::from([$(($c, offset_of!($t, $f))),*])
        };
    }
    let rust = o! {
        "sy_ct_key.saddr" => CtKey, saddr;
        "sy_ct_key.daddr" => CtKey, daddr;
        "sy_ct_key.sport" => CtKey, sport;
        "sy_ct_key.dport" => CtKey, dport;
        "sy_ct_key.proto" => CtKey, proto;
        "sy_ct_key.family" => CtKey, family;
        "sy_ct_key.pad" => CtKey, pad;
        "sy_ct_entry.nat_saddr" => CtEntry, nat_saddr;
        "sy_ct_entry.nat_daddr" => CtEntry, nat_daddr;
        "sy_ct_entry.nat_sport" => CtEntry, nat_sport;
        "sy_ct_entry.nat_dport" => CtEntry, nat_dport;
        "sy_ct_entry.backend_id" => CtEntry, backend_id;
        "sy_ct_entry.frontend_id" => CtEntry, frontend_id;
        "sy_ct_entry.state" => CtEntry, state;
        "sy_ct_entry.flags" => CtEntry, flags;
        "sy_ct_entry.pad" => CtEntry, pad;
        "sy_ct_entry.last_seen_ns" => CtEntry, last_seen_ns;
        "sy_nat_entry.orig" => NatEntry, orig;
        "sy_src_range_key.prefixlen" => SrcRangeKey, prefixlen;
        "sy_src_range_key.frontend_id" => SrcRangeKey, frontend_id;
        "sy_src_range_key.addr" => SrcRangeKey, addr;
        "sy_pkt_config.snat_addr4" => PktConfig, snat_addr4;
        "sy_pkt_config.snat_addr6" => PktConfig, snat_addr6;
        "sy_pkt_config.snat_port_min" => PktConfig, snat_port_min;
        "sy_pkt_config.snat_port_max" => PktConfig, snat_port_max;
        "sy_pkt_config.flags" => PktConfig, flags;
        "sy_pkt_config.timeout_tcp_syn_s" => PktConfig, timeout_tcp_syn_s;
        "sy_pkt_config.timeout_tcp_established_s" => PktConfig, timeout_tcp_established_s;
        "sy_pkt_config.timeout_tcp_closing_s" => PktConfig, timeout_tcp_closing_s;
        "sy_pkt_config.timeout_udp_s" => PktConfig, timeout_udp_s;
        "sy_pkt_config.timeout_other_s" => PktConfig, timeout_other_s;
        "sy_pkt_config.timeout_unreplied_s" => PktConfig, timeout_unreplied_s;
        "sy_pkt_config.dsr_port" => PktConfig, dsr_port;
        "sy_pkt_config.pad" => PktConfig, pad;
        "sy_gue_dsr.kind" => GueDsr, kind;
        "sy_gue_dsr.family" => GueDsr, family;
        "sy_gue_dsr.port" => GueDsr, port;
        "sy_xdp_dev.mac" => XdpDev, mac;
        "sy_xdp_dev.flags" => XdpDev, flags;
    };
    let c: BTreeMap<_, _> = C_PKT_OFFSETS.iter().copied().collect();
    assert_eq!(rust, c, "field offsets: left Rust, right C");
}

#[test]
fn every_per_packet_constant_has_the_value_of_the_header() {
    let mut rust = BTreeMap::from([
        ("SY_CT_SYN_SENT", u64::from(CT_SYN_SENT)),
        ("SY_CT_ESTABLISHED", u64::from(CT_ESTABLISHED)),
        ("SY_CT_CLOSING", u64::from(CT_CLOSING)),
        ("SY_CT_F_SNAT", u64::from(CT_F_SNAT)),
        ("SY_CT_F_REPLY_SEEN", u64::from(CT_F_REPLY_SEEN)),
        ("SY_CT_F_HAIRPIN", u64::from(CT_F_HAIRPIN)),
        ("SY_CT_F_DSR", u64::from(CT_F_DSR)),
        ("SY_CT_F_RESET", u64::from(CT_F_RESET)),
        ("SY_SNAT_RESET_QUIET_MS", SNAT_RESET_QUIET_MS),
        ("SY_PKT_F_DSR", u64::from(PKT_F_DSR)),
        ("SY_GUE_DSR_KIND", u64::from(GUE_DSR_KIND)),
        ("SY_GUE_DSR_HLEN4", u64::from(GUE_DSR_HLEN4)),
        ("SY_GUE_DSR_HLEN6", u64::from(GUE_DSR_HLEN6)),
        ("SY_DEFAULT_DSR_NODES", u64::from(DEFAULT_DSR_NODES)),
        ("SY_SNAT_PROBES", u64::from(SNAT_PROBES)),
        ("SY_SNAT_CLAIMS", u64::from(SNAT_CLAIMS)),
        ("SY_SNAT_TCP_HOLD_S", u64::from(SNAT_TCP_HOLD_S)),
        ("SY_XDP_DEVS_MAX", u64::from(XDP_DEVS_MAX)),
        ("SY_NP_ROUTE_TTL_MS", NP_ROUTE_TTL_MS),
    ]);
    // The defaults Rust writes and falls back to are the header's.
    let sizes = switchyard_bpf::nodeport::PacketMapSizes::default();
    let timeouts = switchyard_bpf::nodeport::Timeouts::default();
    for (name, value) in [
        ("SY_DEFAULT_CT", sizes.ct),
        ("SY_DEFAULT_NAT", sizes.nat),
        ("SY_DEFAULT_SRC_RANGES", switchyard_bpf::MapSizes::default().src_ranges),
        ("SY_CT_TIMEOUT_TCP_SYN_S", timeouts.tcp_syn),
        ("SY_CT_TIMEOUT_TCP_ESTABLISHED_S", timeouts.tcp_established),
        ("SY_CT_TIMEOUT_TCP_CLOSING_S", timeouts.tcp_closing),
        ("SY_CT_TIMEOUT_UDP_S", timeouts.udp),
        ("SY_CT_TIMEOUT_OTHER_S", timeouts.other),
        ("SY_CT_TIMEOUT_UNREPLIED_S", timeouts.unreplied),
    ] {
        rust.insert(name, u64::from(value));
    }
    let names: Vec<String> = PacketReason::ALL
        .iter()
        .map(|r| format!("SY_REASON_PKT_{}", r.name().to_uppercase()))
        .collect();
    for (reason, name) in PacketReason::ALL.iter().zip(&names) {
        rust.insert(name.as_str(), *reason as u64);
    }
    let c: BTreeMap<_, _> = C_PKT_CONSTANTS.iter().copied().collect();
    assert_eq!(rust, c, "constants: left Rust, right C");
}

#[test]
fn per_packet_structs_have_no_implicit_padding() {
    let declared = [
        ("sy_ct_key", 16 + 16 + 2 + 2 + 1 + 1 + 2, size_of::<CtKey>()),
        ("sy_ct_entry", 16 + 16 + 2 + 2 + 4 + 4 + 1 + 1 + 2 + 8, size_of::<CtEntry>()),
        ("sy_nat_entry", size_of::<CtKey>(), size_of::<NatEntry>()),
        ("sy_src_range_key", 4 + 4 + 16, size_of::<SrcRangeKey>()),
        ("sy_pkt_config", 16 + 16 + 2 + 2 + 4 + 5 * 4 + 4 + 2 + 2, size_of::<PktConfig>()),
        ("sy_gue_dsr", 1 + 1 + 2, size_of::<GueDsr>()),
        ("sy_xdp_dev", 6 + 2, size_of::<XdpDev>()),
    ];
    for (name, fields, size) in declared {
        assert_eq!(
            fields, size,
            "{name}: fields add up to {fields} bytes but the struct has {size}"
        );
    }
}

#[test]
fn per_packet_reasons_fit_the_counter_map_and_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for reason in PacketReason::ALL {
        let index = reason as u32;
        assert!((32..switchyard_bpf::abi::Reason::MAX).contains(&index), "{reason:?} = {index}");
        assert!(seen.insert(index), "{reason:?} reuses counter {index}");
    }
}

/// Checks rows of the probe (C) against crates/maglev under `seed`: the hash from scratch
/// (`FlowKey::hash`), the VIP's prefix state (`FlowPrefix`), the hash from that prefix, and
/// that a prefix made under another key is not used (the hash from scratch again).
fn check_flow_rows(seed: &switchyard_maglev::Seed, rows: &[CFlowHash]) {
    for &(saddr, daddr, sport, dport, proto, family, c_hash, c_prefix, c_prefixed, c_stale) in rows
    {
        let source = switchyard_bpf::abi::Addr(saddr).to_ip(family);
        let destination = switchyard_bpf::abi::Addr(daddr).to_ip(family);
        let key = switchyard_maglev::FlowKey {
            source,
            destination,
            source_port: sport,
            destination_port: dport,
            protocol: proto,
        };
        let rust_hash = key.hash(seed).expect("one family");
        assert_eq!(c_hash, rust_hash, "flow hash of {key:?}: C {c_hash:#x}, Rust {rust_hash:#x}");
        let prefix = switchyard_maglev::FlowPrefix::new(seed, destination, dport, proto);
        assert_eq!(c_prefix, prefix.state.v, "prefix state of {key:?}: left C, right Rust");
        assert_eq!(prefix.hash(source, sport), Some(rust_hash), "Rust, from the prefix: {key:?}");
        assert_eq!(c_prefixed, rust_hash, "C, from the prefix: {key:?}");
        assert_eq!(c_stale, rust_hash, "C, from a prefix of another key: {key:?}");
    }
}

#[test]
fn the_c_flow_hash_matches_crates_maglev_flow_key_hash() {
    let seed = switchyard_maglev::Seed::from_bytes(std::array::from_fn(|i| i as u8));
    assert!(C_FLOW_HASH.len() >= 4, "probe printed the golden flows");
    check_flow_rows(&seed, C_FLOW_HASH);
}

#[test]
fn the_c_flow_hash_of_the_documented_golden_flows_matches_crates_maglev() {
    assert_eq!(C_GOLDEN_FLOW_HASH.len(), 2, "probe printed docs/maglev.md's two flows");
    check_flow_rows(&switchyard_maglev::Seed::DEFAULT, C_GOLDEN_FLOW_HASH);
}
