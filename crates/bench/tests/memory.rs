//! Privileged: item 4's kernel-memory method on a tiny cluster — a peer's ruleset is charged
//! to a memory cgroup of our own and released with its namespace; a running `switchyard agent`
//! (when built) serves the cluster from manifests and is measured; nothing is left behind.

use std::path::Path;
use std::time::Duration;

use switchyard_bench::memory;
use switchyard_bench::programming::Peer;
use switchyard_bench::synthetic::{self, Shape};

/// The tests look for each other's cgroups as leftovers: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SHAPE: Shape = Shape { services: 30, endpoints_per_service: 3 };

fn leftovers() -> Vec<String> {
    let mine = format!("sybench-mem-{}-", std::process::id());
    std::fs::read_dir(memory::MEMCG_ROOT)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&mine))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_peers_ruleset_is_charged_to_our_cgroup_and_released_with_its_namespace() {
    if !switchyard_lab::require_root(
        "a_peers_ruleset_is_charged_to_our_cgroup_and_released_with_its_namespace",
    ) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let state = synthetic::cluster(SHAPE);
    let measured = memory::peer_kernel_memory(Peer::Nftables, &state);
    assert_eq!(measured.error, None, "{measured:?}");
    let kernel = measured.kernel_bytes.expect("measured");
    assert!(kernel > 0, "{measured:?}");
    assert!(measured.kernel_after_removal_bytes.expect("measured") < kernel, "{measured:?}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn a_running_agent_is_measured_and_stopped() {
    if !switchyard_lab::require_root("a_running_agent_is_measured_and_stopped") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let Some(agent) = ["debug", "release"]
        .iter()
        .map(|profile| root.join(profile).join("switchyard"))
        .find(|p| p.exists())
    else {
        eprintln!(
            "\n*** a_running_agent_is_measured_and_stopped: no switchyard binary under {} \
             (cargo build -p switchyard); NOT TESTED ***\n",
            root.display()
        );
        return;
    };
    let (agent, kernel) = memory::measure_agent(SHAPE, &agent, Duration::from_secs(60));
    assert_eq!(agent.error, None, "{agent:?}");
    assert!(agent.rss_bytes > 0 && agent.peak_rss_bytes >= agent.rss_bytes, "{agent:?}");
    assert_eq!(kernel.error, None, "{kernel:?}");
    assert!(kernel.kernel_bytes.expect("measured") > 0, "{kernel:?}");
    let dir = std::env::temp_dir().join(format!("sybench-agent-{}", std::process::id()));
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
