//! `switchyard ipam DIR`: the controller's view of a manifest directory — pools, usage, who
//! holds which address (from the status file the standalone controller writes), and Services
//! still without an address.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use switchyard_controller::Allocator;
use switchyard_k8s::manifest::{ManifestDirectory, STATUS_FILE};

/// Pools, their usage, and who holds which LoadBalancer address.
#[derive(Debug, Args)]
pub(crate) struct IpamArgs {
    /// Manifest directory (its .switchyard-status.json holds what the controller allocated).
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Our loadBalancerClass, as given to the controller.
    #[arg(long, value_name = "NAME")]
    load_balancer_class: Option<String>,
}

pub(crate) fn run(args: &IpamArgs) -> anyhow::Result<ExitCode> {
    let directory = ManifestDirectory::load(&args.dir);
    if !args.dir.join(STATUS_FILE).exists() {
        println!(
            "no {STATUS_FILE} in {}: no controller has run here; the addresses below are what one \
             would allocate\n",
            args.dir.display()
        );
    }
    for error in directory.errors() {
        eprintln!("warning: {error}");
    }
    let mut allocator = Allocator::new(args.load_balancer_class.clone().filter(|c| !c.is_empty()));
    for change in directory.changes_from_empty() {
        allocator.apply(&change);
    }
    allocator.reconcile();
    print!("{}", switchyard_controller::report::ipam(&allocator));
    Ok(ExitCode::SUCCESS)
}
