//! Golden tests: the exact text kube-proxy would write for a small cluster (one ClusterIP Service
//! with three endpoints, one NodePort Service), full and after one endpoint change.
//!
//! The expected files were checked line by line against kube-proxy's proxier sources and unit
//! tests (see docs/benchmarks.md); the hashes in them are also pinned by `kube_proxy::hash` tests.

use switchyard_bench::golden;
use switchyard_bench::kube_proxy::{iptables, nftables};

fn assert_text(actual: &str, expected: &str, what: &str) {
    if actual != expected {
        for (number, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
            assert_eq!(a, e, "{what}: first difference on line {}", number + 1);
        }
        assert_eq!(actual.lines().count(), expected.lines().count(), "{what}: line count");
        panic!("{what}: texts differ in line endings");
    }
}

#[test]
fn iptables_full_sync_matches_golden_text() {
    let text = iptables::render(
        &golden::node_config(),
        &golden::state(),
        iptables::Sync::Full { previous: None },
    );
    assert_text(&text, include_str!("golden/iptables.txt"), "iptables full sync");
}

#[test]
fn iptables_partial_sync_rewrites_only_the_changed_service() {
    let before = golden::state();
    let text = iptables::render(
        &golden::node_config(),
        &golden::state_after_endpoint_change(),
        iptables::Sync::Partial { previous: &before },
    );
    assert_text(&text, include_str!("golden/iptables-partial.txt"), "iptables partial sync");
}

#[test]
fn iptables_full_rewrite_after_a_change_deletes_the_stale_endpoint_chain() {
    let before = golden::state();
    let after = golden::state_after_endpoint_change();
    let config = golden::node_config();
    let rewrite =
        iptables::render(&config, &after, iptables::Sync::Full { previous: Some(&before) });
    let fresh = iptables::render(&config, &after, iptables::Sync::Full { previous: None });
    let stale = "KUBE-SEP-ICDUIKC33SFI6ZPR";
    assert!(rewrite.contains(&format!(":{stale} - [0:0]\n")));
    assert!(rewrite.contains(&format!("-X {stale}\n")));
    assert!(!fresh.contains(stale));
    // Apart from deleting the stale chain, a rewrite is the fresh ruleset.
    let without_stale: String =
        rewrite.lines().filter(|l| !l.contains(stale)).map(|l| format!("{l}\n")).collect();
    assert_eq!(without_stale, fresh);
}

#[test]
fn nftables_full_sync_matches_golden_text() {
    let text = nftables::render(&golden::node_config(), &golden::state(), None);
    assert_text(&text, include_str!("golden/nftables.txt"), "nftables full sync");
}

#[test]
fn nftables_partial_sync_matches_golden_text() {
    let before = golden::state();
    let text = nftables::render(
        &golden::node_config(),
        &golden::state_after_endpoint_change(),
        Some(&before),
    );
    assert_text(&text, include_str!("golden/nftables-partial.txt"), "nftables partial sync");
}

#[test]
fn nftables_stale_chain_deletion_names_only_the_removed_endpoint() {
    let text = nftables::render_stale_chain_deletion(
        &golden::state_after_endpoint_change(),
        &golden::state(),
    );
    assert_eq!(
        text,
        "delete chain ip kube-proxy endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80\n"
    );
}
