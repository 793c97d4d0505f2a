//! Privileged: the generated rulesets load into a real kernel with the tools kube-proxy uses,
//! inside a namespace of our own, and a change leaves exactly the expected chains behind.

use std::time::Duration;

use switchyard_bench::golden;
use switchyard_bench::kube_proxy::{iptables, nftables};
use switchyard_bench::netns::Netns;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn iptables_rulesets_load_and_a_partial_sync_replaces_the_endpoint_chain() {
    if !switchyard_lab::require_root(
        "iptables_rulesets_load_and_a_partial_sync_replaces_the_endpoint_chain",
    ) {
        return;
    }
    let config = golden::node_config();
    let before = golden::state();
    let after = golden::state_after_endpoint_change();
    for (restore, save) in [
        ("iptables-nft-restore", "iptables-nft-save"),
        ("iptables-legacy-restore", "iptables-legacy-save"),
    ] {
        let netns = Netns::create("sybench-test-ipt").expect("create namespace");
        let jumps = iptables::render_jump_rules(true);
        netns.run(restore, &["--noflush"], jumps.as_bytes(), LIMIT).expect("jump rules");
        let full = iptables::render(&config, &before, iptables::Sync::Full { previous: None });
        netns.run(restore, iptables::RESTORE_ARGS, full.as_bytes(), LIMIT).expect("full sync");
        let saved = netns.output(save, &["-t", "nat"]).expect("save");
        assert!(
            saved.contains(
                "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            ),
            "{restore}: {saved}"
        );
        assert!(saved.contains("-A KUBE-SEP-ICDUIKC33SFI6ZPR -p tcp -m comment --comment \"ns1/svc1:p80\" -m tcp -j DNAT --to-destination 10.180.0.3:80"), "{restore}: {saved}");
        assert!(saved.contains("--probability 0.33333333349"), "{restore}: {saved}");

        let partial =
            iptables::render(&config, &after, iptables::Sync::Partial { previous: &before });
        netns
            .run(restore, iptables::RESTORE_ARGS, partial.as_bytes(), LIMIT)
            .expect("partial sync");
        let saved = netns.output(save, &["-t", "nat"]).expect("save");
        assert!(
            !saved.contains("KUBE-SEP-ICDUIKC33SFI6ZPR"),
            "{restore}: stale chain left: {saved}"
        );
        assert!(saved.contains("--to-destination 10.180.0.5:80"), "{restore}: {saved}");
        // The unchanged NodePort Service kept its chains although the partial sync skipped them.
        assert!(
            saved.contains("-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -j KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
            "{restore}: {saved}"
        );
    }
}

#[test]
fn nftables_transactions_load_and_a_partial_sync_replaces_the_endpoint_chain() {
    if !switchyard_lab::require_root(
        "nftables_transactions_load_and_a_partial_sync_replaces_the_endpoint_chain",
    ) {
        return;
    }
    let config = golden::node_config();
    let before = golden::state();
    let after = golden::state_after_endpoint_change();
    let netns = Netns::create("sybench-test-nft").expect("create namespace");
    let full = nftables::render(&config, &before, None);
    netns.run("nft", &["-f", "-"], full.as_bytes(), LIMIT).expect("full sync");
    let partial = nftables::render(&config, &after, Some(&before));
    netns.run("nft", &["-f", "-"], partial.as_bytes(), LIMIT).expect("partial sync");
    let cleanup = nftables::render_stale_chain_deletion(&after, &before);
    netns.run("nft", &["-f", "-"], cleanup.as_bytes(), LIMIT).expect("stale chain deletion");

    let listed = netns.output("nft", &["list", "table", "ip", "kube-proxy"]).expect("list");
    assert!(!listed.contains("10.180.0.3"), "stale endpoint left: {listed}");
    assert!(listed.contains("meta l4proto tcp dnat to 10.180.0.5:80"), "{listed}");
    assert!(listed.contains("numgen random mod 3 vmap"), "{listed}");
    assert!(listed.contains("tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80"), "{listed}");
    assert!(
        listed.contains("172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80"),
        "{listed}"
    );
}
