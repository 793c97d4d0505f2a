//! NodePorts the API server would refuse, through running agents (root): two Services on one
//! NodePort (the smallest name serves, the other is named in a warning and takes over once
//! the first goes), a NodePort outside the range (not opened; its ClusterIP still works), and
//! an externalIP of a Service in a smaller namespace naming another Service's ClusterIP
//! (CVE-2020-8554: refused, logged, the ClusterIP keeps its backends). See docs/conformance.md.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_lab::require_root;
use switchyard_testing::e2e::{Agent, Cluster, State, at, set, v4};

#[test]
fn colliding_and_out_of_range_node_ports_are_reported_and_not_served_twice() {
    if !require_root("colliding_and_out_of_range_node_ports_are_reported") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let baseline = cluster.containment_baseline();
    let node_port = |name: &str, ip: &str, port: u16, endpoint: &str| {
        cluster
            .service(name, &[v4(ip)], 80, "", &[(endpoint, State::Ready)])
            .replace("  type: ClusterIP\n", "  type: NodePort\n")
            .replace("targetPort: 8080}", &format!("targetPort: 8080, nodePort: {port}}}"))
    };
    let alpha = node_port("alpha", "10.96.170.10", 30170, "a1");
    let beta = node_port("beta", "10.96.171.10", 30170, "b1");
    let low = node_port("low", "10.96.172.10", 29999, "b2");
    cluster.apply_and_wait("beta.yaml", &beta);
    cluster.apply_and_wait("others.yaml", &(alpha + &low));
    let node1 = cluster.node_ip("node1", false);

    // The collision: alpha (the smaller name) serves 30170 on every node, beta is named.
    for node in ["node1", "node2"] {
        let target = at(cluster.node_ip(node, false), 30170);
        assert_eq!(cluster.backends("ext", "tcp", target, 10), set(&["a1"]), "{target}");
    }
    cluster.eventually("the collision is logged naming beta and its field", || {
        cluster.agents.iter().all(|agent| {
            agent
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("e2e/beta") && line.contains("spec.ports[0].nodePort"))
        })
    });
    // Both ClusterIPs work: only the NodePort is contested.
    assert_eq!(cluster.backends("a2", "tcp", at(v4("10.96.171.10"), 80), 5), set(&["b1"]));

    // aaa/evil (a smaller name than e2e/beta) asks for beta's ClusterIP as its externalIP: it
    // does not get it, the agents say so, and pods keep reaching beta's real backend.
    let evil = cluster
        .service(
            "evil",
            &[v4("10.96.173.10")],
            80,
            "  externalIPs: [\"10.96.171.10\"]\n",
            &[("a2", State::Ready)],
        )
        .replace("namespace: e2e", "namespace: aaa");
    cluster.apply_and_wait("evil.yaml", &evil);
    cluster.eventually("every agent logs the refused externalIP", || {
        cluster.agents.iter().all(|agent| {
            agent.log.lock().unwrap().iter().any(|line| {
                line.contains("frontend refused")
                    && line.contains("aaa/evil")
                    && line.contains("cluster IP of Service e2e/beta")
            })
        })
    });
    // Counted: each agent's /metrics (local API socket) has one refused frontend address.
    for agent in &cluster.agents {
        let text = Agent::metrics(&cluster.lab, &agent.node);
        assert!(
            text.lines().any(|l| l == "switchyard_frontends_refused 1"),
            "{}: {}",
            agent.node,
            text.lines().filter(|l| l.contains("refused")).collect::<Vec<_>>().join("\n")
        );
    }
    for protocol in ["tcp", "udp"] {
        let beta_ip = at(v4("10.96.171.10"), 80);
        assert_eq!(cluster.backends("a1", protocol, beta_ip, 5), set(&["b1"]), "{protocol}");
    }
    assert_eq!(cluster.backends("b2", "tcp", at(v4("10.96.173.10"), 80), 5), set(&["a2"]));

    // Out of range: the NodePort is not opened, the ClusterIP is.
    let out = cluster.client("ext", "tcp", at(node1, 29999), 1);
    assert_eq!(out.summary.errors.get("connection refused"), Some(&1), "{:?}", out.summary);
    assert_eq!(cluster.backends("a2", "udp", at(v4("10.96.172.10"), 80), 5), set(&["b2"]));

    // alpha goes: beta takes the NodePort over.
    cluster.apply_and_wait("others.yaml", &node_port("low", "10.96.172.10", 29999, "b2"));
    assert_eq!(cluster.backends("ext", "tcp", at(node1, 30170), 10), set(&["b1"]));
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
