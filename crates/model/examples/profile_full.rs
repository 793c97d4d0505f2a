//! Builds the benchmark cluster's full desired state a few times and prints wall time and heap
//! allocations per build; run under `perf stat` / `perf record` to see CPU time on a loaded
//! machine. `cargo run --release -p switchyard-model --example profile_full -- [ROUNDS]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};

/// Counts allocations so changes to the model can be judged independently of machine load.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    for _ in 0..rounds {
        // Lower bound for comparison: touch every endpoint and parse its address, nothing else.
        let start = Instant::now();
        let mut parsed = 0_usize;
        for slice in state.endpoint_slices.values() {
            for endpoint in &slice.endpoints {
                let address =
                    endpoint.addresses.first().and_then(|a| a.parse::<std::net::IpAddr>().ok());
                parsed += usize::from(address.is_some() && endpoint.node_name.is_some());
            }
        }
        println!("parse only: {:>8.1} ms, {parsed} endpoints", start.elapsed().as_secs_f64() * 1e3);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        let model = NodeModel::from_state(synthetic::config(), &state);
        let elapsed = start.elapsed();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        println!(
            "full build: {:>8.1} ms, {allocations} allocations, {} frontends",
            elapsed.as_secs_f64() * 1e3,
            model.desired().len()
        );
        // Dropping is not part of a build.
        std::mem::forget(model);
    }
}
