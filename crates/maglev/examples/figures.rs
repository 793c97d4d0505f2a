//! Prints the balance, disruption and build-time figures quoted in docs/maglev.md:
//! `cargo run --release -p switchyard-maglev --example figures`.

use std::time::Instant;

use switchyard_maglev::{Backend, MaglevConfig, Seed, Table, TableSize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("## Balance, equal weights (share of slots relative to the ideal M/N)");
    println!("{:>7} {:>6} {:>7} {:>10} {:>10}", "M", "N", "M/N", "max", "min");
    for (m, n) in [
        (65_537, 10),
        (65_537, 100),
        (65_537, 600),
        (16_381, 100),
        (16_381, 160),
        (65_537, 1000),
        (10_007, 1000),
        (16_381, 1638),
        (65_537, 6553),
    ] {
        let table = build(m, &backends(n, |_| 1))?;
        let (max, min) = extremes(&table);
        println!("{m:>7} {n:>6} {:>7.1} {:>+9.3}% {:>+9.3}%", f64::from(m) / n as f64, max, min);
    }

    println!();
    println!("## Balance, weights 1,2,3,4 repeating (slots relative to M * w / W)");
    println!("{:>7} {:>6} {:>10} {:>10} {:>16}", "M", "N", "max", "min", "max |error| slots");
    for (m, n) in [(65_537, 100), (65_537, 1000), (16_381, 100), (16_381, 1000)] {
        let table = build(m, &backends(n, |i| (i % 4) as u32 + 1))?;
        let (max, min) = extremes(&table);
        println!("{m:>7} {n:>6} {max:>+9.3}% {min:>+9.3}% {:>16.2}", worst_slot_error(&table));
    }

    println!();
    println!("## Disruption: slots moved when one backend leaves or joins (ideal: M/N)");
    println!(
        "{:>7} {:>6} {:>7} {:>10} {:>12} {:>12}",
        "M", "N", "change", "ideal", "moved mean", "moved max"
    );
    for (m, n) in [
        (65_537, 10),
        (65_537, 100),
        (65_537, 655),
        (65_537, 1000),
        (16_381, 100),
        (16_381, 160),
        (16_381, 1000),
    ] {
        let all = backends(n + 1, |_| 1);
        let base = build(m, &all[..n])?;
        let trials = 20.min(n);
        let mut removals = Vec::new();
        let mut additions = Vec::new();
        for k in 0..trials {
            let victim = k * n / trials;
            let mut rest = all[..n].to_vec();
            rest.remove(victim);
            removals.push(Table::diff_count(&base, &build(m, &rest)?)? as f64);
            // Joining: the table of n backends plus a newcomer named after trial k.
            let mut more = all[..n].to_vec();
            more.push(Backend::new(format!("192.168.{}.{}:8080", k / 256, k % 256), 1));
            additions.push(Table::diff_count(&base, &build(m, &more)?)? as f64);
        }
        for (change, moved, ideal) in [
            ("remove", &removals, f64::from(m) / n as f64),
            ("add", &additions, f64::from(m) / (n + 1) as f64),
        ] {
            let mean = moved.iter().sum::<f64>() / moved.len() as f64;
            let max = moved.iter().copied().fold(0.0, f64::max);
            println!(
                "{m:>7} {n:>6} {change:>7} {ideal:>10.1} {mean:>7.1} ({:>+5.1}%) {max:>5.0} ({:>+5.1}%)",
                100.0 * (mean / ideal - 1.0),
                100.0 * (max / ideal - 1.0)
            );
        }
    }

    println!();
    println!("## Build time ({BUILD_RUNS} builds each; min is the least disturbed)");
    println!("{:>7} {:>6} {:>10} {:>10} {:>10}", "M", "N", "weights", "min", "median");
    type Case = (u32, usize, &'static str, fn(usize) -> u32);
    let cases: [Case; 7] = [
        (65_537, 10, "1", |_| 1),
        (65_537, 100, "1", |_| 1),
        (65_537, 1000, "1", |_| 1),
        (16_381, 1000, "1", |_| 1),
        (65_537, 1000, "1..4", |i| (i % 4) as u32 + 1),
        (65_537, 1000, "10:1", |i| if i == 0 { 10 } else { 1 }),
        (65_537, 1000, "1000:1", |i| if i == 0 { 1000 } else { 1 }),
    ];
    for (m, n, weights, weight) in cases {
        let set = backends(n, weight);
        let config = MaglevConfig { size: TableSize::new(m)?, seed: Seed::DEFAULT };
        let mut times: Vec<f64> = (0..BUILD_RUNS)
            .map(|_| {
                let start = Instant::now();
                let built = Table::build(&config, &set);
                std::hint::black_box(&built);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{m:>7} {n:>6} {weights:>10} {:>7.3} ms {:>7.3} ms",
            times[0],
            times[BUILD_RUNS / 2]
        );
    }
    Ok(())
}

const BUILD_RUNS: usize = 200;

fn backends(n: usize, weight: impl Fn(usize) -> u32) -> Vec<Backend> {
    (0..n).map(|i| Backend::new(format!("10.{}.{}.1:8080", i / 256, i % 256), weight(i))).collect()
}

fn build(m: u32, backends: &[Backend]) -> Result<Table, Box<dyn std::error::Error>> {
    let config = MaglevConfig { size: TableSize::new(m)?, seed: Seed::DEFAULT };
    Ok(Table::build(&config, backends)?.table)
}

/// The largest and smallest share relative to each backend's ideal, in percent.
fn extremes(table: &Table) -> (f64, f64) {
    let total_weight: f64 = table.backends().iter().map(|b| f64::from(b.weight())).sum();
    let m = f64::from(table.size().get());
    let deviations = table.slot_counts().into_iter().zip(table.backends()).map(|(count, b)| {
        100.0 * (f64::from(count) / (m * f64::from(b.weight()) / total_weight) - 1.0)
    });
    deviations.fold((f64::MIN, f64::MAX), |(max, min), d| (max.max(d), min.min(d)))
}

/// The largest gap, in slots, between a backend's slots and `M * w / W`.
fn worst_slot_error(table: &Table) -> f64 {
    let total_weight: f64 = table.backends().iter().map(|b| f64::from(b.weight())).sum();
    let m = f64::from(table.size().get());
    table
        .slot_counts()
        .into_iter()
        .zip(table.backends())
        .map(|(count, b)| (f64::from(count) - m * f64::from(b.weight()) / total_weight).abs())
        .fold(0.0, f64::max)
}
