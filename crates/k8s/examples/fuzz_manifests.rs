//! Long fuzz run of manifest reading: `fuzz_manifests [INPUTS] [SEED]` (default 1,000,000).
//! Parsing and the semantic refusal, validation, finding lines and the model's desired state
//! for every input; exits 1 on any panic.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let inputs = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000u64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_3a1f_u64);
    // Panics are counted by the run; their messages would drown the figures.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let report = switchyard_k8s::manifest::fuzz::run(seed, inputs);
    let elapsed = started.elapsed();
    println!("inputs              {}", report.inputs);
    println!("seed                {seed:#x}");
    println!("seed files          {}", report.seeds);
    println!("documents           {}", report.documents);
    println!("objects applied     {}", report.objects);
    println!("broken documents    {}", report.broken);
    println!("  refused (semantic) {}", report.refused);
    println!("validate findings   {}", report.findings);
    println!("panics              {}", report.panics);
    for input in &report.panic_inputs {
        println!("  panic input {input:?}");
    }
    println!(
        "time                {:.1} s ({:.0} inputs/s)",
        elapsed.as_secs_f64(),
        report.inputs as f64 / elapsed.as_secs_f64()
    );
    if report.panics > 0 {
        std::process::exit(1);
    }
}
