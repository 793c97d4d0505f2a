//! Item 4: memory at 10,000 Services × 25 endpoints — BPF map memory (the kernel's `memlock`
//! figure per map, from `/proc/self/fdinfo`) and the resident memory of a process holding what
//! the agent holds (model, reconciler, loaded maps), measured in this process; the RSS of a
//! running `switchyard agent` serving the same cluster from a manifest directory; and the kernel
//! memory each data plane's state takes, by one method for all (see [`kernel_memory`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use switchyard_error::ErrorChain;
use switchyard_model::NodeModel;

use crate::error::BenchError;
use crate::model_input;
use crate::state::NodeConfig;
use crate::switchyard;
use crate::synthetic::{self, Shape};

/// One BPF map as the kernel accounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapMemory {
    pub id: u32,
    pub map_type: u32,
    pub max_entries: u64,
    pub memlock_bytes: u64,
}

/// What item 4 reports.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// A running `switchyard agent` serving the cluster from a manifest directory.
    pub agent: Option<AgentMemory>,
    /// Kernel memory of each data plane's state, the same way for all.
    pub kernel: Vec<KernelMemory>,
    pub services: usize,
    pub endpoints_per_service: usize,
    pub frontends: usize,
    pub map_operations: usize,
    pub maps: Vec<MapMemory>,
    pub map_memlock_bytes: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub programming_seconds: f64,
    /// Why the in-process part has no figures (the rest of the report may still have some).
    pub in_process_error: Option<String>,
}

impl MemoryReport {
    /// A report whose in-process part failed, for the agent and peer parts to fill in.
    pub fn in_process_failed(shape: Shape, error: String) -> Self {
        MemoryReport {
            agent: None,
            kernel: Vec::new(),
            services: shape.services,
            endpoints_per_service: shape.endpoints_per_service,
            frontends: 0,
            map_operations: 0,
            maps: Vec::new(),
            map_memlock_bytes: 0,
            rss_before_bytes: 0,
            rss_after_bytes: 0,
            programming_seconds: 0.0,
            in_process_error: Some(error),
        }
    }
}

/// Parses one `/proc/<pid>/fdinfo/<fd>` text; `None` when the descriptor is not a BPF map.
pub fn parse_map_fdinfo(text: &str) -> Option<MapMemory> {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect();
    Some(MapMemory {
        id: fields.get("map_id")?.parse().ok()?,
        map_type: fields.get("map_type")?.parse().ok()?,
        max_entries: fields.get("max_entries")?.parse().ok()?,
        memlock_bytes: fields.get("memlock")?.parse().ok()?,
    })
}

/// Every BPF map this process holds a descriptor to, once per map.
pub fn own_maps() -> Result<Vec<MapMemory>, BenchError> {
    let read_error =
        |source| BenchError::Write { path: "/proc/self/fdinfo (reading)".into(), cause: source };
    let mut maps = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").map_err(read_error)? {
        let Ok(entry) = entry else { continue };
        // Descriptors can close between listing and reading; those are skipped.
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        if let Some(map) = parse_map_fdinfo(&text) {
            maps.insert(map.id, map);
        }
    }
    Ok(maps.into_values().collect())
}

/// `VmRSS` of this process in bytes.
pub fn own_rss() -> Result<u64, BenchError> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(|source| {
        BenchError::Write { path: "/proc/self/status (reading)".into(), cause: source }
    })?;
    parse_vm_rss(&text)
        .ok_or_else(|| BenchError::Switchyard("no VmRSS line in /proc/self/status".into()))
}

/// The `VmRSS:  1234 kB` line of a status file, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Programs `shape` the way the agent does and measures memory once it is programmed.
pub fn measure(shape: Shape) -> Result<MemoryReport, BenchError> {
    let rss_before_bytes = own_rss()?;
    let state = synthetic::cluster(shape);
    let cluster = model_input::cluster_state(&NodeConfig::default(), &state);
    drop(state);
    let started = Instant::now();
    let model = NodeModel::from_state(model_input::proxy_config(), &cluster);
    // The agent keeps its source's objects too (the manifests or the watch cache): kept here.
    let mut programmed = switchyard::load(&model, "sybench-mem")?;
    let applied = programmed
        .reconciler
        .apply_full(programmed.datapath.maps_mut(), model.desired())
        .map_err(|e| BenchError::Switchyard(ErrorChain(&e).to_string()))?;
    let programming_seconds = started.elapsed().as_secs_f64();
    let maps = own_maps()?;
    let rss_after_bytes = own_rss()?;
    let report = MemoryReport {
        agent: None,
        kernel: Vec::new(),
        services: shape.services,
        endpoints_per_service: shape.endpoints_per_service,
        frontends: model.desired().len(),
        map_operations: applied.ops,
        map_memlock_bytes: maps.iter().map(|m| m.memlock_bytes).sum(),
        maps,
        rss_before_bytes,
        rss_after_bytes,
        programming_seconds,
        in_process_error: None,
    };
    drop(programmed);
    drop(cluster);
    Ok(report)
}

/// Markdown summary of a [`MemoryReport`].
pub fn markdown(report: &MemoryReport) -> String {
    let mut out = String::new();
    if let Some(error) = &report.in_process_error {
        out.push_str(&format!(
            "{} Services × {} endpoints. In-process measurement failed: {error}\n",
            report.services, report.endpoints_per_service
        ));
    } else {
        out.push_str(&in_process_markdown(report));
    }
    out.push_str(&rest_markdown(report));
    out
}

fn in_process_markdown(report: &MemoryReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = format!(
        "{} Services × {} endpoints ({} frontends, {} map operations, programmed in {:.2} s).\n\n\
         | map id | type | max entries | memlock MiB |\n|---|---|---|---|\n",
        report.services,
        report.endpoints_per_service,
        report.frontends,
        report.map_operations,
        report.programming_seconds
    );
    for map in &report.maps {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} |\n",
            map.id,
            map.map_type,
            map.max_entries,
            mib(map.memlock_bytes)
        ));
    }
    out.push_str(&format!(
        "\nBPF maps: {:.1} MiB in total. Process RSS: {:.1} MiB before, {:.1} MiB with the cluster \
         objects, model, reconciler and maps loaded.\n",
        mib(report.map_memlock_bytes),
        mib(report.rss_before_bytes),
        mib(report.rss_after_bytes)
    ));
    out
}

fn rest_markdown(report: &MemoryReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = String::new();
    if let Some(agent) = &report.agent {
        match &agent.error {
            Some(error) => {
                out.push_str(&format!("\nRunning agent (`{}`): {error}\n", agent.binary))
            }
            None => out.push_str(&format!(
                "\nRunning agent (`{} agent --manifests`, {} JSON files, {:.1} MiB): ready after \
                 {:.1} s; RSS {:.1} MiB (anonymous {:.1}, file pages {:.1}; peak {:.1} MiB \
                 during start-up).\n",
                agent.binary,
                agent.manifest_files,
                mib(agent.manifest_bytes),
                agent.ready_seconds,
                mib(agent.rss_bytes),
                mib(agent.rss_anon_bytes),
                mib(agent.rss_file_bytes),
                mib(agent.peak_rss_bytes)
            )),
        }
    }
    if !report.kernel.is_empty() {
        let opt = |b: Option<u64>| b.map_or("—".to_string(), |b| format!("{:.1}", mib(b)));
        let agent_kernel = report
            .kernel
            .iter()
            .find(|k| k.data_plane == "switchyard agent")
            .and_then(|k| k.kernel_bytes)
            .filter(|b| *b > 0);
        out.push_str(
            "\nKernel memory charged to a memory cgroup of our own that only the processes \
             programming the state ran in (`memory.kmem.usage_in_bytes`, cgroup v1):\n\n\
             | data plane | kernel MiB (loaded) | all charged MiB | kernel MiB after removal | kernel / switchyard agent | load seconds |\n|---|---|---|---|---|---|\n",
        );
        for k in &report.kernel {
            if let Some(error) = &k.error {
                let error = error.replace('\n', " ");
                out.push_str(&format!("| {} | {error} | | | | |\n", k.data_plane));
                continue;
            }
            let ratio = match (k.kernel_bytes, agent_kernel) {
                (Some(a), Some(b)) => format!("{:.2}×", a as f64 / b as f64),
                _ => "—".into(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {ratio} | {:.1} |\n",
                k.data_plane,
                opt(k.kernel_bytes),
                opt(k.usage_bytes),
                opt(k.kernel_after_removal_bytes),
                k.load_seconds
            ));
        }
    }
    out
}

/// One table of several shapes measured in one run: the running agent's RSS, and the kernel
/// memory of each data plane's state with its ratio to the agent's (issue 20 asks for Switchyard's
/// kernel memory at or under nftables' at every shape, and the agent's RSS at or under 100 MB at
/// 10,000 × 25).
pub fn shapes_markdown(reports: &[MemoryReport]) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let peers = ["nftables", "iptables-nft", "iptables-legacy"];
    let mut out = String::from(
        "| shape | agent RSS MiB (anonymous / file) | agent ready s | switchyard kernel MiB |",
    );
    for peer in peers {
        out.push_str(&format!(" {peer} kernel MiB (× switchyard) |"));
    }
    out.push_str("\n|---|---|---|---|");
    out.push_str(&"---|".repeat(peers.len()));
    out.push('\n');
    for report in reports {
        let kernel = |plane: &str| report.kernel.iter().find(|k| k.data_plane == plane);
        let ours = kernel("switchyard agent").and_then(|k| k.kernel_bytes).filter(|b| *b > 0);
        let rss = match &report.agent {
            Some(a) if a.error.is_none() => format!(
                "{:.1} ({:.1} / {:.1})",
                mib(a.rss_bytes),
                mib(a.rss_anon_bytes),
                mib(a.rss_file_bytes)
            ),
            Some(a) => a.error.clone().unwrap_or_default().replace('\n', " "),
            None => "—".into(),
        };
        let ready = report
            .agent
            .as_ref()
            .filter(|a| a.error.is_none())
            .map_or("—".into(), |a| format!("{:.1}", a.ready_seconds));
        let ours_text = ours.map_or("—".into(), |b| format!("{:.1}", mib(b)));
        out.push_str(&format!(
            "| {} × {} | {rss} | {ready} | {ours_text} |",
            report.services, report.endpoints_per_service
        ));
        for peer in peers {
            let cell = match kernel(peer) {
                None => "not run".into(),
                Some(k) => match (&k.error, k.kernel_bytes, ours) {
                    (Some(error), _, _) => error.replace('\n', " "),
                    (None, Some(b), Some(o)) => {
                        format!("{:.1} ({:.2}×)", mib(b), b as f64 / o as f64)
                    }
                    (None, Some(b), None) => format!("{:.1}", mib(b)),
                    (None, None, _) => "—".into(),
                },
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(plane: &str, mib: u64) -> KernelMemory {
        KernelMemory {
            data_plane: plane.into(),
            kernel_bytes: Some(mib * 1024 * 1024),
            usage_bytes: None,
            kernel_after_removal_bytes: Some(0),
            load_seconds: 1.0,
            error: None,
        }
    }

    #[test]
    fn the_shapes_table_has_a_row_per_shape_with_ratios_to_switchyard() {
        let shape = |services| Shape { services, endpoints_per_service: 25 };
        let mut small = MemoryReport::in_process_failed(shape(1000), "not run".into());
        small.kernel = vec![kernel("switchyard agent", 20), kernel("nftables", 25)];
        small.kernel.push(KernelMemory::failed("iptables-nft", "exit 4".into()));
        let mut large = MemoryReport::in_process_failed(shape(10_000), "not run".into());
        large.kernel = vec![kernel("switchyard agent", 100), kernel("nftables", 50)];
        let text = shapes_markdown(&[small, large]);
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].starts_with("| 1000 × 25 | — | — | 20.0 | 25.0 (1.25×) | exit 4 | not run |"),
            "{text}"
        );
        assert!(rows[1].starts_with("| 10000 × 25 | — | — | 100.0 | 50.0 (0.50×) |"), "{text}");
    }

    #[test]
    fn map_fdinfo_is_parsed_and_other_descriptors_are_not_maps() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2072\nmap_type:\t1\nkey_size:\t8\n\
                   value_size:\t16\nmax_entries:\t4096\nmap_flags:\t0x1\nmap_extra:\t0x0\n\
                   memlock:\t360448\nmap_id:\t42\nfrozen:\t0\n";
        let cases = [
            (
                map,
                Some(MapMemory { id: 42, map_type: 1, max_entries: 4096, memlock_bytes: 360_448 }),
            ),
            ("pos:\t0\nflags:\t02\nmnt_id:\t25\nino:\t1\n", None),
            ("prog_type:\t8\nprog_jited:\t1\nmemlock:\t4096\nprog_id:\t7\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_map_fdinfo(text), expected, "{text}");
        }
    }

    #[test]
    fn a_failed_in_process_part_still_reports_the_rest() {
        let shape = Shape { services: 10, endpoints_per_service: 2 };
        let mut report = MemoryReport::in_process_failed(shape, "map sy_slots: ENOMEM".into());
        report.kernel.push(KernelMemory {
            data_plane: "nftables".into(),
            kernel_bytes: Some(3 * 1024 * 1024),
            usage_bytes: Some(4 * 1024 * 1024),
            kernel_after_removal_bytes: Some(0),
            load_seconds: 1.0,
            error: None,
        });
        let text = markdown(&report);
        assert!(text.contains("In-process measurement failed: map sy_slots: ENOMEM"), "{text}");
        assert!(text.contains("| nftables | 3.0 | 4.0 | 0.0 | — | 1.0 |"), "{text}");
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let cases = [
            ("Name:\tx\nVmRSS:\t   12345 kB\nVmData:\t1 kB\n", Some(12_345 * 1024)),
            ("Name:\tx\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_vm_rss(text), expected, "{text}");
        }
    }
}

/// Root of the cgroup v1 memory hierarchy (this machine mounts memory as v1; the unified
/// hierarchy has no memory controller).
pub const MEMCG_ROOT: &str = "/sys/fs/cgroup/memory";

/// A memory cgroup of our own (`<MEMCG_ROOT>/sybench-mem-<pid>-<n>`), next to, not inside, any
/// cgroup someone else made; only processes we start join it. Removed on drop (its remaining
/// charges, if any, go to the parent, as the kernel does for every removed cgroup).
#[derive(Debug)]
pub struct MemCgroup {
    path: std::path::PathBuf,
}

impl MemCgroup {
    pub fn create() -> Result<Self, BenchError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::path::Path::new(MEMCG_ROOT)
            .join(format!("sybench-mem-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| BenchError::Write {
            path: path.display().to_string(),
            cause: source,
        })?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read(&self, file: &str) -> Result<u64, BenchError> {
        let path = self.path.join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Write {
            path: format!("{} (reading)", path.display()),
            cause: source,
        })?;
        text.trim().parse().map_err(|e| BenchError::Switchyard(format!("{}: {e}", path.display())))
    }

    /// Kernel memory charged here (`memory.kmem.usage_in_bytes`): slab, vmalloc, per-CPU and
    /// page tables the kernel allocated with `__GFP_ACCOUNT` for processes of this cgroup,
    /// which stays charged for as long as the objects live (after the process exited too).
    pub fn kernel_bytes(&self) -> Result<u64, BenchError> {
        self.read("memory.kmem.usage_in_bytes")
    }

    /// Everything charged here (`memory.usage_in_bytes`): user pages plus kernel memory.
    pub fn usage_bytes(&self) -> Result<u64, BenchError> {
        self.read("memory.usage_in_bytes")
    }

    /// Waits until the kernel charge stops falling (namespace teardown and map freeing are
    /// deferred to workqueues and RCU), at most `limit`.
    fn settled_kernel_bytes(&self, limit: Duration) -> Result<u64, BenchError> {
        let started = Instant::now();
        let mut last = self.kernel_bytes()?;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.kernel_bytes()?;
            if now >= last || started.elapsed() > limit {
                return Ok(now);
            }
            last = now;
        }
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Its processes have exited; the kernel may take a moment to notice.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Kernel memory one data plane's state for the cluster takes, charged to a memory cgroup of
/// our own that only the processes programming it ran in.
#[derive(Debug, Clone, Serialize)]
pub struct KernelMemory {
    /// `iptables-nft`, `iptables-legacy`, `nftables`, `switchyard agent`.
    pub data_plane: String,
    /// Kernel memory charged once the state is loaded (tools exited; the agent still running).
    pub kernel_bytes: Option<u64>,
    /// User pages plus kernel memory charged at the same moment (for the agent: its own pages
    /// too; for the peers' tools, which have exited, page cache they read).
    pub usage_bytes: Option<u64>,
    /// Kernel memory still charged after the state was removed (namespace deleted; agent
    /// stopped and its pins removed): near zero when what was charged was the state.
    pub kernel_after_removal_bytes: Option<u64>,
    /// Wall time of loading.
    pub load_seconds: f64,
    pub error: Option<String>,
}

impl KernelMemory {
    fn failed(data_plane: &str, error: String) -> Self {
        KernelMemory {
            data_plane: data_plane.to_owned(),
            kernel_bytes: None,
            usage_bytes: None,
            kernel_after_removal_bytes: None,
            load_seconds: 0.0,
            error: Some(error),
        }
    }
}

/// A running agent's memory.
#[derive(Debug, Clone, Serialize)]
pub struct AgentMemory {
    pub binary: String,
    pub manifest_files: usize,
    pub manifest_bytes: u64,
    /// From start until it logged "agent ready" (read, modelled, programmed, attached).
    pub ready_seconds: f64,
    pub rss_bytes: u64,
    /// `VmHWM`: the peak resident set during start-up.
    pub peak_rss_bytes: u64,
    /// `RssAnon` and `RssFile` at the same reading: the heap (and stacks) apart from the
    /// binary's and libraries' own pages, which no cut in the agent's data changes.
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub error: Option<String>,
}

/// Kernel memory of a peer's full ruleset for `state`: loaded into a fresh namespace the way
/// the latency benchmark loads it (iptables: restore without `--noflush` and the jump rules;
/// nftables: the same transaction in 1,000-Service pieces), every tool in a memory cgroup of
/// our own; then the namespace is deleted.
pub fn peer_kernel_memory(
    peer: crate::programming::Peer,
    state: &crate::state::DesiredState,
) -> KernelMemory {
    let run = || -> Result<KernelMemory, BenchError> {
        let memcg = MemCgroup::create()?;
        let mut netns = crate::netns::Netns::create("sybench-mem")?;
        netns.charge_to(memcg.path());
        let started = Instant::now();
        crate::latency::apply(peer, &netns, &NodeConfig::default(), state)?;
        let load_seconds = started.elapsed().as_secs_f64();
        let kernel_bytes = memcg.kernel_bytes()?;
        let usage_bytes = memcg.usage_bytes()?;
        drop(netns);
        let after = memcg.settled_kernel_bytes(Duration::from_secs(20))?;
        Ok(KernelMemory {
            data_plane: peer.label().to_owned(),
            kernel_bytes: Some(kernel_bytes),
            usage_bytes: Some(usage_bytes),
            kernel_after_removal_bytes: Some(after),
            load_seconds,
            error: None,
        })
    };
    // The xtables lock is the host's, shared with every other user of iptables on the machine:
    // a run that could not get it is tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run() {
            Ok(measured) => return measured,
            Err(error) if attempt < 4 && error.to_string().contains("xtables lock") => {
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(error) => return KernelMemory::failed(peer.label(), error.to_string()),
        }
    }
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 =
        line.trim_start_matches(name).trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Everything the agent run creates, removed on drop (also when a step fails): the agent
/// process (SIGTERM by pid, then SIGKILL), its pins (the bpffs), the cgroup it attached to
/// (created here and empty), the manifest directory.
struct AgentRun {
    child: Option<std::process::Child>,
    memcg: Option<MemCgroup>,
    dir: std::path::PathBuf,
    cgroup: std::path::PathBuf,
    bpf: Option<switchyard_bpf::PrivateBpffs>,
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // A child we started and have not reaped: the pid is still its own.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let started = Instant::now();
            while matches!(child.try_wait(), Ok(None))
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.bpf.take());
        drop(self.memcg.take());
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the cluster as JSON `kind: List` manifests, `per_file` objects a file. Returns
/// (files, bytes).
fn write_manifests(
    dir: &std::path::Path,
    cluster: &switchyard_model::ClusterState,
    per_file: usize,
) -> Result<(usize, u64), BenchError> {
    let write_error = |source| BenchError::Write { path: dir.display().to_string(), cause: source };
    let to_value = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| write_error(std::io::Error::other(e)))
    };
    let mut objects = Vec::new();
    for node in cluster.nodes.values() {
        objects.push(to_value(serde_json::to_value(node))?);
    }
    for service in cluster.services.values() {
        objects.push(to_value(serde_json::to_value(service))?);
    }
    for slice in cluster.endpoint_slices.values() {
        objects.push(to_value(serde_json::to_value(slice))?);
    }
    let (mut files, mut bytes) = (0, 0);
    for (i, chunk) in objects.chunks(per_file.max(1)).enumerate() {
        let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": chunk });
        let text =
            serde_json::to_string(&list).map_err(|e| write_error(std::io::Error::other(e)))?;
        std::fs::write(dir.join(format!("cluster-{i:04}.json")), &text).map_err(write_error)?;
        files += 1;
        bytes += text.len() as u64;
    }
    Ok((files, bytes))
}

/// Writes `shape`'s cluster into `dir` (created) as the agent run writes it; returns (files,
/// bytes).
pub fn write_cluster_manifests(
    shape: Shape,
    dir: &std::path::Path,
) -> Result<(usize, u64), BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| BenchError::Write { path: dir.display().to_string(), cause: source })?;
    let cluster = model_input::cluster_state(&NodeConfig::default(), &synthetic::cluster(shape));
    write_manifests(dir, &cluster, MANIFEST_OBJECTS_PER_FILE)
}

/// Objects per manifest file of the agent run.
const MANIFEST_OBJECTS_PER_FILE: usize = 2000;

/// Runs `agent_bin agent` on a manifest directory holding `shape` (default flags: the agent
/// sizes its maps from the state),
/// attached to an empty cgroup of our own, pins in a bpffs of our own; once it logs "agent
/// ready", reads its RSS and the kernel memory the machine gained, stops it (SIGTERM, by pid)
/// and removes everything. No network: the manifest source serves no health port.
pub fn measure_agent(
    shape: Shape,
    agent_bin: &std::path::Path,
    timeout: Duration,
) -> (AgentMemory, KernelMemory) {
    let mut agent = AgentMemory {
        binary: agent_bin.display().to_string(),
        manifest_files: 0,
        manifest_bytes: 0,
        ready_seconds: 0.0,
        rss_bytes: 0,
        peak_rss_bytes: 0,
        rss_anon_bytes: 0,
        rss_file_bytes: 0,
        error: None,
    };
    let mut kernel = KernelMemory::failed("switchyard agent", String::new());
    kernel.error = None;
    let result = (|| -> Result<(), BenchError> {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("sybench-agent-{id}"));
        let cgroup = std::path::Path::new(switchyard_lab::DEFAULT_CGROUP_ROOT)
            .join(format!("sybench-agent-{id}"));
        let mut run = AgentRun {
            child: None,
            memcg: None,
            dir: dir.clone(),
            cgroup: cgroup.clone(),
            bpf: None,
        };
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| BenchError::Write { path: what, cause: source }
        };
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).map_err(io(&manifests.display().to_string()))?;
        std::fs::create_dir(&cgroup).map_err(io(&cgroup.display().to_string()))?;
        let state = synthetic::cluster(shape);
        let cluster = model_input::cluster_state(&NodeConfig::default(), &state);
        let (files, bytes) = write_manifests(&manifests, &cluster, MANIFEST_OBJECTS_PER_FILE)?;
        drop(cluster);
        agent.manifest_files = files;
        agent.manifest_bytes = bytes;
        let bpf = switchyard::private_bpffs("sybench-agent")?;
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).map_err(io(&log_path.display().to_string()))?;
        let mut command = std::process::Command::new(agent_bin);
        command
            .arg("agent")
            .arg("--manifests")
            .arg(&manifests)
            .args(["--node-name", model_input::NODE_NAME])
            .arg("--cgroup")
            .arg(&cgroup)
            .arg("--bpf-dir")
            .arg(bpf.path())
            .arg("--api-socket")
            .arg(dir.join("agent.sock"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        run.bpf = Some(bpf);
        let memcg = MemCgroup::create()?;
        let procs_path = memcg.path().join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(io(&procs_path.display().to_string()))?;
        let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
        // SAFETY: between fork and exec only write(2), async-signal-safe, on a descriptor we
        // keep open until the agent has been spawned.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(procs_fd), b"0")?;
                Ok(())
            });
        }
        run.memcg = Some(memcg);
        let started = Instant::now();
        let child = command.spawn().map_err(|source| BenchError::Spawn {
            program: agent_bin.display().to_string(),
            namespace: "host (no network used)".into(),
            cause: source,
        })?;
        drop(procs);
        let pid = child.id();
        run.child = Some(child);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("agent ready") {
                break;
            }
            let exited = run.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(BenchError::Switchyard(format!("agent exited with {status}: {tail}")));
            }
            if started.elapsed() > timeout {
                return Err(BenchError::Switchyard(format!(
                    "agent not ready within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        agent.ready_seconds = started.elapsed().as_secs_f64();
        kernel.load_seconds = agent.ready_seconds;
        // Let the start-up's transient allocations go before reading.
        std::thread::sleep(Duration::from_secs(1));
        agent.rss_bytes = status_field(pid, "VmRSS:").unwrap_or(0);
        agent.peak_rss_bytes = status_field(pid, "VmHWM:").unwrap_or(0);
        agent.rss_anon_bytes = status_field(pid, "RssAnon:").unwrap_or(0);
        agent.rss_file_bytes = status_field(pid, "RssFile:").unwrap_or(0);
        let memcg = run.memcg.as_ref().ok_or_else(|| BenchError::Switchyard("no cgroup".into()))?;
        kernel.kernel_bytes = Some(memcg.kernel_bytes()?);
        kernel.usage_bytes = Some(memcg.usage_bytes()?);
        // Stop the agent, unpin and close everything: what stays charged was not its state.
        if let Some(mut child) = run.child.take() {
            // A child we started and have not reaped: the pid is still its own.
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let _ = child.wait();
        }
        drop(run.bpf.take());
        kernel.kernel_after_removal_bytes =
            Some(memcg.settled_kernel_bytes(Duration::from_secs(20))?);
        Ok(())
    })();
    if let Err(error) = result {
        agent.error = Some(error.to_string());
        kernel.error = Some(error.to_string());
    }
    (agent, kernel)
}
