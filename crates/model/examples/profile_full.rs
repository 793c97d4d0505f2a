//! Builds the benchmark cluster's full desired state a few times and prints wall time per build;
//! run under `perf stat` / `perf record` to see CPU time on a loaded machine.
//! `cargo run --release -p switchyard-model --example profile_full -- [ROUNDS]`

use std::time::Instant;

use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};

fn main() {
    let rounds: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let spec = SyntheticCluster {
        services: 10_000,
        endpoints_per_service: 25,
        endpoints_per_slice: 10,
        nodes: 100,
        zones: 3,
        namespaces: 50,
    };
    let state = synthetic::generate(&spec);
    let mut kept = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let model = NodeModel::from_state(synthetic::config(), &state);
        let elapsed = start.elapsed();
        println!(
            "full build: {:>8.1} ms, {} frontends",
            elapsed.as_secs_f64() * 1e3,
            model.desired().len()
        );
        kept.push(model);
    }
}
