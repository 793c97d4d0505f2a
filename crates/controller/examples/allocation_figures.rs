//! Figures for docs/controller.md: 10,000 LoadBalancer Services allocated from scratch, then
//! re-read by a restarted allocator (their status adopted), with the addresses that moved; and a
//! same-run peer that allocates by scanning the pool for each Service, as an allocator without
//! free-range sets would.
//!
//! `cargo run -p switchyard-controller --example allocation_figures [-- SERVICES]`

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use switchyard_controller::Allocator;
use switchyard_model::crd::{IPPool, IPPoolSpec};
use switchyard_model::{Change, ObjectKey};

fn pool(name: &str, addresses: &[&str]) -> Change {
    let mut pool = IPPool::new(
        name,
        IPPoolSpec {
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            auto_assign: true,
            avoid_buggy_ips: true,
            ..IPPoolSpec::default()
        },
    );
    pool.metadata.name = Some(name.to_owned());
    Change::IPPool(ObjectKey::cluster(name), Some(Box::new(pool)))
}

/// Service `i`: one in five dual-stack, one in ten sharing an address with its neighbour (same
/// key, other port), one in twenty asking for an address of the requests pool.
fn service(i: usize) -> Service {
    let mut annotations = BTreeMap::new();
    if i % 10 < 2 {
        annotations.insert("switchyard.io/allow-shared-ip".to_owned(), format!("pair-{}", i / 10));
    }
    if i % 20 == 5 {
        // .1 to .254 of 10.100.0.0/22: avoidBuggyIPs refuses .0 and .255.
        let n = i / 20;
        let address = Ipv4Addr::new(
            10,
            100,
            u8::try_from(n / 254).unwrap(),
            u8::try_from(n % 254 + 1).unwrap(),
        );
        annotations.insert("switchyard.io/load-balancer-ips".to_owned(), address.to_string());
    }
    let families = if i.is_multiple_of(5) {
        vec!["IPv4".to_owned(), "IPv6".to_owned()]
    } else {
        vec!["IPv4".to_owned()]
    };
    let seconds = i64::try_from(i).unwrap();
    Service {
        metadata: ObjectMeta {
            namespace: Some(format!("ns{}", i % 50)),
            name: Some(format!("svc{i}")),
            annotations: Some(annotations),
            creation_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap(),
            )),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            ip_families: Some(families),
            ports: Some(vec![ServicePort {
                port: 80 + i32::from(i % 10 == 1),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn key(service: &Service) -> ObjectKey {
    ObjectKey::new(
        service.metadata.namespace.clone().unwrap(),
        service.metadata.name.clone().unwrap(),
    )
}

fn with_status(mut service: Service, addresses: &[IpAddr]) -> Service {
    let ingress = addresses
        .iter()
        .map(|a| LoadBalancerIngress {
            ip: Some(a.to_string()),
            ip_mode: Some("VIP".to_owned()),
            ..LoadBalancerIngress::default()
        })
        .collect();
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus { ingress: Some(ingress) }),
        conditions: None,
    });
    service
}

const POOLS: [(&str, &[&str]); 2] =
    [("main", &["10.0.0.0/16", "2001:db8::/64"]), ("requests", &["10.100.0.0/22"])];

/// Runs `f` `runs` times on fresh input and returns the median time and the last result.
fn median<T>(runs: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (time, result) = f();
        times.push(time);
        last = Some(result);
    }
    times.sort();
    (times[runs / 2], last.unwrap())
}

fn main() {
    let count: usize = std::env::args().nth(1).map_or(10_000, |n| n.parse().unwrap());
    let services: Vec<Service> = (0..count).map(service).collect();
    let runs = 5;

    // From scratch: every Service arrives without status.
    let (scratch, (allocator, effects)) = median(runs, || {
        let mut allocator = Allocator::new(None);
        let start = Instant::now();
        for (name, addresses) in POOLS {
            allocator.apply(&pool(name, addresses));
        }
        for s in &services {
            allocator.apply(&Change::Service(key(s), Some(Box::new(s.clone()))));
        }
        let effects = allocator.reconcile();
        (start.elapsed(), (allocator, effects))
    });
    let allocated: BTreeMap<ObjectKey, Vec<IpAddr>> =
        effects.services.iter().map(|s| (s.service.clone(), s.addresses.clone())).collect();
    let without = allocated.values().filter(|a| a.is_empty()).count();
    assert_eq!(without, 0, "every Service gets its addresses");
    let holdings = allocator.holdings();
    let shared = holdings.iter().filter(|h| h.services.len() > 1).count();

    // Restart: a new allocator reads the same Services with the status written, newest first.
    let restarted: Vec<Service> =
        services.iter().rev().map(|s| with_status(s.clone(), &allocated[&key(s)])).collect();
    let (restart, moved) = median(runs, || {
        let mut allocator = Allocator::new(None);
        let start = Instant::now();
        for (name, addresses) in POOLS {
            allocator.apply(&pool(name, addresses));
        }
        for s in &restarted {
            allocator.apply(&Change::Service(key(s), Some(Box::new(s.clone()))));
        }
        let effects = allocator.reconcile();
        let elapsed = start.elapsed();
        let moved =
            effects.services.iter().filter(|s| allocated[&s.service] != s.addresses).count();
        (elapsed, moved)
    });

    // Peer: the lowest free address found by scanning the pool from its start for each Service
    // (IPv4 only, no requests or sharing: the least work any scanning allocator does).
    let (scan, _) = median(1, || {
        let start = Instant::now();
        let mut used: HashSet<u32> = HashSet::new();
        let first = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        for _ in &services {
            let found = (first..first + 65536)
                .find(|n| !matches!(n % 256, 0 | 255) && !used.contains(n))
                .unwrap();
            used.insert(found);
        }
        (start.elapsed(), ())
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{count} LoadBalancer Services ({} addresses held, {shared} shared; 1 in 5 dual-stack), median of {runs} runs:",
        holdings.len()
    );
    println!("  from scratch (pools + Services in, one reconcile): {:>8.1} ms", ms(scratch));
    println!(
        "  restart (status adopted, newest first):            {:>8.1} ms, {moved} addresses moved",
        ms(restart)
    );
    println!("  peer: scanning the pool per Service (IPv4 only):   {:>8.1} ms (one run)", ms(scan));
    println!("  from scratch / peer: {:.2}", ms(scratch) / ms(scan));
    assert_eq!(moved, 0, "a restart moved addresses");
}
