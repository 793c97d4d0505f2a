//! Long fuzz run of the BGP decoder and session: `fuzz_decoder [INPUTS] [SEED]` (default 1,000,000).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let inputs = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000u64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_b9b0_u64);
    let started = Instant::now();
    let report = switchyard_bgp::fuzz::run(seed, inputs);
    let elapsed = started.elapsed();
    println!("inputs              {}", report.inputs);
    println!("seed                {seed:#x}");
    println!("decoded (2 codecs)  {}", report.decoded);
    println!("incomplete          {}", report.incomplete);
    for ((code, subcode), count) in &report.rejected {
        println!("rejected {code}/{subcode:<9} {count}");
    }
    println!("session resets      {}", report.session_resets);
    println!("roundtrip mismatch  {}", report.roundtrip_mismatches);
    println!("panics              {}", report.panics);
    for input in &report.panic_inputs {
        println!("  panic input {input}");
    }
    println!(
        "time                {:.1} s ({:.0} inputs/s)",
        elapsed.as_secs_f64(),
        report.inputs as f64 / elapsed.as_secs_f64()
    );
    if report.panics > 0 || report.roundtrip_mismatches > 0 {
        std::process::exit(1);
    }
}
