//! `switchyard director`: the director role on this machine's uplinks (docs/director.md).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use switchyard_bpf::director::{DirMapSizes, XdpMode};
use switchyard_director::config::DEFAULT_GUE_PORT;
use switchyard_director::health::{HealthConfig, Outcome, Probe};
use switchyard_director::probe::{PROBE_MARK, ProbeSettings, Prober};
use switchyard_director::runtime::{Runtime, RuntimeOptions};
use switchyard_director::settle::SettleConfig;
use switchyard_director::{DirectorConfig, Encap};
use switchyard_k8s::api::{ApiOptions, ApiWatcher, ClusterAccess};
use switchyard_k8s::manifest::{ManifestWatcher, WatchOptions};
use switchyard_maglev::{Seed, TableSize};
use tracing::{info, warn};

/// Options of `switchyard director`.
#[derive(Debug, Args)]
pub(crate) struct DirectorArgs {
    /// Directory of Kubernetes manifests (Services, EndpointSlices, Nodes); watched for changes.
    /// Without it the API server is the source (--kubeconfig, or in-cluster configuration).
    #[arg(long, value_name = "DIR", conflicts_with = "kubeconfig")]
    manifests: Option<PathBuf>,

    /// kubeconfig naming the API server (Services and EndpointSlices for this proxy, every
    /// Node). Without --manifests and --kubeconfig, inside a pod, the pod's service account.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Uplinks that receive VIP traffic from the routers: the XDP program is attached to each.
    #[arg(
        long,
        value_name = "DEV[,DEV..]",
        value_delimiter = ',',
        required_unless_present = "cleanup"
    )]
    devices: Vec<String>,

    /// native: in the driver (veth supports it); generic: after the stack built an skb.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    xdp_mode: XdpModeArg,

    /// The director's own addresses, one per family: the outer source of encapsulated packets.
    #[arg(
        long = "address",
        value_name = "IP[,IP]",
        value_delimiter = ',',
        required_unless_present = "cleanup"
    )]
    addresses: Vec<IpAddr>,

    /// Encapsulation: gue (GUE variant 0), fou (GUE variant 1), ipip.
    #[arg(long, default_value = "gue")]
    encap: Encap,

    /// Destination UDP port of GUE and FOU.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_GUE_PORT)]
    gue_port: u16,

    /// Maglev table size M (prime); the same on every director.
    #[arg(long, value_name = "M", default_value_t = TableSize::DIRECTOR_DEFAULT.get())]
    table_size: u32,

    /// The cluster's hash seed (32 hex digits); the same on every director.
    #[arg(long, value_name = "HEX")]
    seed: Option<Seed>,

    /// bpffs directory of the director's maps and links (a bpffs is mounted there if needed).
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard-director")]
    bpf_dir: PathBuf,

    /// Unix socket of the director's local API (`/metrics`, `/status`); mode 0600.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_API_SOCKET)]
    api_socket: PathBuf,

    /// Also serve `/metrics` (and `/status`) on this TCP address; off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_bind_address: Option<std::net::SocketAddr>,

    /// Name of this director's Node object: BGPPeers whose spec.nodeSelector is set and selects
    /// its labels get a session announcing every VIP with the Node's addresses as next hops.
    /// Without it the director speaks no BGP (the routers are configured otherwise). With the
    /// API server as the source it also publishes its previous-node record on that Node
    /// (annotation switchyard.io/director-previous), which directors starting for the first
    /// time take over.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    node_name: Option<String>,

    /// On SIGTERM or Ctrl-C: withdraw every VIP over BGP, keep forwarding (and programming
    /// updates) for this many seconds while the routers move flows to the other directors, then
    /// close the sessions and exit. A second signal leaves at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,

    /// A director that starts for the first time (no pinned tables) announces its VIPs only
    /// this many seconds after its first complete reading, and only once its tables name the
    /// previous nodes the other directors' newest records name and every node's health is
    /// settled (waiting at most 60 s beyond this for those): the routers send it no flow it
    /// might send elsewhere than the others. A restarted director announces at once. 0: no
    /// window.
    #[arg(long, value_name = "SECONDS", default_value_t = switchyard_director::settle::DEFAULT_ANNOUNCE_DELAY.as_secs())]
    announce_delay_seconds: u64,

    /// After a VIP's nodes change, its table names each slot's previous node (the second
    /// chance) for this many seconds, then the VIP gets a table without them: TCP flows still
    /// on a drained or removed node after that are lost, and a node long gone (whose address
    /// may be reused) stops being sent packets. 0: until the VIP's next change.
    #[arg(long, value_name = "SECONDS", default_value_t = switchyard_director::DEFAULT_PREVIOUS_TTL.as_secs())]
    previous_node_ttl_seconds: u64,

    /// Node health probes (HTTP GET /healthz on the agent's --health-port for Cluster VIPs, on
    /// the Service's healthCheckNodePort for Local ones): encapsulated (through the same
    /// encapsulation as VIP traffic, so a node that cannot decapsulate is down), direct, or off.
    #[arg(long, value_enum, default_value_t = HealthProbeArg::Encapsulated)]
    health_probe: HealthProbeArg,

    /// The agents' health port (their --healthz-bind-address), probed for Cluster VIPs.
    #[arg(long, value_name = "PORT", default_value_t = 10256)]
    health_port: u16,

    /// Time between two probes of a node.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    health_interval_ms: u64,

    /// A probe not answered within this failed (at most --health-interval-ms).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    health_timeout_ms: u64,

    /// Probes failed in a row that take a node out of the tables.
    #[arg(long, value_name = "N", default_value_t = 3)]
    unhealthy_threshold: u32,

    /// Probes answered 200 in a row that bring it back.
    #[arg(long, value_name = "N", default_value_t = 2)]
    healthy_threshold: u32,

    /// Remove everything a director installed under --bpf-dir (detaches it), unmount the bpffs
    /// if the director mounted it there, and exit; exits 1 when --bpf-dir holds no director pins.
    #[arg(long)]
    cleanup: bool,
}

/// Where the director serves its local API unless told otherwise.
const DEFAULT_API_SOCKET: &str = "/run/switchyard/director.sock";

/// Whether and as whom the director announces its VIPs, and how long it forwards after
/// withdrawing them.
struct Announce {
    node_name: Option<String>,
    grace: std::time::Duration,
    settle: SettleConfig,
}

/// Where the director serves `/metrics` and `/status`.
struct Api {
    socket: PathBuf,
    tcp: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HealthProbeArg {
    /// Through the director's encapsulation (TC egress program on the uplinks).
    Encapsulated,
    /// Straight to the node's address (checks the agent, not the tunnel).
    Direct,
    /// No probes: every node the objects name serves.
    Off,
}

/// Node health checking as the flags ask (`None`: off).
struct HealthArgs {
    config: HealthConfig,
    port: u16,
    encapsulated: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum XdpModeArg {
    Native,
    Generic,
}

pub(crate) fn run(args: DirectorArgs) -> anyhow::Result<ExitCode> {
    if args.cleanup {
        cleanup(&args.bpf_dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut source4 = None;
    let mut source6 = None;
    for address in &args.addresses {
        let slot_taken = match address {
            IpAddr::V4(a) => source4.replace(*a).is_some(),
            IpAddr::V6(a) => source6.replace(*a).is_some(),
        };
        if slot_taken {
            bail!("--address {address}: one address per family");
        }
    }
    for device in &args.devices {
        switchyard_bpf::nodeport::check_device(device)?;
    }
    let table_size = TableSize::new(args.table_size)
        .with_context(|| format!("--table-size {}", args.table_size))?;
    let config = DirectorConfig {
        table_size,
        seed: args.seed.unwrap_or_default(),
        previous_ttl: (args.previous_node_ttl_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.previous_node_ttl_seconds)),
    };
    let options = RuntimeOptions {
        bpf_dir: args.bpf_dir.clone(),
        mount_bpffs: true,
        devices: args.devices.clone(),
        mode: match args.xdp_mode {
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Generic => XdpMode::Generic,
        },
        source4,
        source6,
        encap: args.encap,
        gue_port: args.gue_port,
        sizes: DirMapSizes::default(),
    };
    // The main loop runs on this thread and blocks in kernel work (the verifier, a map
    // migration, table builds: seconds at scale); the BGP/BFD speakers, API watches and the
    // metrics server are tasks on a worker thread, so their keepalives never wait for it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let health = match args.health_probe {
        HealthProbeArg::Off => None,
        probe => {
            let config = HealthConfig {
                interval: std::time::Duration::from_millis(args.health_interval_ms),
                timeout: std::time::Duration::from_millis(args.health_timeout_ms),
                unhealthy_threshold: args.unhealthy_threshold,
                healthy_threshold: args.healthy_threshold,
            };
            config.validate().context("--health-interval-ms, --health-timeout-ms, thresholds")?;
            Some(HealthArgs {
                config,
                port: args.health_port,
                encapsulated: probe == HealthProbeArg::Encapsulated,
            })
        }
    };
    let api = Api { socket: args.api_socket, tcp: args.metrics_bind_address };
    let bgp = Announce {
        node_name: args.node_name,
        grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
        settle: SettleConfig {
            delay: std::time::Duration::from_secs(args.announce_delay_seconds),
            ..SettleConfig::default()
        },
    };
    runtime.block_on(serve(args.manifests, args.kubeconfig, config, options, api, bgp, health))
}

/// Detaches and removes what a director installed under `bpf_dir`, then unmounts the bpffs if
/// the director mounted it (it marks one it mounts, as the agent does); a bpffs the host or an
/// init container mounted stays. A directory without the director's pins is an error: a wrong
/// `--bpf-dir` must not look like a successful clean-up.
fn cleanup(bpf_dir: &Path) -> anyhow::Result<()> {
    use switchyard_bpf::loader::{LINKS_DIR, MOUNTED_MARK, unmount_if_ours};
    let ours = switchyard_bpf::director::names::ALL
        .iter()
        .chain([&LINKS_DIR, &MOUNTED_MARK])
        .any(|name| bpf_dir.join(name).exists());
    if !ours {
        bail!("nothing to clean up in {}: no director pins there", bpf_dir.display());
    }
    let what = || format!("cleaning up {}", bpf_dir.display());
    switchyard_bpf::director::cleanup(bpf_dir).with_context(what)?;
    info!(bpf_dir = %bpf_dir.display(), "removed the director's program, links and maps");
    if unmount_if_ours(bpf_dir).with_context(what)? {
        info!(bpf_dir = %bpf_dir.display(), "unmounted the bpffs the director had mounted");
    }
    Ok(())
}

/// Where the director's objects come from.
enum Source {
    Manifests(ManifestWatcher),
    /// The watch, and a client for writing the director's own Node annotation.
    Api(ApiWatcher, kube::Client),
}

impl Source {
    /// The manifest directory, else the kubeconfig's API server, else in-cluster configuration.
    async fn open(manifests: Option<PathBuf>, kubeconfig: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(dir) = manifests {
            let watcher = ManifestWatcher::start(&dir, WatchOptions::default())
                .with_context(|| format!("watching {}", dir.display()))?;
            info!(manifests = %dir.display(), "director reading a manifest directory");
            return Ok(Self::Manifests(watcher));
        }
        let access = match kubeconfig {
            Some(path) => ClusterAccess::Kubeconfig(path),
            None if ClusterAccess::in_cluster_available() => ClusterAccess::InCluster,
            None => bail!(
                "no source: give --manifests DIR or --kubeconfig PATH, or run in a pod with a \
                 service account"
            ),
        };
        let client = access.client().await.context("connecting to the API server")?;
        info!(source = ?access, "director watching the API server (every Node)");
        Ok(Self::Api(ApiWatcher::start(client.clone(), ApiOptions::director()), client))
    }

    /// The next batch of changes (the first is the complete state), with manifest problems.
    async fn next(&mut self) -> Option<(Vec<switchyard_model::Change>, Vec<String>)> {
        match self {
            Self::Manifests(watcher) => watcher.next().await.map(|update| {
                (update.changes, update.errors.iter().map(ToString::to_string).collect())
            }),
            Self::Api(watcher, _) => {
                watcher.next().await.map(|update| (update.changes, Vec::new()))
            }
        }
    }
}

/// Serves the local API over the director's pinned maps (handles of its own); the unix socket
/// is served while the returned value lives. A unix socket that cannot be served is logged,
/// not fatal: the API is for inspection.
async fn serve_api(
    bpf_dir: &Path,
    api: &Api,
    bgp: switchyard_observe::bgp::BgpSource,
) -> anyhow::Result<Option<switchyard_observe::server::UnixServer>> {
    use switchyard_observe::{director::DirectorCollector, server};
    let collector = DirectorCollector::open(bpf_dir)
        .with_context(|| format!("opening the maps pinned in {} for metrics", bpf_dir.display()))?;
    let collector = std::sync::Arc::new(collector);
    let router = server::director_router(std::sync::Arc::clone(&collector), bgp.clone());
    let unix = match server::serve_unix(&api.socket, router) {
        Ok(unix) => Some(unix),
        Err(err) => {
            let err = format!("{:#}", anyhow::Error::from(err));
            tracing::error!(%err, "local API not served; the director runs without it");
            None
        }
    };
    if let Some(address) = api.tcp {
        // The network may reach this port: metrics only, as the agent's.
        let metrics = server::director_metrics_router(collector, bgp);
        server::serve_tcp(address, metrics).await.context("serving metrics on TCP")?;
    }
    Ok(unix)
}

async fn serve(
    manifests: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    config: DirectorConfig,
    options: RuntimeOptions,
    api: Api,
    announce: Announce,
    health: Option<HealthArgs>,
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let bpf_dir = options.bpf_dir.clone();
    let probe_settings = ProbeSettings {
        source4: options.source4,
        source6: options.source6,
        mark: health.as_ref().is_some_and(|h| h.encapsulated).then_some(PROBE_MARK),
        timeout: health.as_ref().map_or(std::time::Duration::ZERO, |h| h.config.timeout),
    };
    let mut director = Runtime::load(config, options).context("loading the director")?;
    let mut prober = None;
    if let Some(h) = &health {
        director
            .check_health(h.config, h.port, h.encapsulated)
            .context("starting node health checks")?;
        prober = Some(Prober::new(probe_settings));
        info!(
            port = h.port,
            encapsulated = h.encapsulated,
            removal_bound_ms = h.config.removal_bound().as_millis(),
            "node health checks on"
        );
    }
    match &announce.node_name {
        Some(name) => director.announce_as(name, announce.settle),
        None => info!("no --node-name: the director announces nothing over BGP"),
    }
    let bgp =
        director.announcer().map_or_else(switchyard_observe::bgp::BgpSource::none, |a| a.source());
    let _api = serve_api(&bpf_dir, &api, bgp).await?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut source = Source::open(manifests, kubeconfig).await?;
    let mut publisher = Publisher::new(&source, announce.node_name.as_deref());
    info!("director started; nothing is attached before the first complete reading");
    let mut ended = false;
    loop {
        // A little after the earliest deadline: probes of one node (or of many, after a
        // common cause) time out within microseconds of each other; one wake-up handles them
        // together and rebuilds the tables once.
        let wake = director.health_next_wakeup().map(|at| at + HEALTH_BATCH);
        tokio::select! {
            update = source.next() => {
                let Some((changes, errors)) = update else { ended = true; break };
                apply(&mut director, changes, &errors)?;
            }
            () = sleep_until(director.settle_next_check()) => {
                director.settle_check(std::time::Instant::now());
            }
            () = sleep_until(director.previous_next_expiry()) => {
                director
                    .expire_previous(std::time::Instant::now())
                    .context("expiring previous nodes")?;
            }
            () = sleep_until(wake) => {
                let probes = director
                    .health_poll(std::time::Instant::now())
                    .context("programming a node health change")?;
                if let Some(prober) = &prober {
                    prober.send(probes);
                }
            }
            Some((probe, outcome)) = next_outcome(&mut prober) => {
                // Every outcome at hand, then one rebuild of the tables for all of them.
                let now = std::time::Instant::now();
                let mut next = Some((probe, outcome));
                while let Some((probe, outcome)) = next {
                    director.health_record(&probe, outcome, now)?;
                    next = prober.as_mut().and_then(Prober::try_next);
                }
                director.health_flush().context("programming a node health change")?;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        publisher.publish(&director);
    }
    if !ended && director.withdraw_all() {
        // Graceful shutdown: the routers stop sending new packets here while this director
        // still forwards whatever is on its way (and programs updates meanwhile).
        info!(
            grace_seconds = announce.grace.as_secs(),
            "shutting down: every VIP withdrawn; forwarding for the grace period"
        );
        let grace = tokio::time::sleep(announce.grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                update = source.next() => {
                    let Some((changes, errors)) = update else { break };
                    apply(&mut director, changes, &errors)?;
                }
                () = &mut grace => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        director.stop_announcing().await;
        info!("BGP sessions closed");
    }
    info!("director stopped; its program stays attached (--cleanup removes it)");
    Ok(ExitCode::SUCCESS)
}

/// Publishes the director's previous-node record on its own Node object
/// (`switchyard.io/director-previous`, docs/director.md) whenever it changes: a task writes the
/// newest one with a merge patch, retrying every second while the API server refuses. Only
/// with the API server as the source and `--node-name`; with `--manifests` nothing is written
/// (the records a manifest directory's Nodes carry are still read).
struct Publisher {
    sender: Option<tokio::sync::watch::Sender<Option<String>>>,
    /// The record handed over last (`None`: none yet).
    last: Option<switchyard_director::previous::Record>,
}

impl Publisher {
    fn new(source: &Source, node_name: Option<&str>) -> Self {
        let (Source::Api(_, client), Some(node)) = (source, node_name) else {
            info!("previous-node records are not published (needs the API server and --node-name)");
            return Publisher { sender: None, last: None };
        };
        let (sender, mut receiver) = tokio::sync::watch::channel(None::<String>);
        let (client, node) = (client.clone(), node.to_owned());
        tokio::spawn(async move {
            use switchyard_director::previous::PREVIOUS_ANNOTATION;
            while receiver.changed().await.is_ok() {
                loop {
                    let value = receiver.borrow_and_update().clone();
                    let written = switchyard_k8s::api::annotate_node(
                        &client,
                        &node,
                        PREVIOUS_ANNOTATION,
                        value.as_deref(),
                    )
                    .await;
                    match written {
                        Ok(()) => {
                            info!(
                                node,
                                bytes = value.map_or(0, |v| v.len()),
                                "previous-node record published"
                            );
                            break;
                        }
                        Err(err) => {
                            warn!(node, %err, "previous-node record not published; retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        Publisher { sender: Some(sender), last: None }
    }

    /// Hands the director's record to the task if it changed (none: the annotation removed).
    fn publish(&mut self, director: &Runtime) {
        let Some(sender) = &self.sender else { return };
        let record = director.record();
        if self.last.as_ref() == Some(&record) {
            return;
        }
        let value = (!record.generations.is_empty()).then(|| {
            let (text, left_out) = record.encode();
            if left_out > 0 {
                warn!(left_out, "previous-node record too large: the oldest generations left out");
            }
            text
        });
        self.last = Some(record);
        sender.send_replace(value);
    }
}

/// How long after a probe deadline the director wakes up (see `serve`).
const HEALTH_BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// Sleeps until `at` (forever when `None`).
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The next probe outcome (never, without probes).
async fn next_outcome(prober: &mut Option<Prober>) -> Option<(Probe, Outcome)> {
    match prober {
        Some(prober) => prober.next().await,
        None => std::future::pending().await,
    }
}

/// Programs one batch of changes, logging the manifest directory's problems.
fn apply(
    director: &mut Runtime,
    changes: Vec<switchyard_model::Change>,
    errors: &[String],
) -> anyhow::Result<()> {
    for error in errors {
        warn!(%error, "manifest");
    }
    director.apply(changes).context("programming the director's maps")?;
    Ok(())
}
