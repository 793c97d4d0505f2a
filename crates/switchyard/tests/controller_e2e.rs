//! The controller role end to end (root): `switchyard controller --manifests DIR` beside the
//! node agents of a lab cluster reading the same directory. A LoadBalancer Service written
//! without an address gets one from an IPPool, the agents program it, and an external client
//! reaches it through the nodes. See docs/controller.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_model::ObjectKey;
use switchyard_node::api_client::desired;
use switchyard_testing::KillOnDrop;
use switchyard_testing::e2e::{Agent, BIN, Cluster, State, at, set, v4};

const POOL: &str = "apiVersion: switchyard.io/v1alpha1
kind: IPPool
metadata:
  name: lab
spec:
  addresses: [10.96.70.1-10.96.70.2, fd00:96::70:1-fd00:96::70:2]
";

#[test]
fn a_load_balancer_without_an_address_gets_one_and_answers_through_the_nodes() {
    if !require_root("a_load_balancer_without_an_address_gets_one_and_answers_through_the_nodes") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let baseline = cluster.containment_baseline();
    // The controller only reads and writes files: it runs on the host, beside the lab.
    let _controller = KillOnDrop(
        Command::new(&*BIN)
            .args(["controller", "--manifests"])
            .arg(&cluster.manifests)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    cluster.apply("pool.yaml", POOL);
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply("pooled.yaml", &cluster.load_balancer("pooled", 30090, "", &[], &endpoints));
    let status = cluster.manifests.join(".switchyard-status.json");
    cluster.eventually("the controller records an address for e2e/pooled", || {
        std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains("10.96.70.1") && s.contains("fd00:96::70:1"))
    });
    // The agents pick the address up from the status file; only once both have programmed it
    // does the router learn it (as BGP would) and send it to both nodes, so no packet goes to
    // an address not yet programmed.
    programmed(&cluster, "pooled", &["10.96.70.1", "fd00:96::70:1"]);
    cluster.route("10.96.70.1", &["node1", "node2"]);
    cluster.route("fd00:96::70:1", &["node1", "node2"]);
    for ip in ["10.96.70.1", "fd00:96::70:1"] {
        let target = at(ip.parse().unwrap(), 80);
        cluster.eventually(&format!("{target} answers the external client"), || {
            let attempts = cluster
                .lab
                .run_in("ext", || clients::tcp(target, 1, Duration::from_secs(1)))
                .unwrap();
            attempts.iter().all(|a| a.error.is_none())
        });
        let answered = cluster.backends("ext", "tcp", target, 20);
        assert_eq!(answered, set(&["a1", "b1"]), "{target}");
    }
    // Deleting the Service releases the address: the next one gets it.
    cluster.delete("pooled.yaml");
    cluster.apply("next.yaml", &cluster.load_balancer("next", 30091, "", &[], &endpoints));
    cluster.eventually("the released address goes to the next Service", || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.contains("e2e/next") && s.contains("10.96.70.1") && !s.contains("e2e/pooled")
        })
    });
    programmed(&cluster, "next", &["10.96.70.1"]);
    let target = at(v4("10.96.70.1"), 80);
    cluster.eventually("the next Service answers on the same address", || {
        clients_ok(&cluster, target)
    });
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// Waits until every agent has programmed `ips` for Service e2e/`name`: its `/desired`, which
/// the agent updates after each sync of its maps, has frontends of that Service on them.
fn programmed(cluster: &Cluster, name: &str, ips: &[&str]) {
    let service = ObjectKey::new("e2e", name);
    let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    for agent in &cluster.agents {
        let socket = Agent::api_socket(&cluster.lab, &agent.node);
        cluster.eventually(&format!("{} programs {ips:?} for {service}", agent.node), || {
            desired(&socket).is_ok_and(|state| {
                ips.iter().all(|ip| {
                    state.frontends.iter().any(|(key, f)| key.ip == *ip && f.service == service)
                })
            })
        });
    }
}

fn clients_ok(cluster: &Cluster, target: std::net::SocketAddr) -> bool {
    let attempts =
        cluster.lab.run_in("ext", || clients::tcp(target, 1, Duration::from_secs(1))).unwrap();
    attempts.iter().all(|a| a.error.is_none())
}
