//! `switchyard agent`: the node role's flags, turned into a [`NodeConfig`] for `switchyard-node`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use switchyard_bpf::MapSizes;
use switchyard_bpf::director::XdpMode;
use switchyard_bpf::nodeport::PacketMapSizes;
use switchyard_model::{Cidr, NodePortAddresses, PortRange};
use switchyard_node::{Directors, NodeConfig, SourceConfig};

/// Run the node role: socket-level load balancing for a cgroup, and per-packet NodePort /
/// LoadBalancer / external IP translation on --devices.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Directory of Kubernetes manifests (Services, EndpointSlices, Nodes); watched for changes.
    /// Without it the API server is the source (--kubeconfig, or in-cluster configuration).
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Name of the Node this agent serves (endpoints with this nodeName are local).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    node_name: Option<String>,

    /// cgroup v2 directory whose processes get socket-level load balancing.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["cleanup", "mount_bpffs"])]
    cgroup: Option<PathBuf>,

    /// A kube-proxy configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/
    /// v1alpha1): the fields that apply set the matching flags (a flag given wins), fields
    /// without a meaning here are logged as ignored, unknown fields are refused
    /// (docs/operations.md#kube-proxy-configuration-file).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Mount a bpffs on PATH unless one is there, then exit: the DaemonSet's init container
    /// (CAP_SYS_ADMIN, Bidirectional mount propagation). `--cleanup` never unmounts it.
    #[arg(long, value_name = "PATH", conflicts_with = "cleanup")]
    mount_bpffs: Option<PathBuf>,

    /// bpffs directory for pinned maps and program links (a bpffs is mounted there if needed).
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard")]
    bpf_dir: PathBuf,

    /// Remove everything an agent installed under --bpf-dir (programs, links, maps) and exit.
    #[arg(long)]
    cleanup: bool,

    /// Upper bound of the frontends map (address, port, protocol, scope): the agent sizes it at
    /// twice the state (at least 1,024) and grows it, make-before-break, up to this.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().frontends)]
    max_frontends: u32,

    /// Upper bound of the backends map (distinct endpoints), sized and grown like the frontends
    /// map (at least 4,096).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().backends)]
    max_backends: u32,

    /// Upper bound of the slots map (backend references summed over all frontends), sized and
    /// grown like the frontends map (at least 4,096).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().slots)]
    max_slots: u32,

    /// Upper bound of the Maglev tables (frontends using Maglev), sized and grown like the
    /// frontends map (at least 64).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().maglev_tables)]
    max_maglev_tables: u32,

    /// Capacity of sy_sock_revnat, the reverse translation of translated sockets (one entry
    /// per live socket that connected or sent to a Service; LRU, preallocated: ~115 B each).
    /// When full, the least recently used entry goes and that socket's replies and
    /// getpeername show the backend's address; watch
    /// `switchyard_bpf_map_entries{map="sy_sock_revnat"}`.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().sock_revnat)]
    max_sock_revnat: u32,

    /// Capacity of sy_affinity, the sessionAffinity ClientIP choices (LRU, ~100 B each): when
    /// full, the least recently used client chooses again.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().affinity)]
    max_affinity: u32,

    /// Capacity of sy_sock_sticky, the backend of each unconnected UDP socket per Service (LRU,
    /// ~100 B each): when full, the least recently used socket may move to another backend.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().sock_sticky)]
    max_sock_sticky: u32,

    /// Maglev table size M, a prime; the same on every node.
    #[arg(long, value_name = "M", default_value_t = switchyard_bpf::abi::MAGLEV_DEFAULT_TABLE_SIZE)]
    maglev_table_size: u32,

    /// Quiet time after a manifest change before the changed files are re-read: long enough to
    /// join an editor's or `kubectl cp`'s burst of writes, short enough to keep a change from
    /// file to kernel under 5 ms (docs/reconciler.md).
    #[arg(long, value_name = "MS", default_value_t = 1)]
    debounce_ms: u64,

    /// Leave sockets connected to removed backends alone (default: destroy them, which needs
    /// CAP_SYS_ADMIN, CAP_SYS_PTRACE and the host's PIDs: docs/operations.md). Takes an
    /// optional true/false so a ConfigMap value can set it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    keep_stale_sockets: bool,

    /// Network devices that receive traffic from outside the node (NodePort, LoadBalancer and
    /// external IPs): the per-packet programs are attached at TC ingress and egress of each.
    /// Devices attached by an earlier agent but no longer listed are detached. Empty entries are
    /// ignored, so `--devices=` (an empty ConfigMap value) means none.
    #[arg(long, value_name = "DEV[,DEV..]", value_delimiter = ',')]
    devices: Vec<String>,

    /// The per-packet path at XDP in front of TC on --devices, for traffic from outside:
    /// `native` (in the driver: no skb for what XDP forwards; veth supports it), `generic`
    /// (after the stack built an skb: any driver, little gain), `off` (TC only). Off by default:
    /// native XDP takes a driver's XDP slot and changes how it receives, and frames XDP sends
    /// to a veth are dropped unless its peer runs an XDP program (docs/operations.md
    /// "XDP on nodes").
    #[arg(long, value_enum, value_name = "MODE", default_value_t = XdpArg::Off)]
    xdp: XdpArg,

    /// Host-side pod interfaces (names, or a prefix and `*`: `veth*`, `lxc*`, `cali*`) whose
    /// traffic the per-packet pod program translates when the socket hooks did not: processes
    /// outside --cgroup, VMs. Every Service address (cluster IPs included) is served there, the
    /// pod's address kept; interfaces are rescanned every second. Off when empty
    /// (docs/datapath.md#clusterip-per-packet).
    #[arg(long, value_name = "NAME[*][,..]", value_delimiter = ',', value_parser = parse_pod_device)]
    pod_devices: Vec<String>,

    /// Source ports for flows SNATed to this node's address (to pods on other nodes); must not
    /// overlap --node-port-range (refused) and should not overlap net.ipv4.ip_local_port_range
    /// (warned). Default: the widest gap of 1024-65535 outside both (1024-29999 with Linux's
    /// and Kubernetes' defaults), read at start; `switchyard doctor` shows it. A node that
    /// decapsulates (--director-addresses, or DSR) also keeps --gue-port out (6081-29999; a
    /// range holding it is refused). The range bounds new connections per second to one
    /// backend at about its size / 10 s.
    #[arg(long, value_name = "FIRST-LAST")]
    snat_port_range: Option<PortRange>,

    /// Capacity of the per-packet conntrack table sy_ct (LRU: when full, the least recently
    /// used flow is evicted; `switchyard_bpf_map_entries{map="sy_ct"}` shows the fill).
    /// Default 262144, or what --config's conntrack.maxPerCore and min give.
    #[arg(long, value_name = "N")]
    max_conntrack: Option<u32>,

    /// Capacity of the per-packet reverse-NAT table sy_nat (one entry per tracked flow).
    #[arg(long, value_name = "N", default_value_t = PacketMapSizes::default().nat)]
    max_nat: u32,

    /// The cluster's NodePort range (kube-apiserver --service-node-port-range): NodePorts
    /// outside it are not opened.
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    node_port_range: PortRange,

    /// Addresses the directors send encapsulated VIP traffic from: GUE, FOU and IPIP packets from
    /// these are decapsulated on --devices (first at TC ingress) and go on to the per-packet
    /// path; encapsulated packets from anyone else are dropped and counted (docs/director.md).
    #[arg(long, value_name = "IP[,IP..]", value_delimiter = ',')]
    director_addresses: Vec<std::net::IpAddr>,

    /// Destination UDP port of the directors' GUE and FOU packets, and of the GUE packets
    /// nodes send each other with --nodeport-mode dsr.
    #[arg(long, value_name = "PORT", default_value_t = switchyard_bpf::director::GUE_PORT_DEFAULT)]
    gue_port: u16,

    /// How NodePort, LoadBalancer and ExternalIP traffic (externalTrafficPolicy Cluster) from
    /// outside reaches a backend on another node: `snat` (this node's address as source, the
    /// reply comes back through this node) or `dsr` (encapsulated in GUE to the backend's
    /// node, the client's address kept; that node answers the client directly). DSR needs
    /// the same mode and --gue-port on every node, and a network that lets nodes send with a
    /// Service's address as source (docs/datapath.md "DSR").
    #[arg(long, value_enum, value_name = "MODE", default_value_t = NodePortModeArg::Snat)]
    nodeport_mode: NodePortModeArg,

    /// Serve spec.externalIPs only inside these prefixes: `all`, `none`, or a comma-separated
    /// CIDR list. Whatever it says, an externalIP or LoadBalancer IP never takes another
    /// Service's cluster IP or a node's address, and special addresses are never served
    /// (docs/operations.md#frontend-ownership).
    #[arg(long, value_name = "all|none|CIDR,...", default_value = "all", value_parser = parse_external_ip_cidrs)]
    external_ip_cidrs: ::std::vec::Vec<Cidr>,

    /// Node addresses that carry NodePorts (kube-proxy's flag): `all` (every InternalIP and
    /// ExternalIP of this Node), `primary` (its first InternalIP per family), or a
    /// comma-separated CIDR list (the Node's addresses inside it). NodePorts on other addresses
    /// are not translated, from outside or from pods.
    /// Default `all`, or what --config's nodePortAddresses says.
    #[arg(long, value_name = "all|primary|CIDR,...", value_parser = parse_node_port_addresses)]
    nodeport_addresses: Option<NodePortAddresses>,

    #[command(flatten)]
    source: SourceArgs,

    /// Unix socket of the local API (`/metrics`, `/status`, `/desired`); mode 0600.
    #[arg(long, value_name = "PATH", default_value = switchyard_node::api_client::DEFAULT_API_SOCKET)]
    api_socket: PathBuf,

    /// Also serve `/metrics` (only: the rest of the API stays on the unix socket) on this TCP
    /// address; off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_bind_address: Option<SocketAddr>,

    /// On SIGTERM or Ctrl-C: answer 503 on /healthz and the health check node ports and keep
    /// forwarding (and programming updates) for this many seconds, so directors and load
    /// balancers drain the node before the agent goes; then exit. The default outlasts a
    /// director's --unhealthy-threshold probes at its default interval (about 2 s). 0 leaves
    /// at once; a second signal leaves at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    shutdown_grace_seconds: u64,
}

/// Source and health options of `switchyard agent`.
#[derive(Debug, Args)]
struct SourceArgs {
    /// Read Services, EndpointSlices and this node's Node from the API server named in this
    /// kubeconfig. Without --manifests and --kubeconfig, inside a pod, the pod's service account
    /// is used (in-cluster configuration).
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    kubeconfig: Option<PathBuf>,

    /// Serve only Services labelled service.kubernetes.io/service-proxy-name=NAME (default:
    /// only Services without that label). Empty means unset.
    #[arg(long, value_name = "NAME")]
    proxy_name: Option<String>,

    /// Address of /healthz and /livez (kube-proxy's --healthz-bind-address). Default
    /// 0.0.0.0:10256 with the API server as source, off with --manifests; empty turns it off.
    #[arg(long, value_name = "ADDR:PORT")]
    healthz_bind_address: Option<String>,

    /// /healthz and /livez answer 503 once an update has waited this long to be programmed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    health_timeout_seconds: u64,
}

/// Fills what `--config FILE` sets and the command line does not.
fn apply_config_file(args: &mut AgentArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let file = switchyard_node::kube_proxy_config::read(path, cpus)?;
    for field in &file.ignored {
        tracing::warn!(file = %path.display(), field, "kube-proxy setting without a meaning for switchyard: ignored");
    }
    if args.node_name.is_none() {
        args.node_name = file.node_name;
    }
    if args.source.healthz_bind_address.is_none() {
        args.source.healthz_bind_address = file.healthz_bind_address;
    }
    if args.source.kubeconfig.is_none() && args.manifests.is_none() {
        args.source.kubeconfig = file.kubeconfig;
    }
    if args.metrics_bind_address.is_none() {
        args.metrics_bind_address = match file.metrics_bind_address.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse().with_context(|| {
                format!("{}: metricsBindAddress {text:?} is not ADDRESS:PORT", path.display())
            })?),
        };
    }
    if args.max_conntrack.is_none() {
        args.max_conntrack = file.max_conntrack;
    }
    if args.nodeport_addresses.is_none() {
        args.nodeport_addresses = file.node_port_addresses;
    }
    Ok(())
}

/// `--external-ip-cidrs`, for clap.
pub(crate) fn parse_external_ip_cidrs(text: &str) -> Result<Vec<Cidr>, String> {
    switchyard_model::config::parse_external_ip_cidrs(text).map_err(|err| err.to_string())
}

/// One `--pod-devices` entry, for clap (empty entries are kept and ignored, like --devices).
fn parse_pod_device(text: &str) -> Result<String, String> {
    if !text.trim().is_empty() {
        switchyard_node::runtime::pod_devices::check_pattern(text)?;
    }
    Ok(text.to_string())
}

/// `--nodeport-addresses`, for clap.
pub(crate) fn parse_node_port_addresses(text: &str) -> Result<NodePortAddresses, String> {
    switchyard_model::config::parse_node_port_addresses(text).map_err(|err| err.to_string())
}

pub(crate) fn run(mut args: AgentArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.mount_bpffs {
        switchyard_node::mount_bpffs(path)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.cleanup {
        switchyard_node::cleanup(&args.bpf_dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = args.config.clone() {
        apply_config_file(&mut args, &path)?;
    }
    let (Some(node_name), Some(cgroup)) = (args.node_name, args.cgroup) else {
        anyhow::bail!(
            "--node-name (or NODE_NAME, or hostnameOverride in --config) and --cgroup are required"
        );
    };
    let config = NodeConfig {
        node_name,
        cgroup,
        bpf_dir: args.bpf_dir,
        source: SourceConfig {
            manifests: args.manifests,
            kubeconfig: args.source.kubeconfig,
            proxy_name: args.source.proxy_name.filter(|name| !name.is_empty()),
            healthz_bind_address: args.source.healthz_bind_address,
            health_timeout: Duration::from_secs(args.source.health_timeout_seconds),
        },
        sizes: MapSizes {
            frontends: args.max_frontends,
            backends: args.max_backends,
            slots: args.max_slots,
            maglev_tables: args.max_maglev_tables,
            sock_revnat: args.max_sock_revnat,
            affinity: args.max_affinity,
            sock_sticky: args.max_sock_sticky,
            ..MapSizes::default()
        },
        packet_sizes: PacketMapSizes {
            ct: args.max_conntrack.unwrap_or(PacketMapSizes::default().ct),
            nat: args.max_nat,
        },
        maglev_table_size: args.maglev_table_size,
        debounce: Duration::from_millis(args.debounce_ms),
        destroy_stale_sockets: !args.keep_stale_sockets,
        devices: args.devices,
        xdp: match args.xdp {
            XdpArg::Native => Some(XdpMode::Native),
            XdpArg::Generic => Some(XdpMode::Generic),
            XdpArg::Off => None,
        },
        pod_devices: args.pod_devices,
        snat_port_range: args.snat_port_range,
        node_port_range: args.node_port_range,
        external_ip_cidrs: args.external_ip_cidrs,
        node_port_addresses: args.nodeport_addresses.unwrap_or_default(),
        api_socket: args.api_socket,
        metrics_bind_address: args.metrics_bind_address,
        directors: Directors {
            addresses: args.director_addresses.iter().copied().collect(),
            gue_port: args.gue_port,
        },
        nodeport_mode: match args.nodeport_mode {
            NodePortModeArg::Snat => switchyard_node::NodePortMode::Snat,
            NodePortModeArg::Dsr => switchyard_node::NodePortMode::Dsr,
        },
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
    };
    // The main loop runs on this thread and blocks in kernel work (the verifier, a map
    // migration, table builds: seconds at scale); the BGP/BFD speakers, API watches and the
    // metrics server are tasks on a worker thread, so their keepalives never wait for it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(switchyard_node::run(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `--nodeport-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NodePortModeArg {
    Snat,
    Dsr,
}

/// `--xdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum XdpArg {
    Native,
    Generic,
    Off,
}
