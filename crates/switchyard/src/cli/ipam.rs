//! `switchyard ipam DIR` or `switchyard ipam --kubeconfig PATH`: the controller's view — pools,
//! usage, who holds which address (from the status the controller wrote: the directory's status
//! file, or the Services' status on the API server), and Services still without an address.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchyard_controller::Allocator;
use switchyard_k8s::api::ClusterAccess;
use switchyard_k8s::manifest::{ManifestDirectory, STATUS_FILE};

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
}

pub(crate) fn run(args: &IpamArgs) -> anyhow::Result<ExitCode> {
    let class = args.load_balancer_class.clone().filter(|c| !c.is_empty());
    let allocator = match (&args.dir, &args.kubeconfig) {
        (_, Some(kubeconfig)) => from_api(kubeconfig, class)?,
        (Some(dir), None) => from_directory(dir, class),
        (None, None) => anyhow::bail!("give a manifest directory or --kubeconfig PATH"),
    };
    print!("{}", switchyard_controller::report::ipam(&allocator));
    Ok(ExitCode::SUCCESS)
}

fn from_directory(dir: &std::path::Path, class: Option<String>) -> Allocator {
    let directory = ManifestDirectory::load(dir);
    if !dir.join(STATUS_FILE).exists() {
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
    allocator
}

fn from_api(kubeconfig: &std::path::Path, class: Option<String>) -> anyhow::Result<Allocator> {
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
