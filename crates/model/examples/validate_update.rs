//! Time to validate after a single-Service update at 10,000 Services (issue 18 item 5), both
//! ways in the same run: a whole-state `validate` (what the node agent did after every update)
//! and `IncrementalValidation::update`. Thread CPU time, median of the rounds, so that the ratio
//! holds on a machine shared with builds.
//! `cargo run --release -p switchyard-model --example validate_update -- [ROUNDS]`

use std::time::Duration;

use criterion::measurement::Measurement;
use k8s_openapi::api::core::v1::Service;
use switchyard_model::synthetic::{self, SyntheticCluster};
use switchyard_model::validate::{IncrementalValidation, ValidationOptions, validate};
use switchyard_model::{Change, ClusterState, ObjectKey};
use switchyard_testing::cpu_time::ThreadCpuTime;

/// The model benchmark's cluster: 10,000 Services × 25 endpoints, 100 nodes.
fn spec() -> SyntheticCluster {
    SyntheticCluster {
        services: 10_000,
        endpoints_per_service: 25,
        endpoints_per_slice: 10,
        nodes: 100,
        zones: 3,
        namespaces: 50,
    }
}

/// A new version of one Service: an externalIP that comes and goes with `round`.
fn changed(key: &ObjectKey, service: &Service, round: usize) -> Change {
    let mut service = service.clone();
    if let Some(spec) = service.spec.as_mut() {
        spec.external_ips = round.is_multiple_of(2).then(|| vec!["10.250.0.1".to_owned()]);
    }
    Change::Service(key.clone(), Some(Box::new(service)))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(21);
    let spec = spec();
    let options = ValidationOptions::default();
    let mut state: ClusterState = synthetic::generate(&spec);
    let key = synthetic::service_key(&spec, 4_242);
    let original = state.services[&key].clone();
    let mut incremental = IncrementalValidation::new(options);
    let everything =
        state.services.iter().map(|(k, s)| Change::Service(k.clone(), Some(s.clone().into())));
    let slices = state
        .endpoint_slices
        .iter()
        .map(|(k, s)| Change::EndpointSlice(k.clone(), Some(s.clone().into())));
    let nodes = state.nodes.iter().map(|(k, n)| Change::Node(k.clone(), Some(n.clone().into())));
    let changes: Vec<Change> = nodes.chain(everything).chain(slices).collect();
    incremental.update(changes);
    let clock = ThreadCpuTime;
    let (mut full, mut incremental_times) = (Vec::new(), Vec::new());
    let mut findings = (0, 0);
    for round in 0..rounds {
        let change = changed(&key, &original, round);
        let started = clock.start();
        state.apply(change.clone());
        findings.0 = validate(&state, &options).len();
        full.push(clock.end(started));
        // The incremental side runs many updates per round: one takes microseconds.
        let mut total = Duration::ZERO;
        for step in 0..100 {
            let change = changed(&key, &original, round * 100 + step);
            let started = clock.start();
            incremental.update([change]);
            total += clock.end(started);
        }
        incremental_times.push(total / 100);
        let change = changed(&key, &original, round);
        incremental.update([change]);
        findings.1 = incremental.findings().count();
    }
    assert_eq!(findings.0, findings.1, "both ways find the same");
    let (full, incremental) = (median(full), median(incremental_times));
    println!(
        "10,000 Services, {} objects, {rounds} rounds, {} findings: whole-state validate {:.3} ms, \
         incremental {:.1} µs per single-Service update (thread CPU, median): {:.0}× less",
        state.services.len() + state.endpoint_slices.len() + state.nodes.len(),
        findings.0,
        full.as_secs_f64() * 1e3,
        incremental.as_secs_f64() * 1e6,
        full.as_secs_f64() / incremental.as_secs_f64(),
    );
}
