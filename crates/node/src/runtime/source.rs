//! Where the agent's objects come from — a manifest directory or the Kubernetes API server — and
//! the kube-proxy compatible health endpoints that report how current the data plane is.
//!
//! Both sources yield the same [`ManifestUpdate`]s (the API server has no manifest problems), and
//! both hand on nothing before a complete first reading, so the agent treats them alike.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use switchyard_k8s::api::{ApiOptions, ApiWatcher, ClusterAccess};
use switchyard_k8s::health::{
    DEFAULT_BIND_ADDRESS, HealthRuntime, HealthServer, ProxyHealth, SharedHealth,
};
use switchyard_k8s::manifest::{ManifestUpdate, ManifestWatcher, WatchOptions};
use switchyard_model::Change;
use switchyard_model::validate::ValidationOptions;
use tracing::info;

use crate::config::SourceConfig;
use crate::error::NodeError;

/// The source the agent reads.
#[derive(Debug)]
pub(crate) enum Source {
    Manifests(ManifestWatcher),
    Api(ApiWatcher),
}

impl Source {
    /// The manifest directory, else the kubeconfig's API server, else in-cluster configuration.
    pub(crate) async fn open(
        config: &SourceConfig,
        debounce: Duration,
        validation: ValidationOptions,
        node_name: &str,
    ) -> Result<Self, NodeError> {
        if let Some(manifests) = &config.manifests {
            // An object the API server would refuse keeps its last good version.
            let watch = WatchOptions { debounce, validation, ..WatchOptions::default() };
            let watcher = ManifestWatcher::start(manifests, watch)
                .map_err(|source| NodeError::WatchManifests { dir: manifests.clone(), source })?;
            return Ok(Self::Manifests(watcher));
        }
        let access = match &config.kubeconfig {
            Some(path) => ClusterAccess::Kubeconfig(path.clone()),
            None if ClusterAccess::in_cluster_available() => ClusterAccess::InCluster,
            None => return Err(NodeError::NoSource),
        };
        let client = access.client().await.map_err(NodeError::ApiClient)?;
        let options =
            ApiOptions { proxy_name: config.proxy_name.clone(), ..ApiOptions::new(node_name) };
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
    /// The health servers' own thread; dropped last (after the server).
    runtime: HealthRuntime,
}

impl Health {
    pub(crate) async fn start(
        config: &SourceConfig,
        source: &Source,
        node_name: &str,
    ) -> Result<Self, NodeError> {
        let shared =
            Arc::new(Mutex::new(ProxyHealth::new(config.health_timeout, SystemTime::now())));
        let runtime = HealthRuntime::start().map_err(|source| NodeError::Serve {
            what: "the health servers' thread".into(),
            source,
        })?;
        let address = healthz_address(config.healthz_bind_address.as_deref(), source.is_api());
        let server = match address {
            None => None,
            Some(address) => {
                let address: SocketAddr = address.parse().map_err(|source| {
                    NodeError::HealthzAddress { address: address.to_owned(), source }
                })?;
                let server = HealthServer::start_on(runtime.handle(), address, shared.clone())
                    .map_err(|source| NodeError::Serve {
                        what: format!("/healthz on {address}"),
                        source,
                    })?;
                info!(address = %server.local_addr(), "serving /healthz and /livez");
                Some(server)
            }
        };
        Ok(Self { shared, node_name: node_name.to_owned(), _server: server, runtime })
    }

    /// The runtime the health check node ports are served on (the health servers' thread).
    pub(crate) fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
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

    /// The agent is shutting down: /healthz and the health check node ports answer 503.
    pub(crate) fn shutting_down(&self) {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).shutting_down();
    }

    /// Everything received so far is programmed.
    pub(crate) fn updated(&self) {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).updated(SystemTime::now());
    }
}

/// Where /healthz and /livez listen (docs/operations.md, "Health"): the address given; none when
/// it is empty; kube-proxy's 0.0.0.0:10256 by default when the API server is the source; none by
/// default with --manifests (a manifest directory has no updates to wait for).
fn healthz_address(given: Option<&str>, api_source: bool) -> Option<&str> {
    match given {
        Some("") => None,
        Some(address) => Some(address),
        None if api_source => Some(DEFAULT_BIND_ADDRESS),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: operations.md said /healthz defaults to 0.0.0.0:10256 while it is off with
    /// --manifests; the docs now say what this decides.
    #[test]
    fn healthz_is_on_by_default_only_with_the_api_server() {
        assert_eq!(DEFAULT_BIND_ADDRESS, "0.0.0.0:10256");
        assert_eq!(healthz_address(None, true), Some("0.0.0.0:10256"));
        assert_eq!(healthz_address(None, false), None);
        assert_eq!(healthz_address(Some(""), true), None);
        assert_eq!(healthz_address(Some("127.0.0.1:10256"), false), Some("127.0.0.1:10256"));
    }
}
