//! The local API: `/metrics` (Prometheus text), `/status`, `/desired` and `/bgp` (JSON) over a unix
//! socket, and over TCP only when an address is given. The router can also be merged into another axum
//! server (the kube-proxy-compatible health server) with `Router::merge`.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use switchyard_error::ErrorChain;
use switchyard_model::DesiredState;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Error;
use crate::bgp::{AnnounceHeldCollector, BgpCollector, BgpSource};
use crate::kernel::{self, KernelState};
use crate::metrics::{KernelCollector, SyncMetrics, render};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Every metric, including the kernel collector.
    pub registry: Arc<Registry>,
    /// The kernel view for `/status`.
    pub kernel: Arc<KernelCollector>,
    /// Sync metrics for `/status`.
    pub sync: SyncMetrics,
    /// The agent's current desired state for `/desired` (what `services --live` and
    /// `backends` compare the kernel with when no manifest directory is given).
    pub desired: DesiredSource,
    /// The BGP speaker's report for `/bgp` (and its metrics).
    pub bgp: BgpSource,
}

impl ApiState {
    /// A registry with the sync metrics, the kernel collector and the BGP collector registered.
    pub fn new(
        sync: SyncMetrics,
        kernel: Arc<KernelCollector>,
        desired: DesiredSource,
        bgp: BgpSource,
    ) -> Self {
        let mut registry = Registry::default();
        sync.register(&mut registry);
        registry.register_collector(Box::new(Arc::clone(&kernel)));
        registry.register_collector(Box::new(BgpCollector(bgp.clone())));
        ApiState { registry: Arc::new(registry), kernel, sync, desired, bgp }
    }
}

/// Where `/desired` gets the agent's desired state: asked of the agent's loop per request, so
/// the agent keeps no copy of it (at 10,000 Services × 25 endpoints a copy rewritten after every
/// sync held 23 MB). The loop answers between updates, so the answer is the state of the last
/// sync.
#[derive(Debug, Clone)]
pub struct DesiredSource(tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<DesiredState>>);

/// The agent loop's end of a [`DesiredSource`]: each request is answered with the desired state.
#[derive(Debug)]
pub struct DesiredRequests(tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<DesiredState>>);

impl DesiredSource {
    /// A source and the requests its handlers send.
    pub fn channel() -> (Self, DesiredRequests) {
        // A few requests may wait for the loop at once; more wait in the handlers.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        (Self(sender), DesiredRequests(receiver))
    }

    /// The desired state, once the loop answers; `None` when it has stopped.
    pub async fn get(&self) -> Option<DesiredState> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.0.send(reply).await.ok()?;
        answer.await.ok()
    }
}

impl DesiredRequests {
    /// The next request; `None` once every source is gone. Cancel-safe (for `select!`).
    pub async fn next(&mut self) -> Option<DesiredReply> {
        self.0.recv().await.map(DesiredReply)
    }
}

/// One waiting `/desired` request.
#[derive(Debug)]
pub struct DesiredReply(tokio::sync::oneshot::Sender<DesiredState>);

impl DesiredReply {
    /// Answers with `desired` (cloned only here, for the request); a gone client is fine.
    pub fn answer(self, desired: &DesiredState) {
        let _ = self.0.send(desired.clone());
    }
}

/// The `/status` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// bpffs directory.
    pub bpf_dir: PathBuf,
    /// Pinned program links (attached programs).
    pub programs: Vec<String>,
    /// Unix time of the last successful sync (0: none yet).
    pub last_sync_unix: f64,
    /// The kernel state.
    pub kernel: KernelState,
}

/// `/metrics`, `/status`, `/desired` and `/bgp`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/desired", get(desired))
        .route("/bgp", get(bgp))
        .with_state(state)
}

/// `/metrics` alone, for a TCP port: the network may reach it, and `/status`, `/desired` and
/// `/bgp` describe every Service and peer (they stay on the local unix socket).
pub fn metrics_router(state: ApiState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// The BGP speaker's sessions and decisions ([`crate::bgp::BgpReport`]).
async fn bgp(State(state): State<ApiState>) -> Response {
    axum::Json(state.bgp.report()).into_response()
}

/// The desired state as of the last sync, as JSON ([`DesiredState`]'s serde form).
async fn desired(State(state): State<ApiState>) -> Response {
    match state.desired.get().await {
        Some(desired) => axum::Json(desired).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n").into_response(),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    metrics_response(&state.registry)
}

fn metrics_response(registry: &Registry) -> Response {
    match render(registry) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n").into_response(),
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    match state.kernel.read() {
        Ok(kernel_state) => axum::Json(Status {
            bpf_dir: state.kernel.bpf_dir().to_owned(),
            programs: kernel::attached_programs(state.kernel.bpf_dir()),
            last_sync_unix: state.sync.last_sync_unix(),
            kernel: kernel_state,
        })
        .into_response(),
        Err(err) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", ErrorChain(&err))).into_response()
        }
    }
}

/// What a director's handlers read.
#[derive(Debug, Clone)]
struct DirectorApi {
    registry: Arc<Registry>,
    collector: Arc<crate::director::DirectorCollector>,
    bgp: BgpSource,
}

/// A director's local API: `/metrics` (its counters per VIP, per node and per reason, and its
/// BGP sessions), `/status` (what `switchyard status` shows on a director, as JSON) and `/bgp`
/// (what `switchyard bgp` shows: the sessions announcing its VIPs).
pub fn director_router(
    collector: Arc<crate::director::DirectorCollector>,
    bgp: BgpSource,
) -> Router {
    director_metrics_router(Arc::clone(&collector), bgp.clone()).merge(
        Router::new()
            .route("/status", get(director_status))
            .route("/bgp", get(director_bgp))
            .with_state(director_api(collector, bgp)),
    )
}

/// A director's `/metrics` alone, for a TCP port (as the agent's [`metrics_router`]): `/status`
/// and `/bgp` stay on the local unix socket.
pub fn director_metrics_router(
    collector: Arc<crate::director::DirectorCollector>,
    bgp: BgpSource,
) -> Router {
    Router::new().route("/metrics", get(director_metrics)).with_state(director_api(collector, bgp))
}

fn director_api(collector: Arc<crate::director::DirectorCollector>, bgp: BgpSource) -> DirectorApi {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Arc::clone(&collector)));
    registry.register_collector(Box::new(BgpCollector(bgp.clone())));
    registry.register_collector(Box::new(AnnounceHeldCollector(bgp.clone())));
    DirectorApi { registry: Arc::new(registry), collector, bgp }
}

async fn director_bgp(State(state): State<DirectorApi>) -> Response {
    axum::Json(state.bgp.report()).into_response()
}

async fn director_metrics(State(state): State<DirectorApi>) -> Response {
    metrics_response(&state.registry)
}

async fn director_status(State(state): State<DirectorApi>) -> Response {
    match state.collector.read() {
        Ok(status) => axum::Json(status).into_response(),
        Err(err) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", ErrorChain(&err))).into_response()
        }
    }
}

/// What `/metrics` serves: prometheus-client encodes OpenMetrics text (with `# EOF`), so the
/// content type says so (Prometheus parses it as OpenMetrics, not the 0.0.4 text format).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The local API served on a unix socket. Dropping it (the agent stops) ends the server and
/// removes the socket file, so no stale socket is left behind.
#[derive(Debug)]
pub struct UnixServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.task.abort();
        match std::fs::remove_file(&self.path) {
            Ok(()) => info!(socket = %self.path.display(), "local API socket removed"),
            Err(err) => warn!(socket = %self.path.display(), %err, "local API socket not removed"),
        }
    }
}

/// Serves `router` on a unix socket at `path` (mode 0600, so only root reads the API). A stale
/// socket file left by a dead agent is replaced; one that a live process still answers on is
/// refused, so a second agent never steals the first one's API.
pub fn serve_unix(path: &Path, router: Router) -> Result<UnixServer, Error> {
    let socket_err = |source| Error::Socket { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(socket_err)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(socket_err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process serves this socket (give each agent its own --api-socket)",
        )));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(e)),
    }
    // Bound inside a private directory (0700, made before the socket exists), made 0600, then
    // renamed into place: nobody but root can reach the socket before its mode is 0600,
    // whatever the umask.
    let mut staging_dir = path.as_os_str().to_owned();
    staging_dir.push(format!(".{}.tmp", std::process::id()));
    let staging_dir = PathBuf::from(staging_dir);
    let _ = std::fs::remove_dir_all(&staging_dir);
    std::fs::DirBuilder::new().mode(0o700).create(&staging_dir).map_err(socket_err)?;
    let staging = staging_dir.join("socket");
    let placed = tokio::net::UnixListener::bind(&staging).and_then(|listener| {
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staging, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&staging_dir);
    let listener = placed.map_err(socket_err)?;
    info!(socket = %path.display(), "local API listening");
    let shown = path.to_owned();
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            warn!(socket = %shown.display(), err = %ErrorChain(&err), "local API stopped");
        }
    });
    Ok(UnixServer { path: path.to_owned(), task })
}

/// Serves `router` on TCP at `address` (only when the operator asks for it).
pub async fn serve_tcp(address: SocketAddr, router: Router) -> Result<JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })?;
    info!(%address, "metrics listening on TCP");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            warn!(%address, err = %ErrorChain(&err), "metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod desired_tests {
    use switchyard_model::NodeModel;
    use switchyard_model::synthetic::{self, SyntheticCluster};

    use super::*;

    /// `/desired` keeps no copy: each request is answered by whoever holds the requests (the
    /// agent's loop) with its state at that moment; once the loop is gone, nothing answers.
    #[tokio::test]
    async fn desired_is_asked_of_the_loop_per_request() {
        let spec = SyntheticCluster { services: 5, ..SyntheticCluster::default() };
        let model = NodeModel::from_state(synthetic::config(), &synthetic::generate(&spec));
        let (source, mut requests) = DesiredSource::channel();
        let loop_task = tokio::spawn(async move {
            let mut answered = 0;
            while let Some(request) = requests.next().await {
                request.answer(model.desired());
                answered += 1;
                if answered == 2 {
                    break;
                }
            }
            answered
        });
        for _ in 0..2 {
            let desired = source.get().await.expect("the loop answers");
            assert!(!desired.frontends.is_empty());
        }
        assert_eq!(loop_task.await.ok(), Some(2));
        assert!(source.get().await.is_none(), "no loop, no answer");
    }
}
