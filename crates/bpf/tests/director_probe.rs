//! The director's health probes through the encapsulated path (issue 17) under
//! BPF_PROG_TEST_RUN (root): `sy_dir_probe` (TC egress) wraps a packet marked
//! `SY_DIR_PROBE_MARK` in the same outer headers as VIP traffic to the node it is addressed
//! to and leaves every other packet alone; the node's decapsulation accepts it and hands the
//! inner packet on *unmarked* as VIP traffic (it is addressed to the node itself, so the
//! per-packet path must not drop it as `drop_decap_unhandled`), while a VIP packet stays marked.
//!
//! Each test runs on a thread moved into a fresh network namespace (the director fixture's).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_bpf::decap::DecapReason;
use switchyard_bpf::director::*;
use switchyard_bpf::director_probe::PROBE_MARK;
use switchyard_testing::{director_fixture::*, frames::*};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TCX_NEXT: u32 = u32::MAX; // -1
const SY_DECAP_CB_MARK: u32 = 0x5359_4443;
/// `struct __sk_buff` up to and with `cb[4]` (offset 48 + 5 × 4).
const SKB_CTX: usize = 68;

/// One test at a time: a pending signal (SIGCHLD of another test's `ip` command) makes the
/// verifier give up with EAGAIN while a program loads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the director's probe program on `frame` with skb mark `mark`.
fn run_probe(d: &mut Director, frame: &[u8], mark: u32) -> (u32, Vec<u8>) {
    use aya::programs::{TestRun, TestRunOptions};
    let mut out = vec![0u8; 4096];
    let mut ctx = [0u8; SKB_CTX];
    ctx[8..12].copy_from_slice(&mark.to_ne_bytes()); // __sk_buff.mark
    let program = d.dp.load_probe().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })
        .unwrap();
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Runs the node's decapsulation on `frame`; returns the verdict, the packet and `cb[0]`.
fn run_decap(node: &DecapNode, frame: &[u8]) -> (u32, Vec<u8>, u32) {
    use aya::programs::{TestRun, TestRunOptions};
    let mut out = vec![0u8; 4096];
    let mut ctx = [0u8; SKB_CTX];
    ctx[40..44].copy_from_slice(&ifindex("up0").to_ne_bytes());
    // The kernel writes all of struct __sk_buff back (ENOSPC for less).
    let mut ctx_out = [0u8; 256];
    let result = node
        .dp
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ctx_out: Some(&mut ctx_out),
            ..TestRunOptions::default()
        })
        .unwrap();
    out.truncate(result.data_size_out as usize);
    let cb0 = u32::from_ne_bytes(ctx_out[48..52].try_into().unwrap());
    (result.return_value, out, cb0)
}

/// A probe's TCP segment from the director to node `dst` port 10256.
fn probe_frame(src: &str, dst: &str) -> Vec<u8> {
    let mut spec = Spec::tcp(src, 40_000, dst, 10256, 0x18);
    spec.payload = b"GET /healthz HTTP/1.1\r\n\r\n".to_vec();
    spec.frame()
}

#[test]
fn a_marked_probe_leaves_in_gue_to_its_own_destination_and_other_packets_untouched() {
    let _serial = serial();
    let mut d = Director::new("probe_gue", ENCAP_GUE);
    let frame = probe_frame(DIRECTOR4, "10.0.0.2");
    let inner = frame[14..].to_vec();

    let (rc, out) = run_probe(&mut d, &frame, 0);
    assert_eq!((rc, &out), (TC_ACT_OK, &frame), "an unmarked packet is not touched");
    let (rc, out) = run_probe(&mut d, &frame, PROBE_MARK + 1);
    assert_eq!((rc, &out), (TC_ACT_OK, &frame), "another mark is not ours");
    assert_eq!(d.count(DirReason::ProbeEncap), 0);

    let (rc, out) = run_probe(&mut d, &frame, PROBE_MARK);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(out.len(), frame.len() + 32, "outer IPv4 + UDP + GUE");
    assert_eq!(&out[..14], &frame[..14], "the kernel's Ethernet header (its route) stays");
    let ip = &out[14..34];
    assert_eq!(fold(sum16(ip, 0)), 0, "outer IPv4 header checksum");
    assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), out.len() - 14);
    assert_eq!(ip[6] & 0x40, 0x40, "DF");
    assert_eq!(ip[9], 17, "UDP");
    assert_eq!(&ip[12..16], &[10, 0, 0, 100], "outer source: the director's address");
    assert_eq!(&ip[16..20], &[10, 0, 0, 2], "outer destination: the probe's own");
    let udp = &out[34..42];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), GUE_PORT_DEFAULT);
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), out.len() - 34);
    assert_eq!(&udp[6..8], &[0, 0]);
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]) & 0xc000, 0xc000);
    assert_eq!(&out[42..46], &[0, 4, 0, 0], "GUE variant 0, no options, inner IPv4");
    assert_eq!(&out[46..], &inner[..], "the inner packet as the stack built it");
    assert_eq!(d.count(DirReason::ProbeEncap), 1);
    assert_eq!(d.count(DirReason::DropProbe), 0);
}

#[test]
fn a_probe_uses_the_configured_encapsulation_and_family() {
    let _serial = serial();
    for (encap, overhead4, overhead6) in [(ENCAP_FOU, 28, 48), (ENCAP_IPIP, 20, 40)] {
        let mut d = Director::new(&format!("probe_encap_{encap}"), encap);
        let frame = probe_frame(DIRECTOR4, "10.0.0.3");
        let (rc, out) = run_probe(&mut d, &frame, PROBE_MARK);
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!(out.len(), frame.len() + overhead4, "encap {encap}");
        assert_eq!(out[14 + 9], if encap == ENCAP_IPIP { 4 } else { 17 });
        assert_eq!(&out[14 + overhead4..], &frame[14..]);
        let frame6 = probe_frame(DIRECTOR6, "fd00::1");
        let (rc, out) = run_probe(&mut d, &frame6, PROBE_MARK);
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!(out.len(), frame6.len() + overhead6, "encap {encap}, IPv6");
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        assert_eq!(out[14 + 6], if encap == ENCAP_IPIP { 41 } else { 17 });
        assert_eq!(
            &out[14 + 8..14 + 24],
            &"fd00::100".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            &out[14 + 24..14 + 40],
            &"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&out[14 + overhead6..], &frame6[14..]);
        assert_eq!(d.count(DirReason::ProbeEncap), 2);
    }
}

#[test]
fn a_probe_without_a_source_of_its_family_is_dropped_not_sent_bare() {
    let _serial = serial();
    let settings = DirSettings { source6: None, ..settings(ENCAP_GUE) };
    let mut d = Director::with_settings("probe_no_source", &settings);
    let (rc, _) = run_probe(&mut d, &probe_frame(DIRECTOR6, "fd00::1"), PROBE_MARK);
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(d.count(DirReason::DropProbe), 1);
}

#[test]
fn the_node_decapsulates_a_probe_for_its_own_stack_and_still_marks_vip_traffic() {
    let _serial = serial();
    for (encap, name) in [(ENCAP_GUE, "gue"), (ENCAP_FOU, "fou"), (ENCAP_IPIP, "ipip")] {
        let mut d = Director::new(&format!("probe_roundtrip_{name}"), encap);
        let node = DecapNode::new(&format!("probe_node_{name}"));
        let frame = probe_frame(DIRECTOR4, "10.0.0.2");
        let (_, encapsulated) = run_probe(&mut d, &frame, PROBE_MARK);
        let (rc, out, cb) = run_decap(&node, &encapsulated);
        assert_eq!(rc, TCX_NEXT, "{name}: on to the next program");
        assert_eq!(&out[14..], &frame[14..], "{name}: the probe as the director's stack sent it");
        assert_ne!(cb, SY_DECAP_CB_MARK, "{name}: a probe is not marked as VIP traffic");

        // A VIP packet (inner destination the VIP, not the node) stays marked.
        let vip = Spec::tcp(CLIENT4, 40_000, VIP4, 80, 0x10).frame();
        let wrapped = match encap {
            ENCAP_GUE => gue(DIRECTOR4, "10.0.0.2", &[], &vip[14..]),
            _ => {
                // The probe program wraps anything marked: reuse it to wrap the VIP packet
                // (its outer destination is then the VIP; rewrite it to the node's).
                let (_, mut w) = run_probe(&mut d, &vip, PROBE_MARK);
                w[30..34].copy_from_slice(&[10, 0, 0, 2]);
                w[24..26].copy_from_slice(&[0, 0]);
                let c = fold(sum16(&w[14..34], 0));
                w[24..26].copy_from_slice(&c.to_be_bytes());
                w
            }
        };
        let (rc, out, cb) = run_decap(&node, &wrapped);
        assert_eq!(rc, TCX_NEXT, "{name}: VIP packet");
        assert_eq!(&out[14..], &vip[14..], "{name}: VIP packet decapsulated");
        assert_eq!(cb, SY_DECAP_CB_MARK, "{name}: VIP traffic is marked");
        let counted = [DecapReason::Gue, DecapReason::Fou, DecapReason::Ipip]
            .iter()
            .map(|&r| node.count(r))
            .sum::<u64>();
        assert_eq!(counted, 2, "{name}: both decapsulated and counted");
    }
}

#[test]
fn a_probe_from_an_address_that_is_no_director_is_refused_by_the_node() {
    let _serial = serial();
    // A director configured with another source than the nodes accept: its probes are
    // dropped by the node, so the node is seen as down (as its VIP traffic would be lost).
    let settings =
        DirSettings { source4: Some("10.0.0.99".parse().unwrap()), ..settings(ENCAP_GUE) };
    let mut d = Director::with_settings("probe_not_director", &settings);
    let node = DecapNode::new("probe_not_director_node");
    let (_, encapsulated) = run_probe(&mut d, &probe_frame("10.0.0.99", "10.0.0.2"), PROBE_MARK);
    let (rc, _, _) = run_decap(&node, &encapsulated);
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(node.count(DecapReason::DropNotDirector), 1);
}
