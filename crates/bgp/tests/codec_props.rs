//! Property tests of the wire codec: encode then decode is the identity, any byte string decodes
//! or is rejected without panicking, and a stream split anywhere frames the same messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use switchyard_bgp::wire::{
    AsSegment, Attribute, Capability, Codec, GracefulRestartCap, LargeCommunity, Message, MpReach,
    Notification, Open, Origin, RouteRefresh, Update,
};
use switchyard_bgp::{Family, Prefix};

fn v4_prefix() -> impl Strategy<Value = Prefix> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l).expect("len <= 32"))
}

fn v6_prefix() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V6(Ipv6Addr::from(a)), l).expect("len <= 128"))
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        (1u16..3).prop_map(|afi| Capability::Multiprotocol { afi, safi: 1 }),
        Just(Capability::RouteRefresh),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            proptest::collection::vec((1u16..3, Just(1u8), any::<bool>()), 0..3)
        )
            .prop_map(|(restarting, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestartCap {
                    restarting,
                    notification,
                    restart_time,
                    families,
                })
            }),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (66u8..=255, proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(code, value)| Capability::Other { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        any::<u16>(),
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        proptest::collection::vec(capability(), 0..8),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            my_as,
            hold_time,
            router_id: Ipv4Addr::from(id),
            capabilities,
        })
}

fn as_path(four_octet: bool) -> impl Strategy<Value = Vec<AsSegment>> {
    let asn = if four_octet { any::<u32>().boxed() } else { (0u32..=65535).boxed() };
    proptest::collection::vec(
        (any::<bool>(), proptest::collection::vec(asn, 1..6))
            .prop_map(|(sequence, asns)| AsSegment { sequence, asns }),
        0..3,
    )
}

fn update(four_octet: bool) -> impl Strategy<Value = Update> {
    let reach = prop_oneof![
        (proptest::collection::vec(v4_prefix(), 0..5), any::<u32>()).prop_map(|(nlri, hop)| {
            MpReach {
                family: Family::Ipv4Unicast,
                next_hops: vec![IpAddr::V4(Ipv4Addr::from(hop))],
                nlri,
            }
        }),
        (proptest::collection::vec(v6_prefix(), 0..5), any::<u128>()).prop_map(|(nlri, hop)| {
            MpReach {
                family: Family::Ipv6Unicast,
                next_hops: vec![IpAddr::V6(Ipv6Addr::from(hop))],
                nlri,
            }
        }),
    ];
    (
        proptest::collection::vec(v4_prefix(), 0..10),
        as_path(four_octet),
        1u32..0xe000_0000,
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(any::<u32>(), 0..70),
        proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..25),
        proptest::option::of(reach),
        proptest::collection::vec(v6_prefix(), 0..5),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(v4, path, hop, med, local_pref, communities, large, reach, unreach, opaque)| {
                let mut attributes = vec![
                    Attribute::Origin(Origin::Egp),
                    Attribute::AsPath(path),
                    Attribute::NextHop(Ipv4Addr::from(hop)),
                ];
                attributes.extend(med.map(Attribute::Med));
                attributes.extend(local_pref.map(Attribute::LocalPref));
                if !communities.is_empty() {
                    attributes.push(Attribute::Communities(communities));
                }
                attributes.extend(reach.map(Attribute::MpReach));
                if !unreach.is_empty() {
                    attributes.push(Attribute::MpUnreach(Family::Ipv6Unicast, unreach));
                }
                if !large.is_empty() {
                    attributes.push(Attribute::LargeCommunities(
                        large
                            .into_iter()
                            .map(|(global, local1, local2)| LargeCommunity {
                                global,
                                local1,
                                local2,
                            })
                            .collect(),
                    ));
                }
                attributes.push(Attribute::Other { flags: 0xc0, code: 99, value: opaque });
                Update { withdrawn: v4.clone(), attributes, nlri: v4 }
            },
        )
}

fn message(four_octet: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(four_octet).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(code, subcode, data)| Message::Notification(Notification { code, subcode, data })
        ),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, subtype, safi)| {
            Message::RouteRefresh(RouteRefresh { afi, subtype, safi })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity(four_octet in any::<bool>(), m in any::<bool>().prop_flat_map(message)) {
        let codec = Codec { four_octet_as: four_octet };
        // Two-octet AS paths only hold two-octet numbers; the strategy picks per flag below.
        let m = if four_octet { m } else { strip_wide_asns(m) };
        let mut bytes = Vec::new();
        let len = m.encode(codec, &mut bytes);
        prop_assert_eq!(len, bytes.len());
        prop_assert!(len <= 4096);
        let decoded = Message::decode(&bytes, codec);
        prop_assert_eq!(decoded, Ok(Some((m, len))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), four in any::<bool>()) {
        let _ = Message::decode(&bytes, Codec { four_octet_as: four });
        let mut framed = vec![0xff; 16];
        framed.extend_from_slice(&((19 + bytes.len()) as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        let _ = Message::decode(&framed, Codec { four_octet_as: four });
    }

    #[test]
    fn a_stream_split_anywhere_frames_the_same(ms in proptest::collection::vec(message(true), 1..6), cut in any::<prop::sample::Index>()) {
        let codec = Codec { four_octet_as: true };
        let mut stream = Vec::new();
        for m in &ms {
            m.encode(codec, &mut stream);
        }
        let cut = cut.index(stream.len());
        // Decoding the prefix up to `cut` yields whole messages only, then waits for more.
        let mut seen = Vec::new();
        let mut buf = stream[..cut].to_vec();
        let mut rest = &stream[cut..];
        loop {
            match Message::decode(&buf, codec) {
                Ok(Some((m, len))) => { seen.push(m); buf.drain(..len); }
                Ok(None) if !rest.is_empty() => { buf.extend_from_slice(rest); rest = &[]; }
                Ok(None) => break,
                Err(e) => return Err(TestCaseError::fail(format!("valid stream rejected: {e}"))),
            }
        }
        prop_assert_eq!(seen, ms);
    }
}

fn strip_wide_asns(m: Message) -> Message {
    match m {
        Message::Update(mut u) => {
            for a in &mut u.attributes {
                if let Attribute::AsPath(segments) = a {
                    for s in segments {
                        for asn in &mut s.asns {
                            *asn &= 0xffff;
                        }
                    }
                }
            }
            Message::Update(u)
        }
        other => other,
    }
}

#[test]
fn known_bytes_of_a_keepalive_and_an_end_of_rib() {
    let mut out = Vec::new();
    Message::Keepalive.encode(Codec::default(), &mut out);
    assert_eq!(out, [[0xff; 16].as_slice(), &[0, 19, 4]].concat());
    out.clear();
    Message::Update(Update::end_of_rib(Family::Ipv6Unicast)).encode(Codec::default(), &mut out);
    // Withdrawn length 0, attributes length 6: optional flag, type 15, length 3, AFI 2, SAFI 1.
    assert_eq!(&out[19..], &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]);
    let decoded = Message::decode(&out, Codec::default()).expect("valid").expect("whole");
    let Message::Update(update) = decoded.0 else { panic!("not an update") };
    assert_eq!(update.end_of_rib_family(), Some(Family::Ipv6Unicast));
}

#[test]
fn malformed_inputs_name_the_notification_rfc_4271_prescribes() {
    let keepalive = {
        let mut out = Vec::new();
        Message::Keepalive.encode(Codec::default(), &mut out);
        out
    };
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        ("marker not all ones", [vec![0; 16], vec![0, 19, 4]].concat(), (1, 1)),
        ("keepalive with a body", [vec![0xff; 16], vec![0, 20, 4, 0]].concat(), (1, 2)),
        ("length beyond 4096", [vec![0xff; 16], vec![0x10, 0x01, 2]].concat(), (1, 2)),
        ("unknown type", [vec![0xff; 16], vec![0, 19, 9]].concat(), (1, 3)),
        ("OPEN version 3", open_bytes(3, 90), (2, 1)),
        ("OPEN hold time 2", open_bytes(4, 2), (2, 6)),
        (
            "UPDATE attribute length past the end",
            [vec![0xff; 16], vec![0, 23, 2, 0, 0, 0, 9]].concat(),
            (3, 1),
        ),
        ("UPDATE ORIGIN 7", update_with_attr(&[0x40, 1, 1, 7]), (3, 6)),
        ("UPDATE ORIGIN marked optional", update_with_attr(&[0xc0, 1, 1, 0]), (3, 4)),
        ("UPDATE LOCAL_PREF of 3 bytes", update_with_attr(&[0x40, 5, 3, 0, 0, 1]), (3, 5)),
        ("UPDATE AS_PATH segment type 9", update_with_attr(&[0x40, 2, 4, 9, 1, 0, 1]), (3, 11)),
        ("UPDATE NLRI /33", [vec![0xff; 16], vec![0, 25, 2, 0, 0, 0, 0, 33, 1]].concat(), (3, 10)),
    ];
    assert_eq!(Message::decode(&keepalive, Codec::default()), Ok(Some((Message::Keepalive, 19))));
    for (what, bytes, (code, subcode)) in cases {
        let error = Message::decode(&bytes, Codec::default()).expect_err(what);
        assert_eq!(
            (error.notification.code, error.notification.subcode),
            (code, subcode),
            "{what}: {error}"
        );
    }
}

fn open_bytes(version: u8, hold: u16) -> Vec<u8> {
    let mut body = vec![version, 0xfc, 0x00];
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&[10, 0, 0, 1, 0]);
    [vec![0xff; 16], ((19 + body.len()) as u16).to_be_bytes().to_vec(), vec![1], body].concat()
}

fn update_with_attr(attr: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    body.extend_from_slice(attr);
    [vec![0xff; 16], ((19 + body.len()) as u16).to_be_bytes().to_vec(), vec![2], body].concat()
}
