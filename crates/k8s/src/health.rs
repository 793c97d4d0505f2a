//! Proxy health as kube-proxy reports it on `/healthz` and `/livez` (default port 10256), so
//! load balancers and probes written for kube-proxy work unchanged.
//!
//! Healthy means: no update from the API server has been waiting to reach the data plane for
//! longer than the health timeout. `/healthz` additionally answers 503 when the node is going
//! away (deletionTimestamp set, or the cluster autoscaler's `ToBeDeletedByClusterAutoscaler`
//! taint), so external load balancers drain it first; `/livez` ignores that (a liveness probe
//! must not restart a proxy on a node that is merely being drained).
//!
//! An agent that is shutting down gracefully (SIGTERM) answers 503 on `/healthz` and on the
//! health check node ports for its grace period while it keeps forwarding, so directors and
//! load balancers drain the node before its agent is gone.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Node;
use switchyard_error::ErrorChain;
use switchyard_model::HealthCheck;

/// kube-proxy's default `--healthz-bind-address`.
pub const DEFAULT_BIND_ADDRESS: &str = "0.0.0.0:10256";
/// Taint the cluster autoscaler puts on a node it is about to delete (defined by the model).
pub use switchyard_model::TO_BE_DELETED_TAINT;
/// kube-proxy's health timeout: twice its sync period, 2 × 30 s by default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// The health state of the proxy; time is passed in so the logic is testable.
#[derive(Debug, Clone)]
pub struct ProxyHealth {
    timeout: Duration,
    last_updated: Option<SystemTime>,
    /// When the oldest update not yet applied was queued.
    oldest_pending: Option<SystemTime>,
    node_eligible: bool,
    /// The agent got SIGTERM and is in its shutdown grace period.
    shutting_down: bool,
}

/// One answer of the health endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub healthy: bool,
    /// The JSON body, kube-proxy's fields.
    pub body: String,
}

impl ProxyHealth {
    /// A proxy that just started: its first full sync counts as pending from `now`, so a proxy
    /// that never manages to sync turns unhealthy after `timeout`.
    pub fn new(timeout: Duration, now: SystemTime) -> Self {
        Self {
            timeout,
            last_updated: None,
            oldest_pending: Some(now),
            node_eligible: true,
            shutting_down: false,
        }
    }

    /// Changes arrived that the data plane does not have yet.
    pub fn queued(&mut self, now: SystemTime) {
        self.oldest_pending.get_or_insert(now);
    }

    /// Everything queued so far is in the data plane.
    pub fn updated(&mut self, now: SystemTime) {
        self.last_updated = Some(now);
        self.oldest_pending = None;
    }

    /// Follows this node's Node object (`None`: deleted); the model decides what makes a node
    /// eligible ([`switchyard_model::node_eligible`]).
    pub fn observe_node(&mut self, node: Option<&Node>) {
        self.node_eligible = switchyard_model::node_eligible(node);
    }

    /// True unless an update has waited longer than the timeout.
    pub fn healthy(&self, now: SystemTime) -> bool {
        self.oldest_pending.is_none_or(|queued| {
            now.duration_since(queued).unwrap_or(Duration::ZERO) <= self.timeout
        })
    }

    pub fn node_eligible(&self) -> bool {
        self.node_eligible
    }

    /// The agent is going away (SIGTERM): `/healthz` and the health check node ports answer
    /// 503 from now on, so whoever probes them drains the node while it still forwards.
    pub fn shutting_down(&mut self) {
        self.shutting_down = true;
    }

    /// Healthy and not shutting down: what the health check node ports call
    /// `serviceProxyHealthy`.
    pub fn serving(&self, now: SystemTime) -> bool {
        self.healthy(now) && !self.shutting_down
    }

    /// `/healthz`: healthy, the node eligible for traffic, and the agent not shutting down.
    pub fn healthz(&self, now: SystemTime) -> HealthReport {
        let healthy = self.serving(now) && self.node_eligible;
        let body = serde_json::json!({
            "lastUpdated": self.last_updated.map_or_else(String::new, rfc3339),
            "currentTime": rfc3339(now),
            "nodeEligible": self.node_eligible,
            "shuttingDown": self.shutting_down,
        });
        HealthReport { healthy, body: body.to_string() }
    }

    /// `/readyz`: the first sync is in the data plane and the proxy is healthy. Probes that
    /// must wait for a slow first sync (a startup probe) ask this: `/livez` is 200 for the
    /// first health timeout whether or not anything was programmed.
    pub fn readyz(&self, now: SystemTime) -> HealthReport {
        let body = serde_json::json!({
            "lastUpdated": self.last_updated.map_or_else(String::new, rfc3339),
            "currentTime": rfc3339(now),
        });
        HealthReport {
            healthy: self.last_updated.is_some() && self.healthy(now),
            body: body.to_string(),
        }
    }

    /// `/livez`: healthy, whatever the node's state.
    pub fn livez(&self, now: SystemTime) -> HealthReport {
        let body = serde_json::json!({
            "lastUpdated": self.last_updated.map_or_else(String::new, rfc3339),
            "currentTime": rfc3339(now),
        });
        HealthReport { healthy: self.healthy(now), body: body.to_string() }
    }
}

/// Health shared between the agent (which reports updates) and the HTTP server.
pub type SharedHealth = Arc<Mutex<ProxyHealth>>;

/// A thread of its own with a runtime for the health servers (`/healthz`, `/livez`, `/readyz`
/// and the health check node ports): they keep answering while the agent's runtime is busy
/// programming (a sync of 10,000 Services keeps it for seconds), so probes and load balancers
/// do not see a working node as down. Dropping it stops the thread and every server on it.
#[derive(Debug)]
pub struct HealthRuntime {
    handle: tokio::runtime::Handle,
    /// Dropped to end the thread's runtime.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HealthRuntime {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("health".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, _stop: stop })
    }

    /// Where the health servers are spawned.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// The HTTP server of `/healthz`, `/livez` and `/readyz`. Dropping it stops the server.
#[derive(Debug)]
pub struct HealthServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    /// Binds `address` (port 0 picks a free port) and serves in the background on the
    /// current tokio runtime.
    pub async fn start(address: SocketAddr, health: SharedHealth) -> std::io::Result<Self> {
        Self::start_on(&tokio::runtime::Handle::current(), address, health)
    }

    /// Binds `address` and serves on `runtime` (a [`HealthRuntime`]'s).
    pub fn start_on(
        runtime: &tokio::runtime::Handle,
        address: SocketAddr,
        health: SharedHealth,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(health);
        let task = runtime.spawn(serve(listener, app, "health server stopped"));
        Ok(Self { local_addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Serves `app` on `listener` (registered with the runtime this runs on).
async fn serve(listener: std::net::TcpListener, app: Router, stopped: &'static str) {
    let served = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => axum::serve(listener, app).await,
        Err(err) => Err(err),
    };
    if let Err(err) = served {
        tracing::error!(error = %ErrorChain(&err), "{stopped}");
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn healthz(State(health): State<SharedHealth>) -> Response {
    let report = health.lock().unwrap_or_else(PoisonError::into_inner).healthz(SystemTime::now());
    respond(report)
}

async fn readyz(State(health): State<SharedHealth>) -> Response {
    let report = health.lock().unwrap_or_else(PoisonError::into_inner).readyz(SystemTime::now());
    respond(report)
}

async fn livez(State(health): State<SharedHealth>) -> Response {
    let report = health.lock().unwrap_or_else(PoisonError::into_inner).livez(SystemTime::now());
    respond(report)
}

fn respond(report: HealthReport) -> Response {
    let status = if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        report.body,
    )
        .into_response()
}

/// What a Service's health check node port answers (kube-proxy's `hcHandler`): 200 when the
/// Service has ready endpoints on this node and the proxy is healthy, else 503 (also when only
/// terminating local endpoints are left, so load balancers stop sending new clients while
/// existing flows still reach them). `weight` is the `X-Load-Balancing-Endpoint-Weight` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealthReport {
    pub healthy: bool,
    pub weight: usize,
    pub body: String,
}

/// The answer for `check`, given whether the proxy itself is healthy.
pub fn service_health(check: &HealthCheck, proxy_healthy: bool) -> ServiceHealthReport {
    let body = serde_json::json!({
        "service": {"namespace": check.service.namespace, "name": check.service.name},
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": proxy_healthy,
    });
    ServiceHealthReport {
        healthy: check.local_endpoints > 0 && proxy_healthy,
        weight: check.local_endpoints,
        body: body.to_string(),
    }
}

/// One HTTP server per health check node port (`[::]:PORT` for both families, or `0.0.0.0:PORT`
/// on a host without IPv6: [`bind_node_port`]), started, updated
/// and stopped port by port as the desired state changes. A port that cannot be bound (another
/// process holds it) is kept as pending and bound again by [`ServiceHealthServers::retry`] with
/// backoff: the Service may not change for hours, and its load balancer would see the node as
/// down all that time. Must be used within a tokio runtime.
#[derive(Debug)]
pub struct ServiceHealthServers {
    health: SharedHealth,
    /// Where the servers run.
    runtime: tokio::runtime::Handle,
    servers: BTreeMap<u16, ServiceServer>,
    pending: BTreeMap<u16, Pending>,
}

#[derive(Debug)]
struct ServiceServer {
    check: Arc<Mutex<HealthCheck>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port whose bind failed: what to serve on it and when to try again.
#[derive(Debug)]
struct Pending {
    check: HealthCheck,
    /// Binds that failed so far.
    attempts: u32,
    delay: Duration,
    next: Instant,
}

/// First wait after a failed bind; doubled after every further failure up to
/// [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two binds of a pending port.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why a health check node port could not be served.
#[derive(Debug, thiserror::Error)]
#[error(
    "health check node port {port} of Service {service} (attempt {attempts}, retrying in {retry_in:?})"
)]
pub struct ServiceHealthError {
    pub port: u16,
    pub service: String,
    /// Binds that failed so far, this one included.
    pub attempts: u32,
    /// When the port is tried again.
    pub retry_in: Duration,
    #[source]
    pub source: std::io::Error,
}

/// The outcome of one retried bind.
#[derive(Debug)]
pub enum RetryOutcome {
    /// The port is served now.
    Bound { port: u16, service: String, attempts: u32 },
    /// Still not bindable; tried again after `retry_in` of the error.
    Failed(ServiceHealthError),
}

impl ServiceHealthServers {
    /// No servers yet; `health` says whether the proxy itself is healthy. Servers run on the
    /// current tokio runtime.
    pub fn new(health: SharedHealth) -> Self {
        Self::on(tokio::runtime::Handle::current(), health)
    }

    /// No servers yet; they will run on `runtime` (a [`HealthRuntime`]'s).
    pub fn on(runtime: tokio::runtime::Handle, health: SharedHealth) -> Self {
        Self { health, runtime, servers: BTreeMap::new(), pending: BTreeMap::new() }
    }

    /// Serves `check` on `port` (`None`: stops serving it). A port already served only
    /// changes its answer; its listener stays. A port that cannot be bound becomes pending
    /// (see [`ServiceHealthServers::retry`]); a change to its Service tries it at once.
    pub fn update(
        &mut self,
        port: u16,
        check: Option<HealthCheck>,
    ) -> Result<(), ServiceHealthError> {
        let Some(check) = check else {
            self.servers.remove(&port);
            self.pending.remove(&port);
            return Ok(());
        };
        if let Some(server) = self.servers.get(&port) {
            *server.check.lock().unwrap_or_else(PoisonError::into_inner) = check;
            return Ok(());
        }
        let (attempts, delay) = self
            .pending
            .remove(&port)
            .map_or((1, FIRST_RETRY_DELAY), |p| (p.attempts + 1, p.delay));
        self.bind(port, check, attempts, delay, Instant::now())
    }

    /// Binds `port` for `check` (attempt number `attempts`); on failure the port is pending
    /// for `delay`.
    fn bind(
        &mut self,
        port: u16,
        check: HealthCheck,
        attempts: u32,
        delay: Duration,
        now: Instant,
    ) -> Result<(), ServiceHealthError> {
        let listener = match bind_node_port(port, bind_dual_stack)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
        {
            Ok(listener) => listener,
            Err(source) => {
                let service = check.service.to_string();
                self.pending.insert(port, Pending { check, attempts, delay, next: now + delay });
                return Err(ServiceHealthError {
                    port,
                    service,
                    attempts,
                    retry_in: delay,
                    source,
                });
            }
        };
        let shared = Arc::new(Mutex::new(check));
        let state = (Arc::clone(&shared), Arc::clone(&self.health));
        let app = Router::new().fallback(service_health_handler).with_state(state);
        let task =
            self.runtime.spawn(serve(listener, app, "health check node port server stopped"));
        self.servers.insert(port, ServiceServer { check: shared, task });
        Ok(())
    }

    /// When the earliest pending port is due to be tried again (None: nothing pending).
    pub fn next_retry(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next).min()
    }

    /// Tries every pending port due at `now` again; a port that still fails waits twice as
    /// long (at most [`MAX_RETRY_DELAY`]).
    pub fn retry(&mut self, now: Instant) -> Vec<RetryOutcome> {
        let due: Vec<u16> =
            self.pending.iter().filter(|(_, p)| p.next <= now).map(|(port, _)| *port).collect();
        let mut outcomes = Vec::with_capacity(due.len());
        for port in due {
            let Some(pending) = self.pending.remove(&port) else { continue };
            let service = pending.check.service.to_string();
            let attempts = pending.attempts + 1;
            let delay = (pending.delay * 2).min(MAX_RETRY_DELAY);
            outcomes.push(match self.bind(port, pending.check, attempts, delay, now) {
                Ok(()) => RetryOutcome::Bound { port, service, attempts },
                Err(err) => RetryOutcome::Failed(err),
            });
        }
        outcomes
    }

    /// Ports currently served.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Ports that could not be bound and are retried.
    pub fn pending_ports(&self) -> Vec<u16> {
        self.pending.keys().copied().collect()
    }
}

/// Binds a health check node port for both families: `[::]` with `IPV6_V6ONLY` off, so IPv4
/// clients are served whatever `net.ipv6.bindv6only` says, or `0.0.0.0` when the host has no
/// IPv6 at all (`ipv6.disable=1`: no IPv6 socket can be made). `dual_stack` is
/// [`bind_dual_stack`] outside tests.
pub fn bind_node_port(
    port: u16,
    dual_stack: impl FnOnce(u16) -> std::io::Result<std::net::TcpListener>,
) -> std::io::Result<std::net::TcpListener> {
    match dual_stack(port) {
        Err(err) if ipv6_unavailable(&err) => {
            tracing::debug!(port, error = %err, "no IPv6 on this host: health check node port on IPv4 only");
            std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        }
        other => other,
    }
}

/// Errors that mean "this host has no IPv6", not "the port is taken".
fn ipv6_unavailable(err: &std::io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    const EADDRNOTAVAIL: i32 = 99;
    const EPROTONOSUPPORT: i32 = 93;
    matches!(err.raw_os_error(), Some(EAFNOSUPPORT | EADDRNOTAVAIL | EPROTONOSUPPORT))
}

/// `[::]:port` accepting IPv4 too (v4-mapped), set explicitly rather than left to the
/// host's `net.ipv6.bindv6only`.
pub fn bind_dual_stack(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

type ServiceHealthState = (Arc<Mutex<HealthCheck>>, SharedHealth);

async fn service_health_handler(State((check, health)): State<ServiceHealthState>) -> Response {
    let proxy_healthy =
        health.lock().unwrap_or_else(PoisonError::into_inner).serving(SystemTime::now());
    let check = check.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let report = service_health(&check, proxy_healthy);
    let status = if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::HeaderName::from_static("x-load-balancing-endpoint-weight"),
                report.weight.to_string(),
            ),
        ],
        report.body,
    )
        .into_response()
}

/// RFC 3339 in UTC with as many fraction digits as needed, as Go's `time.RFC3339Nano` (and so
/// kube-proxy) prints it: `2006-01-02T15:04:05.123456789Z`, `2006-01-02T15:04:05Z`.
fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time).map_or_else(|_| String::new(), |t| t.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn unhealthy_only_when_an_update_waits_longer_than_the_timeout() {
        // (steps, time of the check, healthy?)
        enum Step {
            Queued(u64),
            Updated(u64),
        }
        use Step::{Queued, Updated};
        let cases: &[(&str, &[Step], u64, bool)] = &[
            ("first sync pending, within timeout", &[], 60, true),
            ("first sync never happened", &[], 61, false),
            ("synced, nothing pending", &[Updated(5)], 1000, true),
            ("pending within timeout", &[Updated(5), Queued(100)], 160, true),
            ("pending past timeout", &[Updated(5), Queued(100)], 161, false),
            ("oldest pending counts", &[Updated(5), Queued(100), Queued(150)], 161, false),
            ("applied again", &[Updated(5), Queued(100), Updated(170)], 1000, true),
        ];
        for (name, steps, check, expected) in cases {
            let mut health = ProxyHealth::new(Duration::from_secs(60), at(0));
            for step in *steps {
                match step {
                    Queued(t) => health.queued(at(*t)),
                    Updated(t) => health.updated(at(*t)),
                }
            }
            assert_eq!(health.healthy(at(*check)), *expected, "{name}");
            assert_eq!(health.healthz(at(*check)).healthy, *expected, "{name}: healthz");
            assert_eq!(health.livez(at(*check)).healthy, *expected, "{name}: livez");
        }
    }

    #[test]
    fn readyz_waits_for_the_first_sync_however_long_it_takes() {
        let mut health = ProxyHealth::new(Duration::from_secs(60), at(0));
        // Before the first sync /livez is 200 (for the health timeout), /readyz is not.
        assert!(health.livez(at(30)).healthy);
        assert!(!health.readyz(at(30)).healthy);
        assert!(!health.readyz(at(300)).healthy);
        health.updated(at(300));
        assert!(health.readyz(at(301)).healthy);
        // A later update stuck past the timeout makes it unready again.
        health.queued(at(400));
        assert!(health.readyz(at(460)).healthy);
        assert!(!health.readyz(at(461)).healthy);
    }

    #[test]
    fn a_host_without_ipv6_gets_its_health_check_node_ports_on_ipv4() {
        let no_ipv6 = |_| Err(std::io::Error::from_raw_os_error(97));
        let listener = bind_node_port(0, no_ipv6).unwrap();
        let address = listener.local_addr().unwrap();
        assert!(address.is_ipv4(), "{address}");
        std::net::TcpStream::connect(("127.0.0.1", address.port())).unwrap();
        // A port taken is an error, not a silent fallback to one family.
        let taken = |_| Err(std::io::Error::from_raw_os_error(98));
        assert_eq!(bind_node_port(0, taken).unwrap_err().raw_os_error(), Some(98));
    }

    /// Issue 17: an agent in its shutdown grace answers 503 on /healthz and the health check
    /// node ports (directors drain it), while /livez stays 200.
    #[test]
    fn shutting_down_fails_healthz_and_service_health_but_not_livez() {
        let mut health = ProxyHealth::new(Duration::from_secs(60), at(0));
        health.updated(at(1));
        assert!(health.healthz(at(2)).healthy);
        assert!(health.serving(at(2)));
        health.shutting_down();
        let healthz = health.healthz(at(3));
        assert!(!healthz.healthy);
        let body: serde_json::Value = serde_json::from_str(&healthz.body).unwrap();
        assert_eq!(
            (body["shuttingDown"].clone(), body["nodeEligible"].clone()),
            (true.into(), true.into())
        );
        assert!(!health.serving(at(3)));
        assert!(health.livez(at(3)).healthy);
        assert!(health.healthy(at(3)));
    }

    #[test]
    fn node_going_away_fails_healthz_but_not_livez() {
        let taint = |key: &str| NodeSpec {
            taints: Some(vec![Taint {
                key: key.to_owned(),
                effect: "NoSchedule".to_owned(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        };
        let deleting = ObjectMeta {
            deletion_timestamp: Some(Time(Default::default())),
            ..ObjectMeta::default()
        };
        let cases: &[(&str, Option<Node>, bool)] = &[
            ("plain node", Some(Node::default()), true),
            ("being deleted", Some(Node { metadata: deleting, ..Node::default() }), false),
            (
                "autoscaler taint",
                Some(Node { spec: Some(taint(TO_BE_DELETED_TAINT)), ..Node::default() }),
                false,
            ),
            ("other taint", Some(Node { spec: Some(taint("dedicated")), ..Node::default() }), true),
            ("node object gone", None, false),
        ];
        for (name, node, eligible) in cases {
            let mut health = ProxyHealth::new(Duration::from_secs(60), at(0));
            health.updated(at(1));
            health.observe_node(node.as_ref());
            let healthz = health.healthz(at(2));
            assert_eq!(healthz.healthy, *eligible, "{name}");
            let body: serde_json::Value = serde_json::from_str(&healthz.body).unwrap();
            assert_eq!(body["nodeEligible"], *eligible, "{name}");
            assert!(health.livez(at(2)).healthy, "{name}: livez ignores the node");
        }
    }

    #[test]
    fn service_health_is_200_only_with_local_ready_endpoints_and_a_healthy_proxy() {
        let cases: &[(usize, bool, bool)] = &[
            (1, true, true),
            (3, true, true),
            (0, true, false),
            (2, false, false),
            (0, false, false),
        ];
        for &(local_endpoints, proxy_healthy, expected) in cases {
            let check = HealthCheck {
                service: switchyard_model::ObjectKey::new("shop", "web"),
                local_endpoints,
            };
            let report = service_health(&check, proxy_healthy);
            assert_eq!(report.healthy, expected, "{local_endpoints} endpoints, {proxy_healthy}");
            assert_eq!(report.weight, local_endpoints);
            let body: serde_json::Value = serde_json::from_str(&report.body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"service": {"namespace": "shop", "name": "web"},
                                   "localEndpoints": local_endpoints,
                                   "serviceProxyHealthy": proxy_healthy})
            );
        }
    }

    #[test]
    fn body_has_kube_proxy_fields_with_utc_timestamps() {
        let mut health = ProxyHealth::new(Duration::from_secs(60), at(0));
        health.updated(UNIX_EPOCH + Duration::new(951_782_400, 5));
        let body: serde_json::Value = serde_json::from_str(
            &health.healthz(UNIX_EPOCH + Duration::from_secs(4_102_444_799)).body,
        )
        .unwrap();
        assert_eq!(body["lastUpdated"], "2000-02-29T00:00:00.000000005Z");
        assert_eq!(body["currentTime"], "2099-12-31T23:59:59Z");
        assert_eq!(body["nodeEligible"], true);
        let livez: serde_json::Value = serde_json::from_str(&health.livez(at(0)).body).unwrap();
        assert!(livez.get("nodeEligible").is_none());
        assert_eq!(livez["currentTime"], "2023-11-14T22:13:20Z");
    }
}
