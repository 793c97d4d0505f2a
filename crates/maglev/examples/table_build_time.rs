//! Table build time at M = 65537 for N = 10 and N = 1000 equal-weight backends, quick enough to
//! run two builds of the crate side by side: `cargo run --release -p switchyard-maglev --example
//! table_build_time -- [BUILDS]` (default 300). Prints the minimum (the least disturbed build), the
//! 10th percentile and the median, and a checksum of the table so two builds can be shown to
//! fill the same slots.

use std::time::Instant;

use switchyard_maglev::{Backend, MaglevConfig, Seed, Table, TableSize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let builds: usize = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 300,
    };
    let config = MaglevConfig { size: TableSize::new(65_537)?, seed: Seed::DEFAULT };
    for n in [10usize, 1000] {
        let backends: Vec<Backend> =
            (0..n).map(|i| Backend::new(format!("10.{}.{}.1:8080", i / 256, i % 256), 1)).collect();
        let mut times: Vec<f64> = (0..builds.max(1))
            .map(|_| {
                let start = Instant::now();
                let built = Table::build(&config, &backends);
                std::hint::black_box(&built);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let table = Table::build(&config, &backends)?.table;
        let checksum: u64 =
            (1u64..).zip(table.slots()).map(|(position, &slot)| position * u64::from(slot)).sum();
        println!(
            "M=65537 N={n:<5} min {:.3} ms  p10 {:.3} ms  median {:.3} ms  checksum {checksum}",
            times[0],
            times[times.len() / 10],
            times[times.len() / 2],
        );
    }
    Ok(())
}
