//! `switchyard ipam DIR` or `switchyard ipam --kubeconfig PATH`: the controller's view — pools,
//! usage, who holds which address (from the status the controller wrote: the directory's status
//! file, or the Services' status on the API server), and Services still without an address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use switchyard_controller::Allocator;
use switchyard_k8s::api::ClusterAccess;
use switchyard_k8s::manifest::{ManifestDirectory, STATUS_FILE};

use super::output::{OutputArgs, Table};

/// Pools, their usage, and who holds which LoadBalancer address.
#[derive(Debug, Args)]
pub(crate) struct IpamArgs {
    /// Manifest directory (its .switchyard-status.json holds what the controller allocated).
    #[arg(
        value_name = "DIR",
        required_unless_present = "kubeconfig",
        conflicts_with = "kubeconfig"
    )]
    dir: Option<PathBuf>,

    /// Read Services, IPPools and Namespaces from the API server named in this kubeconfig.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Our loadBalancerClass, as given to the controller.
    #[arg(long, value_name = "NAME")]
    load_balancer_class: Option<String>,

    #[command(flatten)]
    output: OutputArgs,
}

/// The `-o json` document: pools, held addresses, Services still waiting.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IpamDoc {
    /// False when no controller has run on DIR: the addresses are what one would allocate
    /// (always true with --kubeconfig: the Services' status is what the controller wrote).
    status_file: bool,
    pools: Vec<PoolDoc>,
    addresses: Vec<HoldingDoc>,
    waiting: Vec<WaitingDoc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolDoc {
    name: String,
    valid: bool,
    /// The IPPool status field names.
    #[serde(rename = "usedIPv4")]
    used_ipv4: u64,
    #[serde(rename = "availableIPv4")]
    available_ipv4: u64,
    #[serde(rename = "usedIPv6")]
    used_ipv6: u64,
    #[serde(rename = "availableIPv6")]
    available_ipv6: u64,
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HoldingDoc {
    address: IpAddr,
    pool: Option<String>,
    services: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WaitingDoc {
    service: String,
    reason: &'static str,
    message: String,
}

fn document(allocator: &Allocator, status_file: bool) -> IpamDoc {
    IpamDoc {
        status_file,
        pools: allocator
            .pool_reports()
            .iter()
            .map(|(name, r)| PoolDoc {
                name: name.clone(),
                valid: r.problem.is_none(),
                used_ipv4: r.used_ipv4,
                available_ipv4: r.available_ipv4,
                used_ipv6: r.used_ipv6,
                available_ipv6: r.available_ipv6,
                problem: r.problem.as_ref().map(|(reason, message)| format!("{reason}: {message}")),
            })
            .collect(),
        addresses: allocator
            .holdings()
            .into_iter()
            .map(|h| HoldingDoc {
                address: h.address,
                pool: h.pool,
                services: h.services.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        waiting: allocator
            .outcomes()
            .filter(|(_, o)| o.is_warning())
            .map(|(key, o)| WaitingDoc {
                service: key.to_string(),
                reason: o.reason.as_str(),
                message: o.message.clone(),
            })
            .collect(),
    }
}

pub(crate) fn run(args: &IpamArgs) -> anyhow::Result<ExitCode> {
    let class = args.load_balancer_class.clone().filter(|c| !c.is_empty());
    let (allocator, status_file) = match (&args.dir, &args.kubeconfig) {
        (_, Some(kubeconfig)) => (from_api(kubeconfig, class)?, true),
        (Some(dir), None) => from_directory(dir, class, args.output.is_document()),
        (None, None) => anyhow::bail!("give a manifest directory or --kubeconfig PATH"),
    };
    let doc = document(&allocator, status_file);
    args.output.print(&doc, |_| ipam_text(&allocator))?;
    Ok(ExitCode::SUCCESS)
}

/// The allocator over a manifest directory, and whether a controller has run there.
fn from_directory(dir: &Path, class: Option<String>, document: bool) -> (Allocator, bool) {
    let directory = ManifestDirectory::load(dir);
    let status_file = dir.join(STATUS_FILE).exists();
    if !status_file && !document {
        println!(
            "no {STATUS_FILE} in {}: no controller has run here; the addresses below are what one \
             would allocate\n",
            dir.display()
        );
    }
    for error in directory.errors() {
        eprintln!("warning: {error}");
    }
    let mut allocator = Allocator::new(class);
    for change in directory.changes_from_empty() {
        allocator.apply(&change);
    }
    allocator.reconcile();
    (allocator, status_file)
}

/// The allocator over what the API server named in `kubeconfig` holds now.
fn from_api(kubeconfig: &Path, class: Option<String>) -> anyhow::Result<Allocator> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = ClusterAccess::Kubeconfig(kubeconfig.to_owned())
            .client()
            .await
            .with_context(|| format!("connecting with {}", kubeconfig.display()))?;
        Ok(switchyard_controller::runtime::snapshot::snapshot(client, class).await?)
    })
}

/// The pools, the addresses held and the Services waiting, as tables.
fn ipam_text(allocator: &Allocator) -> String {
    let mut pools =
        Table::new(["POOL", "VALID", "V4 USED", "V4 FREE", "V6 USED", "V6 FREE", "PROBLEM"]);
    for column in 2..6 {
        pools.align_right(column);
    }
    for (name, report) in allocator.pool_reports() {
        let (valid, problem) = match &report.problem {
            None => ("yes", String::new()),
            Some((reason, message)) => ("no", format!("{reason}: {message}")),
        };
        pools.row([
            name.to_string(),
            valid.to_owned(),
            report.used_ipv4.to_string(),
            report.available_ipv4.to_string(),
            report.used_ipv6.to_string(),
            report.available_ipv6.to_string(),
            problem,
        ]);
    }
    let mut addresses = Table::new(["ADDRESS", "POOL", "SERVICES"]);
    for holding in allocator.holdings() {
        let services: Vec<String> = holding.services.iter().map(ToString::to_string).collect();
        let pool = holding.pool.unwrap_or_else(|| "(none)".to_owned());
        addresses.row([holding.address.to_string(), pool, services.join(", ")]);
    }
    let mut out = pools.render() + "\n" + &addresses.render();
    let mut waiting = allocator.outcomes().filter(|(_, o)| o.is_warning()).peekable();
    if waiting.peek().is_some() {
        let mut table = Table::new(["SERVICE", "REASON", "MESSAGE"]);
        for (key, outcome) in waiting {
            table.row([
                key.to_string(),
                outcome.reason.as_str().to_owned(),
                outcome.message.clone(),
            ]);
        }
        out += &("\n".to_owned() + &table.render());
    }
    out
}
