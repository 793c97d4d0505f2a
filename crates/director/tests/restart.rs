//! A restarted director takes over the tables it pinned (issue 17 (f)): whatever changed — a
//! node added, drained, its drain removed, deleted outright, taken out or brought back by
//! health — while no director process ran or before it stopped, the restarted director names
//! the same node and the same previous node for every flow as a director that ran throughout,
//! and its operations on the pinned maps are make-before-break.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use switchyard_director::{DirectorConfig, NodeTarget, Tables, Vip, VipSet};
use switchyard_maglev::TableSize;
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

mod fake_maps;
use fake_maps::FakeMaps;

fn config() -> DirectorConfig {
    DirectorConfig { table_size: TableSize::new(251).unwrap(), ..DirectorConfig::default() }
}

fn tcp() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 80, Protocol::Tcp)
}

fn udp() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 80, Protocol::Udp)
}

/// A TCP and a UDP VIP served by the nodes of `mask` (node-1 .. node-8) but those of
/// `drained`, which drain; weights from the bits of `w`.
fn set(mask: u16, drained: u16, w: u8) -> VipSet {
    let target = |i: u8| NodeTarget {
        name: Arc::from(format!("node-{i}")),
        address: IpAddr::from([10, 0, 0, i]),
        weight: 1 + u32::from((w >> (i % 4)) & 1),
    };
    let (draining, nodes): (Vec<NodeTarget>, Vec<NodeTarget>) =
        (1..=8u8).filter(|i| mask & (1 << (i - 1)) != 0).map(target).partition(|n| {
            let i: u16 = n.name.trim_start_matches("node-").parse().unwrap();
            drained & (1 << (i - 1)) != 0
        });
    let vip = Vip {
        service: ObjectKey::new("default", "web"),
        policy: TrafficPolicy::Cluster,
        nodes,
        health_check_node_port: None,
        draining,
        joining: Vec::new(),
    };
    VipSet { vips: [(tcp(), vip.clone()), (udp(), vip)].into(), problems: Vec::new() }
}

fn apply(maps: &mut FakeMaps, tables: &mut Tables, set: &VipSet) {
    for op in &tables.update(set).ops {
        maps.apply(op);
    }
}

/// A director that saw `s0` then `s1`, and the maps and tables of one that so far saw `s0`.
fn histories(s0: &VipSet, s1: &VipSet) -> (Tables, FakeMaps, Tables) {
    let mut throughout = Tables::new(config());
    let _ = throughout.update(s0);
    let _ = throughout.update(s1);
    let mut maps = FakeMaps::default();
    let mut first = Tables::new(config());
    apply(&mut maps, &mut first, s0);
    (throughout, maps, first)
}

/// (node address, previous node address) of 1,000 flows per VIP.
fn choices(tables: &Tables) -> BTreeMap<(FrontendKey, u64), (Option<IpAddr>, Option<IpAddr>)> {
    let mut out = BTreeMap::new();
    for key in [tcp(), udp()] {
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let choice = tables.choose(&key, h);
            let node = choice.as_ref().map(|c| c.node.address);
            let previous = choice.and_then(|c| c.previous).map(|p| p.1.address);
            out.insert((key, h), (node, previous));
        }
    }
    out
}

/// What the maps answer for the same flows.
fn answers(maps: &FakeMaps) -> BTreeMap<(FrontendKey, u64), (Option<IpAddr>, Option<IpAddr>)> {
    let mut out = BTreeMap::new();
    for key in [tcp(), udp()] {
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            out.insert((key, h), (maps.lookup(&key, h), maps.lookup_previous(&key, h)));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The node set goes from `before` to `after` (any mix of nodes added, drained, undrained,
    /// removed); the director stops before the change (`while_down`) or after it, and
    /// restarts on its pinned maps.
    #[test]
    fn a_restarted_director_names_what_one_that_ran_throughout_names(
        before in 1u16..256, after in 1u16..256, drained_before in 0u16..256,
        drained_after in 0u16..256, w in any::<u8>(), while_down in any::<bool>(),
    ) {
        let (s0, s1) = (set(before, drained_before, w), set(after, drained_after, w));
        let (throughout, mut maps, mut first) = histories(&s0, &s1);
        if !while_down {
            apply(&mut maps, &mut first, &s1);
        }
        drop(first);
        let mut second = Tables::adopting(config(), maps.adopted());
        apply(&mut maps, &mut second, &s1);
        second.leftovers_removed();
        maps.remove_leftovers(&[tcp(), udp()]);
        let expected = choices(&throughout);
        for (what, got) in [("tables", choices(&second)), ("maps", answers(&maps))] {
            let differ: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got.get(k) != Some(v))
                .map(|(k, v)| (k.0.protocol, *v, got.get(k).copied()))
                .take(3)
                .collect();
            prop_assert!(differ.is_empty(), "{}: (expected, got) {:?}", what, differ);
        }
    }
}

/// Without its pinned tables (the director before this change: ids only), a director that
/// restarts while a node is deleted names no previous node for the deleted node's slots, so
/// their TCP flows reach a node that does not hold them and are reset.
#[test]
fn without_its_pinned_tables_a_restarted_director_forgets_the_previous_nodes() {
    let (s0, s1) = (set(0b111, 0, 0), set(0b101, 0, 0));
    let (throughout, mut maps, _) = histories(&s0, &s1);
    let mut adopted = maps.adopted();
    adopted.tables.clear();
    adopted.vip_tables.clear();
    let mut blind = Tables::adopting(config(), adopted);
    apply(&mut maps, &mut blind, &s1);
    let deleted = IpAddr::from([10, 0, 0, 2]);
    let named = |t: &Tables| choices(t).values().filter(|(_, p)| *p == Some(deleted)).count();
    assert!(named(&throughout) > 0, "the director that ran throughout names node-2");
    assert_eq!(named(&blind), 0, "the blind restart names nothing");
    // With them, it does (the property above, one example).
    let (_, mut maps, _) = histories(&s0, &s1);
    let mut second = Tables::adopting(config(), maps.adopted());
    apply(&mut maps, &mut second, &s1);
    assert_eq!(named(&second), named(&throughout));
}

/// A restarted director's pinned previous nodes expire TTL after the table was built, as on
/// the directors that ran throughout, not TTL after the restart: the build time is pinned
/// (`AdoptedTable::built`, read back by `runtime::adopt`).
#[test]
fn pinned_previous_nodes_expire_when_they_were_due_not_a_ttl_after_the_restart() {
    use std::time::{Duration, Instant, UNIX_EPOCH};
    let ttl = Duration::from_secs(600);
    let config = DirectorConfig { previous_ttl: Some(ttl), ..config() };
    let (s0, s1) = (set(0b111, 0, 0), set(0b101, 0, 0));
    let (now, wall) = (Instant::now(), UNIX_EPOCH + Duration::from_secs(1_765_000_000));
    let mut maps = FakeMaps::default();
    let mut first = Tables::new(config);
    for s in [&s0, &s1] {
        for op in first.update(s).ops.iter().chain(&first.expire_previous_at(now, wall).ops) {
            maps.apply(op);
        }
    }
    let built = first.built_times();
    assert_eq!(first.next_previous_expiry(), Some(now + ttl));
    // Restarted 300 s later, with the pinned build times.
    let later = (now + Duration::from_secs(300), wall + Duration::from_secs(300));
    let restart = |pinned: bool| {
        let mut adopted = maps.adopted();
        for (id, table) in &mut adopted.tables {
            table.built = if pinned { built.get(id).copied() } else { None };
        }
        let mut second = Tables::adopting(config, adopted);
        let _ = second.update(&s1);
        let _ = second.expire_previous_at(later.0, later.1);
        second
    };
    let second = restart(true);
    assert_eq!(second.next_previous_expiry(), Some(now + ttl), "due when the first run's were");
    assert_eq!(second.built_times(), built);
    // Without the pin: a whole TTL after the restart.
    assert_eq!(restart(false).next_previous_expiry(), Some(later.0 + ttl));
}
