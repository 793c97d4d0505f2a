//! A director that starts for the first time (no pins) takes over the previous-node records
//! the other directors publish (issue 17 (f)): whatever the node-set history — nodes added,
//! drained, undrained, deleted outright, weights changed, time passing up to and beyond the
//! previous-node TTL — a director starting from the published records names the same node and
//! the same previous node for every flow as one that ran throughout, and its previous nodes
//! expire at the same moment. The records go through their encoding (the annotation's text).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use switchyard_director::previous::{self, Generation, MAX_RECORD_BYTES, Record};
use switchyard_director::{DirectorConfig, NodeTarget, Tables, Vip, VipSet};
use switchyard_maglev::TableSize;
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

mod fake_maps;
use fake_maps::FakeMaps;

const TTL: Duration = Duration::from_secs(600);

fn config() -> DirectorConfig {
    DirectorConfig {
        table_size: TableSize::new(251).unwrap(),
        previous_ttl: Some(TTL),
        ..DirectorConfig::default()
    }
}

fn tcp() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 80, Protocol::Tcp)
}

fn udp() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 80, Protocol::Udp)
}

fn target(i: u8, w: u8) -> NodeTarget {
    NodeTarget {
        name: Arc::from(format!("node-{i}")),
        address: IpAddr::from([10, 0, 0, i]),
        weight: 1 + u32::from((w >> (i % 4)) & 1),
    }
}

/// A TCP and a UDP VIP served by the nodes of `mask` (node-1 .. node-8) but those of
/// `drained`, which drain; weights from the bits of `w`.
fn set(mask: u8, drained: u8, w: u8) -> VipSet {
    let (draining, nodes): (Vec<u8>, Vec<u8>) = (1..=8u8)
        .filter(|i| mask & (1 << (i - 1)) != 0)
        .partition(|i| drained & (1 << (i - 1)) != 0);
    let vip = Vip {
        service: ObjectKey::new("default", "web"),
        policy: TrafficPolicy::Cluster,
        nodes: nodes.into_iter().map(|i| target(i, w)).collect(),
        health_check_node_port: None,
        draining: draining.into_iter().map(|i| target(i, w)).collect(),
        joining: Vec::new(),
    };
    VipSet { vips: [(tcp(), vip.clone()), (udp(), vip)].into(), problems: Vec::new() }
}

/// (node, previous node) names of 1,000 flows per VIP.
type Choices = BTreeMap<(FrontendKey, u64), (Option<Arc<str>>, Option<Arc<str>>)>;

fn choices(tables: &Tables) -> Choices {
    let mut out = BTreeMap::new();
    for key in [tcp(), udp()] {
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let choice = tables.choose(&key, h);
            let node = choice.as_ref().map(|c| c.node.name.clone());
            let previous = choice.and_then(|c| c.previous).map(|p| p.1.name);
            out.insert((key, h), (node, previous));
        }
    }
    out
}

/// A clock: the same moment as an `Instant` (the tables' own) and on the wall (records).
#[derive(Clone, Copy)]
struct Clock {
    now: Instant,
    wall: SystemTime,
}

impl Clock {
    fn start() -> Self {
        // Whole milliseconds: the records keep milliseconds.
        Clock { now: Instant::now(), wall: UNIX_EPOCH + Duration::from_millis(1_765_000_000_000) }
    }
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.wall += by;
    }
}

/// What a director publishes, through the annotation's text.
fn published(tables: &Tables, clock: Clock) -> Record {
    let (text, left_out) = tables.record(clock.wall).encode();
    assert_eq!(left_out, 0);
    Record::decode(&text).unwrap()
}

/// A director that starts at `clock` on `set` with the published `records`.
fn first_start(records: Vec<Record>, set: &VipSet, clock: Clock) -> Tables {
    let mut tables = Tables::new(config());
    tables.set_records(records, clock.wall, set);
    let _ = tables.update(set);
    let _ = tables.expire_previous_at(clock.now, clock.wall);
    tables
}

fn step(tables: &mut Tables, set: &VipSet, clock: Clock) {
    let _ = tables.update(set);
    let _ = tables.expire_previous_at(clock.now, clock.wall);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Director `a` sees the whole history; director `b` starts for the first time at step
    /// `join`, once `a` published that step's record or (`early`) before, getting the record
    /// later (so it publishes too); director `c` starts at the end from
    /// both records, read in either order. `b` and `c` must name what `a` names, and expire
    /// it when `a` does.
    #[test]
    fn a_first_time_director_names_what_one_that_ran_throughout_names(
        history in prop::collection::vec((1u8.., any::<u8>(), any::<u8>(), 0u64..400), 2..6),
        join in any::<prop::sample::Index>(),
        reversed in any::<bool>(),
        early in any::<bool>(),
    ) {
        let sets: Vec<(VipSet, Duration)> = history
            .iter()
            .map(|&(mask, drained, w, gap)| (set(mask, drained & mask, w), Duration::from_secs(gap)))
            .collect();
        let join = 1 + join.index(sets.len() - 1);
        let mut clock = Clock::start();
        let mut a = Tables::new(config());
        let mut b = None;
        for (i, (s, gap)) in sets.iter().enumerate() {
            clock.advance(*gap);
            // `early`: `b` starts before `a` published the change, and gets the record then.
            if i == join && early {
                b = Some(first_start(vec![published(&a, clock)], s, clock));
            }
            step(&mut a, s, clock);
            if i == join && early {
                let b = b.as_mut().unwrap();
                let nodes = |t: &Tables| -> Vec<_> { choices(t).into_values().map(|c| c.0).collect() };
                let before = nodes(b);
                b.set_records(vec![published(&a, clock)], clock.wall, s);
                step(b, s, clock);
                prop_assert_eq!(nodes(b), before, "the late record moved a flow");
            } else if i == join {
                b = Some(first_start(vec![published(&a, clock)], s, clock));
            } else if let Some(b) = &mut b {
                step(b, s, clock);
            }
        }
        let b = b.unwrap();
        let last = &sets.last().unwrap().0;
        let mut records = vec![published(&a, clock), published(&b, clock)];
        if reversed {
            records.reverse();
        }
        let c = first_start(records, last, clock);
        let expected = choices(&a);
        let drains = !last.vips[&tcp()].draining.is_empty();
        // A VIP `a` names no previous node for (none yet, or expired) while a drain is on: a
        // new director seeds from the drain, as before the records (an extra second chance,
        // never another node).
        let unnamed: BTreeSet<FrontendKey> = [tcp(), udp()]
            .into_iter()
            .filter(|key| drains && expected.iter().all(|(k, v)| k.0 != *key || v.1.is_none()))
            .collect();
        for (what, tables) in [("b", &b), ("c", &c)] {
            let got = choices(tables);
            let differ: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got[k] != **v && !(unnamed.contains(&k.0) && got[k].0 == v.0))
                .map(|(k, v)| (k.0.protocol, v.clone(), got[k].clone()))
                .take(3)
                .collect();
            prop_assert!(differ.is_empty(), "{}: (expected, got) {:?}", what, differ);
            if unnamed.is_empty() {
                prop_assert_eq!(tables.next_previous_expiry(), a.next_previous_expiry(), "{}", what);
            }
        }
    }
}

/// Without the records, the same first start names no previous node for a deleted node's
/// slots (what the lab counts as resets); with them it does.
#[test]
fn without_the_records_a_first_time_director_names_no_previous_node() {
    let (s0, s1) = (set(0b111, 0, 0), set(0b101, 0, 0));
    let clock = Clock::start();
    let mut a = Tables::new(config());
    step(&mut a, &s0, clock);
    step(&mut a, &s1, clock);
    let named =
        |t: &Tables| choices(t).values().filter(|(_, p)| p.as_deref() == Some("node-2")).count();
    assert!(named(&a) > 0);
    assert_eq!(named(&first_start(Vec::new(), &s1, clock)), 0);
    assert_eq!(named(&first_start(vec![published(&a, clock)], &s1, clock)), named(&a));
}

/// Directors that published different generations for one VIP (one missed a change, they
/// disagree on a node's health): every new director chooses the same one, whatever the order
/// it reads them in — the newest, then the smallest; expired and other node lists never.
#[test]
fn every_new_director_chooses_the_same_generation() {
    let current: Vec<NodeTarget> = (1..=3).map(|i| target(i, 0)).collect();
    let fp = previous::fingerprint(&current);
    let generation = |built_ms: u64, left: u8, nodes: u64| Generation {
        nodes,
        built_ms,
        joined: Vec::new(),
        left: vec![target(left, 0)],
    };
    let record = |g: Generation| Record { generations: [(g, [tcp()].into())].into() };
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ms = |s: u64| s * 1_000;
    let records = [
        record(generation(ms(999_900), 4, fp)),
        record(generation(ms(999_950), 6, fp)),
        record(generation(ms(999_950), 5, fp)),
        record(generation(ms(999_990), 7, fp ^ 1)), // another node list
        record(generation(ms(999_000) - 1, 8, fp)), // expired
    ];
    let mut orders = vec![records.to_vec()];
    orders.push(records.iter().rev().cloned().collect());
    orders.push(vec![
        records[2].clone(),
        records[4].clone(),
        records[0].clone(),
        records[1].clone(),
    ]);
    for order in orders {
        let seed = previous::choose(&order, &tcp(), &current, now, Some(TTL)).unwrap();
        let mut want = current.clone();
        want.push(target(5, 0));
        assert_eq!(seed.previous, want);
        assert_eq!(seed.built, UNIX_EPOCH + Duration::from_millis(ms(999_950)));
        assert_eq!(previous::choose(&order, &udp(), &current, now, Some(TTL)), None);
    }
}

/// The record stays within its bound however many generations there are (the oldest are left
/// out), and a record that is not one is refused with the reason.
#[test]
fn the_record_is_bounded_and_checked() {
    let current: Vec<NodeTarget> = (1..=3).map(|i| target(i, 0)).collect();
    let mut record = Record::default();
    for i in 0..5_000u16 {
        let key = FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 1 + i, Protocol::Tcp);
        let previous = vec![target(1, 0), target(2, 0), target(4, 0)];
        let built = UNIX_EPOCH + Duration::from_millis(u64::from(i));
        record.generations.insert(previous::generation(&current, &previous, built), [key].into());
    }
    let (text, left_out) = record.encode();
    assert!(text.len() <= MAX_RECORD_BYTES, "{} bytes", text.len());
    assert!(left_out > 0);
    let back = Record::decode(&text).unwrap();
    assert_eq!(back.generations.len(), 5_000 - left_out);
    assert!(
        back.generations.keys().all(|g| g.built_ms >= u64::try_from(left_out).unwrap()),
        "the newest are kept"
    );
    // One generation: its size depends on the nodes that changed, not on M.
    let one = Record { generations: back.generations.into_iter().take(1).collect() };
    assert!(one.encode().0.len() < 200, "{}", one.encode().0);
    for bad in [
        "",
        "{}",
        r#"{"v":2,"generations":[]}"#,
        r#"{"v":1,"generations":[{"vips":["x"],"nodes":"1","built":1,"joined":[],"left":[]}]}"#,
        r#"{"v":1,"generations":[{"vips":[],"nodes":"zz","built":1,"joined":[],"left":[]}]}"#,
        r#"{"v":1,"generations":[{"vips":[],"nodes":"1","built":1,"joined":[],"left":[{"name":"n"}]}]}"#,
    ] {
        assert!(Record::decode(bad).is_err(), "{bad}");
    }
}

/// A director that started before the others published a change (a node deleted) names no
/// previous node for it at first; the record arriving later gives its VIPs tables of the same
/// slots naming the deleted node, make-before-break on the strict fake maps, and the maps
/// answer as the director that saw the change.
#[test]
fn a_record_that_arrives_after_the_start_is_taken_over_without_moving_a_flow() {
    let (s0, s1) = (set(0b111, 0, 0), set(0b101, 0, 0));
    let clock = Clock::start();
    let mut a = Tables::new(config());
    step(&mut a, &s0, clock);
    let early = published(&a, clock);
    step(&mut a, &s1, clock);
    let mut maps = FakeMaps::default();
    let mut b = Tables::new(config());
    let run = |b: &mut Tables, records: Vec<Record>, maps: &mut FakeMaps| {
        b.set_records(records, clock.wall, &s1);
        let plan = b.update(&s1);
        for op in plan.ops.iter().chain(&b.expire_previous_at(clock.now, clock.wall).ops) {
            maps.apply(op);
        }
    };
    run(&mut b, vec![early], &mut maps);
    let named =
        |t: &Tables| choices(t).values().filter(|(_, p)| p.as_deref() == Some("node-2")).count();
    assert_eq!(named(&b), 0, "nothing published yet for the deletion");
    let nodes_before: Vec<_> = choices(&b).into_values().map(|c| c.0).collect();
    run(&mut b, vec![published(&a, clock)], &mut maps);
    assert!(named(&a) > 0);
    assert_eq!(choices(&b), choices(&a), "the late record names what `a` names");
    assert_eq!(choices(&b).into_values().map(|c| c.0).collect::<Vec<_>>(), nodes_before);
    for key in [tcp(), udp()] {
        for hash in 0..1_000u64 {
            let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let choice = b.choose(&key, h).unwrap();
            assert_eq!(maps.lookup(&key, h), Some(choice.node.address));
            assert_eq!(maps.lookup_previous(&key, h), choice.previous.map(|p| p.1.address));
        }
    }
    // Taken over once: the same record again changes nothing.
    b.set_records(vec![published(&a, clock)], clock.wall, &s1);
    assert!(b.update(&s1).ops.is_empty());
}
