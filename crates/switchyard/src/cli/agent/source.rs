//! Where the agent's objects come from — a manifest directory or the Kubernetes API server — and
//! the kube-proxy compatible health endpoints that report how current the data plane is.
//!
//! Both sources yield the same [`ManifestUpdate`]s (the API server has no manifest problems), and
//! both hand on nothing before a complete first reading, so the agent treats them alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_k8s::api::{ApiOptions, ApiWatcher, ClusterAccess};
use switchyard_k8s::health::{DEFAULT_BIND_ADDRESS, HealthServer, ProxyHealth, SharedHealth};
use switchyard_k8s::manifest::{ManifestUpdate, ManifestWatcher, WatchOptions};
use switchyard_model::Change;
use tracing::info;

/// Source and health options of `switchyard agent`.
#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
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

impl SourceArgs {
    pub(crate) fn proxy_name(&self) -> Option<String> {
        self.proxy_name.clone().filter(|name| !name.is_empty())
    }
}

/// The source the agent reads.
#[derive(Debug)]
pub(crate) enum Source {
    Manifests(ManifestWatcher),
    Api(ApiWatcher),
}

impl Source {
    /// `--manifests DIR`, else `--kubeconfig PATH`, else in-cluster configuration.
    pub(crate) async fn open(
        manifests: Option<&Path>,
        watch: WatchOptions,
        node_name: &str,
        args: &SourceArgs,
    ) -> anyhow::Result<Self> {
        if let Some(manifests) = manifests {
            let watcher = ManifestWatcher::start(manifests, watch)
                .with_context(|| format!("watching {}", manifests.display()))?;
            return Ok(Self::Manifests(watcher));
        }
        let access = match &args.kubeconfig {
            Some(path) => ClusterAccess::Kubeconfig(path.clone()),
            None if ClusterAccess::in_cluster_available() => ClusterAccess::InCluster,
            None => bail!(
                "no source: give --manifests DIR or --kubeconfig PATH, or run in a pod \
                 (in-cluster configuration)"
            ),
        };
        let client = access.client().await.context("connecting to the API server")?;
        let options = ApiOptions { proxy_name: args.proxy_name(), ..ApiOptions::new(node_name) };
        info!(
            source = ?access,
            labels = %options.label_selector(),
            node = %node_name,
            "watching the API server; nothing is programmed before the first complete list"
        );
        Ok(Self::Api(ApiWatcher::start(client, options)))
    }

    /// The next update; the first one is the complete initial state.
    pub(crate) async fn next(&mut self) -> Option<ManifestUpdate> {
        match self {
            Self::Manifests(watcher) => watcher.next().await,
            Self::Api(watcher) => watcher.next().await.map(|update| ManifestUpdate {
                changes: update.changes,
                errors: Vec::new(),
                warnings: Vec::new(),
                ignored: Vec::new(),
            }),
        }
    }

    fn is_api(&self) -> bool {
        matches!(self, Self::Api(_))
    }
}

/// kube-proxy compatible health: updates queued and applied, this node's eligibility.
#[derive(Debug)]
pub(crate) struct Health {
    shared: SharedHealth,
    node_name: String,
    _server: Option<HealthServer>,
}

impl Health {
    pub(crate) async fn start(
        args: &SourceArgs,
        source: &Source,
        node_name: &str,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(args.health_timeout_seconds);
        let shared = Arc::new(Mutex::new(ProxyHealth::new(timeout, SystemTime::now())));
        let address = match args.healthz_bind_address.as_deref() {
            Some("") => None,
            Some(address) => Some(address),
            None if source.is_api() => Some(DEFAULT_BIND_ADDRESS),
            None => None,
        };
        let server = match address {
            None => None,
            Some(address) => {
                let address: SocketAddr = address
                    .parse()
                    .with_context(|| format!("--healthz-bind-address {address:?}"))?;
                let server = HealthServer::start(address, shared.clone())
                    .await
                    .with_context(|| format!("serving /healthz on {address}"))?;
                info!(address = %server.local_addr(), "serving /healthz and /livez");
                Some(server)
            }
        };
        Ok(Self { shared, node_name: node_name.to_owned(), _server: server })
    }

    /// The proxy's health, for the health check node ports (`serviceProxyHealthy`).
    pub(crate) fn shared(&self) -> SharedHealth {
        Arc::clone(&self.shared)
    }

    /// An update arrived; `changes` are looked through for this node's Node object.
    pub(crate) fn queued(&self, changes: &[Change]) {
        let mut health = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        health.queued(SystemTime::now());
        for change in changes {
            if let Change::Node(key, node) = change
                && key.name == self.node_name
            {
                health.observe_node(node.as_deref());
            }
        }
    }

    /// Everything received so far is programmed.
    pub(crate) fn updated(&self) {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).updated(SystemTime::now());
    }
}
