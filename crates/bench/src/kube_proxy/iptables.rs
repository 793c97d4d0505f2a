//! iptables-restore input in the shape kube-proxy's iptables proxier writes it.
//!
//! A sync is one `iptables-restore --noflush --counters` run with a `*filter` and a `*nat` section.
//! Chain lines (`:CHAIN - [0:0]`) flush the chain they name; chains not named are left alone,
//! which is how a partial sync (KEP-3453, `MinimizeIPTablesRestore`) skips unchanged Services.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use crate::kube_proxy::hash::iptables_chain_hash;
use crate::state::{DesiredState, NodeConfig, ServicePort};

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";

/// Above this many endpoints kube-proxy drops per-endpoint comments ("large cluster mode",
/// `largeClusterEndpointsThreshold`) to shrink the ruleset.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

/// Arguments kube-proxy passes to iptables-restore (`RestoreAll(data, NoFlushTables,
/// RestoreCounters)` plus the xtables lock wait flags).
pub const RESTORE_ARGS: &[&str] = &["-w", "5", "-W", "100000", "--noflush", "--counters"];

/// How much of the ruleset a sync writes.
#[derive(Debug, Clone, Copy)]
pub enum Sync<'a> {
    /// Every chain, as on kube-proxy's first sync, its periodic full resync, and every sync
    /// before KEP-3453 (Kubernetes < 1.26 or `MinimizeIPTablesRestore=false`).
    Full { previous: Option<&'a DesiredState> },
    /// Top-level chains in full, per-Service chains only for Services that changed since
    /// `previous` (KEP-3453, the default since 1.27).
    Partial { previous: &'a DesiredState },
}

/// `KUBE-SVC-<hash>`: the Service's cluster traffic policy chain.
pub fn service_chain(service: &ServicePort) -> String {
    format!("KUBE-SVC-{}", port_proto_hash(service))
}

/// `KUBE-EXT-<hash>`: where NodePort (external) traffic enters.
pub fn external_chain(service: &ServicePort) -> String {
    format!("KUBE-EXT-{}", port_proto_hash(service))
}

/// `KUBE-SEP-<hash>`: one endpoint's DNAT chain.
pub fn endpoint_chain(service: &ServicePort, endpoint: &crate::state::Endpoint) -> String {
    let input = format!("{}{}{endpoint}", service.service_port_name(), service.protocol);
    format!("KUBE-SEP-{}", iptables_chain_hash(&input))
}

fn port_proto_hash(service: &ServicePort) -> String {
    iptables_chain_hash(&format!("{}{}", service.service_port_name(), service.protocol))
}

/// kube-proxy's `probability(n)`: `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
fn probability(remaining: usize) -> String {
    format!("{:.10}", 1.0 / remaining as f64)
}

/// Go's `fmt.Sprintf("%#08x", mark)` as kube-proxy formats the masquerade mark: Go pads the
/// digits (not counting "0x") to eight.
fn go_mark(mark: u32) -> String {
    format!("0x{mark:08x}")
}

/// Every per-Service chain (SVC, EXT, SEP) of one Service port.
pub fn service_chains(service: &ServicePort) -> Vec<String> {
    if service.endpoints.is_empty() {
        return Vec::new();
    }
    let mut chains = vec![service_chain(service)];
    if service.node_port.is_some() {
        chains.push(external_chain(service));
    }
    chains.extend(service.endpoints.iter().map(|e| endpoint_chain(service, e)));
    chains
}

/// The chains a state's ruleset contains besides the fixed top-level ones.
fn all_service_chains(state: &DesiredState) -> BTreeSet<String> {
    state.services.iter().flat_map(service_chains).collect()
}

/// Rules kube-proxy installs once with `iptables -I` (ensureRule) to jump from the built-in
/// chains into its own. Written here as restore input (for `--noflush`) so a benchmark can
/// install them untimed. With `declare_chains` the target chains are created first, for an empty
/// node; without, the input leaves existing chains alone (a chain line would flush them).
pub fn render_jump_rules(declare_chains: bool) -> String {
    let filter_jumps: [(&str, &str, &str, &str); 9] = [
        (
            KUBE_EXTERNAL_SERVICES,
            "INPUT",
            "kubernetes externally-visible service portals",
            "-m conntrack --ctstate NEW ",
        ),
        (
            KUBE_EXTERNAL_SERVICES,
            "FORWARD",
            "kubernetes externally-visible service portals",
            "-m conntrack --ctstate NEW ",
        ),
        (KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ""),
        (KUBE_SERVICES, "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW "),
        (KUBE_SERVICES, "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW "),
        (KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ""),
        (
            KUBE_PROXY_FIREWALL,
            "INPUT",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW ",
        ),
        (
            KUBE_PROXY_FIREWALL,
            "OUTPUT",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW ",
        ),
        (
            KUBE_PROXY_FIREWALL,
            "FORWARD",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW ",
        ),
    ];
    let nat_jumps: [(&str, &str, &str); 3] = [
        (KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
        (KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
        (KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
    ];
    let mut out = String::from("*filter\n");
    for chain in
        [KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_SERVICES, KUBE_FORWARD, KUBE_PROXY_FIREWALL]
    {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for (chain, from, comment, extra) in filter_jumps {
        let _ = writeln!(out, "-I {from} -m comment --comment \"{comment}\" {extra}-j {chain}");
    }
    out.push_str("COMMIT\n*nat\n");
    if declare_chains {
        for chain in [KUBE_SERVICES, KUBE_POSTROUTING] {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
    }
    for (chain, from, comment) in nat_jumps {
        let _ = writeln!(out, "-I {from} -m comment --comment \"{comment}\" -j {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The iptables-restore input of one kube-proxy sync that brings the node to `state`.
pub fn render(config: &NodeConfig, state: &DesiredState, sync: Sync<'_>) -> String {
    let mark = go_mark(config.masquerade_mark());
    let large_cluster = state.endpoint_count() > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    let (previous, partial) = match sync {
        Sync::Full { previous } => (previous, false),
        Sync::Partial { previous } => (Some(previous), true),
    };

    let mut filter_chains = String::new();
    let mut filter_rules = String::new();
    let mut nat_chains = String::new();
    let mut nat_rules = String::new();

    for chain in
        [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]
    {
        let _ = writeln!(filter_chains, ":{chain} - [0:0]");
    }
    for chain in [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] {
        let _ = writeln!(nat_chains, ":{chain} - [0:0]");
    }
    let _ = writeln!(nat_rules, "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN");
    let _ = writeln!(nat_rules, "-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}");
    let _ = writeln!(
        nat_rules,
        "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    );
    let _ = writeln!(nat_rules, "-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}");
    let _ = writeln!(filter_rules, "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP");
    let _ = writeln!(
        filter_rules,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    );
    let _ = writeln!(
        filter_rules,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );

    let unchanged_candidates: HashSet<&ServicePort> = match (partial, previous) {
        (true, Some(previous)) => previous.services.iter().collect(),
        _ => HashSet::new(),
    };
    for service in &state.services {
        let unchanged = unchanged_candidates.contains(service);
        write_service(
            config,
            service,
            large_cluster,
            unchanged,
            &mut filter_rules,
            &mut nat_chains,
            &mut nat_rules,
        );
    }

    // Chains of the previous state that are gone: a chain line flushes each, then -X deletes it.
    if let Some(previous) = previous {
        let active = all_service_chains(state);
        for chain in all_service_chains(previous).difference(&active) {
            let _ = writeln!(nat_chains, ":{chain} - [0:0]");
            let _ = writeln!(nat_rules, "-X {chain}");
        }
    }

    let _ = writeln!(
        nat_rules,
        "-A {KUBE_SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
    );

    let mut out = String::with_capacity(
        filter_chains.len() + filter_rules.len() + nat_chains.len() + nat_rules.len() + 64,
    );
    out.push_str("*filter\n");
    out.push_str(&filter_chains);
    out.push_str(&filter_rules);
    out.push_str("COMMIT\n*nat\n");
    out.push_str(&nat_chains);
    out.push_str(&nat_rules);
    out.push_str("COMMIT\n");
    out
}

/// The rules of one Service port, in the order kube-proxy's sync loop writes them. With
/// `unchanged` (partial sync) only its lines in the top-level chains are written.
fn write_service(
    config: &NodeConfig,
    service: &ServicePort,
    large_cluster: bool,
    unchanged: bool,
    filter_rules: &mut String,
    nat_chains: &mut String,
    nat_rules: &mut String,
) {
    let name = service.service_port_name();
    let proto = service.protocol.as_str();
    let ip = service.cluster_ip;
    let port = service.port;

    if service.endpoints.is_empty() {
        // No endpoints: reject in the filter table instead of jumping to a service chain.
        let _ = writeln!(
            filter_rules,
            "-A {KUBE_SERVICES} -m comment --comment \"{name} has no endpoints\" -m {proto} -p {proto} -d {ip} --dport {port} -j REJECT"
        );
        if let Some(node_port) = service.node_port {
            let _ = writeln!(
                filter_rules,
                "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment \"{name} has no endpoints\" -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {node_port} -j REJECT"
            );
        }
        return;
    }

    let svc_chain = service_chain(service);
    let ext_chain = external_chain(service);

    // Capture the ClusterIP.
    let _ = writeln!(
        nat_rules,
        "-A {KUBE_SERVICES} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {ip} --dport {port} -j {svc_chain}"
    );
    // Capture the NodePort.
    if let Some(node_port) = service.node_port {
        let _ = writeln!(
            nat_rules,
            "-A {KUBE_NODEPORTS} -m comment --comment {name} -m {proto} -p {proto} --dport {node_port} -j {ext_chain}"
        );
    }
    if unchanged {
        return;
    }

    let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
    if service.node_port.is_some() {
        let _ = writeln!(nat_chains, ":{ext_chain} - [0:0]");
        // externalTrafficPolicy: Cluster — external traffic may leave the node, so masquerade.
        let _ = writeln!(
            nat_rules,
            "-A {ext_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" -j {KUBE_MARK_MASQ}"
        );
        let _ = writeln!(nat_rules, "-A {ext_chain} -j {svc_chain}");
    }

    // Masquerade off-cluster traffic to the ClusterIP (the local-traffic detector by cluster CIDR).
    let _ = writeln!(
        nat_rules,
        "-A {svc_chain} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {ip} --dport {port} ! -s {} -j {KUBE_MARK_MASQ}",
        config.cluster_cidr
    );
    // Load balancing: rule i matches with probability 1/(n-i); the last always matches.
    let count = service.endpoints.len();
    for (i, endpoint) in service.endpoints.iter().enumerate() {
        let _ = write!(nat_rules, "-A {svc_chain} ");
        if !large_cluster {
            let _ = write!(nat_rules, "-m comment --comment \"{name} -> {endpoint}\" ");
        }
        if i + 1 < count {
            let _ = write!(
                nat_rules,
                "-m statistic --mode random --probability {} ",
                probability(count - i)
            );
        }
        let _ = writeln!(nat_rules, "-j {}", endpoint_chain(service, endpoint));
    }

    for endpoint in &service.endpoints {
        let sep = endpoint_chain(service, endpoint);
        let comment =
            if large_cluster { String::new() } else { format!("-m comment --comment {name} ") };
        let _ = writeln!(nat_chains, ":{sep} - [0:0]");
        // Hairpin: a pod reaching itself through the Service is masqueraded.
        let _ = writeln!(nat_rules, "-A {sep} {comment}-s {} -j {KUBE_MARK_MASQ}", endpoint.ip);
        let _ = writeln!(
            nat_rules,
            "-A {sep} {comment}-m {proto} -p {proto} -j DNAT --to-destination {endpoint}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Shape, cluster};

    #[test]
    fn probabilities_are_one_over_the_remaining_endpoints() {
        let cases =
            [(1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"), (10, "0.1000000000")];
        for (remaining, expected) in cases {
            assert_eq!(probability(remaining), expected);
        }
    }

    #[test]
    fn mark_is_formatted_like_go_percent_hash_08x() {
        assert_eq!(go_mark(0x4000), "0x00004000");
        assert_eq!(go_mark(0x8000_0000), "0x80000000");
    }

    #[test]
    fn large_clusters_drop_per_endpoint_comments() {
        let config = NodeConfig::default();
        let small = cluster(Shape { services: 10, endpoints_per_service: 100 });
        let large = cluster(Shape { services: 11, endpoints_per_service: 100 });
        let count_sep_comments = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("-A KUBE-SEP-") && l.contains("--comment"))
                .count()
        };
        let small_text = render(&config, &small, Sync::Full { previous: None });
        let large_text = render(&config, &large, Sync::Full { previous: None });
        assert_eq!(count_sep_comments(&small_text), 2000);
        assert_eq!(count_sep_comments(&large_text), 0);
    }

    #[test]
    fn full_sync_has_one_chain_per_service_endpoint_and_nodeport() {
        let state = cluster(Shape { services: 30, endpoints_per_service: 5 });
        let text = render(&NodeConfig::default(), &state, Sync::Full { previous: None });
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count(":KUBE-SVC-"), 30);
        assert_eq!(count(":KUBE-SEP-"), 150);
        assert_eq!(count(":KUBE-EXT-"), 3);
        assert_eq!(count("-A KUBE-NODEPORTS "), 3);
    }
}
