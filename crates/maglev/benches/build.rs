//! Table build time, ours next to the `maglev` crate (crates.io) in the same run:
//! `cargo bench -p switchyard-maglev`. Both build an unweighted table of N backends at size M.
//! The peer materialises the N × M permutation (N × M × 8 bytes: 524 MB at M = 65537, N = 1000),
//! so its slow cases run with few, flat samples.
//!
//! Two groups: `maglev_build` in wall-clock time (criterion's default) and `maglev_build_cpu` in
//! the benchmark thread's CPU time, which leaves out the time the thread waits for a core: on a
//! shared machine with a load average well above the core count, wall time measures the queue.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use switchyard_maglev::{Backend, MaglevConfig, Seed, Table, TableSize};
use switchyard_testing::cpu_time::ThreadCpuTime;

const CASES: [(u32, usize); 4] = [(65_537, 10), (65_537, 100), (65_537, 1000), (16_381, 1000)];

fn identities(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.{}.{}.1:8080", i / 256, i % 256)).collect()
}

fn table_build<T: Measurement + 'static>(c: &mut Criterion<T>, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    group.sampling_mode(SamplingMode::Flat);
    for (m, n) in CASES {
        let names = identities(n);
        let label = format!("M={m}/N={n}");

        let backends: Vec<Backend> =
            names.iter().map(|name| Backend::new(name.as_str(), 1)).collect();
        let config = MaglevConfig {
            size: TableSize::new(m).expect("benchmark sizes are prime"),
            seed: Seed::DEFAULT,
        };
        group.sample_size(50).measurement_time(Duration::from_secs(5));
        group.bench_with_input(BenchmarkId::new("switchyard", &label), &backends, |b, backends| {
            b.iter(|| Table::build(&config, black_box(backends)).expect("buildable"));
        });

        // The peer is one to two orders of magnitude slower; keep its run short.
        group.sample_size(10).measurement_time(Duration::from_secs(if n >= 1000 { 20 } else { 5 }));
        group.bench_with_input(BenchmarkId::new("maglev-crate", &label), &names, |b, names| {
            b.iter(|| {
                maglev::Maglev::with_capacity(
                    black_box(names).iter().map(String::as_str),
                    m as usize,
                )
            });
        });
    }
    group.finish();
}

fn wall_time(c: &mut Criterion) {
    table_build(c, "maglev_build");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    table_build(c, "maglev_build_cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(wall, cpu);
