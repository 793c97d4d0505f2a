//! Test support shared by every crate's tests (a dev-dependency only, like linkerd's `app/test`).
//!
//! - [`objects`]: Service, EndpointSlice and Node objects that read like manifests.
//! - [`fake_api`]: a fake Kubernetes API server speaking the real list/watch protocol.
//! - [`BpfDir`], [`Cgroup`]: a bpffs and a cgroup of the test's own, removed on drop.
//! - [`socket_probe`]: crates/bpf's socket programs loaded, attached and probed by `sy-sockprobe`.
//! - [`e2e`]: the end-to-end harness of the `switchyard` binary (a lab with an agent per node).
//! - [`frames`]: crafted frames for BPF_PROG_TEST_RUN, and a parser that checks every checksum.
//! - [`sctp`]: SCTP INIT / INIT ACK over raw sockets, and a responder (no SCTP sockets here).
//! - [`director_fixture`]: the director's XDP program in a namespace of its own (tests, benches).
//! - [`director_lab`]: directors in that lab (`switchyard director`), their maps and counters.
//! - [`director_api`]: one fake API server for the lab's directors (their records).
//! - [`deploy`]: the capabilities deploy/'s DaemonSets grant, read from the manifests.
//! - [`cpu_time`]: a criterion measurement of the benchmark thread's CPU time.
//! - [`KillOnDrop`]: a process the test started, killed by its pid on drop.
//! - [`StopOnDrop`]: a scope's clients told to stop on drop, also when an assertion fails.
//! - [`fuzz_model`]: random change sequences for the model's incremental apply (fuzzing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failure fails the test"
)]

mod bpffs;
mod cgroup;
pub mod cpu_time;
pub mod deploy;
pub mod director_api;
pub mod director_fixture;
pub mod director_lab;
pub mod e2e;
pub mod fake_api;
pub mod frames;
pub mod fuzz_model;
pub mod fuzz_packets;
pub mod live_heap;
pub mod nodeport_fixture;
pub mod objects;
mod process;
pub mod sctp;
pub mod socket_probe;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

pub use bpffs::BpfDir;
pub use cgroup::Cgroup;
pub use process::KillOnDrop;

/// A binary of this workspace, found beside the running test or benchmark executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`): cargo builds a package's
/// binaries before its integration tests and benchmarks.
pub fn cargo_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test");
    let profile_dir =
        exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "{} not built (run the tests of the package that has it)", bin.display());
    bin
}

/// A name unique per process and call, so concurrent tests never share a cgroup or directory.
pub fn unique(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("sy-test-{}-{}-{test}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sets its flag when dropped: the clients a `std::thread::scope` runs until the flag is set
/// stop also when an assertion fails meanwhile — else the scope waits for them for ever and
/// the test hangs instead of failing.
#[derive(Debug)]
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
