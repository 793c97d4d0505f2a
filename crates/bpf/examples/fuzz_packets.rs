//! Long fuzz run of the per-packet programs through BPF_PROG_TEST_RUN (root):
//! `fuzz_packets [FRAMES] [SEED]` (default 1,000,000 frames, each run through XDP, TC ingress
//! and TC egress). Exits 1 when a run failed, a well-formed frame left with a bad length or
//! checksum, XDP passed a frame on changed, or a drop had no reason. See `switchyard_testing::fuzz_packets`.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let frames = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000u64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_9a7c_u64);
    let started = Instant::now();
    // A thread of its own: it moves into a network namespace of its own, which the fixture
    // checks by comparing the thread's namespace with the process's (the main thread's).
    let Ok(report) =
        std::thread::spawn(move || switchyard_testing::fuzz_packets::run(seed, frames)).join()
    else {
        eprintln!("the fuzz thread panicked");
        std::process::exit(2);
    };
    let elapsed = started.elapsed();
    println!("frames              {frames}");
    println!("seed                {seed:#x}");
    println!("program runs        {}", report.runs);
    println!("  well-formed input {}", report.well_formed_inputs);
    println!("  changed frame     {}", report.changed);
    println!("verdicts            {:?}", report.verdicts);
    println!("drops (TC_ACT_SHOT) {}", report.shots());
    println!("XDP runs            {}", report.xdp_runs);
    println!("  verdicts          {:?}", report.xdp_verdicts);
    println!("  forwarded changed {}", report.xdp_changed);
    println!("drops (XDP_DROP)    {}", report.xdp_drops());
    println!("drops counted       {}", report.drops_counted);
    println!("refused: IP header cut short {}", report.refused_short);
    println!("kernel errors       {}", report.errors);
    println!("bad outputs         {}", report.bad_outputs);
    for failure in &report.failures {
        println!("  {failure}");
    }
    println!(
        "time                {:.1} s ({:.0} runs/s)",
        elapsed.as_secs_f64(),
        report.runs as f64 / elapsed.as_secs_f64()
    );
    if !report.clean() {
        std::process::exit(1);
    }
}
