//! The kernel executor against real (pinned) BPF maps: same end state as the in-memory kernel,
//! and a restarted planner adopts what is pinned without changing anything.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use switchyard_dataplane::fake::FakeKernel;
use switchyard_dataplane::kernel::{KernelMaps, KernelSnapshot};
use switchyard_dataplane::translate::{FrontendAttrs, MapBackend, MapKey, Scope, Spec};
use switchyard_dataplane::{FrontendSpec, Limits, MapOps, Planner, TableBuilder};
use switchyard_model::{FrontendKey, Protocol};
use switchyard_testing::BpfDir;

/// Spreads M = 251 entries over the backends.
struct Spread;

impl TableBuilder<MapBackend> for Spread {
    fn build(&self, backends: &[MapBackend]) -> Vec<u32> {
        (0..251u32).map(|i| i % backends.len() as u32).collect()
    }
}

const LIMITS: Limits =
    Limits { frontends: 1000, backends: 1000, slots: 10_000, slots_per_frontend: 100 };

fn key(i: u8, scope: Scope) -> MapKey {
    let ip = if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, i))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)))
    };
    let protocol = if i.is_multiple_of(3) { Protocol::Udp } else { Protocol::Tcp };
    MapKey { frontend: FrontendKey::new(ip, 80 + u16::from(i), protocol), scope }
}

fn backend(i: u8) -> MapBackend {
    MapBackend { ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)), port: 8080, flags: i % 4 }
}

fn spec(backends: &[u8], maglev: bool) -> Spec {
    FrontendSpec {
        backends: backends.iter().copied().map(backend).collect(),
        maglev,
        attrs: FrontendAttrs { flags: 1 << 2, affinity_timeout_s: u32::from(backends.len() as u8) },
    }
}

fn sorted(mut s: KernelSnapshot) -> KernelSnapshot {
    s.frontends.sort_by_key(|(k, _)| *k);
    s.slots.sort();
    s.backends.sort_by_key(|(id, _)| *id);
    s.maglev.sort();
    s.rev_nat.sort();
    s
}

fn as_maps(s: &KernelSnapshot) -> String {
    let frontends: BTreeMap<_, _> = s.frontends.iter().cloned().collect();
    format!("{frontends:?}\n{:?}\n{:?}\n{:?}\n{:?}", s.slots, s.backends, s.maglev, s.rev_nat)
}

#[test]
fn kernel_maps_hold_what_the_fake_kernel_holds_and_adoption_changes_nothing() {
    if !switchyard_lab::require_root("kernel_maps_hold_what_the_fake_kernel_holds") {
        return;
    }
    let dir = BpfDir::new("fake-parity");
    let mut datapath = dir.load();
    let mut planner = Planner::new(LIMITS, Arc::new(Spread));
    let mut fake = FakeKernel { check_each_op: true, ..FakeKernel::default() };

    let batches: Vec<Vec<(MapKey, Option<Spec>)>> = vec![
        vec![
            (key(1, Scope::Default), Some(spec(&[1, 2, 3], false))),
            (key(2, Scope::Default), Some(spec(&[3, 4], true))),
            (key(2, Scope::Internal), Some(spec(&[3, 4, 5, 6], false))),
            (key(3, Scope::Default), Some(spec(&[], false))),
        ],
        vec![
            (key(1, Scope::Default), Some(spec(&[3, 2], false))),
            (key(2, Scope::Default), Some(spec(&[4, 7], true))),
            (key(4, Scope::Default), Some(spec(&[1], true))),
        ],
        vec![(key(2, Scope::Internal), None), (key(3, Scope::Default), Some(spec(&[8], false)))],
    ];
    for batch in batches {
        let plan = planner.plan(batch);
        assert!(plan.errors.is_empty());
        fake.apply(&plan.ops).unwrap();
        KernelMaps::new(datapath.maps_mut()).unwrap().apply(&plan.ops).unwrap();
        let kernel = sorted(KernelMaps::new(datapath.maps_mut()).unwrap().snapshot().unwrap());
        assert_eq!(as_maps(&kernel), as_maps(&sorted(fake.snapshot())));
    }
    fake.check_no_debris().unwrap();

    // Restart: a new process loads (adopting the pins), a new planner adopts the maps.
    let desired: Vec<(MapKey, Spec)> = vec![
        (key(1, Scope::Default), spec(&[3, 2], false)),
        (key(2, Scope::Default), spec(&[4, 7], true)),
        (key(3, Scope::Default), spec(&[8], false)),
        (key(4, Scope::Default), spec(&[1], true)),
    ];
    drop(datapath);
    let mut datapath = dir.load();
    let snapshot = KernelMaps::new(datapath.maps_mut()).unwrap().snapshot().unwrap();
    let (mut adopted, report) = Planner::adopt(snapshot, LIMITS, Arc::new(Spread));
    assert_eq!((report.frontends, report.orphans), (4, 0));
    let plan = adopted.plan_full(desired);
    assert!(plan.is_empty(), "adoption rewrote {:?}", plan.ops);
    for k in fake.frontends.keys() {
        assert_eq!(adopted.frontend_id(k), planner.frontend_id(k));
    }
}
