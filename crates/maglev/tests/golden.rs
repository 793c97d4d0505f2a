//! Golden vectors: the values every implementation of the Switchyard hash and table (this crate on
//! any machine and Rust release, the BPF C code) must reproduce. Also listed in docs/maglev.md.
//! If one of these changes, tables change across a rolling upgrade: that is a breaking change.

mod common;

use common::{backends, std_siphash24};
use proptest::prelude::*;
use switchyard_maglev::{
    Backend, FlowKey, FlowPrefix, MaglevConfig, MixedFamilies, Permutation, Seed, Table, TableSize,
    siphash13, siphash24,
};

/// The key of the SipHash reference vectors: bytes 00 01 .. 0f.
fn reference_key() -> Seed {
    Seed::from_bytes(core::array::from_fn(|i| i as u8))
}

#[test]
fn siphash_matches_the_published_reference_vectors() {
    // SipHash-2-4 reference implementation (vectors.h, "vectors_sip64"): key 00..0f, message
    // 00 01 .. (len-1). Length 15 is the worked example in the SipHash paper, appendix A.
    let message: Vec<u8> = (0..64).collect();
    let cases: [(usize, u64); 9] = [
        (0, 0x726f_db47_dd0e_0e31),
        (1, 0x74f8_39c5_93dc_67fd),
        (2, 0x0d6c_8009_d9a9_4f5a),
        (3, 0x8567_6696_d7fb_7e2d),
        (7, 0xab02_00f5_8b01_d137),
        (8, 0x93f5_f579_9a93_2462),
        (15, 0xa129_ca61_49be_45e5),
        (16, 0x3f2a_cc7f_57c2_9bdb),
        (63, 0x958a_324c_eb06_4572),
    ];
    for (len, expected) in cases {
        assert_eq!(siphash24(&reference_key(), &message[..len]), expected, "length {len}");
    }
}

#[test]
fn siphash13_matches_the_reference_implementations_vectors() {
    // SipHash-1-3 of the reference implementation (github.com/veorq/SipHash, built with
    // cROUNDS 1, dROUNDS 3), key of 16 zero bytes, message 00 01 .. (len-1): the vectors
    // OCaml's runtime tests its hash against (testsuite/tests/hash/sip13.ml, seed 0).
    let message: Vec<u8> = (0..64).collect();
    let cases: [(usize, u64); 9] = [
        (0, 0xd1fb_a762_150c_532c),
        (1, 0x68a9_1412_8e01_e473),
        (7, 0x2f09_8ab0_c751_325a),
        (8, 0xead4_11e6_7ebe_2eea),
        (14, 0x7f86_0493_79fb_fe67),
        (15, 0xf30e_b725_bb91_c9ea),
        (16, 0x8972_1884_33a5_c5b7),
        (42, 0xfcaf_3c64_874d_d0b4),
        (63, 0x385d_3e39_e5f3_7359),
    ];
    for (len, expected) in cases {
        assert_eq!(
            siphash13(&Seed::from_bytes([0; 16]), &message[..len]),
            expected,
            "length {len}"
        );
    }
}

proptest! {
    #[test]
    fn siphash13_agrees_with_a_naive_implementation(
        key in any::<[u8; 16]>(),
        message in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let seed = Seed::from_bytes(key);
        prop_assert_eq!(siphash13(&seed, &message), naive_siphash13(&seed, &message));
    }

    #[test]
    fn siphash_agrees_with_the_standard_library(
        key in any::<[u8; 16]>(),
        message in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let seed = Seed::from_bytes(key);
        prop_assert_eq!(siphash24(&seed, &message), std_siphash24(&seed, &message));
    }
}

#[test]
fn the_default_seed_is_the_documented_one() {
    assert_eq!(Seed::DEFAULT.to_string(), "737769746368796172643a7365656430");
    assert_eq!(Seed::default(), Seed::DEFAULT);
}

#[test]
fn backend_permutations_match_the_golden_vectors() {
    // (identity, SipHash-2-4 under the default seed, (offset, skip) at M = 16381, at M = 65537)
    type OffsetSkip = (u32, u32);
    let cases: [(&str, u64, OffsetSkip, OffsetSkip); 4] = [
        ("10.0.0.1:8080", 0xceb0_a90b_bac2_cc7f, (3593, 5348), (4541, 43276)),
        ("10.0.0.2:8080", 0xe118_fa08_040d_7d38, (11738, 3193), (31019, 64009)),
        ("[2001:db8::1]:443", 0x8146_b3b8_6d81_8bf9, (11847, 2213), (7800, 46009)),
        ("node-a", 0x581b_31a6_72b9_bf8a, (8318, 13231), (19665, 12711)),
    ];
    for (identity, hash, node, director) in cases {
        let bytes = identity.as_bytes();
        assert_eq!(siphash24(&Seed::DEFAULT, bytes), hash, "{identity}");
        for (size, (offset, skip)) in
            [(TableSize::NODE_DEFAULT, node), (TableSize::DIRECTOR_DEFAULT, director)]
        {
            let expected = Permutation { offset, skip };
            assert_eq!(
                Permutation::of(&Seed::DEFAULT, size, bytes),
                expected,
                "{identity} M={size}"
            );
        }
    }
}

#[test]
fn flow_hashes_match_the_golden_vectors() {
    let tcp4 = FlowKey {
        source: "192.0.2.10".parse().expect("address"),
        destination: "198.51.100.1".parse().expect("address"),
        source_port: 40000,
        destination_port: 443,
        protocol: 6,
    };
    let udp6 = FlowKey {
        source: "2001:db8::10".parse().expect("address"),
        destination: "2001:db8::1".parse().expect("address"),
        source_port: 40000,
        destination_port: 53,
        protocol: 17,
    };
    // (flow, hashed bytes in hex, flow hash under the default seed). The hashes are the C
    // header's (crates/bpf's layout probe prints them: C_GOLDEN_FLOW_HASH, checked against this
    // crate in crates/bpf/tests/layout_nodeport.rs).
    let cases = [
        (tcp4, "c633640101bb0600c000020a9c40", 0xcbbc_bc88_65e9_d1f4_u64),
        (
            udp6,
            "20010db8000000000000000000000001003511000000000020010db80000000000000000000000109c40",
            0xbc86_4fbf_1725_f916,
        ),
    ];
    for (flow, bytes_hex, hash) in cases {
        let (bytes, len) = flow.to_bytes().expect("one family");
        let hex: String = bytes[..len].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, bytes_hex, "{flow:?}");
        assert_eq!(flow.hash(&Seed::DEFAULT), Ok(hash), "{flow:?}");
        let prefix =
            FlowPrefix::new(&Seed::DEFAULT, flow.destination, flow.destination_port, flow.protocol);
        assert_eq!(prefix.hash(flow.source, flow.source_port), Some(hash), "{flow:?} by prefix");
    }
}

#[test]
fn flows_mixing_address_families_are_refused() {
    let source = "192.0.2.10".parse().expect("address");
    let destination = "2001:db8::1".parse().expect("address");
    let flow = FlowKey { source, destination, source_port: 1, destination_port: 2, protocol: 6 };
    assert_eq!(
        flow.hash(&Seed::DEFAULT),
        Err(MixedFamilies { source_address: source, destination_address: destination })
    );
}

#[test]
fn a_small_weighted_table_matches_the_golden_vector() {
    let set = [
        Backend::new("10.0.0.4:8080", 0),
        Backend::new("10.0.0.3:8080", 2),
        Backend::new("10.0.0.2:8080", 1),
        Backend::new("10.0.0.1:8080", 1),
    ];
    let config = MaglevConfig { size: TableSize::new(251).expect("prime"), seed: Seed::DEFAULT };
    let table = Table::build(&config, &set).expect("buildable").table;
    let slots: String = table.slots().iter().map(u32::to_string).collect();
    assert_eq!(
        slots,
        "1022222222222220210211221101222200202201202202102112111122202022002202012012021021112222\
         0220212200200201221121112202202202222102102012211011222002012022022021021121112120020020\
         022022122212212211112220220200222201201201102111202202202222102022012211011"
    );
}

/// SipHash-2-4 (default seed) of all slots as little-endian u32: a fingerprint of a whole table.
fn fingerprint(table: &Table) -> u64 {
    let bytes: Vec<u8> = table.slots().iter().flat_map(|slot| slot.to_le_bytes()).collect();
    siphash24(&Seed::DEFAULT, &bytes)
}

#[test]
fn director_sized_tables_match_the_golden_fingerprints() {
    let equal = backends(1000, 1);
    let weighted: Vec<Backend> = equal
        .iter()
        .enumerate()
        .map(|(i, b)| Backend::new(b.identity(), (i % 4) as u32 + 1))
        .collect();
    let config = MaglevConfig { size: TableSize::DIRECTOR_DEFAULT, seed: Seed::DEFAULT };
    let cases = [
        ("1000 backends of weight 1", equal, 0xbbcd_85b1_2473_fc41_u64),
        ("1000 backends of weights 1,2,3,4", weighted, 0xe04a_8c3e_1028_e449),
    ];
    for (name, set, expected) in cases {
        let table = Table::build(&config, &set).expect("buildable").table;
        assert_eq!(fingerprint(&table), expected, "{name}");
    }
}

/// Any flow of one family: addresses, ports and protocol.
fn any_flow() -> impl Strategy<Value = FlowKey> {
    let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>())
        .prop_map(|(s, d)| (core::net::IpAddr::from(s), core::net::IpAddr::from(d)));
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(s, d)| (core::net::IpAddr::from(s), core::net::IpAddr::from(d)));
    (prop_oneof![v4, v6], any::<u16>(), any::<u16>(), any::<u8>()).prop_map(
        |((source, destination), source_port, destination_port, protocol)| FlowKey {
            source,
            destination,
            source_port,
            destination_port,
            protocol,
        },
    )
}

proptest! {
    /// The director's path (the VIP's state kept, the source's words per packet) gives the
    /// hash from scratch, for any flow of either family and any key.
    #[test]
    fn the_vip_prefix_gives_the_hash_from_scratch(key in any::<[u8; 16]>(), flow in any_flow()) {
        let seed = Seed::from_bytes(key);
        let prefix = FlowPrefix::new(&seed, flow.destination, flow.destination_port, flow.protocol);
        prop_assert_eq!(prefix.hash(flow.source, flow.source_port), flow.hash(&seed).ok());
    }

    /// A prefix hashes only sources of its own family.
    #[test]
    fn a_prefix_refuses_a_source_of_the_other_family(key in any::<[u8; 16]>(), flow in any_flow()) {
        let seed = Seed::from_bytes(key);
        let prefix = FlowPrefix::new(&seed, flow.destination, flow.destination_port, flow.protocol);
        let other: core::net::IpAddr = match flow.source {
            core::net::IpAddr::V4(a) => a.to_ipv6_mapped().into(),
            core::net::IpAddr::V6(_) => core::net::Ipv4Addr::LOCALHOST.into(),
        };
        prop_assert_eq!(prefix.hash(other, flow.source_port), None);
    }

    /// The flow hash is SipHash-1-3 of the documented bytes (a naive implementation,
    /// independent of the crate's).
    #[test]
    fn the_flow_hash_is_siphash_of_its_bytes(key in any::<[u8; 16]>(), flow in any_flow()) {
        let seed = Seed::from_bytes(key);
        let (bytes, len) = flow.to_bytes().expect("one family");
        prop_assert_eq!(flow.hash(&seed), Ok(naive_siphash13(&seed, &bytes[..len])));
    }
}

/// SipHash-1-3 written out from the paper (Aumasson & Bernstein, 2012) one byte and one step at
/// a time, sharing no code with the crate: the message padded with zeros to a multiple of 8
/// minus one, then the length byte; one SipRound per word, three after `v2 ^= 0xff`.
fn naive_siphash13(seed: &Seed, message: &[u8]) -> u64 {
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[2] = v[2].wrapping_add(v[3]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[1]);
        v[0] = v[0].wrapping_add(v[3]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].rotate_left(32);
    }
    let key = seed.to_bytes();
    let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut padded = message.to_vec();
    while padded.len() % 8 != 7 {
        padded.push(0);
    }
    padded.push(message.len() as u8);
    for chunk in padded.chunks(8) {
        let m = chunk.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..3 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}
