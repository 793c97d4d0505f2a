//! `switchyard controller`: the controller role's flags, turned into a [`ControllerConfig`]
//! for `switchyard-controller` (docs/controller.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use switchyard_controller::election::ElectionConfig;
use switchyard_controller::{ControllerConfig, Source};
use switchyard_k8s::api::ClusterAccess;

/// Run the controller role: LoadBalancer addresses from IPPools, written to Service status.
#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// Standalone: allocate for the Services in this manifest directory and record the addresses
    /// in DIR/.switchyard-status.json, which node agents reading DIR merge into the Services.
    #[arg(long, value_name = "DIR", conflicts_with = "kubeconfig")]
    manifests: Option<PathBuf>,

    /// The API server named in this kubeconfig. Without --manifests and --kubeconfig, inside a
    /// pod, the pod's service account is used.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Our loadBalancerClass: Services with this class, or with none, get addresses.
    #[arg(long, value_name = "NAME")]
    load_balancer_class: Option<String>,

    /// Namespace of the leader-election Lease.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, value_name = "NAME", default_value = "switchyard-controller")]
    lease_name: String,

    /// This replica's name in the Lease (default: the pod name, else host name and process id).
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    identity: Option<String>,

    /// How long a Lease holds without renewal; the renew deadline is two thirds of it, the retry
    /// period a sixth (at most 2 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
}

pub(crate) fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let class = args.load_balancer_class.filter(|c| !c.is_empty());
    let source = match args.manifests {
        Some(dir) => Source::Manifests(dir),
        None => {
            let access = match args.kubeconfig {
                Some(path) => ClusterAccess::Kubeconfig(path),
                None if ClusterAccess::in_cluster_available() => ClusterAccess::InCluster,
                None => {
                    anyhow::bail!("give --manifests DIR or --kubeconfig PATH (or run in a pod)")
                }
            };
            let identity = args.identity.unwrap_or_else(default_identity);
            let election = ElectionConfig::new(&args.lease_namespace, &args.lease_name, &identity)
                .with_lease_duration(Duration::from_secs(args.lease_duration_seconds.max(3)));
            Source::Api { access, election }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(switchyard_controller::run(ControllerConfig { source, class }))?;
    Ok(ExitCode::SUCCESS)
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
