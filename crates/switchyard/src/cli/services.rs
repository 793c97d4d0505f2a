//! `switchyard services DIR`: the desired state of one node, as a table or JSON.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use switchyard_k8s::manifest::{ManifestDirectory, ManifestWatcher, WatchOptions};
use switchyard_model::validate::ValidationOptions;
use switchyard_model::{
    Backend, BackendState, Cidr, ClusterState, DesiredState, Frontend, FrontendKey, NodeModel,
    NodePortAddresses, ObjectKey, PortRange, ProxyConfig, Refusal, WhenEmpty,
};

use super::output::{OutputArgs, Table};

/// Show what one node's data plane should do for the Services in a manifest directory.
///
/// Every frontend (cluster IP, NodePort on a node address, LoadBalancer ingress, external IP)
/// with its policy and the backends this node may use.
#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    /// Directory of *.yaml / *.yml / *.json manifests (read recursively), or a single file.
    /// Optional with --live: the running agent's desired state is then read from --api-socket.
    #[arg(required_unless_present = "live")]
    dir: Option<PathBuf>,

    /// Kubernetes Node to compute the state for [default: the first Node in DIR, by name].
    /// (`--node` is the old spelling.)
    #[arg(long, value_name = "NAME", alias = "node")]
    node_name: Option<String>,

    #[command(flatten)]
    output: OutputArgs,

    /// Serve Services labelled service.kubernetes.io/service-proxy-name=NAME
    /// [default: only Services without that label].
    #[arg(long, value_name = "NAME")]
    proxy_name: Option<String>,

    /// Node addresses that carry NodePorts: `all`, `primary`, or a comma-separated CIDR list.
    #[arg(long, value_name = "all|primary|CIDR,...", default_value = "all", value_parser = super::agent::parse_node_port_addresses)]
    nodeport_addresses: NodePortAddresses,

    /// The cluster's NodePort range; NodePorts outside it are not served.
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    node_port_range: PortRange,

    /// externalIPs served only inside these prefixes, as the agent's flag.
    #[arg(long, value_name = "all|none|CIDR,...", default_value = "all", value_parser = super::agent::parse_external_ip_cidrs)]
    external_ip_cidrs: ::std::vec::Vec<Cidr>,

    /// Keep watching DIR and print what changes (frontends added or changed, then removed ones),
    /// like `kubectl get --watch`. Runs until interrupted.
    #[arg(long, short = 'w')]
    watch: bool,

    /// Compare with what is programmed in the kernel (the maps pinned in --bpf-dir): every
    /// frontend entry missing, extra or different. Exit status 3 when they differ.
    #[arg(long, conflicts_with = "watch")]
    live: bool,

    /// bpffs directory of the agent (with --live).
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard", requires = "live")]
    bpf_dir: PathBuf,

    /// With --live: a node of a running lab (`switchyard lab list`): compare with its bpffs
    /// directory instead of --bpf-dir; it is also the default --node-name.
    #[arg(long, value_name = "NAME", requires = "live", conflicts_with = "bpf_dir")]
    lab_node: Option<String>,

    /// The lab's name, when several labs run.
    #[arg(long, value_name = "LAB", requires = "lab_node")]
    lab: Option<String>,

    /// The agent's local API socket: where --live without DIR reads the desired state.
    #[arg(long, value_name = "PATH", default_value = switchyard_node::api_client::DEFAULT_API_SOCKET, requires = "live")]
    api_socket: PathBuf,
}

impl ServicesArgs {
    /// DIR as messages name it.
    fn dir_name(&self) -> String {
        self.dir.as_deref().map_or_else(|| "the agent".to_owned(), |d| d.display().to_string())
    }

    /// The bpffs directory `--live` compares with: the lab node's, else `--bpf-dir`.
    fn live_bpf_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.lab_node {
            Some(node) => super::explain::lab_bpf_dir(node, self.lab.as_deref()),
            None => Ok(self.bpf_dir.clone()),
        }
    }
}

pub(crate) fn run(args: ServicesArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.dir.clone() else {
        // clap requires DIR unless --live: the agent's own desired state.
        let desired = switchyard_node::api_client::desired(&args.api_socket)?;
        return super::inspect::services_live(&desired, &args.live_bpf_dir()?, &args.output);
    };
    if args.watch {
        return watch(&args, &dir);
    }
    let validation = ValidationOptions { node_port_range: args.node_port_range };
    let directory = ManifestDirectory::load_with(&dir, validation);
    let state = directory.state();
    if !directory.errors().is_empty() {
        if directory.applied().is_empty() {
            for error in directory.errors() {
                eprintln!("error: {error}");
            }
            bail!("no objects could be read from {}", args.dir_name());
        }
        report_problems(&args, directory.errors().len());
    }
    let node = choose_node(&args, &state)?;
    let model = NodeModel::from_state(proxy_config(&args, &node), &state);
    if args.live {
        return super::inspect::services_live(model.desired(), &args.live_bpf_dir()?, &args.output);
    }
    print_state(&args, &node, &model)?;
    Ok(ExitCode::SUCCESS)
}

/// `--watch`: the full state once, then every difference as the directory changes.
fn watch(args: &ServicesArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let validation = ValidationOptions { node_port_range: args.node_port_range };
    let options = WatchOptions { validation, ..WatchOptions::default() };
    let mut watcher = ManifestWatcher::start(dir, options)
        .with_context(|| format!("watching {}", dir.display()))?;
    let first = watcher.blocking_next().context("the manifest watch ended at once")?;
    let mut state = ClusterState::default();
    for change in first.changes {
        state.apply(change);
    }
    if !first.errors.is_empty() {
        report_problems(args, first.errors.len());
    }
    let node = choose_node(args, &state)?;
    let mut model = NodeModel::from_state(proxy_config(args, &node), &state);
    print_state(args, &node, &model)?;
    let mut errors = first.errors;
    while let Some(update) = watcher.blocking_next() {
        if update.errors != errors {
            for error in update.errors.iter().filter(|e| !errors.contains(e)) {
                eprintln!("error: {error}");
            }
            errors = update.errors;
        }
        let before = model.desired().clone();
        for change in update.changes {
            model.apply(change);
        }
        let diff = DesiredState::diff(&before, model.desired());
        if diff.is_empty() {
            continue;
        }
        let doc = JsonDiff {
            upserted: diff
                .upserted
                .iter()
                .map(|(key, frontend)| JsonFrontend { key, frontend })
                .collect(),
            removed: &diff.removed,
        };
        args.output.print_item(&doc, |wide| {
            let mut text = format!(
                "# {} frontend(s) added or changed, {} removed\n",
                diff.upserted.len(),
                diff.removed.len()
            );
            let upserted: Vec<(&FrontendKey, &Frontend)> =
                diff.upserted.iter().map(|(key, frontend)| (key, frontend)).collect();
            if !upserted.is_empty() {
                text += &table(upserted, wide);
            }
            for key in &diff.removed {
                let service = before.get(key).map(|f| f.service.to_string()).unwrap_or_default();
                text += &format!("removed {key} ({service})\n");
            }
            text
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_problems(args: &ServicesArgs, count: usize) {
    eprintln!(
        "warning: {count} problem(s) in {}; showing the objects that are valid (details: switchyard validate {})",
        args.dir_name(),
        args.dir_name()
    );
}

/// `--node-name` (else `--lab-node`: lab nodes are Nodes of the same name), or the first Node
/// by name (said on stderr), or none at all.
fn choose_node(args: &ServicesArgs, state: &ClusterState) -> anyhow::Result<String> {
    let node_names: Vec<&str> = state.nodes.keys().map(|k| k.name.as_str()).collect();
    Ok(match (args.node_name.as_ref().or(args.lab_node.as_ref()), node_names.first()) {
        (Some(node), _) => {
            if !state.nodes.contains_key(&ObjectKey::cluster(node.clone())) {
                bail!(
                    "node {node:?} is not in {} (nodes there: {})",
                    args.dir_name(),
                    if node_names.is_empty() { "none".to_owned() } else { node_names.join(", ") }
                );
            }
            node.clone()
        }
        (None, Some(first)) => {
            eprintln!(
                "showing node {first} (the first Node in {}; choose another with --node-name)",
                args.dir_name()
            );
            (*first).to_owned()
        }
        (None, None) => {
            eprintln!(
                "no Node in {}: showing cluster-wide frontends only (no NodePorts, no local endpoints)",
                args.dir_name()
            );
            String::new()
        }
    })
}

fn proxy_config(args: &ServicesArgs, node: &str) -> ProxyConfig {
    let mut config = ProxyConfig::new(node);
    config.proxy_name = args.proxy_name.clone();
    config.node_port_addresses = args.nodeport_addresses.clone();
    config.node_port_range = args.node_port_range;
    config.external_ip_cidrs = args.external_ip_cidrs.clone();
    config
}

/// The state as a table (then a `refused:` line per address a Service asks for and does not
/// get, docs/operations.md#frontend-ownership) or as a document.
fn print_state(args: &ServicesArgs, node: &str, model: &NodeModel) -> anyhow::Result<()> {
    let desired = model.desired();
    args.output.print(&JsonState::new(node, desired, model.refusals()), |wide| {
        let mut text = table(rows(desired), wide);
        for refusal in model.refusals() {
            text += &format!("refused: {refusal}\n");
        }
        text
    })
}

/// One `--watch -o json` line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonDiff<'a> {
    upserted: Vec<JsonFrontend<'a>>,
    removed: &'a [FrontendKey],
}

/// The JSON form: a list, because frontend keys are not strings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonState<'a> {
    node: &'a str,
    frontends: Vec<JsonFrontend<'a>>,
    /// Addresses Services ask for and do not get.
    refused: Vec<&'a Refusal>,
}

#[derive(Debug, Serialize)]
struct JsonFrontend<'a> {
    #[serde(flatten)]
    key: &'a FrontendKey,
    #[serde(flatten)]
    frontend: &'a Frontend,
}

impl<'a> JsonState<'a> {
    fn new(node: &'a str, desired: &'a DesiredState, refused: Vec<&'a Refusal>) -> Self {
        let frontends = rows(desired)
            .into_iter()
            .map(|(key, frontend)| JsonFrontend { key, frontend })
            .collect();
        Self { node, frontends, refused }
    }
}

/// Frontends grouped the way an operator reads them: by Service, port, then kind and address.
fn rows(desired: &DesiredState) -> Vec<(&FrontendKey, &Frontend)> {
    let mut rows: Vec<_> = desired.frontends.iter().collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        (&a.service, &a.port_name, a.kind, *ka).cmp(&(&b.service, &b.port_name, b.kind, *kb))
    });
    rows
}

/// kubectl-style table; `wide` adds the in-cluster backends of ETP Local frontends, the zone
/// and node of each backend.
fn table(rows: Vec<(&FrontendKey, &Frontend)>, wide: bool) -> String {
    let mut headers = vec!["SERVICE", "PORT", "TYPE", "FRONTEND", "POLICY", "BACKENDS"];
    if wide {
        headers.extend(["IN-CLUSTER BACKENDS", "BACKEND NODES"]);
    }
    let mut table = Table::new(headers);
    for (key, frontend) in rows {
        let port = if frontend.port_name.is_empty() { "-" } else { frontend.port_name.as_str() };
        let mut row = vec![
            frontend.service.to_string(),
            port.to_owned(),
            frontend.kind.to_string(),
            key.to_string(),
            policy(frontend),
            backends(frontend),
        ];
        if wide {
            row.push(frontend.in_cluster_backends.as_ref().map_or_else(
                || "-".to_owned(),
                |list| list.iter().map(backend).collect::<Vec<_>>().join(", "),
            ));
            row.push(backend_nodes(frontend));
        }
        table.row(row);
    }
    table.render()
}

/// `node/zone` per backend, in the BACKENDS column's order.
fn backend_nodes(frontend: &Frontend) -> String {
    if frontend.backends.is_empty() {
        return "-".to_owned();
    }
    let name = |value: Option<&str>| value.unwrap_or("?").to_owned();
    let nodes: Vec<String> = frontend
        .backends
        .iter()
        .map(|b| format!("{}/{}", name(b.node_name()), name(b.zone())))
        .collect();
    nodes.join(", ")
}

/// Traffic policy plus the flags that change backend choice.
fn policy(frontend: &Frontend) -> String {
    let mut text = frontend.traffic_policy.to_string();
    if let Some(seconds) = frontend.affinity_timeout_seconds {
        let _ = write!(text, " affinity={seconds}s");
    }
    if frontend.algorithm != switchyard_model::Algorithm::Random {
        let _ = write!(text, " {}", frontend.algorithm.to_string().to_lowercase());
    }
    if !frontend.source_ranges.is_empty() {
        let ranges: Vec<String> = frontend.source_ranges.iter().map(ToString::to_string).collect();
        let _ = write!(text, " from={}", ranges.join(","));
    }
    if let Some(port) = frontend.health_check_node_port {
        let _ = write!(text, " healthCheck=:{port}");
    }
    text
}

/// `ip:port` per backend; non-ready states in parentheses; what happens when there are none.
fn backends(frontend: &Frontend) -> String {
    if frontend.backends.is_empty() {
        return match frontend.when_empty {
            WhenEmpty::Reject => "<none: reject>".to_owned(),
            WhenEmpty::Drop => "<none: drop>".to_owned(),
        };
    }
    frontend.backends.iter().map(backend).collect::<Vec<_>>().join(", ")
}

fn backend(backend: &Backend) -> String {
    let mut text = match backend.ip {
        IpAddr::V4(ip) => format!("{ip}:{}", backend.port),
        IpAddr::V6(ip) => format!("[{ip}]:{}", backend.port),
    };
    if backend.state == BackendState::Terminating {
        text.push_str(" (terminating)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::agent::parse_node_port_addresses;

    #[test]
    fn nodeport_addresses_flag_parses_keywords_and_cidrs() {
        assert_eq!(parse_node_port_addresses("all"), Ok(NodePortAddresses::All));
        assert_eq!(parse_node_port_addresses("primary"), Ok(NodePortAddresses::Primary));
        let parsed = parse_node_port_addresses("192.168.0.0/16,fd00::/8");
        assert!(
            matches!(parsed, Ok(NodePortAddresses::Cidrs(ref c)) if c.len() == 2),
            "{parsed:?}"
        );
        assert!(parse_node_port_addresses("192.168.0.0").is_err());
        // kube-proxy's unset flag: every address.
        assert_eq!(parse_node_port_addresses(""), Ok(NodePortAddresses::All));
    }
}
