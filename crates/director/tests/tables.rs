//! The director's tables: every operation keeps the maps consistent (checked after each one
//! on a strict fake), and directors with different histories choose the same node.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use switchyard_director::{DirectorConfig, NodeTarget, Op, Tables, Vip, VipSet};

mod fake_maps;
use fake_maps::FakeMaps;
use switchyard_maglev::TableSize;
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

fn config() -> DirectorConfig {
    DirectorConfig { table_size: TableSize::new(251).unwrap(), ..DirectorConfig::default() }
}

fn vip_key(i: u8) -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10 + i % 3]), 80 + u16::from(i / 3), Protocol::Tcp)
}

fn target(i: u8, weight: u32) -> NodeTarget {
    NodeTarget {
        name: Arc::from(format!("node-{i}")),
        address: IpAddr::from([10, 0, 0, i]),
        weight,
    }
}

/// A VIP set from (vip index, node bitmask, weights).
fn set_of(spec: &[(u8, u16, u8)]) -> VipSet {
    let mut set = VipSet::default();
    for &(vip, mask, w) in spec {
        let nodes = (0..10u8)
            .filter(|n| mask & (1 << n) != 0)
            .map(|n| target(n + 1, 1 + u32::from((w >> (n % 4)) & 1)))
            .collect();
        set.vips.insert(
            vip_key(vip),
            Vip {
                service: ObjectKey::new("default", "web"),
                policy: TrafficPolicy::Cluster,
                nodes,
                health_check_node_port: None,
                draining: Vec::new(),
                joining: Vec::new(),
            },
        );
    }
    set
}

fn spec() -> impl Strategy<Value = Vec<(u8, u16, u8)>> {
    prop::collection::vec((0u8..6, 0u16..1024, any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// After every single operation the maps are consistent; after each update they answer
    /// like the tables; a director that saw only the final state answers the same for every
    /// flow as one that saw the whole history.
    #[test]
    fn updates_are_make_before_break_and_history_free(history in prop::collection::vec(spec(), 1..6)) {
        let mut tables = Tables::new(config());
        let mut maps = FakeMaps::default();
        const HASHES: [u64; 6] = [0, 1, 77, 12_345, u64::MAX / 3, u64::MAX];
        for step in &history {
            let set = set_of(step);
            let before: BTreeMap<(FrontendKey, u64), _> = set
                .vips
                .keys()
                .flat_map(|k| HASHES.map(|h| ((*k, h), tables.choose(k, h))))
                .collect();
            let nodes_before: BTreeMap<FrontendKey, Vec<NodeTarget>> =
                set.vips.keys().map(|k| (*k, tables.nodes_of(k).to_vec())).collect();
            let plan = tables.update(&set);
            for op in &plan.ops {
                maps.apply(op);
            }
            maps.traffic();
            let (vips, table_ids, node_ids) = tables.live_ids();
            // Small ids (the program's arrays are indexed by them): never above the most
            // entries a map held at once, so arrays of the maps' capacities suffice.
            let below = |ids: &BTreeSet<u32>, peak: usize| ids.iter().all(|&id| id as usize <= peak);
            prop_assert!(below(&vips, maps.peak.0), "VIP ids {:?}, peak {}", vips, maps.peak.0);
            prop_assert!(below(&table_ids, maps.peak.1), "table ids {:?}, peak {}", table_ids, maps.peak.1);
            prop_assert!(below(&node_ids, maps.peak.2), "node ids {:?}, peak {}", node_ids, maps.peak.2);
            prop_assert_eq!(maps.vips.values().map(|v| v.0).collect::<BTreeSet<_>>(), vips);
            prop_assert_eq!(maps.tables.keys().copied().collect::<BTreeSet<_>>(), table_ids);
            prop_assert_eq!(maps.nodes.keys().copied().collect::<BTreeSet<_>>(), node_ids);
            for key in set.vips.keys() {
                for hash in HASHES {
                    let choice = tables.choose(key, hash);
                    let chosen = choice.as_ref().map(|c| c.node.address);
                    prop_assert_eq!(chosen, maps.lookup(key, hash));
                    let previous = choice.as_ref().and_then(|c| c.previous.as_ref());
                    prop_assert_eq!(previous.map(|p| p.1.address), maps.lookup_previous(key, hash));
                    // The second chance: where the VIP's nodes changed, the previous node is
                    // the old table's choice whenever that differs from the new one.
                    let (Some(now), Some(old)) = (&choice, &before[&(*key, hash)]) else {
                        continue;
                    };
                    if nodes_before[key] == tables.nodes_of(key) {
                        prop_assert_eq!(previous, old.previous.as_ref(), "unchanged VIP");
                    } else if (&old.node.name, old.node.address) == (&now.node.name, now.node.address) {
                        prop_assert_eq!(previous, None, "same node: no previous");
                    } else {
                        prop_assert_eq!(previous.map(|p| &p.1), Some(&old.node), "old choice");
                    }
                }
            }
        }
        let mut fresh = Tables::new(config());
        let _ = fresh.update(&set_of(history.last().unwrap()));
        for key in set_of(history.last().unwrap()).vips.keys() {
            for hash in 0..500u64 {
                let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                prop_assert_eq!(
                    tables.choose(key, h).map(|c| c.node.name),
                    fresh.choose(key, h).map(|c| c.node.name)
                );
            }
        }
    }
}

#[test]
fn an_unchanged_set_changes_nothing() {
    let mut tables = Tables::new(config());
    let set = set_of(&[(0, 0b111, 0), (1, 0b110, 0)]);
    assert!(!tables.update(&set).ops.is_empty());
    assert_eq!(tables.update(&set).ops, []);
}

#[test]
fn vips_with_the_same_nodes_share_one_table() {
    let mut tables = Tables::new(config());
    let plan = tables.update(&set_of(&[(0, 0b111, 0), (1, 0b111, 0), (2, 0b011, 0)]));
    let puts = plan.ops.iter().filter(|op| matches!(op, Op::PutTable { .. })).count();
    assert_eq!(puts, 2);
}

#[test]
fn a_vip_without_nodes_points_at_no_table() {
    let mut tables = Tables::new(config());
    let plan = tables.update(&set_of(&[(0, 0, 0)]));
    assert_eq!(
        plan.ops,
        [Op::ZeroVipCounters { id: 1 }, Op::PutVip { key: vip_key(0), id: 1, table: 0 }]
    );
    assert!(tables.choose(&vip_key(0), 5).is_none());
}

/// At the director's default M, removing one of ten nodes moves about a tenth of the slots
/// (Maglev's minimal disruption); flows of the remaining nodes almost all stay (Maglev moves a
/// few more than the removed node's, never many).
#[test]
fn removing_a_node_moves_only_its_slots() {
    let mut tables = Tables::new(DirectorConfig::default());
    let _ = tables.update(&set_of(&[(0, 0b11_1111_1111, 0)]));
    let before: Vec<_> =
        (0..2_000u64).map(|h| tables.choose(&vip_key(0), h * 7919).unwrap().node.name).collect();
    let plan = tables.update(&set_of(&[(0, 0b11_1111_1011, 0)]));
    let moved = plan.moved_slots[&vip_key(0)];
    let m = 65_537f64;
    assert!((moved as f64 / m - 0.1).abs() < 0.02, "moved {moved} of {m}");
    let mut remaining = 0;
    let mut moved_remaining = 0;
    for (i, old) in before.iter().enumerate() {
        let new = tables.choose(&vip_key(0), i as u64 * 7919).unwrap().node.name;
        assert_ne!(new.as_ref(), "node-3", "a flow still goes to the removed node");
        if old.as_ref() != "node-3" {
            remaining += 1;
            moved_remaining += usize::from(&new != old);
        }
    }
    assert!(
        moved_remaining * 50 < remaining,
        "{moved_remaining} of {remaining} flows of remaining nodes moved"
    );
}

#[test]
fn choices_explain_slot_table_and_weight() {
    let mut tables = Tables::new(config());
    let _ = tables.update(&set_of(&[(0, 0b11, 0b11)]));
    let choice = tables.choose(&vip_key(0), 1_000).unwrap();
    assert_eq!(choice.slot, (1_000 % 251) as u32);
    assert_eq!(choice.table_size, 251);
    assert_eq!(choice.nodes, 2);
    assert_eq!(choice.node.weight, 2);
    assert_eq!(choice.vip_id, 1);
}

/// The second chance: after a change, every slot that moved names its old node as previous and
/// no other slot names one; a node that left stays in the maps while a table names it as a
/// previous node (its flows finish there), and goes with the next change.
#[test]
fn moved_slots_name_their_previous_node_until_the_next_change() {
    let mut tables = Tables::new(config());
    let mut maps = FakeMaps::default();
    let apply = |plan: &switchyard_director::Plan, maps: &mut FakeMaps| {
        for op in &plan.ops {
            maps.apply(op);
        }
    };
    apply(&tables.update(&set_of(&[(0, 0b1111, 0)])), &mut maps);
    let m = 251u64;
    let before: Vec<_> = (0..m).map(|h| tables.choose(&vip_key(0), h).unwrap()).collect();
    assert!(before.iter().all(|c| c.previous.is_none()), "a new VIP has no previous nodes");

    // node-2 leaves.
    let plan = tables.update(&set_of(&[(0, 0b1101, 0)]));
    assert!(
        !plan.ops.iter().any(|op| matches!(op, Op::DeleteNode { .. })),
        "node-2 stays as a previous node: {:?}",
        plan.ops
    );
    apply(&plan, &mut maps);
    let mut moved = 0;
    for (h, old) in (0..m).zip(&before) {
        let now = tables.choose(&vip_key(0), h).unwrap();
        if now.node.name == old.node.name {
            assert_eq!(now.previous, None, "slot {h} kept its node");
        } else {
            moved += 1;
            assert_eq!(now.previous.as_ref().unwrap().1, old.node, "slot {h}");
            assert_eq!(maps.lookup_previous(&vip_key(0), h), Some(old.node.address));
        }
    }
    assert_eq!(moved, plan.moved_slots[&vip_key(0)]);
    assert!(moved > 0);
    assert!(maps.nodes.values().any(|a| *a == IpAddr::from([10, 0, 0, 2])));

    // The next change: node-2 is no one's previous node any more and leaves the maps.
    let plan = tables.update(&set_of(&[(0, 0b0101, 0)]));
    apply(&plan, &mut maps);
    assert!(!maps.nodes.values().any(|a| *a == IpAddr::from([10, 0, 0, 2])), "{:?}", plan.ops);
}

/// The VIP of `set_of(&[(0, mask, w)])` with the nodes of `drained` (a bitmask) moved to its
/// draining list.
fn with_drained(mask: u16, w: u8, drained: u16) -> VipSet {
    let mut set = set_of(&[(0, mask, w)]);
    let vip = set.vips.values_mut().next().unwrap();
    let (draining, serving) = vip.nodes.iter().cloned().partition(|n| {
        let i: u16 = n.name.trim_start_matches("node-").parse().unwrap();
        drained & (1 << (i - 1)) != 0
    });
    vip.nodes = serving;
    vip.draining = draining;
    set
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Issue 17 (f): a director that first builds a VIP while some of its nodes drain (a
    /// director added or restarted during a drain) chooses the same node *and the same
    /// previous node* for every flow as one that served the VIP before the drain; its
    /// operations are make-before-break on a fresh map set.
    #[test]
    fn a_director_starting_during_a_drain_names_the_same_previous_nodes(
        mask in 1u16..1024, w in any::<u8>(), drained in 1u16..1024,
    ) {
        let drained = drained & mask;
        prop_assume!(drained != 0 && drained != mask);
        let all = set_of(&[(0, mask, w)]);
        let during = with_drained(mask, w, drained);
        // Saw the drain happen.
        let mut old = Tables::new(config());
        let _ = old.update(&all);
        let _ = old.update(&during);
        // Starts during the drain.
        let mut fresh = Tables::new(config());
        let mut maps = FakeMaps::default();
        for op in &fresh.update(&during).ops {
            maps.apply(op);
        }
        let key = vip_key(0);
        let mut moved = 0;
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (old.choose(&key, h).unwrap(), fresh.choose(&key, h).unwrap());
            prop_assert_eq!(&a.node, &b.node);
            let (pa, pb) = (a.previous.map(|p| p.1), b.previous.clone().map(|p| p.1));
            prop_assert_eq!(&pa, &pb);
            prop_assert_eq!(pb.map(|p| p.address), maps.lookup_previous(&key, h));
            moved += usize::from(b.previous.is_some());
        }
        prop_assert!(moved > 0, "the drained nodes' slots have a previous node");
        // Once the drain is over for this director's tables too, nothing is left behind.
        let _ = fresh.update(&all);
        let _ = fresh.update(&set_of(&[]));
        prop_assert_eq!(fresh.live_ids(), (BTreeSet::new(), BTreeSet::new(), BTreeSet::new()));
    }
}

#[test]
fn a_director_without_draining_nodes_builds_one_table() {
    let mut tables = Tables::new(config());
    let plan = tables.update(&set_of(&[(0, 0b111, 0)]));
    let puts = plan.ops.iter().filter(|op| matches!(op, Op::PutTable { .. })).count();
    assert_eq!(puts, 1);
    let plan = tables.update(&with_drained(0b111, 0, 0b010));
    let tables_put: Vec<bool> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::PutTable { previous, .. } => Some(previous.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(tables_put, [true], "a known VIP changes once, with previous nodes");
}

/// Previous nodes expire (`--previous-node-ttl-seconds`): after the TTL the VIP gets a table of
/// the same nodes that names none (no slot changes node), the gone node leaves the maps, and
/// every step is make-before-break in the fake maps. Time is a fake clock.
#[test]
fn previous_nodes_expire_after_the_ttl() {
    let ttl = std::time::Duration::from_secs(60);
    let mut tables = Tables::new(DirectorConfig { previous_ttl: Some(ttl), ..config() });
    let mut maps = FakeMaps::default();
    let apply = |plan: &switchyard_director::Plan, maps: &mut FakeMaps| {
        for op in &plan.ops {
            maps.apply(op);
        }
    };
    let t0 = std::time::Instant::now();
    let gone = IpAddr::from([10, 0, 0, 2]);
    apply(&tables.update(&set_of(&[(0, 0b1111, 0)])), &mut maps);
    assert!(tables.expire_previous(t0).ops.is_empty(), "no table names previous nodes yet");
    assert_eq!(tables.next_previous_expiry(), None);

    // node-2 leaves: its slots name it; the expiry clock starts at the first call after.
    apply(&tables.update(&set_of(&[(0, 0b1101, 0)])), &mut maps);
    assert!(tables.expire_previous(t0).ops.is_empty());
    assert_eq!(tables.next_previous_expiry(), Some(t0 + ttl));
    let named: Vec<_> = (0..251).map(|h| tables.choose(&vip_key(0), h).unwrap()).collect();
    assert!(named.iter().any(|c| c.previous.is_some()));
    let almost = tables.expire_previous(t0 + ttl - std::time::Duration::from_millis(1));
    assert!(almost.ops.is_empty(), "expired early: {:?}", almost.ops);
    assert!(maps.nodes.values().any(|a| *a == gone));

    let plan = tables.expire_previous(t0 + ttl);
    assert!(plan.moved_slots.is_empty() && plan.problems.is_empty(), "{plan:?}");
    assert!(plan.ops.iter().any(|op| matches!(op, Op::PutTable { previous: None, .. })));
    apply(&plan, &mut maps);
    for (h, before) in (0..251).zip(&named) {
        let now = tables.choose(&vip_key(0), h).unwrap();
        assert_eq!(
            (now.node.clone(), now.previous.clone()),
            (before.node.clone(), None),
            "slot {h}"
        );
    }
    assert!(!maps.nodes.values().any(|a| *a == gone), "node-2 still in the maps: {:?}", plan.ops);
    assert_eq!(tables.next_previous_expiry(), None);
    assert!(tables.expire_previous(t0 + ttl * 2).ops.is_empty(), "expired twice");

    // Without a TTL previous nodes stay until the next change.
    let mut forever = Tables::new(DirectorConfig { previous_ttl: None, ..config() });
    forever.update(&set_of(&[(0, 0b1111, 0)]));
    forever.update(&set_of(&[(0, 0b1101, 0)]));
    assert!(forever.expire_previous(t0 + ttl * 1000).ops.is_empty());
    assert!((0..251).any(|h| forever.choose(&vip_key(0), h).unwrap().previous.is_some()));
}

/// `mask` with the nodes of `joined` listed as joining (still serving), the nodes of `drained`
/// as draining: what the VIP set says while nodes join and drain.
fn with_changes(mask: u16, w: u8, drained: u16, joined: u16) -> VipSet {
    let mut set = with_drained(mask, w, drained);
    let vip = set.vips.get_mut(&vip_key(0)).unwrap();
    vip.joining = vip
        .nodes
        .iter()
        .filter(|n| {
            let i: u16 = n.name.trim_start_matches("node-").parse().unwrap();
            joined & (1 << (i - 1)) != 0
        })
        .cloned()
        .collect();
    set
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Issue 17 (f) for a node *addition*: a director that starts while nodes join (and others
    /// drain) derives from the VIP set alone the previous nodes of a director that saw the
    /// change: same node and same previous node for 1,000 flows, the maps agreeing, every
    /// operation make-before-break on fresh maps.
    #[test]
    fn a_director_starting_while_nodes_join_names_the_same_previous_nodes(
        mask in 1u16..1024, w in any::<u8>(), joined in 1u16..1024, drained in 0u16..1024,
    ) {
        let joined = joined & mask;
        let drained = drained & mask & !joined;
        prop_assume!(joined != 0 && (joined | drained) != mask);
        // Saw it happen: first the nodes before (the joining ones absent, the draining ones
        // serving), then the change.
        let mut old = Tables::new(config());
        let _ = old.update(&set_of(&[(0, mask & !joined, w)]));
        let during = with_changes(mask, w, drained, joined);
        let _ = old.update(&during);
        // Starts during the change.
        let mut fresh = Tables::new(config());
        let mut maps = FakeMaps::default();
        for op in &fresh.update(&during).ops {
            maps.apply(op);
        }
        let key = vip_key(0);
        let mut moved = 0;
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (old.choose(&key, h).unwrap(), fresh.choose(&key, h).unwrap());
            prop_assert_eq!(&a.node, &b.node);
            let (pa, pb) = (a.previous.map(|p| p.1), b.previous.clone().map(|p| p.1));
            prop_assert_eq!(&pa, &pb);
            prop_assert_eq!(pb.map(|p| p.address), maps.lookup_previous(&key, h));
            prop_assert_eq!(Some(b.node.address), maps.lookup(&key, h));
            moved += usize::from(b.previous.is_some());
        }
        prop_assert!(moved > 0, "the joined nodes' slots have a previous node");
    }
}

/// Without the joining list (what a director knew before), a director that starts while a
/// node joins names no previous node for the joined node's slots: the seeding is what makes
/// the two agree.
#[test]
fn without_the_joining_list_a_fresh_director_names_no_previous_node() {
    let mut old = Tables::new(config());
    let _ = old.update(&set_of(&[(0, 0b011, 0)]));
    let during = with_changes(0b111, 0, 0, 0b100);
    let _ = old.update(&during);
    let mut blind = Tables::new(config());
    let mut unaware = during.clone();
    unaware.vips.get_mut(&vip_key(0)).unwrap().joining.clear();
    let _ = blind.update(&unaware);
    let key = vip_key(0);
    let differ = (0..1_000u64)
        .map(|h| h.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .filter(|&h| old.choose(&key, h).unwrap().previous.is_some())
        .filter(|&h| blind.choose(&key, h).unwrap().previous.is_none())
        .count();
    assert!(differ > 0, "the old director names previous nodes the blind one does not");
}

/// The key of VIP 0's UDP twin ([`with_udp`]).
fn udp_twin() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 53, Protocol::Udp)
}

/// `set` with a UDP twin of VIP 0 (same nodes).
fn with_udp(set: &VipSet) -> VipSet {
    let mut set = set.clone();
    let tcp = set.vips[&vip_key(0)].clone();
    set.vips.insert(udp_twin(), tcp);
    set
}

/// A UDP VIP names as previous nodes only nodes known to be alive (serving or draining): a
/// node that left otherwise (deleted, not ready, down by health) may be dead, and the UDP
/// second chance would lose every new flow of its slots there (a TCP SYN never goes there).
/// The TCP twin names every previous node.
#[test]
fn a_udp_vip_names_only_previous_nodes_that_are_alive() {
    let udp_key = udp_twin();
    let previous_of = |tables: &Tables, key: &FrontendKey| -> BTreeSet<String> {
        (0..1_000u64)
            .filter_map(|h| tables.choose(key, h.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .filter_map(|c| c.previous.map(|p| p.1.name.to_string()))
            .collect()
    };
    // node-2 leaves outright (not draining): TCP names it, UDP does not (both may name a node
    // that stays, for the few slots Maglev moves between the others).
    let mut tables = Tables::new(config());
    let mut maps = FakeMaps::default();
    for set in [with_udp(&set_of(&[(0, 0b111, 0)])), with_udp(&set_of(&[(0, 0b101, 0)]))] {
        for op in &tables.update(&set).ops {
            maps.apply(op);
        }
    }
    assert!(previous_of(&tables, &vip_key(0)).contains("node-2"));
    assert!(!previous_of(&tables, &udp_key).contains("node-2"));
    let gone = IpAddr::from([10, 0, 0, 2]);
    assert!((0..1_000u64).any(|h| maps.lookup_previous(&vip_key(0), h) == Some(gone)));
    assert!((0..1_000u64).all(|h| maps.lookup_previous(&udp_key, h) != Some(gone)));
    // node-2 drains (alive): both name it.
    let mut tables = Tables::new(config());
    let _ = tables.update(&with_udp(&set_of(&[(0, 0b111, 0)])));
    let _ = tables.update(&with_udp(&with_drained(0b111, 0, 0b010)));
    for key in [vip_key(0), udp_key] {
        assert!(previous_of(&tables, &key).contains("node-2"), "{key}");
    }
}

/// A UDP VIP stops naming a draining node as a previous node once that node is no longer
/// listed as draining (dead by the health probes, or deleted): its table is rebuilt with the
/// same nodes and slots (no flow changes node), the dead node's slots name no previous node,
/// the other previous nodes stay, and each operation is make-before-break. The TCP twin keeps
/// naming it (a TCP flow there is lost either way, and a SYN never goes there).
#[test]
fn a_udp_vip_stops_naming_a_draining_node_that_dies() {
    let udp_key = udp_twin();
    let previous_of = |tables: &Tables, key: &FrontendKey| -> BTreeMap<u64, String> {
        (0..2_000u64)
            .map(|h| h.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .filter_map(|h| Some((h, tables.choose(key, h)?.previous?.1.name.to_string())))
            .collect()
    };
    let mut tables = Tables::new(config());
    let mut maps = FakeMaps::default();
    // node-2 and node-4 drain, both alive: both VIPs name them.
    let draining = with_udp(&with_drained(0b1111, 0, 0b1010));
    for set in [with_udp(&set_of(&[(0, 0b1111, 0)])), draining.clone()] {
        for op in &tables.update(&set).ops {
            maps.apply(op);
        }
    }
    let udp_before = previous_of(&tables, &udp_key);
    assert!(udp_before.values().any(|n| n == "node-2"));
    assert!(udp_before.values().any(|n| n == "node-4"));
    let choices = |tables: &Tables, key: &FrontendKey| -> Vec<String> {
        (0..2_000u64)
            .map(|h| tables.choose(key, h.wrapping_mul(0x9e37_79b9_7f4a_7c15)).unwrap())
            .map(|c| c.node.name.to_string())
            .collect()
    };
    let (udp_nodes, tcp_nodes) = (choices(&tables, &udp_key), choices(&tables, &vip_key(0)));
    // node-2 dies: no longer draining (what `health::serving_set` leaves out).
    let mut died = draining.clone();
    for vip in died.vips.values_mut() {
        vip.draining.retain(|n| &*n.name != "node-2");
    }
    let plan = tables.update(&died);
    for op in &plan.ops {
        maps.apply(op);
    }
    let udp_after = previous_of(&tables, &udp_key);
    assert!(!udp_after.values().any(|n| n == "node-2"), "UDP still names the dead node");
    let kept: BTreeMap<u64, String> =
        udp_before.into_iter().filter(|(_, n)| n != "node-2").collect();
    assert_eq!(udp_after, kept, "the other previous nodes stay");
    assert!(previous_of(&tables, &vip_key(0)).values().any(|n| n == "node-2"), "TCP names it");
    assert_eq!(choices(&tables, &udp_key), udp_nodes, "no UDP flow changes node");
    assert_eq!(choices(&tables, &vip_key(0)), tcp_nodes, "no TCP flow changes node");
    let dead = IpAddr::from([10, 0, 0, 2]);
    assert!((0..2_000u64).all(|h| maps.lookup_previous(&udp_key, h) != Some(dead)));
    assert!((0..2_000u64).any(|h| maps.lookup_previous(&vip_key(0), h) == Some(dead)));
    for h in 0..2_000u64 {
        for key in [udp_key, vip_key(0)] {
            let choice = tables.choose(&key, h).unwrap();
            assert_eq!(maps.lookup(&key, h), Some(choice.node.address));
            assert_eq!(maps.lookup_previous(&key, h), choice.previous.map(|p| p.1.address));
        }
    }
    // Nothing more to do: the same set again changes nothing.
    assert!(tables.update(&died).ops.is_empty());
}
