//! `/healthz` and `/livez` over real HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use switchyard_k8s::health::{HealthServer, ProxyHealth, TO_BE_DELETED_TAINT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET; returns the status code and the body.
async fn get(server: &HealthServer, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn endpoints_answer_200_or_503_with_kube_proxy_json() {
    let now = SystemTime::now();
    let health = Arc::new(Mutex::new(ProxyHealth::new(Duration::from_secs(60), now)));
    let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), health.clone()).await.unwrap();

    let (status, body) = get(&server, "/healthz").await;
    assert_eq!(status, 200, "first sync pending but young: {body}");
    assert_eq!(body["lastUpdated"], "");
    assert_eq!(body["nodeEligible"], true);
    assert!(body["currentTime"].as_str().unwrap().ends_with('Z'));

    // An update queued two minutes ago and never applied.
    health.lock().unwrap().updated(now);
    health.lock().unwrap().queued(now - Duration::from_secs(120));
    assert_eq!(get(&server, "/healthz").await.0, 503);
    assert_eq!(get(&server, "/livez").await.0, 503);

    health.lock().unwrap().updated(SystemTime::now());
    let (status, body) = get(&server, "/livez").await;
    assert_eq!(status, 200);
    assert!(body.get("nodeEligible").is_none());

    // The autoscaler is about to delete the node: drain it from load balancers, stay alive.
    let doomed = Node {
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: TO_BE_DELETED_TAINT.to_owned(),
                effect: "NoSchedule".to_owned(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        ..Node::default()
    };
    health.lock().unwrap().observe_node(Some(&doomed));
    let (status, body) = get(&server, "/healthz").await;
    assert_eq!((status, body["nodeEligible"].clone()), (503, serde_json::json!(false)));
    assert_eq!(get(&server, "/livez").await.0, 200);
}

/// A GET to a health check node port on loopback: status, weight header and body.
async fn get_port(port: u16) -> (u16, String, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let weight = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-load-balancing-endpoint-weight: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, weight, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn health_check_node_ports_start_update_and_stop_per_port() {
    use switchyard_k8s::health::ServiceHealthServers;
    use switchyard_model::{HealthCheck, ObjectKey};

    let health = Arc::new(Mutex::new(ProxyHealth::new(Duration::from_secs(60), SystemTime::now())));
    health.lock().unwrap().updated(SystemTime::now());
    let mut servers = ServiceHealthServers::new(health.clone());
    // A free port (the kernel picks it; released before the server binds it).
    let port = std::net::TcpListener::bind("[::]:0").unwrap().local_addr().unwrap().port();
    let check =
        |n| Some(HealthCheck { service: ObjectKey::new("shop", "web"), local_endpoints: n });

    servers.update(port, check(2)).unwrap();
    let (status, weight, body) = get_port(port).await;
    assert_eq!((status, weight.as_str()), (200, "2"), "{body}");
    assert_eq!(body["service"]["name"], "web");
    assert_eq!(body["localEndpoints"], 2);
    assert_eq!(body["serviceProxyHealthy"], true);

    servers.update(port, check(0)).unwrap();
    let (status, _, body) = get_port(port).await;
    assert_eq!(status, 503, "no local endpoints: {body}");
    assert_eq!(servers.ports(), vec![port], "the listener stays while the answer changes");

    // The proxy itself unhealthy: 503 even with endpoints.
    servers.update(port, check(1)).unwrap();
    health.lock().unwrap().queued(SystemTime::now() - Duration::from_secs(120));
    let (status, _, body) = get_port(port).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["serviceProxyHealthy"], false);

    servers.update(port, None).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "stopped");
    assert!(servers.ports().is_empty());
}

#[tokio::test]
async fn a_health_check_node_port_in_use_is_retried_with_backoff_and_bound_once_freed() {
    use std::time::Instant;
    use switchyard_k8s::health::{
        FIRST_RETRY_DELAY, MAX_RETRY_DELAY, RetryOutcome, ServiceHealthServers,
    };
    use switchyard_model::{HealthCheck, ObjectKey};

    let health = Arc::new(Mutex::new(ProxyHealth::new(Duration::from_secs(60), SystemTime::now())));
    health.lock().unwrap().updated(SystemTime::now());
    let mut servers = ServiceHealthServers::new(health.clone());
    // Another process's listener holds the port (both families, like the server would).
    let holder = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let check = Some(HealthCheck { service: ObjectKey::new("shop", "web"), local_endpoints: 1 });

    let err = servers.update(port, check).unwrap_err();
    assert_eq!((err.port, err.service.as_str(), err.attempts), (port, "shop/web", 1), "{err}");
    assert_eq!(err.retry_in, FIRST_RETRY_DELAY);
    assert!(err.to_string().contains(&port.to_string()) && err.to_string().contains("shop/web"));
    assert_eq!(servers.pending_ports(), vec![port]);
    assert!(servers.ports().is_empty());

    // Not due yet: nothing is tried.
    let first = servers.next_retry().unwrap();
    assert!(servers.retry(first - Duration::from_millis(1)).is_empty());
    // Still held: the wait doubles on every failure, up to the maximum.
    let mut delays = Vec::new();
    for _ in 0..8 {
        let due = servers.next_retry().unwrap();
        match servers.retry(due).as_slice() {
            [RetryOutcome::Failed(err)] => delays.push(err.retry_in.as_secs()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [2, 4, 8, 16, 30, 30, 30, 30]);
    assert!(Duration::from_secs(30) == MAX_RETRY_DELAY);

    // Freed: the next retry binds it, without any change to the Service.
    drop(holder);
    let due = servers.next_retry().unwrap();
    match servers.retry(due.max(Instant::now())).as_slice() {
        [RetryOutcome::Bound { port: bound, service, attempts }] => {
            assert_eq!((*bound, service.as_str(), *attempts), (port, "shop/web", 10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(servers.ports(), vec![port]);
    assert!(servers.pending_ports().is_empty());
    assert_eq!(servers.next_retry(), None);
    let (status, weight, body) = get_port(port).await;
    assert_eq!((status, weight.as_str()), (200, "1"), "{body}");

    // Removing the Service while pending forgets the port.
    let holder = std::net::TcpListener::bind("[::]:0").unwrap();
    let other = holder.local_addr().unwrap().port();
    let check = Some(HealthCheck { service: ObjectKey::new("shop", "api"), local_endpoints: 1 });
    assert!(servers.update(other, check).is_err());
    servers.update(other, None).unwrap();
    assert!(servers.pending_ports().is_empty());
    assert_eq!(servers.next_retry(), None);
}
