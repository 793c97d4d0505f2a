//! `switchyard explain SRC DST/PROTO`: what the data plane does with one flow, read from the
//! pinned maps (see switchyard_observe::explain for what is decided how).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use switchyard_bpf::Maps;
use switchyard_bpf::abi::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use switchyard_bpf::nodeport::{self, PacketMaps};
use switchyard_dataplane::sockdiag;
use switchyard_observe::explain::{self, Explanation, Flow, ObservedSocket, Path as ProgramPath};

use super::output::{OutputArgs, say};

/// For one flow: the frontend that matched (or why none did), the policy, the candidate
/// backends, how one is chosen and the translation, from the maps pinned by the agent.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Client: ADDR or ADDR:PORT (`[v6]:port`); the port names the per-packet Maglev slot and
    /// finds the flow's conntrack entry.
    #[arg(value_name = "SRC")]
    source: String,

    /// Destination as the client addresses it: ADDR:PORT/PROTO, e.g. 10.96.0.10:53/udp.
    #[arg(value_name = "DST/PROTO")]
    destination: String,

    /// Which programs see the flow: `inside` (socket path: a pod or process on this node),
    /// `outside` (per-packet path: a packet arriving on a device). Default: outside when the
    /// per-packet maps are pinned and SRC is not an address of this node, else inside.
    #[arg(long, value_enum, default_value_t = From::Auto)]
    from: From,

    #[command(flatten)]
    target: NodeTarget,

    /// Manifest directory naming the Service behind the frontend.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Kubernetes Node whose desired state the manifests give [default: --lab-node, else the
    /// first Node].
    #[arg(long, value_name = "NAME", requires = "manifests")]
    node_name: Option<String>,

    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum From {
    Auto,
    Inside,
    Outside,
}

/// Where the maps are: `--bpf-dir`, or `--lab-node` of a running lab.
#[derive(Debug, Args)]
pub(crate) struct NodeTarget {
    /// bpffs directory the agent pinned its maps in.
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard")]
    bpf_dir: PathBuf,

    /// A node or director of a running lab (`switchyard lab up`, `switchyard lab list`): use
    /// its bpffs directory; it is also the default --node-name. (`--node` is the old spelling.)
    #[arg(long, value_name = "NAME", alias = "node", conflicts_with = "bpf_dir")]
    lab_node: Option<String>,

    /// The lab's name, when several labs run.
    #[arg(long, value_name = "LAB", requires = "lab_node")]
    lab: Option<String>,
}

impl NodeTarget {
    /// The Kubernetes Node whose desired state to compare with: `--node-name`, else the lab
    /// node (lab nodes are Nodes of the same name), else `None` (the first Node of the
    /// manifests).
    pub(crate) fn node_name<'a>(&'a self, node_name: Option<&'a str>) -> Option<&'a str> {
        node_name.or(self.lab_node.as_deref())
    }

    /// The bpffs directory to read.
    pub(crate) fn bpf_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.lab_node {
            Some(node) => lab_bpf_dir(node, self.lab.as_deref()),
            None => Ok(self.bpf_dir.clone()),
        }
    }
}

/// The bpffs directory of `node` (a node or director) of a running lab, `lab` naming the lab
/// when several run.
pub(crate) fn lab_bpf_dir(node: &str, lab: Option<&str>) -> anyhow::Result<PathBuf> {
    let labs = switchyard_lab::Lab::list(&switchyard_lab::LabOptions::default());
    let found: Vec<(String, PathBuf)> = labs
        .iter()
        .filter(|s| lab.is_none_or(|p| p == s.plan.prefix))
        .filter_map(|s| {
            let nodes = s.plan.nodes.iter().map(|n| (&n.name, &n.bpf_dir));
            let directors = s.plan.directors.iter().map(|d| (&d.name, &d.bpf_dir));
            nodes
                .chain(directors)
                .find(|(name, _)| *name == node)
                .map(|(_, dir)| (s.plan.prefix.clone(), dir.clone()))
        })
        .collect();
    match found.as_slice() {
        [(_, dir)] => Ok(dir.clone()),
        [] => bail!("no running lab has a node {node:?} (see `switchyard lab list`)"),
        many => bail!(
            "node {node:?} exists in several labs ({}): choose one with --lab",
            many.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn parse_protocol(text: &str) -> anyhow::Result<u8> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(PROTO_TCP),
        "udp" => Ok(PROTO_UDP),
        "sctp" => Ok(PROTO_SCTP),
        other => bail!("unknown protocol {other:?} (tcp, udp or sctp)"),
    }
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT` or a bare IPv6 address.
fn parse_source(text: &str) -> anyhow::Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let addr: SocketAddr = text
        .parse()
        .with_context(|| format!("SRC {text:?}: expected ADDR or ADDR:PORT ([v6]:port)"))?;
    Ok((addr.ip(), Some(addr.port())))
}

fn parse_destination(text: &str) -> anyhow::Result<(SocketAddr, u8)> {
    let (addr, proto) = text.rsplit_once('/').with_context(|| {
        format!("DST {text:?}: expected ADDR:PORT/PROTO, e.g. 10.96.0.10:53/udp")
    })?;
    let addr: SocketAddr =
        addr.parse().with_context(|| format!("DST {text:?}: {addr:?} is not ADDR:PORT"))?;
    Ok((addr, parse_protocol(proto)?))
}

/// Whether `ip` is this node's (loopback included), as the socket programs decide it.
fn is_node_address(maps: &Maps, ip: IpAddr) -> bool {
    switchyard_bpf::mirror::addr_is_node_local(maps, ip, true).unwrap_or(false)
}

fn choose_path(
    from: From,
    maps: &Maps,
    packet: Option<&PacketMaps>,
    source: IpAddr,
) -> (ProgramPath, String) {
    match from {
        From::Inside => (ProgramPath::Socket, "--from inside".into()),
        From::Outside => (ProgramPath::Packet, "--from outside".into()),
        From::Auto if packet.is_none() => {
            (ProgramPath::Socket, "per-packet maps not pinned: only the socket programs run".into())
        }
        From::Auto if is_node_address(maps, source) => (
            ProgramPath::Socket,
            format!(
                "{source} is an address of this node: its connections meet the socket programs"
            ),
        ),
        From::Auto => (
            ProgramPath::Packet,
            format!(
                "{source} is not an address of this node: assumed to arrive on a device \
                 (use --from inside for a pod on this node)"
            ),
        ),
    }
}

pub(crate) fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let (source, source_port) = parse_source(&args.source)?;
    let (destination, protocol) = parse_destination(&args.destination)?;
    if source.is_ipv4() != destination.is_ipv4() {
        bail!("SRC {source} and DST {destination} are of different families");
    }
    let bpf_dir = args.target.bpf_dir()?;
    let bpf_dir = super::director_view::default_dir(&bpf_dir, "/sys/fs/bpf/switchyard");
    if super::director_view::is_director(&bpf_dir) {
        return super::director_view::explain(
            &bpf_dir,
            source,
            source_port,
            destination,
            protocol,
            &args.output,
        );
    }
    let maps = Maps::open_pinned(&bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let packet = open_packet_maps(&bpf_dir)?;
    let (path, reason) = choose_path(args.from, &maps, packet.as_ref(), source);
    if path == ProgramPath::Packet && packet.is_none() {
        bail!("--from outside: the per-packet maps are not pinned in {}", bpf_dir.display());
    }
    let flow = Flow { source, source_port, destination, protocol };
    // The socket path's translations are per socket: find the client's sockets (in this
    // network namespace: run explain in the client's) and let their cookies speak.
    let sockets = if path == ProgramPath::Socket {
        sockdiag::sockets_from(source, source_port, protocol)
            .with_context(|| format!("listing the sockets of {source} (sock_diag)"))?
            .into_iter()
            .map(|s| ObservedSocket {
                cookie: s.cookie,
                source: SocketAddr::new(s.source.0, s.source.1),
                peer: SocketAddr::new(s.destination.0, s.destination.1),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut explanation =
        explain::explain(&maps, packet.as_ref(), &flow, path, reason, &sockets)
            .with_context(|| format!("reading the maps pinned in {}", bpf_dir.display()))?;
    if let (Some(dir), Some(fe)) = (&args.manifests, explanation.frontend.as_mut()) {
        let desired = super::inspect::desired_from_dir(
            dir,
            args.target.node_name(args.node_name.as_deref()),
        )?;
        let index = switchyard_observe::labels::ServiceIndex::from_desired(&desired);
        fe.service = index.lookup(fe.ip, fe.port, &fe.protocol).map(|l| {
            let port = if l.port_name.is_empty() {
                String::new()
            } else {
                format!(" port {}", l.port_name)
            };
            format!("{}/{} ({}{port})", l.namespace, l.name, l.kind)
        });
    }
    args.output.print(&explanation, |_| text(&explanation))?;
    Ok(ExitCode::SUCCESS)
}

/// The per-packet maps, when the TC programs were loaded on this bpffs.
pub(crate) fn open_packet_maps(bpf_dir: &Path) -> anyhow::Result<Option<PacketMaps>> {
    if !bpf_dir.join(nodeport::names::CT).exists() {
        return Ok(None);
    }
    let maps = PacketMaps::open_pinned(bpf_dir)
        .with_context(|| format!("opening the per-packet maps pinned in {}", bpf_dir.display()))?;
    Ok(Some(maps))
}

/// The explanation as lines of text.
fn text(e: &Explanation) -> String {
    let mut out = String::new();
    say!(out, "flow: {}", e.flow);
    let path = match e.path {
        ProgramPath::Socket => "socket programs (connect/sendmsg)",
        ProgramPath::Packet => "per-packet programs (TC ingress)",
    };
    say!(out, "path: {path} — {}", e.path_reason);
    match (&e.frontend, &e.no_match) {
        (Some(fe), _) => {
            let address = fe.ip.map_or_else(|| "*".to_owned(), |ip| ip.to_string());
            if let Some(service) = &fe.service {
                say!(out, "service: {service}");
            }
            say!(
                out,
                "frontend: #{} {address}:{}/{} scope={} flags=[{}] ({})",
                fe.id,
                fe.port,
                fe.protocol,
                fe.scope,
                fe.flags.join(","),
                fe.matched_by
            );
        }
        (None, Some(why)) => say!(out, "frontend: none — {why}"),
        (None, None) => {}
    }
    for line in &e.policy {
        say!(out, "policy: {line}");
    }
    if e.frontend.is_some() {
        say!(out, "candidates: {}", e.candidates.len());
        for c in &e.candidates {
            say!(
                out,
                "  slot {}: #{} {} [{}]",
                c.slot,
                c.backend.id,
                SocketAddr::new(c.backend.ip, c.backend.port),
                c.backend.flags.join(",")
            );
        }
    }
    if let Some(ct) = &e.conntrack {
        say!(
            out,
            "conntrack: backend #{} {} source {} state {} idle {:.1}/{} s{}",
            ct.backend_id,
            ct.backend,
            ct.nat_source,
            ct.state,
            ct.idle_s,
            ct.timeout_s,
            ct.unusable_because.as_ref().map_or_else(String::new, |w| format!(" (unused: {w})"))
        );
    }
    if let Some(m) = &e.maglev {
        let backend = m.backend.as_ref().map_or_else(
            || "none".to_owned(),
            |b| format!("#{} {}", b.id, SocketAddr::new(b.ip, b.port)),
        );
        say!(
            out,
            "maglev: {} hash {} slot {} of {} -> {backend}",
            m.hashed,
            m.hash,
            m.slot,
            m.table_size
        );
    }
    if !e.existing_sockets.is_empty() {
        say!(out, "existing sockets (sy_sock_revnat):");
        for (backend, count) in &e.existing_sockets {
            say!(out, "  {backend}: {count}");
        }
    }
    let chosen =
        e.decision.backend.as_ref().map_or_else(String::new, |b| {
            format!(" -> #{} {}", b.id, SocketAddr::new(b.ip, b.port))
        });
    say!(out, "decision: {}{chosen}: {}", e.decision.method, e.decision.detail);
    for line in &e.translation {
        say!(out, "translation: {line}");
    }
    out
}
