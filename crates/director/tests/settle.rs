//! When a director that starts for the first time may announce its VIPs (issue 17 (a), (f)):
//! the settle gate ([`switchyard_director::settle`]), and the two facts it reads — tables that
//! disagree with the newest published record, nodes whose health is not settled.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use proptest::prelude::*;
use switchyard_director::health::{Checker, HealthConfig, Outcome, Target};
use switchyard_director::previous::Record;
use switchyard_director::settle::{Facts, Settle, SettleConfig, Verdict, Wait};
use switchyard_director::{DirectorConfig, NodeTarget, Tables, Vip, VipSet};
use switchyard_maglev::TableSize;
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

const DELAY: Duration = Duration::from_secs(5);
const MAX_WAIT: Duration = Duration::from_secs(60);

fn config() -> SettleConfig {
    SettleConfig { delay: DELAY, max_wait: MAX_WAIT }
}

fn vip_key() -> FrontendKey {
    FrontendKey::new(IpAddr::from([192, 0, 2, 10]), 80, Protocol::Tcp)
}

fn facts(disagreeing: bool, unsettled: bool) -> Facts {
    Facts {
        disagreeing: if disagreeing { vec![vip_key()] } else { Vec::new() },
        unsettled: if unsettled { vec![Arc::from("node-1")] } else { Vec::new() },
    }
}

#[test]
fn a_first_start_waits_for_the_window_then_announces() {
    let t0 = Instant::now();
    let mut gate = Settle::new(config(), false);
    assert!(!gate.is_open());
    assert_eq!(gate.next_check(t0), None, "no window before the first reading");
    assert_eq!(gate.check(t0, &Facts::default()), Verdict::Waiting(vec![Wait::Window(DELAY)]));
    assert_eq!(gate.next_check(t0), Some(t0 + DELAY));
    let later = t0 + Duration::from_secs(3);
    assert_eq!(
        gate.check(later, &Facts::default()),
        Verdict::Waiting(vec![Wait::Window(Duration::from_secs(2))])
    );
    assert_eq!(gate.check(t0 + DELAY, &Facts::default()), Verdict::Open);
    assert!(gate.is_open());
    assert_eq!(gate.next_check(t0 + DELAY), None);
    // Latched: a record or a node that disagrees later does not withdraw.
    assert_eq!(gate.check(t0 + DELAY * 2, &facts(true, true)), Verdict::Open);
}

#[test]
fn after_the_window_it_waits_for_the_records_and_health_at_most_max_wait() {
    let t0 = Instant::now();
    let mut gate = Settle::new(config(), false);
    let _ = gate.check(t0, &facts(true, false));
    let end = t0 + DELAY;
    let verdict = gate.check(end, &facts(true, true));
    assert_eq!(
        verdict,
        Verdict::Waiting(vec![
            Wait::Records(vec![vip_key()]),
            Wait::Health(vec![Arc::from("node-1")])
        ])
    );
    if let Verdict::Waiting(waits) = &verdict {
        let text = switchyard_director::settle::describe(waits);
        assert_eq!(
            text,
            "tables not yet naming the published previous nodes of 192.0.2.10:80/TCP; health \
             of node-1 not settled"
        );
    }
    assert_eq!(gate.next_check(end), Some(end + MAX_WAIT));
    assert!(
        !gate.check(end + MAX_WAIT - Duration::from_millis(1), &facts(false, true)).announces()
    );
    assert_eq!(
        gate.check(end + MAX_WAIT, &facts(false, true)),
        Verdict::GaveUp(vec![Wait::Health(vec![Arc::from("node-1")])])
    );
    assert!(gate.is_open());
}

#[test]
fn a_restarted_director_announces_at_once_and_a_zero_delay_only_waits_for_the_facts() {
    let t0 = Instant::now();
    let mut restarted = Settle::new(config(), true);
    assert!(restarted.is_open());
    assert_eq!(restarted.check(t0, &facts(true, true)), Verdict::Open);
    let mut zero = Settle::new(SettleConfig { delay: Duration::ZERO, max_wait: MAX_WAIT }, false);
    assert_eq!(
        zero.check(t0, &facts(false, true)),
        Verdict::Waiting(vec![Wait::Health(vec![Arc::from("node-1")])])
    );
    assert_eq!(zero.check(t0, &Facts::default()), Verdict::Open);
}

proptest! {
    /// Whatever the facts and whenever the checks: nothing is announced before the window
    /// ends, nor while a fact holds until the longest wait is over; once announced, always;
    /// a check after the window without a fact announces; the due check never lies beyond
    /// the moment the gate would give up.
    #[test]
    fn the_gate_opens_exactly_when_settled(
        delay_ms in 0u64..10_000,
        steps in prop::collection::vec((0u64..8_000, any::<bool>(), any::<bool>()), 1..40),
    ) {
        let config = SettleConfig { delay: Duration::from_millis(delay_ms), max_wait: MAX_WAIT };
        let mut gate = Settle::new(config, false);
        let mut now = Instant::now();
        let mut started = None;
        let mut announced = false;
        for (gap, disagreeing, unsettled) in steps {
            now += Duration::from_millis(gap);
            let due = gate.next_check(now);
            prop_assert_eq!(due.is_none(), started.is_none() || announced);
            let verdict = gate.check(now, &facts(disagreeing, unsettled));
            let window_end = *started.get_or_insert(now) + config.delay;
            if announced {
                prop_assert_eq!(&verdict, &Verdict::Open);
                continue;
            }
            if let Some(due) = due {
                prop_assert!(due <= window_end + MAX_WAIT);
            }
            let settled = !disagreeing && !unsettled;
            match &verdict {
                Verdict::Open => prop_assert!(now >= window_end && settled),
                Verdict::GaveUp(_) => prop_assert!(now >= window_end + MAX_WAIT && !settled),
                Verdict::Waiting(_) => {
                    prop_assert!(now < window_end || (!settled && now < window_end + MAX_WAIT));
                }
            }
            announced = verdict.announces();
            prop_assert_eq!(gate.is_open(), announced);
        }
    }
}

fn node(i: u8) -> NodeTarget {
    NodeTarget {
        name: Arc::from(format!("node-{i}")),
        address: IpAddr::from([10, 0, 0, i]),
        weight: 1,
    }
}

fn vip_set(nodes: &[u8]) -> VipSet {
    let vip = Vip {
        service: ObjectKey::new("default", "web"),
        policy: TrafficPolicy::Cluster,
        nodes: nodes.iter().map(|&i| node(i)).collect(),
        health_check_node_port: None,
        draining: Vec::new(),
        joining: Vec::new(),
    };
    VipSet { vips: [(vip_key(), vip)].into(), problems: Vec::new() }
}

/// Director `a` saw node-2 deleted and publishes it as the previous node; a director `b` that
/// started before the record arrived disagrees with it until its tables take the record over.
#[test]
fn tables_disagree_with_a_newer_record_until_they_take_it_over() {
    let config = DirectorConfig {
        table_size: TableSize::new(251).unwrap(),
        previous_ttl: Some(Duration::from_secs(600)),
        ..DirectorConfig::default()
    };
    let (now, wall) = (Instant::now(), UNIX_EPOCH + Duration::from_millis(1_765_000_000_000));
    let (before, after) = (vip_set(&[1, 2, 3]), vip_set(&[1, 3]));
    let mut a = Tables::new(config);
    let _ = a.update(&before);
    let _ = a.update(&after);
    let _ = a.expire_previous_at(now, wall);
    let record = Record::decode(&a.record(wall).encode().0).unwrap();
    assert!(!record.generations.is_empty());

    let mut b = Tables::new(config);
    b.set_records(Vec::new(), wall, &after);
    let _ = b.update(&after);
    assert_eq!(b.disagreeing(), Vec::<FrontendKey>::new(), "no record: nothing to disagree with");
    b.set_records(vec![record.clone()], wall + Duration::from_secs(1), &after);
    assert_eq!(b.disagreeing(), vec![vip_key()], "the record names node-2, b's table does not");
    let _ = b.update(&after);
    let _ = b.expire_previous_at(now, wall);
    assert_eq!(b.disagreeing(), Vec::<FrontendKey>::new(), "taken over");
    // `a` agrees with its own record.
    a.set_records(vec![record], wall, &after);
    assert_eq!(a.disagreeing(), Vec::<FrontendKey>::new());
}

/// A node's health is settled once probed and while its outcomes agree with its state.
#[test]
fn health_is_unsettled_until_probed_and_while_outcomes_point_the_other_way() {
    let config = HealthConfig::default();
    let target =
        Target { node: Arc::from("node-1"), address: IpAddr::from([10, 0, 0, 1]), port: 10256 };
    let mut checker = Checker::new(config);
    let t0 = Instant::now();
    checker.set_targets([target.clone()], t0);
    let names = |c: &Checker| c.unsettled().iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&checker), ["node-1"], "never probed");
    let mut now = t0;
    let probe = |checker: &mut Checker, outcome: Outcome, now: &mut Instant| {
        let (probes, _) = checker.poll(*now);
        assert_eq!(probes.len(), 1);
        checker.record(&target, probes[0].seq, outcome, *now);
        *now += config.interval;
    };
    probe(&mut checker, Outcome::Healthy, &mut now);
    assert!(names(&checker).is_empty(), "answered and in service");
    probe(&mut checker, Outcome::Failed("refused".into()), &mut now);
    assert_eq!(names(&checker), ["node-1"], "failing while in service");
    for _ in 1..config.unhealthy_threshold {
        probe(&mut checker, Outcome::Failed("refused".into()), &mut now);
    }
    assert!(names(&checker).is_empty(), "out of service, still failing");
    probe(&mut checker, Outcome::Healthy, &mut now);
    assert_eq!(names(&checker), ["node-1"], "answering while out of service");
    for _ in 1..config.healthy_threshold {
        probe(&mut checker, Outcome::Healthy, &mut now);
    }
    assert!(names(&checker).is_empty(), "back in service");
}
