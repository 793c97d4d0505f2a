//! Kernel-state inspection beside `status` and `explain`: `switchyard conntrack` (the
//! per-packet path's flows), `switchyard backends` and `switchyard services [DIR] --live` (what
//! is programmed, against what a manifest directory or the running agent asks for).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::FE_MAGLEV;
use switchyard_bpf::nodeport_abi::{self, CT_F_HAIRPIN, CT_F_REPLY_SEEN, CT_F_SNAT};
use switchyard_dataplane::translate::{self, Scope};
use switchyard_k8s::manifest::ManifestDirectory;
use switchyard_model::{DesiredState, NodeModel, ObjectKey, ProxyConfig};
use switchyard_observe::kernel::{
    self, ProgrammedFrontend, backend_flag_names, frontend_flag_names,
};
use switchyard_observe::labels::{ServiceIndex, protocol_label};

use super::explain::{NodeTarget, open_packet_maps};
use super::output::{OutputArgs, Table};
use switchyard_node::api_client as agent_api;

/// The desired state of one node from a manifest directory (`node` empty: the first Node).
pub(crate) fn desired_from_dir(dir: &Path, node: Option<&str>) -> anyhow::Result<DesiredState> {
    let directory = ManifestDirectory::load(dir);
    if directory.applied().is_empty() && !directory.errors().is_empty() {
        for error in directory.errors() {
            eprintln!("error: {error}");
        }
        bail!("no objects could be read from {}", dir.display());
    }
    if !directory.errors().is_empty() {
        eprintln!(
            "warning: {} problem(s) in {}; using the objects that are valid (details: switchyard validate {})",
            directory.errors().len(),
            dir.display(),
            dir.display()
        );
    }
    let state = directory.state();
    let node = match node {
        Some(node) if !state.nodes.contains_key(&ObjectKey::cluster(node.to_owned())) => {
            let names: Vec<&str> = state.nodes.keys().map(|k| k.name.as_str()).collect();
            bail!(
                "Node {node:?} is not in {} (Nodes there: {}; choose one with --node-name)",
                dir.display(),
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
        }
        Some(node) => node.to_owned(),
        None => state.nodes.keys().next().map(|k| k.name.to_string()).unwrap_or_default(),
    };
    Ok(NodeModel::from_state(ProxyConfig::new(&node), &state).desired().clone())
}

/// List the per-packet path's conntrack entries (sy_ct) and their reverse NAT entries (sy_nat).
#[derive(Debug, Args)]
pub(crate) struct ConntrackArgs {
    /// Only flows of this Service (NAMESPACE/NAME); needs --manifests to know its frontends.
    #[arg(long, value_name = "NS/NAME", requires = "manifests")]
    service: Option<String>,

    /// Manifest directory naming the Services behind frontend ids.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Kubernetes Node whose desired state the manifests give [default: --lab-node, else the
    /// first Node].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,

    #[command(flatten)]
    target: NodeTarget,

    /// Also list entries whose timeout has passed (kept by the LRU until evicted).
    #[arg(long)]
    all: bool,

    #[command(flatten)]
    output: OutputArgs,
}

/// One tracked flow.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Flow {
    protocol: String,
    client: SocketAddr,
    frontend: SocketAddr,
    frontend_id: u32,
    service: Option<String>,
    backend_id: u32,
    backend: SocketAddr,
    /// Source after translation (the client, or the node's SNAT address:port).
    source: SocketAddr,
    snat: bool,
    hairpin: bool,
    reply_seen: bool,
    state: &'static str,
    idle_s: f64,
    timeout_s: u32,
    expired: bool,
    /// Whether sy_nat holds the reverse entry (replies are translated back).
    reverse_entry: bool,
}

fn service_name(index: &ServiceIndex, fe: Option<&ProgrammedFrontend>) -> Option<String> {
    let fe = fe?;
    index
        .lookup(fe.ip, fe.port, &fe.protocol)
        .map(|label| ObjectKey::new(label.namespace.clone(), label.name.clone()).to_string())
}

pub(crate) fn conntrack(args: &ConntrackArgs) -> anyhow::Result<ExitCode> {
    let bpf_dir = args.target.bpf_dir()?;
    let maps = Maps::open_pinned(&bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let Some(packet) = open_packet_maps(&bpf_dir)? else {
        bail!(
            "no conntrack in {}: the per-packet programs were never loaded there (--devices)",
            bpf_dir.display()
        );
    };
    let index = match &args.manifests {
        Some(dir) => ServiceIndex::from_desired(&desired_from_dir(
            dir,
            args.target.node_name(args.node_name.as_deref()),
        )?),
        None => ServiceIndex::default(),
    };
    let frontends: BTreeMap<u32, ProgrammedFrontend> =
        kernel::frontends(&maps)?.into_iter().map(|f| (f.id, f)).collect();
    let cfg = packet.settings()?;
    let now = nodeport_abi::monotonic_now_ns();
    let mut flows = Vec::new();
    for entry in packet.ct.iter() {
        let (key, e) = entry.context("reading sy_ct")?;
        let family = key.family;
        let backend = SocketAddr::new(e.nat_daddr.to_ip(family), u16::from_be(e.nat_dport));
        let source = SocketAddr::new(e.nat_saddr.to_ip(family), u16::from_be(e.nat_sport));
        let reply = nodeport_abi::CtKey {
            saddr: e.nat_daddr,
            daddr: e.nat_saddr,
            sport: e.nat_dport,
            dport: e.nat_sport,
            proto: key.proto,
            family,
            pad: [0; 2],
        };
        let reverse_entry = packet.nat.get(&reply, 0).is_ok_and(|n| n.orig == key);
        let expired = e.expired(key.proto, &cfg, now);
        let service = service_name(&index, frontends.get(&e.frontend_id));
        let flow = Flow {
            protocol: kernel::protocol_name(key.proto),
            client: SocketAddr::new(key.source(), u16::from_be(key.sport)),
            frontend: SocketAddr::new(key.destination(), u16::from_be(key.dport)),
            frontend_id: e.frontend_id,
            service,
            backend_id: e.backend_id,
            backend,
            source,
            snat: e.flags & CT_F_SNAT != 0,
            hairpin: e.flags & CT_F_HAIRPIN != 0,
            reply_seen: e.flags & CT_F_REPLY_SEEN != 0,
            state: nodeport_abi::ct_state_name(e.state),
            idle_s: now.saturating_sub(e.last_seen_ns) as f64 / 1e9,
            timeout_s: e.timeout_s(key.proto, &cfg),
            expired,
            reverse_entry,
        };
        if expired && !args.all {
            continue;
        }
        if let Some(wanted) = &args.service
            && flow.service.as_deref() != Some(wanted.as_str())
        {
            continue;
        }
        flows.push(flow);
    }
    flows.sort_by_key(|f| (f.frontend, f.client));
    args.output.print(&flows, |wide| conntrack_table(&flows, wide))?;
    Ok(ExitCode::SUCCESS)
}

/// One row per flow; `wide` adds the ids, flags and the timeout.
fn conntrack_table(flows: &[Flow], wide: bool) -> String {
    let mut headers =
        vec!["PROTO", "CLIENT", "FRONTEND", "BACKEND", "SOURCE (SNAT)", "STATE", "IDLE", "REVERSE"];
    if wide {
        headers.extend(["FRONTEND ID", "BACKEND ID", "TIMEOUT", "FLAGS"]);
    }
    headers.push("SERVICE");
    let mut table = Table::new(headers);
    table.align_right(6);
    for f in flows {
        let source = if f.snat { f.source.to_string() } else { "-".to_owned() };
        let state = if f.expired { format!("{} (expired)", f.state) } else { f.state.to_owned() };
        let mut row = vec![
            f.protocol.clone(),
            f.client.to_string(),
            f.frontend.to_string(),
            f.backend.to_string(),
            source,
            state,
            format!("{:.1}s", f.idle_s),
            if f.reverse_entry { "yes" } else { "MISSING" }.to_owned(),
        ];
        if wide {
            let flags: Vec<&str> =
                [(f.snat, "snat"), (f.hairpin, "hairpin"), (f.reply_seen, "reply")]
                    .into_iter()
                    .filter_map(|(set, name)| set.then_some(name))
                    .collect();
            row.extend([
                format!("#{}", f.frontend_id),
                format!("#{}", f.backend_id),
                format!("{}s", f.timeout_s),
                if flags.is_empty() { "-".to_owned() } else { flags.join(",") },
            ]);
        }
        row.push(f.service.clone().unwrap_or_else(|| "-".to_owned()));
        table.row(row);
    }
    format!("{}{} flow(s)\n", table.render(), flows.len())
}

/// The backends in the kernel (sy_backends), who uses them, and (with DIR) how they differ from
/// what a manifest directory asks for.
#[derive(Debug, Args)]
pub(crate) struct BackendsArgs {
    /// Manifest directory to compare with (desired state of --node-name). Without it, the
    /// running agent's desired state from --api-socket, if an agent answers there.
    #[arg(value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// The agent's local API socket [default: /run/switchyard/agent.sock, skipped when no
    /// agent answers there]; given explicitly, it must answer.
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    api_socket: Option<PathBuf>,

    /// Kubernetes Node whose desired state DIR gives [default: --lab-node, else the first Node
    /// in DIR].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,

    #[command(flatten)]
    target: NodeTarget,

    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KernelBackend {
    id: u32,
    address: SocketAddr,
    flags: Vec<&'static str>,
    /// Frontend ids whose slots name it.
    frontends: Vec<u32>,
    /// Desired by the manifests or the agent (None when not compared).
    desired: Option<bool>,
}

pub(crate) fn backends(args: &BackendsArgs) -> anyhow::Result<ExitCode> {
    let bpf_dir = args.target.bpf_dir()?;
    let maps = Maps::open_pinned(&bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let mut users: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for fe in kernel::frontends(&maps)? {
        for b in &fe.backends {
            users.entry(b.id).or_default().push(fe.id);
        }
    }
    let state = match (&args.manifests, &args.api_socket) {
        (Some(dir), _) => {
            Some(desired_from_dir(dir, args.target.node_name(args.node_name.as_deref()))?)
        }
        (None, Some(socket)) => Some(agent_api::desired(socket)?),
        (None, None) => {
            let socket = Path::new(agent_api::DEFAULT_API_SOCKET);
            match agent_api::desired(socket) {
                Ok(state) => Some(state),
                Err(err) => {
                    eprintln!("note: not compared with a desired state ({err:#})");
                    None
                }
            }
        }
    };
    let desired: Option<BTreeSet<(SocketAddr, u8)>> = state.map(|state| {
        translate::desired(&state)
            .into_iter()
            .flat_map(|(_, spec)| spec.backends)
            .map(|b| (SocketAddr::new(b.ip, b.port), b.flags))
            .collect()
    });
    let mut list = Vec::new();
    let mut in_kernel = BTreeSet::new();
    for entry in maps.backends.iter() {
        let (id, b) = entry.context("reading sy_backends")?;
        let address = SocketAddr::new(b.addr.to_ip(b.family), b.port());
        in_kernel.insert((address, b.flags));
        list.push(KernelBackend {
            id,
            address,
            flags: backend_flag_names(b.flags),
            frontends: users.remove(&id).unwrap_or_default(),
            desired: desired.as_ref().map(|d| d.contains(&(address, b.flags))),
        });
    }
    list.sort_by_key(|b| b.id);
    let missing: Vec<String> = desired
        .iter()
        .flatten()
        .filter(|key| !in_kernel.contains(key))
        .map(|(addr, flags)| format!("{addr} [{}]", backend_flag_names(*flags).join(",")))
        .collect();
    let differences = missing.len() + list.iter().filter(|b| b.desired == Some(false)).count();
    let compared = desired.is_some();
    let doc = serde_json::json!({ "backends": list, "missing": missing, "compared": compared });
    args.output.print(&doc, |_| {
        let mut table = Table::new(["ID", "ADDRESS", "FLAGS", "FRONTENDS", "NOTE"]);
        table.align_right(0);
        for b in &list {
            let note = match b.desired {
                Some(false) => "NOT DESIRED",
                _ if b.frontends.is_empty() => "(unused)",
                _ => "",
            };
            let ids: Vec<String> = b.frontends.iter().map(|id| format!("#{id}")).collect();
            table.row([
                b.id.to_string(),
                b.address.to_string(),
                b.flags.join(","),
                ids.join(" "),
                note.to_owned(),
            ]);
        }
        for m in &missing {
            table.row(["-", m.as_str(), "", "", "MISSING (desired, not in the kernel)"]);
        }
        let summary = if compared {
            format!("{differences} difference(s) from the desired state")
        } else {
            "not compared with a desired state (give DIR, or --api-socket of a running agent)"
                .to_owned()
        };
        format!("{}{} backend(s), {summary}\n", table.render(), list.len())
    })?;
    Ok(if differences == 0 { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// One frontend entry compared.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FrontendDiff {
    service: Option<String>,
    frontend: String,
    scope: &'static str,
    kernel_id: Option<u32>,
    /// `ok`, `missing`, `extra`, `differs`.
    status: &'static str,
    problems: Vec<String>,
}

/// `services DIR --live`: every desired entry against the kernel's, and kernel entries nobody
/// asked for. Returns whether they agree.
pub(crate) fn services_live(
    desired: &DesiredState,
    bpf_dir: &Path,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    let maps = Maps::open_pinned(bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let mut programmed: BTreeMap<(Option<IpAddr>, u16, String, &'static str), ProgrammedFrontend> =
        kernel::frontends(&maps)?
            .into_iter()
            .map(|f| ((f.ip, f.port, f.protocol.clone(), f.scope), f))
            .collect();
    let flags_of = |fe: &ProgrammedFrontend| -> u32 {
        fe.flags
            .iter()
            .map(|name| {
                (0..32)
                    .map(|bit| 1u32 << bit)
                    .find(|&bit| frontend_flag_names(bit).first() == Some(name))
                    .unwrap_or(0)
            })
            .fold(0, |a, b| a | b)
    };
    let mut rows = Vec::new();
    for (key, spec) in translate::desired(desired) {
        let fe_key = key.frontend;
        let protocol = protocol_label(fe_key.protocol);
        let scope = if key.scope == Scope::Internal { "internal" } else { "default" };
        let service = desired.frontends.get(&fe_key).map(|f| f.service.to_string());
        let frontend = format!("{}/{protocol}", SocketAddr::new(fe_key.ip, fe_key.port));
        let Some(fe) = programmed.remove(&(Some(fe_key.ip), fe_key.port, protocol.clone(), scope))
        else {
            rows.push(FrontendDiff {
                service,
                frontend,
                scope,
                kernel_id: None,
                status: "missing",
                problems: vec!["desired, not in the kernel".into()],
            });
            continue;
        };
        let mut problems = Vec::new();
        let want_flags = spec.attrs.flags | if spec.maglev { FE_MAGLEV } else { 0 };
        let have_flags = flags_of(&fe);
        if want_flags != have_flags {
            problems.push(format!(
                "flags [{}], desired [{}]",
                frontend_flag_names(have_flags).join(","),
                frontend_flag_names(want_flags).join(",")
            ));
        }
        let want: BTreeSet<(SocketAddr, u8)> =
            spec.backends.iter().map(|b| (SocketAddr::new(b.ip, b.port), b.flags)).collect();
        let have: BTreeSet<(SocketAddr, u8)> = fe
            .backends
            .iter()
            .map(|b| {
                let flags = (0..8)
                    .map(|bit| 1u8 << bit)
                    .filter(|&bit| {
                        b.flags.iter().any(|n| backend_flag_names(bit).first() == Some(n))
                    })
                    .fold(0, |a, c| a | c);
                (SocketAddr::new(b.ip, b.port), flags)
            })
            .collect();
        for (addr, _) in want.difference(&have) {
            problems.push(format!("backend {addr} missing"));
        }
        for (addr, _) in have.difference(&want) {
            problems.push(format!("backend {addr} not desired"));
        }
        if !fe.broken_slots.is_empty() {
            problems.push(format!("broken slots {:?}", fe.broken_slots));
        }
        if spec.maglev && !fe.maglev_table {
            problems.push("Maglev table missing".into());
        }
        rows.push(FrontendDiff {
            service,
            frontend,
            scope,
            kernel_id: Some(fe.id),
            status: if problems.is_empty() { "ok" } else { "differs" },
            problems,
        });
    }
    for fe in programmed.into_values() {
        let address = fe.ip.map_or_else(|| "*".to_owned(), |ip| ip.to_string());
        let frontend = match fe.ip {
            Some(ip) => format!("{}/{}", SocketAddr::new(ip, fe.port), fe.protocol),
            None => format!("{address}:{}/{}", fe.port, fe.protocol),
        };
        rows.push(FrontendDiff {
            service: None,
            frontend,
            scope: fe.scope,
            kernel_id: Some(fe.id),
            status: "extra",
            problems: vec!["in the kernel, not desired".into()],
        });
    }
    let differences = rows.iter().filter(|r| r.status != "ok").count();
    output.print(&rows, |_| {
        let mut table = Table::new(["SERVICE", "FRONTEND", "SCOPE", "ID", "STATUS"]);
        table.align_right(3);
        for r in &rows {
            let id = r.kernel_id.map_or_else(|| "-".to_owned(), |id| format!("#{id}"));
            let status = if r.problems.is_empty() || r.status == "missing" || r.status == "extra" {
                r.status.to_owned()
            } else {
                format!("{}: {}", r.status, r.problems.join("; "))
            };
            let service = r.service.clone().unwrap_or_else(|| "-".to_owned());
            table.row([service, r.frontend.clone(), r.scope.to_owned(), id, status]);
        }
        format!(
            "{}{} entr(ies), {differences} difference(s) from the desired state\n",
            table.render(),
            rows.len()
        )
    })?;
    Ok(if differences == 0 { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(reverse_entry: bool) -> Flow {
        let at = |text: &str| text.parse::<SocketAddr>().expect("test address");
        Flow {
            protocol: "tcp".to_owned(),
            client: at("192.0.2.7:40000"),
            frontend: at("[fd00:96::10]:80"),
            frontend_id: 3,
            service: Some("default/web".to_owned()),
            backend_id: 7,
            backend: at("10.244.1.5:8080"),
            source: at("192.0.2.7:40000"),
            snat: false,
            hairpin: false,
            reply_seen: true,
            state: "established",
            idle_s: 1.5,
            timeout_s: 7440,
            expired: false,
            reverse_entry,
        }
    }

    /// Issue 21: the text lacked the reverse-entry column docs/operations.md describes.
    #[test]
    fn conntrack_text_has_the_reverse_entry_column() {
        let text = conntrack_table(&[flow(true), flow(false)], false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split("   ").any(|h| h.trim() == "REVERSE"), "{text}");
        let column = lines[0].find("REVERSE").expect("REVERSE header");
        assert!(lines[1][column..].starts_with("yes"), "{text}");
        assert!(lines[2][column..].starts_with("MISSING"), "{text}");
        assert!(lines[1].contains("[fd00:96::10]:80"), "{text}");
    }
}
