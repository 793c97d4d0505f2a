//! Long fuzz run of the model's incremental apply: `fuzz_apply [CHANGES] [SEED]` (default
//! 1,000,000 changes). Exits 1 on a panic or a state that differs from a full recomputation.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let changes = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000u64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_a991_u64);
    // Panics are counted by the run; their messages would drown the figures.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let report = switchyard_testing::fuzz_model::run(seed, changes);
    let elapsed = started.elapsed();
    println!("changes applied     {}", report.changes);
    println!("  deletions         {}", report.deletes);
    println!("seed                {seed:#x}");
    println!("sequences           {}", report.sequences);
    println!("full comparisons    {}", report.comparisons);
    println!("mismatches          {}", report.mismatches);
    println!("max frontends       {}", report.max_frontends);
    println!("max refusals        {}", report.max_refusals);
    println!("panics              {}", report.panics);
    for failure in &report.failures {
        println!("  failing sequence:\n{failure}");
    }
    println!(
        "time                {:.1} s ({:.0} changes/s)",
        elapsed.as_secs_f64(),
        report.changes as f64 / elapsed.as_secs_f64()
    );
    if report.panics > 0 || report.mismatches > 0 {
        std::process::exit(1);
    }
}
