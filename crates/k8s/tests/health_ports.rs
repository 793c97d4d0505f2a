//! Health check node ports answer IPv4 clients in a network namespace whose
//! `net.ipv6.bindv6only` is 1: a `[::]` socket left to that sysctl serves IPv6 only, and a
//! load balancer probing the node's IPv4 address would see it as down. Root: the namespace
//! is the test's own.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use switchyard_k8s::health::{ProxyHealth, ServiceHealthServers};
use switchyard_model::{HealthCheck, ObjectKey};

fn get(address: (&str, u16)) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn health_check_node_ports_serve_ipv4_where_ipv6_sockets_default_to_v6_only() {
    if !switchyard_lab::require_root("health_check_node_ports_serve_ipv4") {
        return;
    }
    std::thread::spawn(|| {
        switchyard_testing::nodeport_fixture::enter_private_netns();
        let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
        assert!(up.success());
        std::fs::write("/proc/sys/net/ipv6/bindv6only", "1").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut health = ProxyHealth::new(Duration::from_secs(60), SystemTime::now());
            health.updated(SystemTime::now());
            let mut servers = ServiceHealthServers::new(Arc::new(Mutex::new(health)));
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let check = HealthCheck { service: ObjectKey::new("shop", "web"), local_endpoints: 2 };
            servers.update(port, Some(check)).unwrap();
            for address in ["127.0.0.1", "::1"] {
                let answer =
                    tokio::task::spawn_blocking(move || get((address, port))).await.unwrap();
                assert!(answer.starts_with("HTTP/1.1 200"), "{address}: {answer}");
                assert!(answer.contains("\"localEndpoints\":2"), "{address}: {answer}");
            }
        });
    })
    .join()
    .unwrap();
}
