//! `nft -f` input in the shape kube-proxy's nftables proxier (KEP-3866) writes it.
//!
//! kube-proxy drives nft through knftables: one transaction per sync, one command per line, every
//! object named with its family and table (`ip kube-proxy`). Service dispatch is two verdict
//! maps (`service-ips`, `service-nodeports`); endpoint choice is `numgen random mod N vmap`.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use crate::kube_proxy::hash::nftables_chain_base;
use crate::state::{DesiredState, Endpoint, NodeConfig, ServicePort};

pub const TABLE: &str = "ip kube-proxy";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";
const SERVICES: &str = "services";
const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
const FIREWALL_CHECK: &str = "firewall-check";
const REJECT_CHAIN: &str = "reject-chain";
const CLUSTER_IPS: &str = "cluster-ips";
const NODEPORT_IPS: &str = "nodeport-ips";
const FIREWALL_IPS: &str = "firewall-ips";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";

/// Base chains: (name, type, hook, priority). kube-proxy gives the priorities as
/// `dstnat-10`, `dstnat+10`, `dstnat` and `srcnat`; written here as the numbers they stand for.
const BASE_CHAINS: [(&str, &str, &str, i32); 8] = [
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
];

/// Jumps from base chains to helper chains: (from, match, to).
const JUMP_CHAINS: [(&str, &str, &str); 11] = [
    ("filter-prerouting", "ct state new ", FIREWALL_CHECK),
    ("filter-input", "ct state new ", NODEPORT_ENDPOINTS_CHECK),
    ("filter-input", "ct state new ", SERVICE_ENDPOINTS_CHECK),
    ("filter-forward", "ct state new ", SERVICE_ENDPOINTS_CHECK),
    ("filter-forward", "ct state new ", CLUSTER_IPS_CHECK),
    ("filter-output", "ct state new ", SERVICE_ENDPOINTS_CHECK),
    ("filter-output", "ct state new ", FIREWALL_CHECK),
    ("filter-output-post-dnat", "ct state new ", CLUSTER_IPS_CHECK),
    ("nat-output", "", SERVICES),
    ("nat-postrouting", "", MASQUERADING),
    ("nat-prerouting", "", SERVICES),
];

/// `namespace/name/protocol/portName`, the readable part of per-Service chain names.
fn service_name_part(service: &ServicePort) -> String {
    format!("{}/{}/{}/{}", service.namespace, service.name, service.protocol, service.port_name)
}

/// `service-<hash>-ns/name/proto/port`: the Service's cluster traffic policy chain.
pub fn service_chain(service: &ServicePort) -> String {
    format!("service-{}", nftables_chain_base(&service_name_part(service)))
}

/// `external-<hash>-ns/name/proto/port`: where NodePort (external) traffic enters.
pub fn external_chain(service: &ServicePort) -> String {
    format!("external-{}", nftables_chain_base(&service_name_part(service)))
}

/// `endpoint-<hash>-ns/name/proto/port__ip/port`: one endpoint's DNAT chain.
pub fn endpoint_chain(service: &ServicePort, endpoint: &Endpoint) -> String {
    let name = format!("{}__{}/{}", service_name_part(service), endpoint.ip, endpoint.port);
    format!("endpoint-{}", nftables_chain_base(&name))
}

/// Every per-Service chain of one Service port.
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

fn all_service_chains(state: &DesiredState) -> BTreeSet<String> {
    state.services.iter().flat_map(service_chains).collect()
}

/// The transaction of one kube-proxy sync that brings the node to `state`. With `previous`
/// it is a partial sync: per-Service chains are written only for Services that changed, and
/// chains that are no longer used are flushed (kube-proxy deletes them in a later sync, see
/// [`render_stale_chain_deletion`]). Sets and maps are rebuilt in full on every sync.
pub fn render(
    config: &NodeConfig,
    state: &DesiredState,
    previous: Option<&DesiredState>,
) -> String {
    let mut tx = String::new();
    write_setup(config, &mut tx);

    let unchanged: HashSet<&ServicePort> =
        previous.map(|p| p.services.iter().collect()).unwrap_or_default();
    for service in &state.services {
        write_service(config, service, unchanged.contains(service), &mut tx);
    }

    if let Some(previous) = previous {
        let active = all_service_chains(state);
        for chain in all_service_chains(previous).difference(&active) {
            let _ = writeln!(tx, "flush chain {TABLE} {chain}");
        }
    }
    tx
}

/// The same ruleset as a full sync, cut into transactions of at most `services_per_transaction`
/// Services each (the first also sets up the table). Not what kube-proxy does: the kernel's cost
/// for one transaction grows faster than linearly with the chains it adds, so benchmarks use this
/// to reach a large starting state quickly, untimed.
pub fn render_in_chunks(
    config: &NodeConfig,
    state: &DesiredState,
    services_per_transaction: usize,
) -> Vec<String> {
    let mut transactions = Vec::new();
    let mut tx = String::new();
    write_setup(config, &mut tx);
    for chunk in state.services.chunks(services_per_transaction.max(1)) {
        for service in chunk {
            write_service(config, service, false, &mut tx);
        }
        transactions.push(std::mem::take(&mut tx));
    }
    if !tx.is_empty() {
        transactions.push(tx);
    }
    transactions
}

/// The later transaction that deletes chains a partial sync left flushed and unreferenced.
pub fn render_stale_chain_deletion(state: &DesiredState, previous: &DesiredState) -> String {
    let active = all_service_chains(state);
    let mut tx = String::new();
    for chain in all_service_chains(previous).difference(&active) {
        let _ = writeln!(tx, "delete chain {TABLE} {chain}");
    }
    tx
}

/// `setupNFTables`: the table, the fixed chains, sets and maps, rewritten on every sync; then
/// the sets and maps are flushed so the sync can fill them from scratch.
fn write_setup(config: &NodeConfig, tx: &mut String) {
    let mark = format!("{:#x}", config.masquerade_mark());
    let _ = writeln!(tx, "add table {TABLE} {{ comment \"rules for kube-proxy\" ; }}");

    let ensure_chain = |tx: &mut String, chain: &str| {
        let _ = writeln!(tx, "add chain {TABLE} {chain}");
        let _ = writeln!(tx, "flush chain {TABLE} {chain}");
    };
    ensure_chain(tx, MARK_FOR_MASQUERADE);
    let _ = writeln!(tx, "add rule {TABLE} {MARK_FOR_MASQUERADE} mark set mark or {mark}");
    ensure_chain(tx, MASQUERADING);
    let _ = writeln!(tx, "add rule {TABLE} {MASQUERADING} mark and {mark} == 0 return");
    let _ = writeln!(tx, "add rule {TABLE} {MASQUERADING} mark set mark xor {mark}");
    let _ = writeln!(tx, "add rule {TABLE} {MASQUERADING} masquerade fully-random");

    // Sets and maps come before the chains whose rules reference them.
    let _ = writeln!(
        tx,
        "add set {TABLE} {CLUSTER_IPS} {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add set {TABLE} {NODEPORT_IPS} {{ type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add map {TABLE} {FIREWALL_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add map {TABLE} {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add map {TABLE} {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add map {TABLE} {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}"
    );
    let _ = writeln!(
        tx,
        "add map {TABLE} {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}"
    );

    ensure_chain(tx, SERVICES);
    let _ = writeln!(
        tx,
        "add rule {TABLE} {SERVICES} ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"
    );
    let _ = writeln!(
        tx,
        "add rule {TABLE} {SERVICES} fib daddr type local ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
    );
    ensure_chain(tx, SERVICE_ENDPOINTS_CHECK);
    let _ = writeln!(
        tx,
        "add rule {TABLE} {SERVICE_ENDPOINTS_CHECK} ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"
    );
    ensure_chain(tx, NODEPORT_ENDPOINTS_CHECK);
    let _ = writeln!(
        tx,
        "add rule {TABLE} {NODEPORT_ENDPOINTS_CHECK} ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
    );
    ensure_chain(tx, CLUSTER_IPS_CHECK);
    let _ = writeln!(
        tx,
        "add rule {TABLE} {CLUSTER_IPS_CHECK} ip daddr @{CLUSTER_IPS} reject comment \"Reject traffic to invalid ports of ClusterIPs\""
    );
    let _ = writeln!(
        tx,
        "add rule {TABLE} {CLUSTER_IPS_CHECK} ip daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
        config.service_cidr
    );
    ensure_chain(tx, FIREWALL_CHECK);
    let _ = writeln!(
        tx,
        "add rule {TABLE} {FIREWALL_CHECK} ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"
    );
    let _ = writeln!(
        tx,
        "add chain {TABLE} {REJECT_CHAIN} {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}"
    );
    let _ = writeln!(tx, "flush chain {TABLE} {REJECT_CHAIN}");
    let _ = writeln!(tx, "add rule {TABLE} {REJECT_CHAIN} reject");

    for (name, kind, hook, priority) in BASE_CHAINS {
        let _ = writeln!(
            tx,
            "add chain {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; }}"
        );
        let _ = writeln!(tx, "flush chain {TABLE} {name}");
    }
    for (from, matches, to) in JUMP_CHAINS {
        let _ = writeln!(tx, "add rule {TABLE} {from} {matches}jump {to}");
    }

    for set in [CLUSTER_IPS, NODEPORT_IPS] {
        let _ = writeln!(tx, "flush set {TABLE} {set}");
    }
    for map in
        [FIREWALL_IPS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, SERVICE_IPS, SERVICE_NODEPORTS]
    {
        let _ = writeln!(tx, "flush map {TABLE} {map}");
    }
    let _ = writeln!(tx, "add element {TABLE} {NODEPORT_IPS} {{ {} }}", config.node_ip);
}

/// One Service port, in the order kube-proxy's sync loop writes it: its chains are created (and
/// flushed) first, so the map elements and rules that follow can refer to them, then the map
/// elements, then the rules. With `skip_chains` (partial sync, Service unchanged) only the
/// elements are written.
fn write_service(config: &NodeConfig, service: &ServicePort, skip_chains: bool, tx: &mut String) {
    let proto = service.protocol.as_str();
    let ip = service.cluster_ip;
    let port = service.port;

    if service.endpoints.is_empty() {
        let _ = writeln!(tx, "add element {TABLE} {CLUSTER_IPS} {{ {ip} }}");
        let _ = writeln!(
            tx,
            "add element {TABLE} {NO_ENDPOINT_SERVICES} {{ {ip} . {proto} . {port} : goto {REJECT_CHAIN} }}"
        );
        if let Some(node_port) = service.node_port {
            let _ = writeln!(
                tx,
                "add element {TABLE} {NO_ENDPOINT_NODEPORTS} {{ {proto} . {node_port} : goto {REJECT_CHAIN} }}"
            );
        }
        return;
    }

    let svc_chain = service_chain(service);
    let ext_chain = external_chain(service);
    if !skip_chains {
        for chain in service_chains(service) {
            let _ = writeln!(tx, "add chain {TABLE} {chain}");
            let _ = writeln!(tx, "flush chain {TABLE} {chain}");
        }
    }

    let _ = writeln!(tx, "add element {TABLE} {CLUSTER_IPS} {{ {ip} }}");
    let _ = writeln!(
        tx,
        "add element {TABLE} {SERVICE_IPS} {{ {ip} . {proto} . {port} : goto {svc_chain} }}"
    );
    if let Some(node_port) = service.node_port {
        let _ = writeln!(
            tx,
            "add element {TABLE} {SERVICE_NODEPORTS} {{ {proto} . {node_port} : goto {ext_chain} }}"
        );
    }
    if skip_chains {
        return;
    }

    if service.node_port.is_some() {
        // externalTrafficPolicy: Cluster — external traffic may leave the node, so masquerade.
        let _ = writeln!(tx, "add rule {TABLE} {ext_chain} jump {MARK_FOR_MASQUERADE}");
        let _ = writeln!(tx, "add rule {TABLE} {ext_chain} goto {svc_chain}");
    }

    // Masquerade off-cluster traffic to the ClusterIP (the local-traffic detector by cluster CIDR).
    let _ = writeln!(
        tx,
        "add rule {TABLE} {svc_chain} ip daddr {ip} {proto} dport {port} ip saddr != {} jump {MARK_FOR_MASQUERADE}",
        config.cluster_cidr
    );
    let targets: Vec<String> = service
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i} : goto {}", endpoint_chain(service, e)))
        .collect();
    let _ = writeln!(
        tx,
        "add rule {TABLE} {svc_chain} numgen random mod {} vmap {{ {} }}",
        service.endpoints.len(),
        targets.join(" , ")
    );

    for endpoint in &service.endpoints {
        let chain = endpoint_chain(service, endpoint);
        // Hairpin: a pod reaching itself through the Service is masqueraded.
        let _ = writeln!(
            tx,
            "add rule {TABLE} {chain} ip saddr {} jump {MARK_FOR_MASQUERADE}",
            endpoint.ip
        );
        let _ = writeln!(tx, "add rule {TABLE} {chain} meta l4proto {proto} dnat to {endpoint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Shape, cluster};

    #[test]
    fn chunked_transactions_hold_the_same_commands_as_one_full_sync() {
        let config = NodeConfig::default();
        let state = cluster(Shape { services: 25, endpoints_per_service: 3 });
        let whole = render(&config, &state, None);
        let chunks = render_in_chunks(&config, &state, 10);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), whole);
        assert!(chunks[1].starts_with(&format!("add chain {TABLE} service-")));
    }

    #[test]
    fn an_empty_state_is_one_setup_transaction() {
        let chunks = render_in_chunks(&NodeConfig::default(), &DesiredState::default(), 10);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].starts_with(&format!("add table {TABLE}")));
    }
}
