//! `switchyard monitor` on a director: the XDP program's events in its own `sy_events` under
//! BPF_PROG_TEST_RUN (root). Each event names the VIP, the flow, the node, the slot and the
//! reason, and agrees with the Rust mirror (`DirMaps::lookup`, what `explain` prints); drops
//! before a slot is known say so; nothing is written while the monitor is off.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::{IpAddr, SocketAddr};

use switchyard_bpf::abi::{EVENT_NO_SLOT, Event, FrontendKey, PATH_DIR};
use switchyard_bpf::director::{DirReason, DirVip, ENCAP_GUE};
use switchyard_bpf::monitor::Monitor;
use switchyard_maglev::FlowKey;
use switchyard_testing::director_fixture::{CLIENT4, CLIENT6, Director, VIP4, VIP6};
use switchyard_testing::frames::{ACK, SYN, Spec, TCP, UDP};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn client(e: &Event) -> SocketAddr {
    SocketAddr::new(e.saddr.to_ip(e.family), u16::from_be(e.sport))
}

fn destination(e: &Event) -> SocketAddr {
    SocketAddr::new(e.daddr.to_ip(e.family), u16::from_be(e.dport))
}

/// Every event in the ring now.
fn drain(monitor: &mut Monitor) -> Vec<Event> {
    std::iter::from_fn(|| monitor.next_event()).collect()
}

#[test]
fn each_decision_names_vip_flow_node_slot_and_reason() {
    let mut d = Director::new("dir-monitor", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    d.vip(2, VIP6, 53, UDP, &[5]);
    let mut monitor = Monitor::open_pinned(d.bpf_dir()).unwrap();
    monitor.enable(1, 1).unwrap();

    for sport in 40_000..40_016u16 {
        let frame = Spec::tcp(CLIENT4, sport, VIP4, 80, SYN).frame();
        assert_eq!(d.run(&frame).0, XDP_TX);
        let events = drain(&mut monitor);
        assert_eq!(events.len(), 1, "one event per packet at 1 in 1");
        let e = events[0];
        let f = FlowKey {
            source: CLIENT4.parse().unwrap(),
            destination: VIP4.parse().unwrap(),
            source_port: sport,
            destination_port: 80,
            protocol: TCP,
        };
        let lookup = d.dp.maps().lookup(&f).unwrap().unwrap();
        assert_eq!(e.path, PATH_DIR);
        assert_eq!(e.reason, DirReason::EncapGue as u32);
        assert_eq!(e.frontend_id, 1, "the VIP's id");
        assert_eq!(e.backend_id, lookup.node.unwrap().0, "the node the mirror names");
        assert_eq!(e.cookie, u64::from(lookup.slot.unwrap()), "the slot the mirror names");
        assert_eq!(client(&e), SocketAddr::new(CLIENT4.parse().unwrap(), sport));
        assert_eq!(destination(&e), SocketAddr::new(VIP4.parse().unwrap(), 80));
        assert_eq!(e.proto, TCP);
        assert_eq!(e.len as usize, frame.len() - 14, "the inner IP length");
    }

    // IPv6, UDP: the one node.
    assert_eq!(d.run(&Spec::udp(CLIENT6, 5353, VIP6, 53).frame()).0, XDP_TX);
    let e = drain(&mut monitor)[0];
    assert_eq!((e.frontend_id, e.backend_id, e.proto), (2, 5, UDP));
    assert_eq!(destination(&e), SocketAddr::new(VIP6.parse().unwrap(), 53));
    assert_eq!(client(&e).ip(), CLIENT6.parse::<IpAddr>().unwrap());

    // Off: the program writes nothing.
    monitor.disable().unwrap();
    assert_eq!(d.run(&Spec::tcp(CLIENT4, 1, VIP4, 80, SYN).frame()).0, XDP_TX);
    monitor.enable(1, 1).unwrap();
    assert!(drain(&mut monitor).is_empty(), "no event while the monitor was off");
}

#[test]
fn drops_passes_and_too_big_answers_are_reported() {
    let mut d = Director::new("dir-monitor-drops", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[4]); // node 4: route MTU 1300
    let key = FrontendKey::new(VIP4.parse().unwrap(), 81, TCP, 0);
    d.dp.maps_mut().put_vip(key, DirVip { id: 7, table_id: 0 }).unwrap();
    let mut monitor = Monitor::open_pinned(d.bpf_dir()).unwrap();
    // Decisions never sampled in (1 in 2^32), drops always: only drops arrive.
    monitor.enable(u32::MAX, 1).unwrap();

    assert_eq!(d.run(&Spec::tcp(CLIENT4, 9, VIP4, 81, SYN).frame()).0, XDP_DROP);
    let events = drain(&mut monitor);
    assert_eq!(events.len(), 1);
    let e = events[0];
    assert_eq!(e.reason, DirReason::DropNoNode as u32);
    assert_eq!((e.frontend_id, e.backend_id), (7, 0), "the VIP, no node");
    assert_eq!(e.cookie, EVENT_NO_SLOT, "no table: no slot");
    assert_eq!(destination(&e), SocketAddr::new(VIP4.parse().unwrap(), 81));

    monitor.enable(1, 1).unwrap();
    let mut big = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    big.payload = vec![7; 1300 - 40];
    assert_eq!(d.run(&big.frame()).0, XDP_TX, "answered with frag-needed");
    let e = drain(&mut monitor)[0];
    assert_eq!(e.reason, DirReason::FragNeeded as u32);
    assert_eq!((e.frontend_id, e.backend_id), (1, 4), "the node the packet was too big for");
    assert_ne!(e.cookie, EVENT_NO_SLOT);
    assert_eq!(client(&e), SocketAddr::new(CLIENT4.parse().unwrap(), 40_000), "the client's flow");

    let mut fragment = Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame();
    fragment[14 + 6] = 0x20; // MF
    assert_eq!(d.run(&fragment).0, XDP_PASS);
    let e = drain(&mut monitor)[0];
    assert_eq!(e.reason, DirReason::PassFragment as u32);
    assert_eq!((e.frontend_id, e.cookie), (0, EVENT_NO_SLOT), "no ports: no VIP known");
}
