//! The controller role as the binary starts it: pick the runtime for the source, run it until
//! SIGTERM or Ctrl-C, stop cleanly (a leader releases its Lease).

use std::path::PathBuf;

use switchyard_k8s::api::{ClientError, ClusterAccess};
use tokio::sync::watch;

use crate::election::ElectionConfig;
use crate::runtime::api::{self, ApiConfig, ControllerError};
use crate::runtime::manifests::{self, StandaloneError};

/// Where the controller reads objects and writes status.
#[derive(Debug, Clone)]
pub enum Source {
    /// A manifest directory; status goes to its status file.
    Manifests(PathBuf),
    /// The API server (a kubeconfig, or in-cluster), with leader election.
    Api { access: ClusterAccess, election: ElectionConfig },
}

/// Everything `switchyard controller` configures.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub source: Source,
    /// `--load-balancer-class`.
    pub class: Option<String>,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No API client could be built.
    #[error("connecting to the API server")]
    Client(#[from] ClientError),
    /// The controller against the API server failed.
    #[error(transparent)]
    Api(#[from] ControllerError),
    /// The standalone controller failed.
    #[error(transparent)]
    Standalone(#[from] StandaloneError),
    /// Signals could not be set up.
    #[error("installing the SIGTERM handler")]
    Signal(#[source] std::io::Error),
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(config: ControllerConfig) -> Result<(), RunError> {
    let (stop, stopped) = watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        stop.send_replace(true);
    });
    match config.source {
        Source::Manifests(dir) => {
            tracing::info!(dir = %dir.display(), "controller: standalone on a manifest directory");
            manifests::run(dir, config.class, stopped).await?;
        }
        Source::Api { access, election } => {
            let client = access.client().await?;
            tracing::info!(identity = %election.identity, lease = %format!("{}/{}", election.namespace, election.name), "controller: against the API server");
            api::run(client, ApiConfig::new(config.class, election), stopped).await?;
        }
    }
    Ok(())
}
