//! Measures how long the default topology (3 nodes, 6 pods, 1 client) takes to build and to tear
//! down. Needs root. `cargo run -p switchyard-lab --example build_time [ROUNDS]`

use std::time::{Duration, Instant};

use switchyard_lab::{Lab, Topology};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(10);
    let topology = Topology::default();
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let lab = Lab::up(&topology)?;
        up.push(started.elapsed());
        let started = Instant::now();
        lab.down()?;
        down.push(started.elapsed());
    }
    let nodes = topology.nodes.len();
    let pods: usize = topology.nodes.iter().map(|n| n.pods.len()).sum();
    println!(
        "topology: {nodes} nodes, {pods} pods, {} clients; {} rounds",
        topology.clients.len(),
        up.len()
    );
    println!("up:   {}", stats(&mut up));
    println!("down: {}", stats(&mut down));
    Ok(())
}

fn stats(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    )
}
