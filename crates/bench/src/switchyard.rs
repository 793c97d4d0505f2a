//! Switchyard's side of the benchmarks.
//!
//! Programming: the benchmark's [`DesiredState`] is turned into the Kubernetes objects the model
//! reads ([`crate::model_input`]), the model computes the node's desired state, and the
//! reconciler programs it into real BPF maps (pinned in a bpffs of our own, removed afterwards).
//! Timed, like the peers' tools: the reconciler's work (plan + map syscalls), not the model's
//! (kube-proxy's Go code is not timed for the peers either); the model's time is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_bpf::abi::NodeAddrKey;
use switchyard_bpf::nodeport::{PacketDatapath, PacketMapSizes, PacketSettings};
use switchyard_bpf::{Datapath, LoadOptions, MapSizes, PrivateBpffs};
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::reconciler::{Applied, Reconciler, limits_for};
use switchyard_error::ErrorChain;
use switchyard_model::NodeModel;

use crate::error::BenchError;
use crate::model_input;
use crate::programming::{Limits, Step, StepRecord};
use crate::state::{DesiredState, NodeConfig};

/// Maglev table size for the benchmark's maps; no benchmark Service selects Maglev, so it only
/// bounds backends per frontend (the synthetic clusters have at most 50).
const MAGLEV_TABLE_SIZE: u32 = 251;

/// CPU time (user + system, nanosecond resolution) of the calling thread: map syscalls run in
/// its context.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(now.tv_sec).unwrap_or(0), u32::try_from(now.tv_nsec).unwrap_or(0))
}

/// Map sizes that hold `model`'s desired state with room to spare (as an operator would size
/// them for a cluster of this size).
pub fn sizes_for(model: &NodeModel) -> MapSizes {
    let desired = model.desired();
    let backends: usize = desired.frontends.values().map(|f| f.backends.len()).sum();
    let frontends = u32::try_from(desired.len() * 2).unwrap_or(u32::MAX).max(1024);
    let backends = u32::try_from(backends * 2).unwrap_or(u32::MAX).max(4096);
    MapSizes { frontends, slots: backends, backends, ..MapSizes::default() }
}

/// A loaded datapath with its reconciler, in a bpffs of its own (dropped before the directory).
#[allow(missing_debug_implementations, reason = "Datapath and Reconciler hold kernel handles")]
pub struct Programmed {
    pub reconciler: Reconciler,
    pub datapath: Datapath,
    /// The per-packet (TC) programs, when loaded ([`load_packet_path`]).
    pub packet: Option<PacketDatapath>,
    pub options: LoadOptions,
    pub dir: PrivateBpffs,
}

/// A bpffs of the benchmark's own (`<tmp>/<prefix>-<pid>-<n>`), removed with its pins on drop.
pub(crate) fn private_bpffs(prefix: &str) -> Result<PrivateBpffs, BenchError> {
    PrivateBpffs::create(prefix).map_err(|e| {
        BenchError::Switchyard(format!("a private bpffs for {prefix}: {}", ErrorChain(&e)))
    })
}

/// Loads the socket-level object into a fresh bpffs with maps sized for `model`.
pub fn load(model: &NodeModel, prefix: &str) -> Result<Programmed, BenchError> {
    let dir = private_bpffs(prefix)?;
    let sizes = sizes_for(model);
    let options =
        LoadOptions { sizes, maglev_table_size: MAGLEV_TABLE_SIZE, ..LoadOptions::new(dir.path()) };
    let err =
        |what: &str, e: &dyn std::fmt::Display| BenchError::Switchyard(format!("{what}: {e}"));
    let mut datapath =
        Datapath::load(&options).map_err(|e| err("loading the BPF object", &ErrorChain(&e)))?;
    let tables =
        MaglevTables::new(MAGLEV_TABLE_SIZE).map_err(|e| err("Maglev tables", &ErrorChain(&e)))?;
    let (reconciler, _) = Reconciler::adopt(
        datapath.maps_mut(),
        limits_for(&sizes, MAGLEV_TABLE_SIZE),
        Arc::new(tables),
    )
    .map_err(|e| err("adopting the maps", &ErrorChain(&e)))?;
    Ok(Programmed { reconciler, datapath, packet: None, options, dir })
}

/// The node's data plane for traffic from outside, as the agent sets it up on a node, without
/// the agent: `state` through the model and the reconciler into freshly loaded maps (socket
/// object first, it creates the shared maps), the per-packet object loaded against the same
/// pins with `node_ip` as SNAT address, `node_ip` in `sy_node_addrs` (the agent's job, not the
/// reconciler's), and both TC programs attached to `device` inside the network namespace `netns`
/// (links pinned in the run's own bpffs: dropping the result detaches and unpins everything).
pub fn load_packet_path(
    state: &DesiredState,
    node_ip: std::net::Ipv4Addr,
    netns: &str,
    device: &str,
    prefix: &str,
) -> Result<Programmed, BenchError> {
    load_packet_path_with(state, node_ip, netns, device, prefix, None)
}

/// [`load_packet_path`] with SNAT source ports from `snat_ports` instead of the default range
/// (the agent's `--snat-port-range`).
pub fn load_packet_path_with(
    state: &DesiredState,
    node_ip: std::net::Ipv4Addr,
    netns: &str,
    device: &str,
    prefix: &str,
    snat_ports: Option<std::ops::RangeInclusive<u16>>,
) -> Result<Programmed, BenchError> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| BenchError::Switchyard(format!("{what}: {e}"));
    let config = NodeConfig { node_ip, ..NodeConfig::default() };
    let model = NodeModel::from_state(
        model_input::proxy_config(),
        &model_input::cluster_state(&config, state),
    );
    let mut programmed = load(&model, prefix)?;
    let mut settings = PacketSettings { snat_ipv4: Some(node_ip), ..PacketSettings::default() };
    if let Some(ports) = snat_ports {
        settings.snat_ports = ports;
    }
    let packet = PacketDatapath::load(&programmed.options, PacketMapSizes::default(), &settings)
        .map_err(|e| err("loading the per-packet object", &ErrorChain(&e)))?;
    programmed.packet = Some(packet);
    checked(programmed.reconciler.apply_full(programmed.datapath.maps_mut(), model.desired()))
        .map_err(BenchError::Switchyard)?;
    programmed
        .datapath
        .maps_mut()
        .node_addrs
        .insert(NodeAddrKey::new(node_ip.into()), 0, 0)
        .map_err(|e| err("adding the node address", &ErrorChain(&e)))?;
    let packet = programmed.packet.as_mut().ok_or_else(|| err("per-packet object", &"missing"))?;
    switchyard_lab::netns::run_in(netns, || packet.attach(device))
        .map_err(|e| err(&format!("entering {netns}"), &ErrorChain(&e)))?
        .map_err(|e| err(&format!("attaching to {device} in {netns}"), &ErrorChain(&e)))?;
    Ok(programmed)
}

/// The per-packet XDP program (`--xdp native`) on the maps of a [`load_packet_path`] result,
/// attached natively to `devices` in `netns` (links pinned in the same bpffs: dropping
/// `programmed` detaches it).
pub fn attach_xdp(
    programmed: &Programmed,
    netns: &str,
    devices: &[&str],
) -> Result<switchyard_bpf::nodeport_xdp::XdpDatapath, BenchError> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        BenchError::Switchyard(format!("per-packet XDP: {what}: {e}"))
    };
    let mut xdp = switchyard_bpf::nodeport_xdp::XdpDatapath::load(
        &programmed.options,
        PacketMapSizes::default(),
    )
    .map_err(|e| err("loading", &ErrorChain(&e)))?;
    let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
    switchyard_lab::netns::run_in(netns, move || {
        for device in &devices {
            xdp.attach(device, switchyard_bpf::director::XdpMode::Native)?;
        }
        Ok::<_, switchyard_bpf::Error>(xdp)
    })
    .map_err(|e| err(&format!("entering {netns}"), &ErrorChain(&e)))?
    .map_err(|e| err("attaching", &ErrorChain(&e)))
}

/// One per-packet counter of a [`load_packet_path`] result (0 without the per-packet maps).
pub fn packet_count(
    programmed: &Programmed,
    reason: switchyard_bpf::nodeport_abi::PacketReason,
) -> Result<u64, BenchError> {
    let Some(packet) = programmed.packet.as_ref() else { return Ok(0) };
    let counters = packet
        .maps()
        .counters()
        .map_err(|e| BenchError::Switchyard(format!("per-packet counters: {}", ErrorChain(&e))))?;
    Ok(counters.get(&reason).map_or(0, |c| c.packets))
}

/// The per-packet conntrack (`sy_ct`, `sy_nat`) of a [`load_packet_path`] result, to carry
/// over into the next one: a node that keeps running keeps its flows while Services change.
/// Without it every N of the latency series starts with an empty table while the backend
/// still holds the previous N's connections in TIME_WAIT, and SNAT ports those flows used are
/// handed out again at once (docs/datapath.md, SNAT).
#[derive(Debug, Default)]
pub struct Flows {
    ct: Vec<(switchyard_bpf::nodeport_abi::CtKey, switchyard_bpf::nodeport_abi::CtEntry)>,
    nat: Vec<(switchyard_bpf::nodeport_abi::CtKey, switchyard_bpf::nodeport_abi::NatEntry)>,
}

impl Flows {
    /// The entries now in `programmed`'s per-packet maps (none without them).
    pub fn of(programmed: &Programmed) -> Result<Flows, BenchError> {
        let err = |e: &dyn std::fmt::Display| BenchError::Switchyard(format!("reading flows: {e}"));
        let Some(packet) = programmed.packet.as_ref() else {
            return Ok(Flows::default());
        };
        let maps = packet.maps();
        let ct = maps.ct.iter().collect::<Result<Vec<_>, _>>().map_err(|e| err(&ErrorChain(&e)))?;
        let nat =
            maps.nat.iter().collect::<Result<Vec<_>, _>>().map_err(|e| err(&ErrorChain(&e)))?;
        Ok(Flows { ct, nat })
    }

    /// Writes the entries into `programmed`'s per-packet maps.
    pub fn restore(&self, programmed: &mut Programmed) -> Result<usize, BenchError> {
        let err = |e: &dyn std::fmt::Display| BenchError::Switchyard(format!("writing flows: {e}"));
        let packet = programmed.packet.as_mut().ok_or_else(|| err(&"no per-packet maps"))?;
        let maps = packet.maps_mut();
        for (key, entry) in &self.ct {
            maps.ct.insert(key, entry, 0).map_err(|e| err(&ErrorChain(&e)))?;
        }
        for (key, entry) in &self.nat {
            maps.nat.insert(key, entry, 0).map_err(|e| err(&ErrorChain(&e)))?;
        }
        Ok(self.ct.len() + self.nat.len())
    }
}

fn checked(applied: Result<Applied, impl std::error::Error + 'static>) -> Result<Applied, String> {
    let applied = applied.map_err(|e| ErrorChain(&e).to_string())?;
    match applied.errors.first() {
        Some(error) => {
            Err(format!("{} frontends not programmed, first: {error}", applied.errors.len()))
        }
        None => Ok(applied),
    }
}

/// Programming time of Switchyard's reconciler, as one [`StepRecord`] per step: `Full` (empty
/// maps → `before`) and `ChangePartial` (the EndpointSlice change `before` → `after`). The
/// records' `input_lines` hold the number of map operations.
pub fn measure_programming(
    before: &DesiredState,
    after: &DesiredState,
    limits: Limits,
) -> Option<Vec<StepRecord>> {
    let config = NodeConfig::default();
    let cluster = model_input::cluster_state(&config, before);
    let changes = model_input::endpoint_changes(before, after);
    let mut full = StepRecord::new(Step::Full, "");
    let mut partial = StepRecord::new(Step::ChangePartial, "");
    for _ in 0..limits.repetitions {
        let started = Instant::now();
        let mut model = NodeModel::from_state(model_input::proxy_config(), &cluster);
        let model_time = started.elapsed();
        let mut programmed = match load(&model, "sybench-sy") {
            Ok(programmed) => programmed,
            Err(error) => {
                full.error = Some(error.to_string());
                break;
            }
        };
        let maps = programmed.datapath.maps_mut();

        let (cpu, started) = (thread_cpu_time(), Instant::now());
        let applied = checked(programmed.reconciler.apply_full(maps, model.desired()));
        let (wall, cpu) = (started.elapsed(), thread_cpu_time().saturating_sub(cpu));
        match applied {
            Ok(applied) => {
                full.wall.push(wall.as_secs_f64());
                full.cpu.push(cpu.as_secs_f64());
                full.input_lines = applied.ops;
                eprintln!(
                    "  switchyard: model {:.1} ms, full programming {} ops: plan {:.1} ms + kernel {:.1} ms",
                    model_time.as_secs_f64() * 1e3,
                    applied.ops,
                    applied.plan_time.as_secs_f64() * 1e3,
                    applied.apply_time.as_secs_f64() * 1e3
                );
            }
            Err(error) => {
                full.error = Some(error);
                break;
            }
        }

        let diffs: Vec<_> = changes.iter().cloned().map(|c| model.apply(c)).collect();
        let (cpu, started) = (thread_cpu_time(), Instant::now());
        let applied = checked(programmed.reconciler.apply_diffs(maps, &diffs));
        let (wall, cpu) = (started.elapsed(), thread_cpu_time().saturating_sub(cpu));
        match applied {
            Ok(applied) => {
                partial.wall.push(wall.as_secs_f64());
                partial.cpu.push(cpu.as_secs_f64());
                partial.input_lines = applied.ops;
            }
            Err(error) => {
                partial.error = Some(error);
                break;
            }
        }
    }
    // In-process work cannot be killed; a step over the limit is reported as exceeding it.
    for record in [&mut full, &mut partial] {
        if record.wall.iter().any(|&w| w > limits.per_run.as_secs_f64()) {
            record.exceeded = Some(limits.per_run);
        }
    }
    Some(vec![full, partial])
}

/// The socket-level latency client: this binary (its hidden `latency-client` subcommand), run in
/// pod `pod`, under `SCHED_FIFO` when `realtime`.
#[derive(Debug, Clone, Copy)]
pub struct SocketClient<'a> {
    pub exe: &'a std::path::Path,
    pub pod: &'a str,
    pub realtime: bool,
}

/// Latency through Switchyard's socket-level load balancer: `state` goes through the model and
/// the reconciler into maps of our own, the socket programs are attached to node 1's cgroup (the
/// lab's, created for this run), and the client runs as a process of its own in the client pod
/// and that cgroup (this binary's hidden `latency-client` subcommand). Sorted samples in
/// microseconds and the number of failed connections. Everything is detached and unpinned when
/// this returns.
pub fn measure_latency(
    lab: &switchyard_lab::Lab,
    client: &SocketClient<'_>,
    node_ip: std::net::Ipv4Addr,
    state: &DesiredState,
    target: std::net::SocketAddr,
    connections: usize,
) -> Result<(Vec<f64>, usize), BenchError> {
    let SocketClient { exe: client_exe, pod: client_pod, realtime } = *client;
    let lab_error = |e: switchyard_lab::LabError| BenchError::Lab(e.to_string());
    let config = NodeConfig { node_ip, ..NodeConfig::default() };
    let model = NodeModel::from_state(
        model_input::proxy_config(),
        &model_input::cluster_state(&config, state),
    );
    let mut programmed = load(&model, "sybench-lat")?;
    checked(programmed.reconciler.apply_full(programmed.datapath.maps_mut(), model.desired()))
        .map_err(BenchError::Switchyard)?;
    let node = &lab.pod(client_pod).map_err(lab_error)?.node;
    let cgroup = lab.node(node).map_err(lab_error)?.cgroup.clone();
    programmed.datapath.attach(&cgroup).map_err(|e| {
        BenchError::Switchyard(format!("attaching to {}: {}", cgroup.display(), ErrorChain(&e)))
    })?;

    let mut command = std::process::Command::new(client_exe);
    command
        .arg(crate::latency::CLIENT_SUBCOMMAND)
        .arg(target.to_string())
        .arg(connections.to_string());
    if realtime {
        command.arg("--realtime");
    }
    let output = lab.output_in(client_pod, command).map_err(lab_error)?;
    if !output.status.success() {
        return Err(BenchError::Switchyard(format!(
            "latency client in {client_pod} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let result: crate::latency::ClientResult = serde_json::from_slice(&output.stdout)
        .map_err(|e| BenchError::Switchyard(format!("latency client output: {e}")))?;
    Ok((result.samples_us, result.failures))
}
