//! The Rust mirrors in `abi` must lay out exactly like `include/switchyard.h`.
//!
//! build.rs compiles `c/layout_probe.c` with the host C compiler and records sizeof, _Alignof,
//! offsetof and constant values; these tests compare them with Rust's view. Any drift on either
//! side fails here, without root.

use std::{collections::BTreeMap, mem::offset_of};

use switchyard_bpf::abi::*;

include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));

fn rust_sizes() -> BTreeMap<&'static str, (usize, usize)> {
    macro_rules! s {
        ($($c:literal => $t:ty),* $(,)?) => {
            BTreeMap::from([$(($c, (size_of::<$t>(), align_of::<$t>()))),*])
        };
    }
    s! {
        "sy_addr" => Addr,
        "sy_frontend_key" => FrontendKey,
        "sy_frontend" => Frontend,
        "sy_slot_key" => SlotKey,
        "sy_backend" => Backend,
        "sy_sock_revnat_key" => SockRevnatKey,
        "sy_sock_revnat" => SockRevnat,
        "sy_affinity_key" => AffinityKey,
        "sy_affinity" => Affinity,
        "sy_sock_sticky_key" => SockStickyKey,
        "sy_node_addr_key" => NodeAddrKey,
        "sy_counter" => Counter,
        "sy_fe_counter" => FrontendCounter,
        "sy_config" => Config,
        "sy_monitor_config" => MonitorConfig,
        "sy_event" => Event,
    }
}

fn rust_offsets() -> BTreeMap<&'static str, (usize, usize)> {
    macro_rules! o {
        ($($c:literal => $t:ty, $f:ident);* $(;)?) => {
            BTreeMap::from([$(($c, (offset_of!($t, $f), size_of_val(&<$t>::default().$f)))),*])
        };
    }
    o! {
        "sy_frontend_key.addr" => FrontendKey, addr;
        "sy_frontend_key.port" => FrontendKey, port;
        "sy_frontend_key.proto" => FrontendKey, proto;
        "sy_frontend_key.family" => FrontendKey, family;
        "sy_frontend_key.scope" => FrontendKey, scope;
        "sy_frontend_key.pad" => FrontendKey, pad;
        "sy_frontend.id" => Frontend, id;
        "sy_frontend.flags" => Frontend, flags;
        "sy_frontend.backend_count" => Frontend, backend_count;
        "sy_frontend.affinity_timeout_s" => Frontend, affinity_timeout_s;
        "sy_slot_key.frontend_id" => SlotKey, frontend_id;
        "sy_slot_key.slot" => SlotKey, slot;
        "sy_backend.addr" => Backend, addr;
        "sy_backend.port" => Backend, port;
        "sy_backend.family" => Backend, family;
        "sy_backend.flags" => Backend, flags;
        "sy_backend.tunnel_id" => Backend, tunnel_id;
        "sy_sock_revnat_key.cookie" => SockRevnatKey, cookie;
        "sy_sock_revnat_key.addr" => SockRevnatKey, addr;
        "sy_sock_revnat_key.port" => SockRevnatKey, port;
        "sy_sock_revnat_key.family" => SockRevnatKey, family;
        "sy_sock_revnat_key.pad" => SockRevnatKey, pad;
        "sy_sock_revnat.addr" => SockRevnat, addr;
        "sy_sock_revnat.port" => SockRevnat, port;
        "sy_sock_revnat.family" => SockRevnat, family;
        "sy_sock_revnat.pad" => SockRevnat, pad;
        "sy_sock_revnat.frontend_id" => SockRevnat, frontend_id;
        "sy_affinity_key.client" => AffinityKey, client;
        "sy_affinity_key.frontend_id" => AffinityKey, frontend_id;
        "sy_affinity_key.family" => AffinityKey, family;
        "sy_affinity_key.pad" => AffinityKey, pad;
        "sy_affinity.backend_id" => Affinity, backend_id;
        "sy_affinity.slot" => Affinity, slot;
        "sy_affinity.last_used_ns" => Affinity, last_used_ns;
        "sy_sock_sticky_key.cookie" => SockStickyKey, cookie;
        "sy_sock_sticky_key.frontend_id" => SockStickyKey, frontend_id;
        "sy_sock_sticky_key.pad" => SockStickyKey, pad;
        "sy_node_addr_key.addr" => NodeAddrKey, addr;
        "sy_node_addr_key.family" => NodeAddrKey, family;
        "sy_node_addr_key.pad" => NodeAddrKey, pad;
        "sy_counter.packets" => Counter, packets;
        "sy_counter.bytes" => Counter, bytes;
        "sy_fe_counter.connections" => FrontendCounter, connections;
        "sy_fe_counter.packets" => FrontendCounter, packets;
        "sy_fe_counter.bytes" => FrontendCounter, bytes;
        "sy_config.maglev_table_size" => Config, maglev_table_size;
        "sy_config.flags" => Config, flags;
        "sy_config.hash_k0" => Config, hash_k0;
        "sy_config.hash_k1" => Config, hash_k1;
        "sy_config.node_netns_cookie" => Config, node_netns_cookie;
        "sy_monitor_config.enabled" => MonitorConfig, enabled;
        "sy_monitor_config.sample_every" => MonitorConfig, sample_every;
        "sy_monitor_config.drop_sample_every" => MonitorConfig, drop_sample_every;
        "sy_monitor_config.pad" => MonitorConfig, pad;
        "sy_event.ts_ns" => Event, ts_ns;
        "sy_event.cookie" => Event, cookie;
        "sy_event.reason" => Event, reason;
        "sy_event.frontend_id" => Event, frontend_id;
        "sy_event.backend_id" => Event, backend_id;
        "sy_event.len" => Event, len;
        "sy_event.saddr" => Event, saddr;
        "sy_event.daddr" => Event, daddr;
        "sy_event.sport" => Event, sport;
        "sy_event.dport" => Event, dport;
        "sy_event.proto" => Event, proto;
        "sy_event.family" => Event, family;
        "sy_event.path" => Event, path;
        "sy_event.pad" => Event, pad;
    }
}

fn rust_constants() -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::from([
        ("SY_AF_INET", u64::from(AF_INET)),
        ("SY_AF_INET6", u64::from(AF_INET6)),
        ("SY_AF_NETNS_COOKIE", u64::from(AF_NETNS_COOKIE)),
        ("SY_SCOPE_DEFAULT", u64::from(SCOPE_DEFAULT)),
        ("SY_SCOPE_INTERNAL", u64::from(SCOPE_INTERNAL)),
        ("SY_FE_AFFINITY", u64::from(FE_AFFINITY)),
        ("SY_FE_MAGLEV", u64::from(FE_MAGLEV)),
        ("SY_FE_REJECT_EMPTY", u64::from(FE_REJECT_EMPTY)),
        ("SY_FE_LOCAL_ONLY", u64::from(FE_LOCAL_ONLY)),
        ("SY_FE_TERMINATING_FALLBACK", u64::from(FE_TERMINATING_FALLBACK)),
        ("SY_FE_SPLIT_SCOPE", u64::from(FE_SPLIT_SCOPE)),
        ("SY_FE_NODEPORT", u64::from(FE_NODEPORT)),
        ("SY_FE_SOURCE_RANGES", u64::from(FE_SOURCE_RANGES)),
        ("SY_BE_TERMINATING", u64::from(BE_TERMINATING)),
        ("SY_BE_LOCAL", u64::from(BE_LOCAL)),
        ("SY_BE_ENCAP", u64::from(BE_ENCAP)),
        ("SY_SLOT_NONE", u64::from(SLOT_NONE)),
        ("SY_MAGLEV_DEFAULT_TABLE_SIZE", u64::from(MAGLEV_DEFAULT_TABLE_SIZE)),
        ("SY_PATH_SOCK", u64::from(PATH_SOCK)),
        ("SY_PATH_PKT", u64::from(PATH_PKT)),
        ("SY_PATH_DIR", u64::from(PATH_DIR)),
        ("SY_EVENT_NO_SLOT", EVENT_NO_SLOT),
        ("SY_DEFAULT_EVENTS_BYTES", u64::from(DEFAULT_EVENTS_BYTES)),
        ("SY_REASON_MAX", u64::from(Reason::MAX)),
    ]);
    // The loader's default map sizes are the header's max_entries (sy_fe_counters follows
    // sy_frontends).
    let sizes = switchyard_bpf::MapSizes::default();
    for (name, value) in [
        ("SY_DEFAULT_FRONTENDS", sizes.frontends),
        ("SY_DEFAULT_SLOTS", sizes.slots),
        ("SY_DEFAULT_BACKENDS", sizes.backends),
        ("SY_DEFAULT_SOCK_REVNAT", sizes.sock_revnat),
        ("SY_DEFAULT_AFFINITY", sizes.affinity),
        ("SY_DEFAULT_STICKY", sizes.sock_sticky),
        ("SY_DEFAULT_MAGLEV", sizes.maglev_tables),
        ("SY_DEFAULT_NODE_ADDRS", sizes.node_addrs),
        ("SY_DEFAULT_FE_COUNTERS", sizes.frontends),
    ] {
        m.insert(name, u64::from(value));
    }
    for reason in Reason::ALL {
        let c_name = format!("SY_REASON_{}", reason.name().to_uppercase());
        m.insert(Box::leak(c_name.into_boxed_str()), reason as u64);
    }
    m
}

#[test]
fn every_shared_struct_has_the_size_and_alignment_of_the_header() {
    let c: BTreeMap<_, _> = C_SIZES.iter().map(|&(n, s, a)| (n, (s, a))).collect();
    assert_eq!(rust_sizes(), c, "(size, align) per struct: left Rust, right C");
}

#[test]
fn every_shared_field_has_the_offset_and_size_of_the_header() {
    let c: BTreeMap<_, _> = C_OFFSETS.iter().map(|&(n, o, s)| (n, (o, s))).collect();
    assert_eq!(rust_offsets(), c, "(offset, size) per field: left Rust, right C");
}

#[test]
fn every_shared_constant_has_the_value_of_the_header() {
    let c: BTreeMap<_, _> = C_CONSTANTS.iter().copied().collect();
    assert_eq!(rust_constants(), c, "constants: left Rust, right C");
}

#[test]
fn shared_structs_have_no_implicit_padding() {
    // Pod soundness: the sum of the declared fields equals the size (no hidden bytes).
    let declared = [
        ("sy_frontend_key", 16 + 2 + 1 + 1 + 1 + 3, size_of::<FrontendKey>()),
        ("sy_frontend", 4 * 4, size_of::<Frontend>()),
        ("sy_slot_key", 4 + 4, size_of::<SlotKey>()),
        ("sy_backend", 16 + 2 + 1 + 1 + 4, size_of::<Backend>()),
        ("sy_sock_revnat_key", 8 + 16 + 2 + 1 + 5, size_of::<SockRevnatKey>()),
        ("sy_sock_revnat", 16 + 2 + 1 + 1 + 4, size_of::<SockRevnat>()),
        ("sy_affinity_key", 16 + 4 + 1 + 3, size_of::<AffinityKey>()),
        ("sy_affinity", 4 + 4 + 8, size_of::<Affinity>()),
        ("sy_sock_sticky_key", 8 + 4 + 4, size_of::<SockStickyKey>()),
        ("sy_node_addr_key", 16 + 1 + 3, size_of::<NodeAddrKey>()),
        ("sy_counter", 8 + 8, size_of::<Counter>()),
        ("sy_fe_counter", 8 + 8 + 8, size_of::<FrontendCounter>()),
        ("sy_config", 4 + 4 + 8 + 8 + 8, size_of::<Config>()),
        ("sy_monitor_config", 4 * 4, size_of::<MonitorConfig>()),
        ("sy_event", 8 + 8 + 4 * 4 + 16 + 16 + 2 + 2 + 1 + 1 + 1 + 1, size_of::<Event>()),
    ];
    for (name, fields, size) in declared {
        assert_eq!(
            fields, size,
            "{name}: fields add up to {fields} bytes but the struct has {size}"
        );
    }
}

#[test]
fn the_c_siphash_in_the_header_matches_crates_maglev() {
    let seed = switchyard_maglev::Seed::from_bytes(std::array::from_fn(|i| i as u8));
    let message: Vec<u8> = (0u8..64).collect();
    assert_eq!(C_SIPHASH.len(), 41, "probe printed every length 0..=40");
    for &(len, c_hash) in C_SIPHASH {
        let rust_hash = switchyard_maglev::siphash24(&seed, &message[..len]);
        assert_eq!(
            c_hash, rust_hash,
            "SipHash-2-4 of {len} bytes: C {c_hash:#x}, Rust {rust_hash:#x}"
        );
    }
}

#[test]
fn the_socket_hash_is_siphash_of_the_little_endian_cookie() {
    let seed = switchyard_maglev::Seed::from_bytes(std::array::from_fn(|i| i as u8));
    for &(cookie, c_hash) in C_SOCK_HASH {
        let rust_hash = switchyard_maglev::siphash24(&seed, &cookie.to_le_bytes());
        assert_eq!(c_hash, rust_hash, "socket hash of cookie {cookie:#x}");
    }
}

#[test]
fn config_seed_words_match_crates_maglev() {
    let seed = switchyard_maglev::Seed::DEFAULT;
    assert_eq!(Config::seed_words(seed.to_bytes()), seed.words());
}
