//! `switchyard monitor`: a live stream of the data plane's decisions and drops, from the
//! `sy_events` ring buffer. The programs write events only while a monitor runs (it switches
//! `sy_monitor` on and, when it ends, off again), sampled as asked.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::{Event, PATH_PKT, Reason};
use switchyard_bpf::monitor::Monitor;
use switchyard_bpf::nodeport_abi::{self, PacketReason};
use switchyard_observe::kernel;
use switchyard_observe::labels::ServiceIndex;

use super::explain::NodeTarget;
use super::inspect::desired_from_dir;
use super::output::OutputArgs;

/// Stream decisions and drops as the programs make them (off by default; on while this runs).
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    pub(crate) target: NodeTarget,

    /// Only events of this Service (NAMESPACE/NAME); needs --manifests.
    #[arg(long, value_name = "NS/NAME", requires = "manifests")]
    pub(crate) service: Option<String>,

    /// Manifest directory naming the Services behind frontends.
    #[arg(long, value_name = "DIR")]
    pub(crate) manifests: Option<PathBuf>,

    /// Kubernetes Node whose desired state the manifests give [default: --lab-node, else the
    /// first Node].
    #[arg(long, value_name = "NAME")]
    pub(crate) node_name: Option<String>,

    /// Only events whose client, destination or backend address is ADDR.
    #[arg(long, value_name = "ADDR")]
    pub(crate) addr: Option<IpAddr>,

    /// Decisions: report 1 in N (sampled in the kernel, for use under load).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) sample: u32,

    /// Drops and rejects: report 1 in N.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) drop_sample: u32,

    /// Only drops, rejects and errors.
    #[arg(long)]
    pub(crate) drops_only: bool,

    /// Stop after N events printed.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<usize>,

    /// Stop after this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub(crate) duration_ms: Option<u64>,

    #[command(flatten)]
    pub(crate) output: OutputArgs,

    /// Only switch the stream off (after a monitor was killed without cleaning up) and exit.
    #[arg(long)]
    pub(crate) off: bool,
}

/// One event as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    /// Seconds since the monitor started.
    t: f64,
    path: &'static str,
    reason: String,
    drop: bool,
    protocol: String,
    client: Option<SocketAddr>,
    destination: SocketAddr,
    frontend_id: Option<u32>,
    service: Option<String>,
    backend: Option<SocketAddr>,
    /// Socket path: the socket cookie.
    cookie: Option<u64>,
    /// Per-packet path: packet length.
    len: Option<u32>,
}

fn reason_name(value: u32) -> String {
    if let Some(r) = Reason::ALL.iter().find(|r| **r as u32 == value) {
        return r.name().to_owned();
    }
    if let Some(r) = PacketReason::ALL.iter().find(|r| **r as u32 == value) {
        return r.name().to_owned();
    }
    format!("reason_{value}")
}

fn is_drop(name: &str) -> bool {
    name.contains("drop_") || name.contains("reject_") || name.starts_with("err_")
}

/// Waits for Ctrl-C or SIGTERM on a thread of its own.
pub(crate) fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal watcher")?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(err) => {
                        tracing::warn!(%err, "SIGTERM will not stop the monitor cleanly");
                        let _ = tokio::signal::ctrl_c().await;
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
    });
    Ok(stop)
}

pub(crate) fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let bpf_dir = args.target.bpf_dir()?;
    let bpf_dir = super::director_view::default_dir(&bpf_dir, "/sys/fs/bpf/switchyard");
    if super::director_view::is_director(&bpf_dir) {
        return super::director_monitor::run(args, &bpf_dir);
    }
    let mut monitor = Monitor::open_pinned(&bpf_dir).with_context(|| {
        format!("opening sy_monitor and sy_events in {} (agent of this build?)", bpf_dir.display())
    })?;
    if args.off {
        monitor.disable().context("switching the monitor off")?;
        println!("monitor off in {}", bpf_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let maps = Maps::open_pinned(&bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let index = match &args.manifests {
        Some(dir) => ServiceIndex::from_desired(&desired_from_dir(
            dir,
            args.target.node_name(args.node_name.as_deref()),
        )?),
        None => ServiceIndex::default(),
    };
    let wanted_ids: Option<BTreeSet<u32>> = match &args.service {
        Some(service) => {
            let ids: BTreeSet<u32> = kernel::frontends(&maps)?
                .into_iter()
                .filter(|fe| {
                    index
                        .lookup(fe.ip, fe.port, &fe.protocol)
                        .is_some_and(|l| format!("{}/{}", l.namespace, l.name) == *service)
                })
                .map(|fe| fe.id)
                .collect();
            if ids.is_empty() {
                anyhow::bail!("Service {service} has no frontend in {}", bpf_dir.display());
            }
            Some(ids)
        }
        None => None,
    };
    let stop = stop_on_signal()?;
    monitor
        .enable(args.sample, args.drop_sample)
        .with_context(|| format!("switching the monitor on in {}", bpf_dir.display()))?;
    if !args.output.is_document() {
        eprintln!(
            "monitoring {} (decisions 1 in {}, drops 1 in {}); Ctrl-C stops",
            bpf_dir.display(),
            args.sample.max(1),
            args.drop_sample.max(1)
        );
    }
    let started = Instant::now();
    let started_ns = nodeport_abi::monotonic_now_ns();
    let deadline = args.duration_ms.map(|ms| started + Duration::from_millis(ms));
    let mut printed = 0usize;
    while !stop.load(Ordering::SeqCst)
        && deadline.is_none_or(|d| Instant::now() < d)
        && args.count.is_none_or(|c| printed < c)
    {
        let Some(event) = monitor.next_event() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let shown = describe(&maps, &index, &event, started_ns);
        if args.drops_only && !shown.drop {
            continue;
        }
        if let Some(ids) = &wanted_ids
            && !shown.frontend_id.is_some_and(|id| ids.contains(&id))
        {
            continue;
        }
        if let Some(addr) = args.addr {
            let hit = shown.client.is_some_and(|c| c.ip() == addr)
                || shown.destination.ip() == addr
                || shown.backend.is_some_and(|b| b.ip() == addr);
            if !hit {
                continue;
            }
        }
        args.output.print_item(&shown, |_| text(&shown))?;
        printed += 1;
    }
    monitor.disable().context("switching the monitor off")?;
    Ok(ExitCode::SUCCESS)
}

fn describe(maps: &Maps, index: &ServiceIndex, e: &Event, started_ns: u64) -> Shown {
    let reason = reason_name(e.reason);
    let destination = SocketAddr::new(e.daddr.to_ip(e.family), u16::from_be(e.dport));
    let packet = e.path == PATH_PKT;
    // Drops on the per-packet path do not carry the frontend id: look it up as the program did.
    let frontend_id = if e.frontend_id != 0 {
        Some(e.frontend_id)
    } else {
        maps.resolve_on_path(destination, e.proto, !packet).ok().flatten().map(|(_, fe)| fe.id)
    };
    let service = frontend_id.and_then(|id| {
        let fe = kernel::frontends(maps).ok()?.into_iter().find(|f| f.id == id)?;
        let label = index.lookup(fe.ip, fe.port, &fe.protocol)?;
        Some(format!("{}/{}", label.namespace, label.name))
    });
    let backend = (e.backend_id != 0)
        .then(|| maps.backends.get(&e.backend_id, 0).ok())
        .flatten()
        .map(|b| SocketAddr::new(b.addr.to_ip(b.family), b.port()));
    Shown {
        t: e.ts_ns.saturating_sub(started_ns) as f64 / 1e9,
        path: if packet { "packet" } else { "socket" },
        drop: is_drop(&reason),
        reason,
        protocol: kernel::protocol_name(e.proto),
        client: packet.then(|| SocketAddr::new(e.saddr.to_ip(e.family), u16::from_be(e.sport))),
        destination,
        frontend_id,
        service,
        backend,
        cookie: (!packet).then_some(e.cookie),
        len: packet.then_some(e.len),
    }
}

/// One line per event.
fn text(s: &Shown) -> String {
    let client = s
        .client
        .map_or_else(|| format!("socket {}", s.cookie.unwrap_or_default()), |c| c.to_string());
    let backend = s.backend.map_or_else(String::new, |b| format!(" -> {b}"));
    let service = s.service.as_deref().map_or_else(String::new, |n| format!(" [{n}]"));
    format!(
        "{:>10.6} {:<6} {:<26} {client} -> {}/{}{backend}{service}\n",
        s.t, s.path, s.reason, s.destination, s.protocol
    )
}
