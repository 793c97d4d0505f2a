//! Which endpoints and which Services a running agent uses (root): named targetPorts whose
//! container port differs per pod, a Service spread over several EndpointSlices,
//! publishNotReadyAddresses, topology hints with trafficDistribution, and the Services a proxy
//! must leave alone (`clusterIP: None`, headless label, another proxy's name, ipMode Proxy). See
//! docs/conformance.md.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::IpAddr;

use switchyard_lab::require_root;
use switchyard_lab::tools::servers::{self, ServerKind};
use switchyard_testing::e2e::{Cluster, State, at, set, v4};

/// Service `name` on ClusterIP `ip` (IPv4), `spec` lines after the addresses and `ports`
/// (YAML list items). `metadata` lines go under the name (labels, say).
fn service(name: &str, metadata: &str, ip: IpAddr, spec: &str, ports: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\n{metadata}\
         spec:\n  clusterIP: \"{ip}\"\n  clusterIPs: [\"{ip}\"]\n{spec}  ports:\n{ports}"
    )
}

/// TCP on 80 to the echo servers' port by number.
const TCP_80: &str = "  - {name: tcp, port: 80, protocol: TCP, targetPort: 8080}\n";

/// EndpointSlice `name` of Service `service` (IPv4) with the given endpoint items and ports.
fn slice(name: &str, service: &str, endpoints: &str, ports: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n\
         \x20 namespace: e2e\n  labels: {{kubernetes.io/service-name: {service}}}\n\
         addressType: IPv4\nendpoints:\n{endpoints}ports:\n{ports}"
    )
}

/// The slice port matching [`TCP_80`].
const SLICE_TCP: &str = "- {name: tcp, port: 8080, protocol: TCP}\n";

/// One endpoint item for `pod` with `conditions` (YAML flow mapping body) and `extra` lines.
fn endpoint(cluster: &Cluster, pod: &str, conditions: &str, extra: &str) -> String {
    format!(
        "- addresses: [\"{}\"]\n  conditions: {{{conditions}}}\n  nodeName: {}\n{extra}",
        cluster.pod_ip(pod, false),
        cluster.lab.pod(pod).unwrap().node
    )
}

const READY: &str = "ready: true, serving: true, terminating: false";
const UNREADY: &str = "ready: false, serving: false, terminating: false";

#[test]
fn named_target_ports_several_slices_and_published_unready_endpoints() {
    if !require_root("named_target_ports_several_slices_and_published_unready_endpoints") {
        return;
    }
    let cluster = Cluster::up();
    // b1 serves this Service on another container port, under a name of its own.
    let _other_port = cluster
        .lab
        .run_in("b1", || servers::start(ServerKind::TcpEcho, "b1-9090", 9090))
        .unwrap()
        .unwrap();
    let ready = |pod: &str| endpoint(&cluster, pod, READY, "");
    let unready = |pod: &str| endpoint(&cluster, pod, UNREADY, "");
    let named = v4("10.96.160.10");
    let many = v4("10.96.161.10");
    let published = v4("10.96.162.10");
    let hidden = v4("10.96.163.10");
    let web = "- {name: web, port: 8080, protocol: TCP}\n";
    let text = [
        // targetPort "web": 8080 in one slice, 9090 in the other.
        service(
            "named",
            "",
            named,
            "",
            "  - {name: web, port: 80, protocol: TCP, targetPort: web}\n",
        ),
        slice("named-1", "named", &ready("a1"), web),
        slice("named-2", "named", &ready("b1"), &web.replace("8080", "9090")),
        // One Service, three slices.
        service("many", "", many, "", TCP_80),
        slice("many-1", "many", &ready("a1"), SLICE_TCP),
        slice("many-2", "many", &ready("a2"), SLICE_TCP),
        slice("many-3", "many", &(ready("b1") + &ready("b2")), SLICE_TCP),
        // Unready endpoints: used with publishNotReadyAddresses, never without.
        service("published", "", published, "  publishNotReadyAddresses: true\n", TCP_80),
        slice("published-1", "published", &(unready("a1") + &unready("b1")), SLICE_TCP),
        service("hidden", "", hidden, "", TCP_80),
        slice("hidden-1", "hidden", &(unready("a1") + &ready("b1")), SLICE_TCP),
    ]
    .concat();
    cluster.apply_until_it_answers("svc.yaml", &text, "a2", at(hidden, 80));

    // 30 requests over 2 backends miss one with probability 2^-29, over 4 with 4 * (3/4)^30.
    let seen = |ip: IpAddr, count: usize| cluster.backends("a2", "tcp", at(ip, 80), count);
    assert_eq!(seen(named, 30), set(&["a1", "b1-9090"]), "named targetPort per slice");
    assert_eq!(seen(many, 40), set(&["a1", "a2", "b1", "b2"]), "three slices");
    assert_eq!(seen(published, 30), set(&["a1", "b1"]), "publishNotReadyAddresses");
    assert_eq!(seen(hidden, 30), set(&["b1"]), "unready endpoint used");
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn topology_hints_keep_traffic_in_the_zone_only_when_every_endpoint_is_hinted() {
    if !require_root("topology_hints_keep_traffic_in_the_zone_only_when_every_endpoint") {
        return;
    }
    let cluster = Cluster::up();
    // node1 in zone-a, node2 in zone-b.
    let nodes = cluster
        .nodes_yaml()
        .replace(
            "  name: node1\n",
            "  name: node1\n  labels: {topology.kubernetes.io/zone: zone-a}\n",
        )
        .replace(
            "  name: node2\n",
            "  name: node2\n  labels: {topology.kubernetes.io/zone: zone-b}\n",
        );
    // A label changes no frontend by itself (no update to wait for): the Service written
    // next is read after it.
    cluster.apply("nodes.yaml", &nodes);
    let ip = v4("10.96.164.10");
    let hinted = |pod: &str, zone: &str| {
        endpoint(&cluster, pod, READY, &format!("  hints: {{forZones: [{{name: {zone}}}]}}\n"))
    };
    let write = |endpoints: &str| {
        let spec = "  trafficDistribution: PreferSameZone\n";
        let text = service("zonal", "", ip, spec, TCP_80)
            + &slice("zonal-1", "zonal", endpoints, SLICE_TCP);
        cluster.apply_until_it_answers("zonal.yaml", &text, "a1", at(ip, 80));
    };
    let all_hinted = [
        hinted("a1", "zone-a"),
        hinted("a2", "zone-a"),
        hinted("b1", "zone-b"),
        hinted("b2", "zone-b"),
    ]
    .concat();
    write(&all_hinted);
    cluster.eventually("hints apply", || {
        cluster
            .client("a1", "tcp", at(ip, 80), 20)
            .summary
            .backends
            .keys()
            .all(|b| b.starts_with('a'))
    });
    for (member, zone) in [("a1", ["a1", "a2"]), ("node1", ["a1", "a2"]), ("b2", ["b1", "b2"])] {
        assert_eq!(cluster.backends(member, "tcp", at(ip, 80), 30), set(&zone), "from {member}");
    }

    // One ready endpoint without a hint: hints are ignored, every endpoint is used.
    let one_unhinted = [
        hinted("a1", "zone-a"),
        hinted("a2", "zone-a"),
        hinted("b1", "zone-b"),
        endpoint(&cluster, "b2", READY, ""),
    ]
    .concat();
    write(&one_unhinted);
    cluster.eventually("hints are dropped", || {
        cluster.client("a1", "tcp", at(ip, 80), 20).summary.backends.len() == 4
    });
    assert_eq!(cluster.backends("b2", "tcp", at(ip, 80), 40), set(&["a1", "a2", "b1", "b2"]));
    cluster.assert_nothing_left_the_lab();
}

/// `trafficDistribution: PreferSameNode` (conformance row 30): both nodes in zone-a, every
/// endpoint hinted for zone-a and for its own node. Node hints keep traffic on the client's
/// node (pods and the node itself); the same slice under PreferSameZone spreads over all four,
/// so the node hints, not the zone, made the difference.
#[test]
fn prefer_same_node_keeps_traffic_on_the_node_its_endpoints_are_hinted_for() {
    if !require_root("prefer_same_node_keeps_traffic_on_the_node_its_endpoints_are_hinted_for") {
        return;
    }
    let cluster = Cluster::up();
    let nodes = cluster
        .nodes_yaml()
        .replace("\nspec:\n", "\n  labels: {topology.kubernetes.io/zone: zone-a}\nspec:\n");
    // A label changes no frontend by itself: the Service written next is read after it.
    cluster.apply("nodes.yaml", &nodes);
    let ip = v4("10.96.165.10");
    let hinted = |pod: &str, node: &str| {
        let hints =
            format!("  hints: {{forZones: [{{name: zone-a}}], forNodes: [{{name: {node}}}]}}\n");
        endpoint(&cluster, pod, READY, &hints)
    };
    let endpoints = [
        hinted("a1", "node1"),
        hinted("a2", "node1"),
        hinted("b1", "node2"),
        hinted("b2", "node2"),
    ]
    .concat();
    let write = |distribution: &str| {
        let spec = format!("  trafficDistribution: {distribution}\n");
        let text = service("local", "", ip, &spec, TCP_80)
            + &slice("local-1", "local", &endpoints, SLICE_TCP);
        cluster.apply_until_it_answers("local.yaml", &text, "a1", at(ip, 80));
    };
    write("PreferSameNode");
    cluster.eventually("node hints apply", || {
        cluster
            .client("b1", "tcp", at(ip, 80), 20)
            .summary
            .backends
            .keys()
            .all(|b| b.starts_with('b'))
    });
    for (member, local) in [("a1", ["a1", "a2"]), ("node1", ["a1", "a2"]), ("b2", ["b1", "b2"])] {
        assert_eq!(cluster.backends(member, "tcp", at(ip, 80), 30), set(&local), "from {member}");
    }

    write("PreferSameZone");
    cluster.eventually("zone hints: every endpoint is in zone-a", || {
        cluster.client("a1", "tcp", at(ip, 80), 20).summary.backends.len() == 4
    });
    assert_eq!(cluster.backends("b2", "tcp", at(ip, 80), 40), set(&["a1", "a2", "b1", "b2"]));
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn services_left_to_others_are_not_proxied() {
    if !require_root("services_left_to_others_are_not_proxied") {
        return;
    }
    let cluster = Cluster::up();
    let mut baseline = cluster.containment_baseline();
    let ready = endpoint(&cluster, "b1", READY, "");
    let (plain, headless, other_proxy) =
        (v4("10.96.165.10"), v4("10.96.166.10"), v4("10.96.167.10"));
    let (load_balancer, vip, proxied) = (v4("10.96.168.10"), v4("10.96.168.1"), v4("10.96.168.2"));
    let labels = |label: &str| format!("  labels: {{{label}}}\n");
    let text = [
        service("plain", "", plain, "", TCP_80),
        slice("plain-1", "plain", &ready, SLICE_TCP),
        service("headless", &labels("service.kubernetes.io/headless: \"\""), headless, "", TCP_80),
        slice("headless-1", "headless", &ready, SLICE_TCP),
        service(
            "other",
            &labels("service.kubernetes.io/service-proxy-name: other-proxy"),
            other_proxy,
            "",
            TCP_80,
        ),
        slice("other-1", "other", &ready, SLICE_TCP),
        // ipMode Proxy: the load balancer proxies itself; only the VIP-mode address is ours.
        service(
            "lb",
            "",
            load_balancer,
            "  type: LoadBalancer\n",
            "  - {name: tcp, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30168}\n",
        ) + &format!(
            "status:\n  loadBalancer:\n    ingress: [{{ip: \"{vip}\"}}, {{ip: \"{proxied}\", ipMode: Proxy}}]\n"
        ),
        slice("lb-1", "lb", &ready, SLICE_TCP),
    ]
    .concat();
    cluster.apply_until_it_answers("svc.yaml", &text, "a1", at(plain, 80));
    assert_eq!(cluster.backends("a1", "tcp", at(vip, 80), 5), set(&["b1"]));
    for target in [headless, other_proxy, proxied] {
        cluster.assert_untranslated("a1", at(target, 80), &mut baseline);
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// A headless Service (`clusterIP: None`, port 80 -> 8080, endpoint b1) gets no frontend: the
/// agents' frontend maps grow only by the ClusterIP Service applied with it, and b1's own
/// address on port 80 (where nothing listens) is not turned into its targetPort.
#[test]
fn a_headless_service_without_cluster_ip_is_not_proxied() {
    if !require_root("a_headless_service_without_cluster_ip_is_not_proxied") {
        return;
    }
    let cluster = Cluster::up();
    let ready = endpoint(&cluster, "b1", READY, "");
    let plain = v4("10.96.169.10");
    let frontends = |node: &str| {
        let bpf_dir = cluster.lab.node(node).unwrap().bpf_dir.clone();
        switchyard_bpf::Maps::open_pinned(&bpf_dir).unwrap().frontends.keys().count()
    };
    let first =
        [service("plain", "", plain, "", TCP_80), slice("plain-1", "plain", &ready, SLICE_TCP)]
            .concat();
    cluster.apply_until_it_answers("plain.yaml", &first, "a1", at(plain, 80));
    let before = [frontends("node1"), frontends("node2")];
    // With a ClusterIP Service in the same file: once that answers, the update was applied.
    let marker = v4("10.96.169.11");
    let headless = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: none\n  namespace: e2e\n\
         spec:\n  clusterIP: \"None\"\n  clusterIPs: [\"None\"]\n  ports:\n{TCP_80}"
    ) + &slice("none-1", "none", &ready, SLICE_TCP)
        + &service("marker", "", marker, "", TCP_80)
        + &slice("marker-1", "marker", &ready, SLICE_TCP);
    cluster.apply_until_it_answers("headless.yaml", &headless, "a1", at(marker, 80));
    cluster.eventually("node2 serves the marker", || {
        cluster.backends("b2", "tcp", at(marker, 80), 1) == set(&["b1"])
    });
    let after = [frontends("node1"), frontends("node2")];
    assert_eq!(after, before.map(|n| n + 1), "the marker's frontend only, none for clusterIP None");
    let b1 = cluster.pod_ip("b1", false);
    let direct = cluster.client("a1", "tcp", at(b1, 80), 3);
    assert!(direct.summary.backends.is_empty(), "b1:80 answered: {:?}", direct.summary);
    assert_eq!(cluster.backends("a1", "tcp", at(b1, 8080), 3), set(&["b1"]), "b1 itself");
    assert_eq!(cluster.backends("a2", "tcp", at(plain, 80), 5), set(&["b1"]));
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn the_local_list_falls_back_to_terminating_endpoints_separately_from_the_cluster_list() {
    if !require_root("the_local_list_falls_back_to_terminating_endpoints_separately") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let baseline = cluster.containment_baseline();
    // externalTrafficPolicy Local: node1's only endpoint is terminating, node2's is ready.
    let spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32173\n";
    let endpoints = [("a1", State::Terminating), ("b1", State::Ready)];
    let text = cluster.load_balancer("fallback", 30173, spec, &[], &endpoints);
    cluster.apply_and_wait("fallback.yaml", &text);

    // Per node (local list): node1 falls back to its terminating a1, node2 uses b1; each
    // backend sees the client.
    let client = cluster.client_ip("ext", false);
    for (node, expected) in [("node1", "a1"), ("node2", "b1")] {
        let out = cluster.client("ext", "tcp", at(cluster.node_ip(node, false), 30173), 10);
        assert!(out.summary.errors.is_empty(), "{node}: {:?}", out.summary);
        assert_eq!(out.summary.backends.keys().collect::<Vec<_>>(), [expected], "{node}");
        for attempt in &out.attempts {
            let seen: std::net::SocketAddr = attempt.seen_as.as_deref().unwrap().parse().unwrap();
            assert_eq!(seen.ip(), client, "{node}: {attempt:?}");
        }
    }
    // Cluster-wide (the ClusterIP): a ready endpoint exists, so the terminating one gets nothing.
    let cluster_ip = v4("10.96.83.10");
    assert!(text.contains("clusterIP: \"10.96.83.10\""), "{text}");
    assert_eq!(cluster.backends("a2", "tcp", at(cluster_ip, 80), 20), set(&["b1"]));
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn an_agent_with_a_proxy_name_serves_only_services_labelled_with_it() {
    if !require_root("an_agent_with_a_proxy_name_serves_only_services_labelled_with_it") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &[],
        &["--proxy-name", "switchyard-e2e"],
    );
    let mut baseline = cluster.containment_baseline();
    let ready = endpoint(&cluster, "b1", READY, "");
    let (ours, plain, theirs) = (v4("10.96.169.10"), v4("10.96.169.20"), v4("10.96.169.30"));
    let label =
        |name: &str| format!("  labels: {{service.kubernetes.io/service-proxy-name: {name}}}\n");
    let text = [
        service("ours", &label("switchyard-e2e"), ours, "", TCP_80),
        slice("ours-1", "ours", &ready, SLICE_TCP),
        service("plain", "", plain, "", TCP_80),
        slice("plain-1", "plain", &ready, SLICE_TCP),
        service("theirs", &label("other-proxy"), theirs, "", TCP_80),
        slice("theirs-1", "theirs", &ready, SLICE_TCP),
    ]
    .concat();
    cluster.apply_until_it_answers("svc.yaml", &text, "a1", at(ours, 80));
    assert_eq!(cluster.backends("a1", "tcp", at(ours, 80), 5), set(&["b1"]));
    // Unlabelled Services belong to the default proxy, labelled ones to the proxy they name.
    for target in [plain, theirs] {
        cluster.assert_untranslated("a1", at(target, 80), &mut baseline);
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
