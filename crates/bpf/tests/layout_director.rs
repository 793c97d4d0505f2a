//! The director and decapsulation mirrors must lay out exactly like the director section of
//! `include/switchyard.h` (build.rs runs `c/layout_probe_director.c`). No root needed.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::{collections::BTreeMap, mem::offset_of};

use switchyard_bpf::{
    abi::FrontendKey, decap::*, director::*, director_probe::*, director_vips::*,
};

include!(concat!(env!("OUT_DIR"), "/c_layout_director.rs"));

#[test]
fn every_director_struct_has_the_size_and_alignment_of_the_header() {
    let rust = BTreeMap::from([
        ("sy_gue_hdr", (size_of::<GueHdr>(), align_of::<GueHdr>())),
        ("sy_gue_prev", (size_of::<GuePrev>(), align_of::<GuePrev>())),
        ("sy_flow_prefix", (size_of::<FlowPrefixEntry>(), align_of::<FlowPrefixEntry>())),
        ("sy_dir_vip", (size_of::<DirVipEntry>(), align_of::<DirVipEntry>())),
        ("sy_dir_vip_slot", (size_of::<VipSlot>(), align_of::<VipSlot>())),
        ("sy_dir_node", (size_of::<DirNode>(), align_of::<DirNode>())),
        ("sy_dir_config", (size_of::<DirConfig>(), align_of::<DirConfig>())),
        ("sy_dir_counter", (size_of::<DirCounter>(), align_of::<DirCounter>())),
        ("sy_dir_table_node_key", (size_of::<TableNodeKey>(), align_of::<TableNodeKey>())),
        ("sy_dir_table_node", (size_of::<TableNode>(), align_of::<TableNode>())),
        ("sy_decap_config", (size_of::<DecapConfig>(), align_of::<DecapConfig>())),
        ("sy_dir_health_key", (size_of::<HealthKey>(), align_of::<HealthKey>())),
        ("sy_dir_health", (size_of::<HealthEntry>(), align_of::<HealthEntry>())),
    ]);
    let c: BTreeMap<_, _> = C_DIR_SIZES.iter().map(|&(n, s, a)| (n, (s, a))).collect();
    assert_eq!(rust, c, "(size, align) per struct: left Rust, right C");
}

#[test]
fn every_director_field_has_the_offset_of_the_header() {
    macro_rules! o {
        ($($c:literal => $t:ty, $f:ident);* $(;)?) => {
            BTreeMap::from([$(($c, offset_of!($t, $f))),*])
        };
    }
    let rust = o! {
        "sy_gue_hdr.vc_hlen" => GueHdr, vc_hlen;
        "sy_gue_hdr.proto" => GueHdr, proto;
        "sy_gue_hdr.flags" => GueHdr, flags;
        "sy_gue_prev.kind" => GuePrev, kind;
        "sy_gue_prev.hops" => GuePrev, hops;
        "sy_gue_prev.family" => GuePrev, family;
        "sy_gue_prev.reserved" => GuePrev, reserved;
        "sy_dir_vip.id" => DirVipEntry, id;
        "sy_dir_vip.table_id" => DirVipEntry, table_id;
        "sy_dir_vip.hash" => DirVipEntry, hash;
        "sy_flow_prefix.k0" => FlowPrefixEntry, k0;
        "sy_flow_prefix.k1" => FlowPrefixEntry, k1;
        "sy_flow_prefix.v" => FlowPrefixEntry, v;
        "sy_dir_vip_slot.key" => VipSlot, key;
        "sy_dir_vip_slot.vip" => VipSlot, vip;
        "sy_dir_vip_slot.flags" => VipSlot, flags;
        "sy_dir_vip_slot.pad" => VipSlot, pad;
        "sy_dir_node.addr" => DirNode, addr;
        "sy_dir_node.family" => DirNode, family;
        "sy_dir_node.pad" => DirNode, pad;
        "sy_dir_node.flags" => DirNode, flags;
        "sy_dir_config.source4" => DirConfig, source4;
        "sy_dir_config.source6" => DirConfig, source6;
        "sy_dir_config.hash_k0" => DirConfig, hash_k0;
        "sy_dir_config.hash_k1" => DirConfig, hash_k1;
        "sy_dir_config.table_size" => DirConfig, table_size;
        "sy_dir_config.gue_port" => DirConfig, gue_port;
        "sy_dir_config.encap" => DirConfig, encap;
        "sy_dir_config.pad" => DirConfig, pad;
        "sy_dir_config.vip_slot_shift" => DirConfig, vip_slot_shift;
        "sy_dir_config.reserved" => DirConfig, reserved;
        "sy_dir_counter.packets" => DirCounter, packets;
        "sy_dir_counter.bytes" => DirCounter, bytes;
        "sy_dir_table_node_key.table_id" => TableNodeKey, table_id;
        "sy_dir_table_node_key.node_id" => TableNodeKey, node_id;
        "sy_dir_health_key.addr" => HealthKey, addr;
        "sy_dir_health_key.port" => HealthKey, port;
        "sy_dir_health_key.family" => HealthKey, family;
        "sy_dir_health.state" => HealthEntry, state;
        "sy_dir_health.failures" => HealthEntry, failures;
        "sy_dir_health.successes" => HealthEntry, successes;
        "sy_dir_health.last" => HealthEntry, last;
        "sy_dir_health.since_ms" => HealthEntry, since_ms;
        "sy_dir_health.name" => HealthEntry, name;
        "sy_dir_table_node.weight" => TableNode, weight;
        "sy_dir_table_node.name" => TableNode, name;
        "sy_decap_config.gue_port" => DecapConfig, gue_port;
        "sy_decap_config.pad" => DecapConfig, pad;
        "sy_decap_config.flags" => DecapConfig, flags;
    };
    let c: BTreeMap<_, _> = C_DIR_OFFSETS.iter().copied().collect();
    assert_eq!(rust, c, "offset per field: left Rust, right C");
}

#[test]
fn every_director_constant_has_the_value_of_the_header() {
    let mut rust: BTreeMap<&str, u64> = BTreeMap::from([
        ("SY_GUE_PORT_DEFAULT", u64::from(GUE_PORT_DEFAULT)),
        ("SY_ENCAP_GUE", u64::from(ENCAP_GUE)),
        ("SY_ENCAP_FOU", u64::from(ENCAP_FOU)),
        ("SY_ENCAP_IPIP", u64::from(ENCAP_IPIP)),
        ("SY_ENCAP_SPORT_BASE", u64::from(ENCAP_SPORT_BASE)),
        ("SY_ENCAP_SPORT_MASK", u64::from(ENCAP_SPORT_MASK)),
        ("SY_DIR_REASON_MAX", u64::from(DirReason::MAX)),
        ("SY_DIR_NODE_NAME_LEN", NODE_NAME_LEN as u64),
        ("SY_DIR_PROBE_MARK", u64::from(PROBE_MARK)),
        ("SY_DIR_HEALTH_UP", u64::from(HEALTH_UP)),
        ("SY_DIR_HEALTH_DOWN", u64::from(HEALTH_DOWN)),
        ("SY_DIR_HEALTH_DRAINING", u64::from(HEALTH_DRAINING)),
        ("SY_DECAP_REASON_MAX", u64::from(DecapReason::MAX)),
        ("SY_GUE_PREV_KIND", u64::from(GUE_PREV_KIND)),
        ("SY_GUE_PREV_HLEN4", u64::from(GUE_PREV_HLEN4)),
        ("SY_GUE_PREV_HLEN6", u64::from(GUE_PREV_HLEN6)),
        ("SY_DECAP_SRC_DIRECTOR", u64::from(SRC_DIRECTOR)),
        ("SY_DECAP_SRC_NODE", u64::from(SRC_NODE)),
        ("SY_DIR_SLOT_OVERFLOW", u64::from(SLOT_OVERFLOW)),
    ]);
    let dir_names = [
        "SY_DIR_ENCAP_GUE",
        "SY_DIR_ENCAP_FOU",
        "SY_DIR_ENCAP_IPIP",
        "SY_DIR_ICMP_TO_NODE",
        "SY_DIR_FRAG_NEEDED",
        "SY_DIR_DROP_NO_NODE",
        "SY_DIR_DROP_TABLE_MISSING",
        "SY_DIR_DROP_NODE_MISSING",
        "SY_DIR_PASS_MALFORMED",
        "SY_DIR_PASS_FRAGMENT",
        "SY_DIR_DROP_NO_SOURCE",
        "SY_DIR_DROP_NO_ROUTE",
        "SY_DIR_DROP_RESIZE",
        "SY_DIR_DROP_NO_ANSWER",
        "SY_DIR_DROP_NO_CONFIG",
        "SY_DIR_SECOND_CHANCE",
        "SY_DIR_PROBE_ENCAP",
        "SY_DIR_DROP_PROBE",
    ];
    for (name, reason) in dir_names.into_iter().zip(DirReason::ALL) {
        rust.insert(name, reason as u64);
    }
    let decap_names = [
        "SY_DECAP_GUE",
        "SY_DECAP_FOU",
        "SY_DECAP_IPIP",
        "SY_DECAP_DROP_NOT_DIRECTOR",
        "SY_DECAP_DROP_MALFORMED",
        "SY_DECAP_DROP_ADJUST",
        "SY_DECAP_SC_KEPT",
        "SY_DECAP_SC_FORWARDED",
        "SY_DECAP_SC_NO_ROUTE",
        "SY_DECAP_GRO_MERGED",
        "SY_DECAP_SC_RETURNED",
        "SY_DECAP_SC_NEW_FLOW",
        "SY_DECAP_DSR",
        "SY_DECAP_DROP_NOT_NODE",
        "SY_DECAP_DROP_DSR_MALFORMED",
        "SY_DECAP_DROP_DSR_CT",
    ];
    for (name, reason) in decap_names.into_iter().zip(DecapReason::ALL) {
        rust.insert(name, reason as u64);
    }
    let c: BTreeMap<_, _> = C_DIR_CONSTS.iter().copied().collect();
    assert_eq!(rust, c, "value per constant: left Rust, right C");
}

/// The Rust mirror's home slot of a VIP key is the program's (`sy_dir_vip_slot_of`, compiled
/// for the host from the same header), so user space places VIPs where the program looks.
#[test]
fn the_home_slot_of_a_vip_is_the_headers() {
    assert!(C_DIR_VIP_SLOTS.len() >= 12);
    for &(addr, port, proto, shift, slot) in C_DIR_VIP_SLOTS {
        let key = FrontendKey::new(addr.parse().unwrap(), port, proto, 0);
        assert_eq!(vip_slot_of(&key, shift), slot, "{addr} {port}/{proto} shift {shift}");
    }
    // Sizes: a power of two, at least twice the capacity; the shift matches.
    assert_eq!((vip_slots(4096), vip_slot_shift(8192)), (8192, 19));
    assert_eq!((vip_slots(0), vip_slots(1), vip_slots(3)), (2, 2, 8));
    assert_eq!(vip_slot_shift(2), 31);
}
