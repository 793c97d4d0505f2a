//! The directors' node health machine (`switchyard_director::health`) under a fake clock: no
//! root, no sockets. A simulated node answers probes after a latency, or answers 503, or goes
//! silent; the checker must take it out within `removal_bound`, only after
//! `unhealthy_threshold` failures in a row, and bring it back only after `healthy_threshold`
//! successes in a row (hysteresis).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchyard_director::health::{
    Checker, Health, HealthConfig, Outcome, Probe, Target, probe_port, serving_set, targets,
};
use switchyard_director::{NodeTarget, Vip, VipSet};
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

const STEP: Duration = Duration::from_millis(10);

fn target(node: &str, port: u16) -> Target {
    Target { node: Arc::from(node), address: "10.100.1.2".parse().unwrap(), port }
}

/// Runs the checker on one target from 0 to `until` in steps of 10 ms; `node` says how the
/// simulated node answers a probe sent at a time (`None`: never, else after a latency with an
/// outcome). Returns the transitions with their times and the send times of every probe.
fn simulate(
    config: HealthConfig,
    until: Duration,
    node: &dyn Fn(Duration) -> Option<(Duration, Outcome)>,
) -> (Vec<(Duration, Health, Health)>, Vec<Duration>) {
    let t0 = Instant::now();
    let t = target("node1", 10256);
    let mut checker = Checker::new(config);
    checker.set_targets([t.clone()], t0);
    let mut pending: Vec<(Duration, Probe, Outcome)> = Vec::new();
    let mut transitions = Vec::new();
    let mut sent = Vec::new();
    let mut now = Duration::ZERO;
    while now <= until {
        // Answers due by now, in order.
        pending.sort_by_key(|(at, _, _)| *at);
        while pending.first().is_some_and(|(at, _, _)| *at <= now) {
            let (_, probe, outcome) = pending.remove(0);
            if let Some(tr) = checker.record(&probe.target, probe.seq, outcome, t0 + now) {
                transitions.push((now, tr.from, tr.to));
            }
        }
        let (probes, trs) = checker.poll(t0 + now);
        transitions.extend(trs.into_iter().map(|tr| (now, tr.from, tr.to)));
        for probe in probes {
            sent.push(now);
            if let Some((latency, outcome)) = node(now) {
                pending.push((now + latency, probe, outcome));
            }
        }
        now += STEP;
    }
    (transitions, sent)
}

fn config() -> HealthConfig {
    HealthConfig::default()
}

#[test]
fn defaults_remove_a_silent_node_within_three_seconds() {
    let c = config();
    c.validate().unwrap();
    assert!(c.removal_bound() <= Duration::from_secs(3), "{:?}", c.removal_bound());
}

#[test]
fn a_node_that_goes_silent_is_down_within_the_bound_and_not_before_the_threshold() {
    let c = config();
    let dies = Duration::from_millis(3_030);
    let (transitions, sent) = simulate(c, Duration::from_secs(8), &|at| {
        (at < dies).then(|| (Duration::from_millis(5), Outcome::Healthy))
    });
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let (when, from, to) = transitions[0];
    assert_eq!((from, to), (Health::Up, Health::Down));
    assert!(when <= dies + c.removal_bound() + STEP, "down at {when:?}, died at {dies:?}");
    // Not before unhealthy_threshold probes went unanswered.
    let unanswered = sent.iter().filter(|&&s| s >= dies && s < when).count();
    assert!(unanswered >= c.unhealthy_threshold as usize, "{unanswered} probes: {sent:?}");
    // One probe per interval, never two at once.
    for pair in sent.windows(2) {
        assert!(pair[1] - pair[0] >= c.timeout.min(c.interval), "{sent:?}");
        assert!(pair[1] - pair[0] <= c.interval + STEP, "{sent:?}");
    }
}

#[test]
fn a_refused_node_is_down_after_the_threshold_and_back_after_the_healthy_threshold() {
    let c = config();
    let (down_from, up_from) = (Duration::from_secs(1), Duration::from_secs(4));
    let (transitions, _) = simulate(c, Duration::from_secs(7), &|at| {
        let outcome = if at >= down_from && at < up_from {
            Outcome::Failed("connection refused".into())
        } else {
            Outcome::Healthy
        };
        Some((Duration::from_millis(2), outcome))
    });
    let kinds: Vec<(Health, Health)> = transitions.iter().map(|&(_, f, t)| (f, t)).collect();
    assert_eq!(kinds, [(Health::Up, Health::Down), (Health::Down, Health::Up)], "{transitions:?}");
    let (down_at, up_at) = (transitions[0].0, transitions[1].0);
    // The third refused probe: ≈ 1.0 + 2 × 0.5 s; back after the second good one.
    assert!(down_at >= down_from + c.interval * (c.unhealthy_threshold - 1), "{down_at:?}");
    assert!(down_at <= down_from + c.interval * c.unhealthy_threshold + STEP, "{down_at:?}");
    assert!(up_at >= up_from + c.interval * (c.healthy_threshold - 1), "{up_at:?}");
    assert!(up_at <= up_from + c.interval * c.healthy_threshold + STEP, "{up_at:?}");
}

#[test]
fn a_node_answering_503_is_draining() {
    let (transitions, _) = simulate(config(), Duration::from_secs(4), &|at| {
        let outcome =
            if at >= Duration::from_secs(1) { Outcome::Unavailable } else { Outcome::Healthy };
        Some((Duration::from_millis(1), outcome))
    });
    let kinds: Vec<(Health, Health)> = transitions.iter().map(|&(_, f, t)| (f, t)).collect();
    assert_eq!(kinds, [(Health::Up, Health::Draining)]);
}

#[test]
fn one_good_answer_between_failures_does_not_bring_a_node_back() {
    // Down, then alternating good and bad answers: never two good ones in a row.
    let (transitions, sent) = simulate(config(), Duration::from_secs(8), &|at| {
        let n = at.as_millis() / 500;
        let outcome = if at >= Duration::from_secs(2) && n % 2 == 0 {
            Outcome::Healthy
        } else {
            Outcome::Failed("refused".into())
        };
        Some((Duration::from_millis(1), outcome))
    });
    assert!(sent.len() > 12, "{sent:?}");
    let kinds: Vec<(Health, Health)> = transitions.iter().map(|&(_, f, t)| (f, t)).collect();
    assert_eq!(kinds, [(Health::Up, Health::Down)], "{transitions:?}");
}

#[test]
fn a_late_answer_to_a_timed_out_probe_is_ignored() {
    let c = config();
    let t0 = Instant::now();
    let t = target("node1", 10256);
    let mut checker = Checker::new(c);
    checker.set_targets([t.clone()], t0);
    let (probes, _) = checker.poll(t0);
    let first = probes[0].clone();
    // Time out three probes in a row: Down.
    let mut now = t0;
    for _ in 0..c.unhealthy_threshold {
        now += c.interval;
        let _ = checker.poll(now);
    }
    assert_eq!(checker.health(&t), Some(Health::Down));
    // The first probe's answer arrives now: stale, changes nothing.
    assert_eq!(checker.record(&t, first.seq, Outcome::Healthy, now), None);
    assert_eq!(checker.health(&t), Some(Health::Down));
    let status = checker.status_of(&t).unwrap();
    assert_eq!(status.successes, 0);
}

#[test]
fn targets_start_up_and_removed_targets_are_forgotten() {
    let t0 = Instant::now();
    let (a, b) = (target("a", 1), target("b", 1));
    let mut checker = Checker::new(config());
    checker.set_targets([a.clone(), b.clone()], t0);
    assert_eq!(checker.health(&a), Some(Health::Up));
    assert!(checker.serving(&a));
    let (probes, _) = checker.poll(t0);
    assert_eq!(probes.len(), 2);
    checker.set_targets([a.clone()], t0);
    let stale = probes.iter().find(|p| p.target == b).unwrap();
    assert_eq!(checker.record(&b, stale.seq, Outcome::Failed("x".into()), t0), None);
    assert_eq!(checker.health(&b), None);
    assert_eq!(checker.status().len(), 1);
}

#[test]
fn invalid_settings_are_refused() {
    let bad = HealthConfig { timeout: Duration::from_secs(2), ..config() };
    assert!(bad.validate().is_err());
    assert!(HealthConfig { unhealthy_threshold: 0, ..config() }.validate().is_err());
    assert!(HealthConfig { interval: Duration::ZERO, ..config() }.validate().is_err());
}

fn vip(policy: TrafficPolicy, hcnp: Option<u16>, nodes: &[&str]) -> Vip {
    Vip {
        service: ObjectKey::new("e2e", "web"),
        policy,
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeTarget {
                name: Arc::from(*n),
                address: IpAddr::from([10, 100, i as u8 + 1, 2]),
                weight: 1,
            })
            .collect(),
        health_check_node_port: hcnp,
        draining: Vec::new(),
        joining: Vec::new(),
    }
}

fn set(vips: Vec<(u16, Vip)>) -> VipSet {
    let vips = vips
        .into_iter()
        .map(|(port, v)| (FrontendKey::new("10.96.80.1".parse().unwrap(), port, Protocol::Tcp), v))
        .collect::<BTreeMap<_, _>>();
    VipSet { vips, problems: Vec::new() }
}

/// Takes `target` Down by timing out its probes.
fn fail(checker: &mut Checker, now: &mut Instant, down: &[Target]) {
    for _ in 0..=checker.config().unhealthy_threshold {
        let (probes, _) = checker.poll(*now);
        for p in probes {
            let outcome = if down.contains(&p.target) {
                Outcome::Failed("refused".into())
            } else {
                Outcome::Healthy
            };
            checker.record(&p.target, p.seq, outcome, *now);
        }
        *now += checker.config().interval;
    }
}

#[test]
fn serving_set_drops_down_nodes_probes_local_vips_on_their_health_check_node_port() {
    let cluster = vip(TrafficPolicy::Cluster, None, &["n1", "n2", "n3"]);
    let local = vip(TrafficPolicy::Local, Some(31000), &["n1", "n2"]);
    assert_eq!(probe_port(&cluster, 10256), 10256);
    assert_eq!(probe_port(&local, 10256), 31000);
    let s = set(vec![(80, cluster), (81, local)]);
    let all = targets(&s, 10256);
    assert_eq!(all.len(), 5, "{all:?}");
    let t0 = Instant::now();
    let mut checker = Checker::new(config());
    checker.set_targets(all.iter().cloned(), t0);
    let n2_agent = all.iter().find(|t| &*t.node == "n2" && t.port == 10256).unwrap().clone();
    let mut now = t0;
    fail(&mut checker, &mut now, std::slice::from_ref(&n2_agent));
    assert_eq!(checker.health(&n2_agent), Some(Health::Down));
    let serving = serving_set(&s, &checker, 10256);
    let names = |port: u16| -> Vec<String> {
        serving
            .vips
            .iter()
            .find(|(k, _)| k.port == port)
            .unwrap()
            .1
            .nodes
            .iter()
            .map(|n| n.name.to_string())
            .collect()
    };
    // The Cluster VIP loses n2; the Local VIP asks n2's health check node port, which answers.
    assert_eq!(names(80), ["n1", "n3"]);
    assert_eq!(names(81), ["n1", "n2"]);
    // Down (refused) is not draining: maybe dead, so a UDP VIP names it as no previous node.
    assert!(serving.vips.values().all(|v| v.draining.is_empty()));

    // n3's agent answers 503 (it drains): out of the Cluster VIP too, listed as draining.
    let n3_agent = all.iter().find(|t| &*t.node == "n3" && t.port == 10256).unwrap().clone();
    for _ in 0..=checker.config().unhealthy_threshold {
        let (probes, _) = checker.poll(now);
        for p in probes {
            let outcome = if p.target == n3_agent {
                Outcome::Unavailable
            } else if p.target == n2_agent {
                Outcome::Failed("refused".into())
            } else {
                Outcome::Healthy
            };
            checker.record(&p.target, p.seq, outcome, now);
        }
        now += checker.config().interval;
    }
    assert_eq!(checker.health(&n3_agent), Some(Health::Draining));
    let serving = serving_set(&s, &checker, 10256);
    let cluster = serving.vips.values().find(|v| v.policy == TrafficPolicy::Cluster).unwrap();
    let listed =
        |list: &[NodeTarget]| -> Vec<String> { list.iter().map(|n| n.name.to_string()).collect() };
    assert_eq!(listed(&cluster.nodes), ["n1"]);
    assert_eq!(listed(&cluster.draining), ["n3"]);
}

#[test]
fn a_vip_whose_nodes_all_fail_keeps_them_all() {
    let s = set(vec![(80, vip(TrafficPolicy::Cluster, None, &["n1", "n2"]))]);
    let all: Vec<Target> = targets(&s, 10256).into_iter().collect();
    let t0 = Instant::now();
    let mut checker = Checker::new(config());
    checker.set_targets(all.iter().cloned(), t0);
    let mut now = t0;
    fail(&mut checker, &mut now, &all);
    assert!(all.iter().all(|t| checker.health(t) == Some(Health::Down)));
    let serving = serving_set(&s, &checker, 10256);
    assert_eq!(serving, s, "fails open");
}

/// Draining nodes are probed too, and one whose probes fail is no longer listed as draining
/// (maybe dead: a UDP VIP must stop naming it as a previous node); a draining node that
/// answers (200 or 503) stays listed.
#[test]
fn draining_nodes_are_probed_and_a_dead_one_is_no_longer_draining() {
    let mut web = vip(TrafficPolicy::Cluster, None, &["n1", "n2", "n3", "n4"]);
    let drained: Vec<NodeTarget> = web.nodes.drain(2..).collect();
    web.draining = drained;
    let s = set(vec![(80, web)]);
    let all = targets(&s, 10256);
    let probed: Vec<&str> = all.iter().map(|t| &*t.node).collect();
    assert_eq!(probed, ["n1", "n2", "n3", "n4"], "draining n3 and n4 are probed");
    let t0 = Instant::now();
    let mut checker = Checker::new(config());
    checker.set_targets(all.iter().cloned(), t0);
    let n3 = all.iter().find(|t| &*t.node == "n3").unwrap().clone();
    let mut now = t0;
    fail(&mut checker, &mut now, std::slice::from_ref(&n3));
    assert_eq!(checker.health(&n3), Some(Health::Down));
    let serving = serving_set(&s, &checker, 10256);
    let web = serving.vips.values().next().unwrap();
    let listed =
        |list: &[NodeTarget]| -> Vec<String> { list.iter().map(|n| n.name.to_string()).collect() };
    assert_eq!(listed(&web.nodes), ["n1", "n2"]);
    assert_eq!(listed(&web.draining), ["n4"], "dead n3 is no longer draining");
}

/// What the checker's state must be after a sequence of settled outcomes (the reference).
fn reference(config: &HealthConfig, outcomes: &[Outcome]) -> Health {
    let mut health = Health::Up;
    let (mut ok, mut bad) = (0u32, 0u32);
    for o in outcomes {
        match o {
            Outcome::Healthy => {
                ok += 1;
                bad = 0;
                if ok >= config.healthy_threshold {
                    health = Health::Up;
                }
            }
            other => {
                bad += 1;
                ok = 0;
                let to =
                    if *other == Outcome::Unavailable { Health::Draining } else { Health::Down };
                if health != Health::Up || bad >= config.unhealthy_threshold {
                    health = to;
                }
            }
        }
    }
    health
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any mix of answers, silences and latencies: the state is always the reference's
    /// (thresholds counted over settled probes in order), at most one probe is in flight,
    /// and a stale answer never counts.
    #[test]
    fn the_state_follows_the_thresholds_over_any_answers(
        script in prop::collection::vec((0u8..4, 1u64..700), 1..60),
        unhealthy in 1u32..5,
        healthy in 1u32..5,
    ) {
        let c = HealthConfig { unhealthy_threshold: unhealthy, healthy_threshold: healthy, ..config() };
        let t0 = Instant::now();
        let t = target("node1", 10256);
        let mut checker = Checker::new(c);
        checker.set_targets([t.clone()], t0);
        let mut settled: Vec<Outcome> = Vec::new();
        let mut pending: Vec<(Duration, Probe, Outcome)> = Vec::new();
        let mut in_flight: Option<(Duration, u64)> = None;
        let mut next = 0usize;
        let mut now = Duration::ZERO;
        let end = c.interval * (script.len() as u32 + 2);
        while now <= end {
            pending.sort_by_key(|(at, p, _)| (*at, p.seq));
            while pending.first().is_some_and(|(at, _, _)| *at <= now) {
                let (_, probe, outcome) = pending.remove(0);
                // Still in flight here means still in flight there: the model times probes
                // out in the same poll as the checker.
                let counted = in_flight.is_some_and(|(_, seq)| seq == probe.seq);
                let tr = checker.record(&probe.target, probe.seq, outcome.clone(), t0 + now);
                if counted {
                    settled.push(outcome);
                    in_flight = None;
                } else {
                    prop_assert_eq!(tr, None, "a stale answer changed the state");
                }
            }
            let (probes, _) = checker.poll(t0 + now);
            if let Some((sent, _)) = in_flight && now >= sent + c.timeout {
                // The checker timed it out in this poll.
                settled.push(Outcome::Failed("timeout".into()));
                in_flight = None;
            }
            prop_assert!(probes.len() <= 1);
            for probe in probes {
                prop_assert!(in_flight.is_none(), "two probes in flight");
                in_flight = Some((now, probe.seq));
                let (kind, latency) = script.get(next).copied().unwrap_or((0, 1));
                next += 1;
                let outcome = match kind {
                    0 => Some(Outcome::Healthy),
                    1 => Some(Outcome::Unavailable),
                    2 => Some(Outcome::Failed("refused".into())),
                    _ => None,
                };
                if let Some(outcome) = outcome {
                    pending.push((now + Duration::from_millis(latency), probe, outcome));
                }
            }
            prop_assert_eq!(checker.health(&t), Some(reference(&c, &settled)), "after {:?}", settled);
            now += STEP;
        }
    }
}
