//! Building a client for the API server: a kubeconfig file or the in-cluster service account.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Where the API server's address and credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAccess {
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// The pod's service account token and CA, and `KUBERNETES_SERVICE_HOST` / `_PORT`. Without
    /// kube-proxy the `kubernetes` Service's ClusterIP is not reachable before we program it, so
    /// the DaemonSet sets those variables to the real API server address (deploy/configmap.yaml).
    InCluster,
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("{path}: cannot read kubeconfig")]
    ReadKubeconfig { path: PathBuf, source: kube::config::KubeconfigError },
    /// The kubeconfig was read but does not describe a usable cluster.
    #[error("{path}: unusable kubeconfig")]
    Kubeconfig { path: PathBuf, source: kube::config::KubeconfigError },
    /// The in-cluster service account configuration is missing or broken.
    #[error("in-cluster configuration unavailable (not running in a pod?)")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be built from the configuration.
    #[error("cannot create the API client")]
    Client(#[source] kube::Error),
}

impl ClusterAccess {
    /// True when the process runs in a pod (the variable the kubelet always sets).
    pub fn in_cluster_available() -> bool {
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    }

    /// The client configuration for this access.
    pub async fn config(&self) -> Result<Config, ClientError> {
        match self {
            Self::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|source| ClientError::ReadKubeconfig { path: path.clone(), source })?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| ClientError::Kubeconfig { path: path.clone(), source })
            }
            Self::InCluster => Config::incluster().map_err(ClientError::InCluster),
        }
    }

    /// A client for this access.
    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::try_from(self.config().await?).map_err(ClientError::Client)
    }
}
