//! The director's VIPs by home slot (`sy_dir_vip_slots`, issue 16) under BPF_PROG_TEST_RUN
//! (root): VIPs that share a home slot are all found by the program (the first in the slot, the
//! others in the overflow hash behind the slot's flag), a key of that home that is no VIP
//! passes, re-pointing and removal keep every other VIP reachable, a VIP of the overflow moves
//! into a freed slot, and the flag goes with the last; the pinned maps read back every VIP.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::IpAddr;

use switchyard_bpf::{
    abi::FrontendKey,
    director::*,
    director_vips::{SLOT_OVERFLOW, VipSlot},
};
use switchyard_maglev::FlowKey;
use switchyard_testing::{director_fixture::*, frames::*};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn key(ip: IpAddr) -> FrontendKey {
    FrontendKey::new(ip, 80, TCP, 0)
}

/// Where the program sends a SYN to `vip`:80 (`None`: passed), and the Rust mirror agrees.
fn sent_to(d: &Director, vip: IpAddr) -> Option<IpAddr> {
    let client = if vip.is_ipv4() { CLIENT4 } else { CLIENT6 };
    let (rc, out) = d.run(&Spec::tcp(client, 40_000, &vip.to_string(), 80, SYN).frame());
    let flow = FlowKey {
        source: client.parse().unwrap(),
        destination: vip,
        source_port: 40_000,
        destination_port: 80,
        protocol: TCP,
    };
    let mirror = d.dp.maps().lookup(&flow).unwrap().and_then(|l| l.node).map(|(_, n)| n.ip());
    let program = match rc {
        XDP_PASS => None,
        XDP_TX => {
            // The outer destination address: IPv4 or IPv6 outer header after Ethernet.
            Some(match u16::from_be_bytes([out[12], out[13]]) {
                0x0800 => IpAddr::from(<[u8; 4]>::try_from(&out[30..34]).unwrap()),
                _ => IpAddr::from(<[u8; 16]>::try_from(&out[38..54]).unwrap()),
            })
        }
        other => panic!("{vip}: XDP verdict {other}"),
    };
    assert_eq!(program, mirror, "{vip}: the program and the Rust mirror");
    program
}

fn node(id: u32) -> IpAddr {
    NODES.iter().find(|(n, _)| *n == id).unwrap().1.parse().unwrap()
}

fn slot(d: &Director, index: u32) -> VipSlot {
    d.dp.maps().vip_slots.get(&index, 0).unwrap()
}

#[test]
fn vips_sharing_a_home_slot_are_all_found_and_removed_cleanly() {
    let mut d = Director::new("dir-vip-slots", ENCAP_GUE);
    let maps = d.dp.maps();
    let home = maps.home_slot(&key(VIP4.parse().unwrap()));
    // Addresses whose key has the same home: three more IPv4 ones and an IPv6 one.
    let v4: Vec<IpAddr> = (1u32..)
        .map(|i| IpAddr::from((0x0a60_0000u32 + i).to_be_bytes()))
        .filter(|ip| maps.home_slot(&key(*ip)) == home && ip.to_string() != VIP4)
        .take(3)
        .collect();
    let v6 = (1u128..)
        .map(|i| IpAddr::from(std::net::Ipv6Addr::from((0xfd00_0096u128 << 96) + i)))
        .find(|ip| maps.home_slot(&key(*ip)) == home)
        .unwrap();
    let a: IpAddr = VIP4.parse().unwrap();
    let (b, c, none) = (v4[0], v4[1], v4[2]);
    let all = [a, b, c, v6];
    d.vip(1, &a.to_string(), 80, TCP, &[1]);
    d.vip(2, &b.to_string(), 80, TCP, &[2]);
    d.vip(3, &c.to_string(), 80, TCP, &[3]);
    d.vip(4, &v6.to_string(), 80, TCP, &[5]);
    assert_eq!(slot(&d, home).key, key(a), "the first VIP takes the home slot");
    assert_eq!(slot(&d, home).flags, SLOT_OVERFLOW);
    assert_eq!(d.dp.maps().overflow_vips(), 3, "the others wait in the overflow");
    let want = [(a, 1), (b, 2), (c, 3), (v6, 5)];
    for (vip, n) in want {
        assert_eq!(sent_to(&d, vip), Some(node(n)), "{vip}");
    }
    assert_eq!(sent_to(&d, none), None, "a key of the same home that is no VIP passes");

    // Re-pointed in place (the slot's VIP) and in the overflow: each to the other's table.
    let maps = d.dp.maps_mut();
    maps.put_vip(key(a), DirVip { id: 1, table_id: 2 }).unwrap();
    maps.put_vip(key(b), DirVip { id: 2, table_id: 1 }).unwrap();
    assert_eq!((sent_to(&d, a), sent_to(&d, b)), (Some(node(2)), Some(node(1))));
    let maps = d.dp.maps_mut();
    maps.put_vip(key(a), DirVip { id: 1, table_id: 1 }).unwrap();
    maps.put_vip(key(b), DirVip { id: 2, table_id: 2 }).unwrap();

    // The pinned maps read back every VIP, wherever it lives (a restarted director adopts them).
    let pinned = DirMaps::open_pinned(d.bpf_dir()).unwrap();
    let mut entries: Vec<(IpAddr, u32)> = pinned
        .vip_entries()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.addr.to_ip(k.family), v.id))
        .collect();
    entries.sort();
    let mut expected: Vec<(IpAddr, u32)> = all.into_iter().zip(1..).collect();
    expected.sort();
    assert_eq!(entries, expected);

    // The slot's VIP removed: one of the overflow moves in, the rest stay reachable.
    d.dp.maps_mut().delete_vip(&key(a)).unwrap();
    assert_eq!(sent_to(&d, a), None);
    let moved = slot(&d, home).key;
    assert!([key(b), key(c), key(v6)].contains(&moved), "{moved:?}");
    assert_eq!((slot(&d, home).flags, d.dp.maps().overflow_vips()), (SLOT_OVERFLOW, 2));
    for (vip, n) in &want[1..] {
        assert_eq!(sent_to(&d, *vip), Some(node(*n)), "{vip}");
    }
    // Overflow VIPs removed: the flag goes with the last.
    let rest: Vec<IpAddr> = [b, c, v6].into_iter().filter(|ip| key(*ip) != moved).collect();
    d.dp.maps_mut().delete_vip(&key(rest[0])).unwrap();
    assert_eq!((slot(&d, home).flags, d.dp.maps().overflow_vips()), (SLOT_OVERFLOW, 1));
    d.dp.maps_mut().delete_vip(&key(rest[1])).unwrap();
    assert_eq!((slot(&d, home).flags, d.dp.maps().overflow_vips()), (0, 0));
    assert_eq!(slot(&d, home).key, moved, "the slot's VIP stays");
    for vip in &rest {
        assert_eq!(sent_to(&d, *vip), None, "{vip} removed");
    }
    // Removing twice is fine; the last one leaves an empty slot.
    d.dp.maps_mut().delete_vip(&key(rest[1])).unwrap();
    d.dp.maps_mut().delete_vip(&moved).unwrap();
    assert_eq!(slot(&d, home), VipSlot::default());
    for vip in all {
        assert_eq!(sent_to(&d, vip), None, "{vip}");
    }
    assert!(d.dp.maps().vip_entries().unwrap().is_empty());
}

/// A VIP created into a home slot emptied earlier while others of that home still wait in
/// the overflow: it takes the slot, the overflow keeps its flag and stays reachable.
#[test]
fn a_new_vip_takes_an_empty_home_slot_beside_the_overflow() {
    let mut d = Director::new("dir-vip-slot-reuse", ENCAP_GUE);
    let maps = d.dp.maps();
    let home = maps.home_slot(&key(VIP4.parse().unwrap()));
    let same: Vec<IpAddr> = (1u32..)
        .map(|i| IpAddr::from((0x0a61_0000u32 + i).to_be_bytes()))
        .filter(|ip| maps.home_slot(&key(*ip)) == home)
        .take(2)
        .collect();
    let a: IpAddr = VIP4.parse().unwrap();
    d.vip(1, &a.to_string(), 80, TCP, &[1]);
    d.vip(2, &same[0].to_string(), 80, TCP, &[2]);
    // Out of the slot by hand as a crash between the two writes of a removal would leave it:
    // family 0, the flag kept.
    let mut emptied = slot(&d, home);
    emptied.key.family = 0;
    d.dp.maps_mut().vip_slots.set(home, emptied, 0).unwrap();
    assert_eq!(sent_to(&d, a), None, "a key with family 0 never matches");
    assert_eq!(sent_to(&d, same[0]), Some(node(2)), "the overflow behind the flag");
    d.vip(3, &same[1].to_string(), 80, TCP, &[3]);
    assert_eq!(slot(&d, home).key, key(same[1]));
    assert_eq!(slot(&d, home).flags, SLOT_OVERFLOW);
    assert_eq!(sent_to(&d, same[0]), Some(node(2)));
    assert_eq!(sent_to(&d, same[1]), Some(node(3)));
}
