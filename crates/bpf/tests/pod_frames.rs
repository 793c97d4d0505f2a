//! The pod entry point (`sy_pod_ingress`, `--pod-devices`) under BPF_PROG_TEST_RUN with crafted
//! frames (root): cluster IPs per packet for traffic the socket hooks did not translate. Same
//! fixture as tests/nodeport.rs (a fresh network namespace without routes: translated packets
//! go to the stack, TC_ACT_OK).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_bpf::{abi::*, nodeport_abi::*};
use switchyard_testing::frames::*;
use switchyard_testing::nodeport_fixture::*;

const POD_INGRESS: &str = "sy_pod_ingress";

/// (family, cluster IP, pod client, local backend, remote backend)
const CLUSTER: [(u8, &str, &str, &str, &str); 2] = [
    (AF_INET, "10.96.0.10", "10.244.1.7", "10.244.1.5", "10.244.2.9"),
    (AF_INET6, "fd00:96::10", "fd00:244:1::7", "fd00:244:1::5", "fd00:244:2::9"),
];

fn pod_tc(test: &str) -> Tc {
    let mut tc = Tc::new(test, &settings());
    tc.pkt.load_pod_programs().unwrap();
    tc
}

#[test]
fn a_cluster_ip_from_a_pod_is_translated_keeping_the_pod_address_and_replies_come_from_it() {
    if !switchyard_lab::require_root(
        "a_cluster_ip_from_a_pod_is_translated_keeping_the_pod_address_and_replies_come_from_it",
    ) {
        return;
    }
    for (family, cip, pod, local, remote) in CLUSTER {
        let mut tc = pod_tc("pod-cluster-ip");
        tc.frontend(1, Some(cip), family, 80, TCP, 0, &[(9, remote, 8080, 0)]);
        tc.frontend(2, Some(cip), family, 81, UDP, 0, &[(7, local, 8080, BE_LOCAL)]);

        // Remote backend: DNAT only, the pod's address stays (pod addresses route in the
        // cluster); the reply comes back through --devices or the pod interface's egress.
        let (rc, out) = tc.run(POD_INGRESS, &Spec::tcp(pod, 51000, cip, 80, SYN).frame());
        assert_eq!(rc, TC_ACT_OK, "{family}: no route in the test netns: to the stack");
        let p = parse(&out);
        assert_eq!((p.src, p.sport), (ip(pod), 51000), "{family}: the pod's address kept");
        assert_eq!((p.dst, p.dport), (ip(remote), 8080), "{family}: DNATed");
        assert_eq!((tc.count(PacketReason::Dnat), tc.count(PacketReason::DnatSnat)), (1, 0));
        let orig = CtKey::new(ip(pod), 51000, ip(cip), 80, TCP);
        let ct = tc.pkt.maps().conntrack(&orig).unwrap().expect("conntrack entry");
        assert_eq!((ct.backend_id, ct.flags & CT_F_SNAT), (9, 0));
        for program in [INGRESS, EGRESS] {
            let reply = Spec::tcp(remote, 8080, pod, 51000, SYN | ACK);
            let (rc, out) = tc.run(program, &reply.frame());
            assert_eq!(rc, TC_ACT_OK);
            let r = parse(&out);
            assert_eq!((r.src, r.sport), (ip(cip), 80), "{family} {program}: from the cluster IP");
            assert_eq!((r.dst, r.dport), (ip(pod), 51000));
        }

        // The same cluster IP arriving on a device (routed to the node from outside): a remote
        // backend sees the node's address, as for NodePorts.
        let (client, snat) = if family == AF_INET { (CLIENT4, SNAT4) } else { (CLIENT6, SNAT6) };
        let (_, out) = tc.run(INGRESS, &Spec::tcp(client, 52000, cip, 80, SYN).frame());
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (ip(snat), ip(remote)), "{family}: from outside: SNAT");

        // Local backend over UDP: its reply enters the pod entry point of its own interface.
        let (_, out) = tc.run(POD_INGRESS, &Spec::udp(pod, 53000, cip, 81).frame());
        let p = parse(&out);
        assert_eq!((p.src, p.dst, p.dport), (ip(pod), ip(local), 8080), "{family}: UDP DNAT");
        let (rc, out) = tc.run(POD_INGRESS, &Spec::udp(local, 8080, pod, 53000).frame());
        assert_eq!(rc, TC_ACT_OK);
        let r = parse(&out);
        assert_eq!((r.src, r.sport, r.dst, r.dport), (ip(cip), 81, ip(pod), 53000));
        assert_eq!(tc.count(PacketReason::Revnat), 3, "{family}");
    }
}

#[test]
fn what_the_socket_hooks_translated_passes_the_pod_entry_point_untouched() {
    if !switchyard_lab::require_root(
        "what_the_socket_hooks_translated_passes_the_pod_entry_point_untouched",
    ) {
        return;
    }
    for (family, cip, pod, local, remote) in CLUSTER {
        let mut tc = pod_tc("pod-no-double");
        tc.frontend(1, Some(cip), family, 80, TCP, 0, &[(9, remote, 8080, 0)]);
        // A hooked socket's connect() already sends to a backend, never a frontend.
        for backend in [remote, local] {
            let frame = Spec::tcp(pod, 51000, backend, 8080, SYN).frame();
            let (rc, out) = tc.run(POD_INGRESS, &frame);
            assert_eq!((rc, &out), (TC_ACT_OK, &frame), "{family} {backend}: unchanged");
        }
        assert_eq!(tc.count(PacketReason::CtCreated), 0, "{family}: no flow tracked");
        assert_eq!(tc.count(PacketReason::Dnat) + tc.count(PacketReason::DnatSnat), 0);
    }
}

#[test]
fn the_pod_entry_point_uses_the_internal_scope_and_snats_a_pod_reaching_itself() {
    if !switchyard_lab::require_root(
        "the_pod_entry_point_uses_the_internal_scope_and_snats_a_pod_reaching_itself",
    ) {
        return;
    }
    let (lb, pod, remote) = ("198.51.100.10", "10.244.1.7", "10.244.2.9");
    let mut tc = pod_tc("pod-scope");
    // externalTrafficPolicy Local without a local endpoint: the default (external) entry has
    // none; the internal entry (every endpoint) serves in-cluster clients.
    tc.frontend(1, Some(lb), AF_INET, 80, TCP, FE_LOCAL_ONLY | FE_SPLIT_SCOPE, &[]);
    // (A second Service with the remote endpoint: writes backend 9 for the internal slots.)
    tc.frontend(3, Some("10.96.0.11"), AF_INET, 80, TCP, 0, &[(9, remote, 8080, 0)]);
    let internal = FrontendKey::new(ip(lb), 80, TCP, SCOPE_INTERNAL);
    tc.set_slots(2, internal, 0, &[9]);
    let syn = Spec::tcp(pod, 51000, lb, 80, SYN).frame();
    let (rc, _) = tc.run(INGRESS, &syn);
    assert_eq!(rc, TC_ACT_SHOT, "from outside: no local endpoint, dropped");
    assert_eq!(tc.count(PacketReason::DropNoLocalBackend), 1);
    let (rc, out) = tc.run(POD_INGRESS, &Spec::tcp(pod, 51001, lb, 80, SYN).frame());
    assert_eq!(rc, TC_ACT_OK);
    let p = parse(&out);
    assert_eq!((p.src, p.dst), (ip(pod), ip(remote)), "from a pod: the internal entry");

    // A pod that is the backend of the cluster IP it connects to is SNATed (hairpin), or it
    // would answer itself from its own address.
    tc.frontend(4, Some("10.96.0.12"), AF_INET, 80, TCP, 0, &[(5, pod, 8080, BE_LOCAL)]);
    let (_, out) = tc.run(POD_INGRESS, &Spec::tcp(pod, 51002, "10.96.0.12", 80, SYN).frame());
    let p = parse(&out);
    assert_eq!((p.src, p.dst), (ip(SNAT4), ip(pod)), "hairpin: SNAT to the node");
    let orig = CtKey::new(ip(pod), 51002, ip("10.96.0.12"), 80, TCP);
    let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
    assert_eq!(ct.flags & (CT_F_SNAT | CT_F_HAIRPIN), CT_F_SNAT | CT_F_HAIRPIN);
}
