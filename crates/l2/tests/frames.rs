//! ARP and neighbour discovery frames, without root: what is answered, what is refused and why,
//! and what the announcements of a gained address look like and when they go out.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchyard_l2::frame::{self, Refused, Request, Sent};
use switchyard_l2::responder::{ANNOUNCE_AT, Responder};

const OURS: frame::Mac = [0x02, 0, 0, 0, 0, 0x0a];
const CLIENT: frame::Mac = [0x02, 0, 0, 0, 0, 0xc1];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 7);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 2);

fn owning(addresses: &[IpAddr]) -> Responder {
    let mut responder = Responder::new(OURS, Some("fe80::a".parse().unwrap()));
    responder.set_owned(addresses.iter().copied().collect(), Instant::now());
    responder.due(Instant::now() + Duration::from_secs(60));
    responder
}

#[test]
fn an_arp_request_for_an_owned_address_gets_a_reply_with_our_mac() {
    let mut responder = owning(&[VIP.into()]);
    let reply = responder.answer(&frame::arp_request(CLIENT, CLIENT_IP, VIP)).unwrap();
    assert_eq!(&reply[..6], &CLIENT, "unicast back to the requester");
    assert_eq!(&reply[6..12], &OURS);
    assert_eq!(
        frame::read_sent(&reply).unwrap(),
        Sent::Arp { operation: 2, sender_mac: OURS, sender_ip: VIP, target_ip: CLIENT_IP }
    );
    assert_eq!(responder.counters().arp_replies, 1);
    // Another address: silence, counted.
    let other = Ipv4Addr::new(198, 51, 100, 8);
    assert_eq!(responder.answer(&frame::arp_request(CLIENT, CLIENT_IP, other)), None);
    assert_eq!(responder.counters().not_owned, 1);
}

#[test]
fn a_solicitation_for_an_owned_address_gets_a_solicited_advertisement() {
    let mut responder = owning(&[VIP6.into()]);
    let solicitation = frame::neighbor_solicitation(CLIENT, CLIENT_IP6, VIP6);
    assert_eq!(&solicitation[..6], &frame::solicited_node_mac(VIP6));
    assert_eq!(
        frame::parse(&solicitation).unwrap(),
        Request::Solicitation { reply_mac: CLIENT, sender_ip: CLIENT_IP6, target: VIP6 }
    );
    let reply = responder.answer(&solicitation).unwrap();
    assert_eq!(&reply[..6], &CLIENT);
    assert_eq!(
        frame::read_sent(&reply).unwrap(),
        Sent::Advertisement { solicited: true, overrides: true, target: VIP6, mac: OURS }
    );
    assert_eq!(responder.counters().ndp_replies, 1);
}

#[test]
fn losing_an_address_stops_answering_at_once() {
    let mut responder = owning(&[VIP.into(), VIP6.into()]);
    responder.set_owned(BTreeSet::new(), Instant::now());
    assert_eq!(responder.answer(&frame::arp_request(CLIENT, CLIENT_IP, VIP)), None);
    assert_eq!(responder.answer(&frame::neighbor_solicitation(CLIENT, CLIENT_IP6, VIP6)), None);
    assert_eq!(responder.next_announcement(), None, "nothing left to announce");
}

#[test]
fn gaining_an_address_announces_it_three_times_on_schedule() {
    let start = Instant::now();
    let mut responder = Responder::new(OURS, Some("fe80::a".parse().unwrap()));
    let (gained, lost) = responder.set_owned([VIP.into(), VIP6.into()].into(), start);
    assert_eq!((gained.len(), lost.len()), (2, 0));
    let mut sent = Vec::new();
    for step in 0..=40 {
        let now = start + Duration::from_millis(step * 100);
        for frame in responder.due(now) {
            sent.push((now - start, frame::read_sent(&frame).unwrap(), frame[..6].to_vec()));
        }
    }
    let at: Vec<Duration> = sent.iter().map(|(at, _, _)| *at).collect();
    let expected: Vec<Duration> = ANNOUNCE_AT.iter().flat_map(|d| [*d, *d]).collect();
    assert_eq!(at, expected);
    for (_, what, destination) in &sent {
        match what {
            Sent::Arp { operation, sender_mac, sender_ip, target_ip } => {
                assert_eq!((*operation, *sender_mac), (1, OURS), "a gratuitous request");
                assert_eq!((*sender_ip, *target_ip), (VIP, VIP));
                assert_eq!(destination, &frame::BROADCAST);
            }
            Sent::Advertisement { solicited, overrides, target, mac } => {
                assert!(!solicited && *overrides, "unsolicited, overriding");
                assert_eq!((*target, *mac), (VIP6, OURS));
                assert_eq!(destination, &frame::ALL_NODES.1);
            }
        }
    }
    assert_eq!(responder.counters().announcements, 6);
    // Losing an address mid-schedule cancels its remaining announcements.
    let mut responder = Responder::new(OURS, None);
    responder.set_owned([VIP.into()].into(), start);
    assert_eq!(responder.due(start).len(), 1);
    responder.set_owned(BTreeSet::new(), start);
    assert!(responder.due(start + Duration::from_secs(5)).is_empty());
}

#[test]
fn malformed_and_foreign_frames_are_refused_with_a_reason() {
    let request = frame::arp_request(CLIENT, CLIENT_IP, VIP);
    let solicitation = frame::neighbor_solicitation(CLIENT, CLIENT_IP6, VIP6);
    let edit = |base: &[u8], at: usize, value: u8| {
        let mut frame = base.to_vec();
        frame[at] = value;
        frame
    };
    let mut tagged = request.clone();
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    let mut other_source = request.clone();
    other_source[6] = 0x04;
    let cases: Vec<(&str, Vec<u8>, Refused)> = vec![
        ("empty", vec![], Refused::Truncated),
        ("ARP cut short", request[..30].to_vec(), Refused::Truncated),
        ("IPv4", edit(&request, 13, 0x00), Refused::OtherEthertype),
        ("VLAN", tagged, Refused::VlanTagged),
        ("ARP for IPv6 protocol", edit(&request, 16, 0x86), Refused::ArpNotEthernetIpv4),
        ("ARP reply", edit(&request, 21, 2), Refused::ArpNotRequest),
        ("spoofed sender", other_source, Refused::ArpSenderMismatch),
        ("UDP over IPv6", edit(&solicitation, 20, 17), Refused::NotIcmpv6),
        ("echo request", edit(&solicitation, 54, 128), Refused::NotNeighborSolicitation),
        ("routed (hop limit 64)", edit(&solicitation, 21, 64), Refused::HopLimit),
        ("code 1", edit(&solicitation, 55, 1), Refused::IcmpCode),
        ("bit flipped", edit(&solicitation, 70, solicitation[70] ^ 1), Refused::Checksum),
        ("payload longer than frame", edit(&solicitation, 19, 200), Refused::Truncated),
    ];
    for (behaviour, frame, want) in cases {
        assert_eq!(frame::parse(&frame), Err(want), "{behaviour}");
        let mut responder = owning(&[VIP.into(), VIP6.into()]);
        assert_eq!(responder.answer(&frame), None, "{behaviour}");
        assert_eq!(responder.counters().refused.get(&want.to_string()), Some(&1), "{behaviour}");
    }
}

#[test]
fn option_errors_and_multicast_targets_are_refused_even_with_a_valid_checksum() {
    // Rebuild a solicitation with a bad option / target and a correct checksum.
    let fix = |mut frame: Vec<u8>| {
        frame[56..58].fill(0);
        let source = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap());
        let destination = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap());
        let sum = frame::checksum(source, destination, &frame[54..]);
        frame[56..58].copy_from_slice(&sum.to_be_bytes());
        frame
    };
    let solicitation = frame::neighbor_solicitation(CLIENT, CLIENT_IP6, VIP6);
    let mut zero_option = solicitation.clone();
    zero_option[79] = 0;
    assert_eq!(frame::parse(&fix(zero_option)), Err(Refused::BadOption));
    let mut multicast = solicitation.clone();
    multicast[62] = 0xff;
    assert_eq!(frame::parse(&fix(multicast)), Err(Refused::MulticastTarget));
    let mut dad = solicitation.clone();
    dad[22..38].fill(0);
    dad.truncate(78);
    dad[19] = 24;
    assert_eq!(frame::parse(&fix(dad)), Err(Refused::DuplicateAddressDetection));
    assert!(frame::parse(&fix(solicitation)).is_ok(), "fix itself keeps a good frame good");
}

#[test]
fn our_own_and_other_hosts_gratuitous_arps_are_not_answered() {
    let mut responder = owning(&[VIP.into()]);
    assert_eq!(responder.answer(&frame::gratuitous_arp(CLIENT, VIP)), None);
    assert_eq!(responder.answer(&frame::arp_request(OURS, CLIENT_IP, VIP)), None);
    assert_eq!(responder.counters().arp_replies, 0);
}

proptest! {
    /// Whatever arrives, the parser neither panics nor reads past the frame, and anything it
    /// accepts re-parses the same after a round trip through the builders.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut responder = owning(&[VIP.into(), VIP6.into()]);
        let _ = responder.answer(&bytes);
        if let Ok(Request::Arp { sender_mac, sender_ip, target }) = frame::parse(&bytes) {
            let rebuilt = frame::arp_request(sender_mac, sender_ip, target);
            prop_assert_eq!(frame::parse(&rebuilt), Ok(Request::Arp { sender_mac, sender_ip, target }));
        }
    }

    /// Truncating a valid request anywhere is refused, never answered.
    #[test]
    fn truncated_requests_are_refused(cut in 0usize..86) {
        let mut responder = owning(&[VIP.into(), VIP6.into()]);
        let solicitation = frame::neighbor_solicitation(CLIENT, CLIENT_IP6, VIP6);
        let request = frame::arp_request(CLIENT, CLIENT_IP, VIP);
        for frame in [&solicitation, &request] {
            if cut < frame.len() {
                prop_assert_eq!(responder.answer(&frame[..cut]), None);
            }
        }
    }
}
