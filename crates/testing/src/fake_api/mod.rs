//! A fake Kubernetes API server speaking the real HTTP list/watch protocol on 127.0.0.1.
//!
//! It keeps objects as JSON with one global resourceVersion counter (as etcd does), answers
//! LISTs (`{"kind":"ServiceList","metadata":{"resourceVersion":..},"items":[..]}`) and WATCHes
//! (newline-delimited `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":..}`), honours
//! label and field selectors (an object leaving a selector is seen as DELETED, as the API server's
//! watch cache does), bookmarks, streaming lists (`sendInitialEvents` and the
//! `k8s.io/initial-events-end` bookmark), and answers a watch from a compacted resourceVersion
//! with 410 Gone — as an ERROR event (what real API servers send) or as an HTTP 410.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::objects;

mod routes;
mod selector;

pub use routes::Route;
pub use selector::Selector;

/// The resources the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `/api/v1/services`.
    Services,
    /// `/apis/discovery.k8s.io/v1/endpointslices`.
    EndpointSlices,
    /// `/api/v1/nodes`.
    Nodes,
    /// `/apis/switchyard.io/v1alpha1/ippools` (a CRD: see [`FakeApi::set_crds_installed`]).
    IPPools,
    /// `/apis/switchyard.io/v1alpha1/bgppeers` (a CRD).
    BGPPeers,
    /// `/apis/switchyard.io/v1alpha1/bgpadvertisements` (a CRD).
    BGPAdvertisements,
    /// `/apis/switchyard.io/v1alpha1/l2advertisements` (a CRD).
    L2Advertisements,
    /// `/apis/coordination.k8s.io/v1/namespaces/NS/leases` (leader election).
    Leases,
    /// `/api/v1/namespaces/NS/events`.
    Events,
    /// `/api/v1/namespaces`.
    Namespaces,
    /// `/api/v1/namespaces/NS/secrets`.
    Secrets,
}

impl Resource {
    const ALL: [Self; 11] = [
        Self::Services,
        Self::EndpointSlices,
        Self::Nodes,
        Self::IPPools,
        Self::BGPPeers,
        Self::BGPAdvertisements,
        Self::L2Advertisements,
        Self::Leases,
        Self::Events,
        Self::Namespaces,
        Self::Secrets,
    ];

    /// The path segment naming the resource.
    fn plural(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::EndpointSlices => "endpointslices",
            Self::Nodes => "nodes",
            Self::IPPools => "ippools",
            Self::BGPPeers => "bgppeers",
            Self::BGPAdvertisements => "bgpadvertisements",
            Self::L2Advertisements => "l2advertisements",
            Self::Leases => "leases",
            Self::Events => "events",
            Self::Namespaces => "namespaces",
            Self::Secrets => "secrets",
        }
    }

    /// Resources whose `status` only the `/status` subresource writes.
    fn has_status(self) -> bool {
        matches!(self, Self::Services | Self::IPPools | Self::Nodes)
    }

    fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.kind() == kind)
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Services => "Service",
            Self::EndpointSlices => "EndpointSlice",
            Self::Nodes => "Node",
            Self::IPPools => "IPPool",
            Self::BGPPeers => "BGPPeer",
            Self::BGPAdvertisements => "BGPAdvertisement",
            Self::L2Advertisements => "L2Advertisement",
            Self::Leases => "Lease",
            Self::Events => "Event",
            Self::Namespaces => "Namespace",
            Self::Secrets => "Secret",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::EndpointSlices => "discovery.k8s.io/v1",
            Self::IPPools | Self::BGPPeers | Self::BGPAdvertisements | Self::L2Advertisements => {
                "switchyard.io/v1alpha1"
            }
            Self::Leases => "coordination.k8s.io/v1",
            Self::Services | Self::Nodes | Self::Events | Self::Namespaces | Self::Secrets => "v1",
        }
    }

    /// One of our own kinds, served only while its CRD is installed.
    pub fn is_custom(self) -> bool {
        matches!(
            self,
            Self::IPPools | Self::BGPPeers | Self::BGPAdvertisements | Self::L2Advertisements
        )
    }
}

/// How a watch from a compacted resourceVersion is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneStyle {
    /// HTTP 200 and an ERROR event with a 410 Status (what kube-apiserver does).
    ErrorEvent,
    /// HTTP 410 with a Status body.
    Http,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// GET, POST, PUT, PATCH or DELETE.
    pub method: String,
    /// The resource the path named (`None`: a path the fake does not serve).
    pub resource: Option<Resource>,
    /// The object the path named, if it named one.
    pub name: Option<String>,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
}

impl Logged {
    /// `watch=true`.
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }
    /// A LIST of a served resource (a GET of a collection that is not a watch).
    pub fn is_list(&self) -> bool {
        self.resource.is_some() && self.method == "GET" && self.name.is_none() && !self.is_watch()
    }
    /// A request that writes (POST, PUT, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
    /// `sendInitialEvents=true` (a streaming list).
    pub fn streams_initial_events(&self) -> bool {
        self.query.get("sendInitialEvents").map(String::as_str) == Some("true")
    }
    /// The `resourceVersion` parameter.
    pub fn resource_version(&self) -> Option<&str> {
        self.query.get("resourceVersion").map(String::as_str)
    }
}

#[derive(Debug, Clone)]
struct LogEntry {
    version: u64,
    resource: Resource,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Debug)]
struct Watcher {
    resource: Resource,
    selector: Selector,
    bookmarks: bool,
    sender: mpsc::UnboundedSender<Bytes>,
}

#[derive(Debug)]
struct Inner {
    version: u64,
    objects: BTreeMap<(Resource, String, String), Value>,
    log: Vec<LogEntry>,
    /// Watches from a resourceVersion below this are answered with 410 Gone.
    compacted_below: u64,
    gone_style: GoneStyle,
    refuse_streaming: bool,
    /// Behave like a server before Kubernetes 1.27: `sendInitialEvents` is an unknown parameter.
    ignore_streaming: bool,
    /// Our CRDs are installed: their resources are served (otherwise 404, as on a cluster
    /// where `deploy/crds.yaml` was not applied).
    crds_installed: bool,
    /// Writes of a resource to answer with 409 Conflict, as if someone else wrote first.
    conflicts: BTreeMap<Resource, usize>,
    /// For `generateName` and `uid`s.
    serial: u64,
    watchers: Vec<Watcher>,
    requests: Vec<Logged>,
}

/// The fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    holds: Arc<BTreeMap<Resource, watch::Sender<bool>>>,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// Servers of the same objects on further listeners ([`FakeApi::serve_also`]).
    also: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
        for task in self.also.lock().unwrap().iter() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    holds: Arc<BTreeMap<Resource, watch::Sender<bool>>>,
}

impl FakeApi {
    /// Starts serving on a free port of 127.0.0.1, with no objects.
    pub async fn start() -> Self {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await
    }

    /// Starts serving on `listener`, with no objects. The caller binds it, e.g. in a lab
    /// network namespace, so that a process there (which cannot reach the host's loopback)
    /// reaches the fake on its own 127.0.0.1.
    pub async fn start_on(listener: std::net::TcpListener) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            version: 100,
            objects: BTreeMap::new(),
            log: Vec::new(),
            compacted_below: 0,
            gone_style: GoneStyle::ErrorEvent,
            refuse_streaming: false,
            ignore_streaming: false,
            crds_installed: true,
            conflicts: BTreeMap::new(),
            serial: 0,
            watchers: Vec::new(),
            requests: Vec::new(),
        }));
        let holds: BTreeMap<Resource, watch::Sender<bool>> =
            Resource::ALL.iter().map(|r| (*r, watch::channel(false).0)).collect();
        let holds = Arc::new(holds);
        let shared = Shared { inner: inner.clone(), holds: holds.clone() };
        let (addr, task) = serve(shared, listener);
        Self { inner, holds, addr, task, also: Mutex::new(Vec::new()) }
    }

    /// Serves the same objects on `listener` too (bound, e.g., in a second lab network
    /// namespace, so processes in two namespaces share one server); returns its address.
    pub fn serve_also(&self, listener: std::net::TcpListener) -> SocketAddr {
        let shared = Shared { inner: self.inner.clone(), holds: self.holds.clone() };
        let (addr, task) = serve(shared, listener);
        self.also.lock().unwrap().push(task);
        addr
    }

    /// Writes a kubeconfig naming this server (plain HTTP, no credentials) to `path`, for
    /// binaries run as processes.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        self.write_kubeconfig_for(path, self.addr);
    }

    /// [`FakeApi::write_kubeconfig`] naming `addr` (one of [`FakeApi::serve_also`]'s).
    pub fn write_kubeconfig_for(&self, path: &std::path::Path, addr: SocketAddr) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n",
            addr
        );
        std::fs::write(path, text).unwrap();
    }

    /// A kube client talking to this server over plain HTTP.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Creates or replaces an object (kind from `apiVersion`/`kind`); returns its new version.
    pub fn put(&self, object: Value) -> u64 {
        let mut inner = self.inner.lock().unwrap();
        inner.put(object)
    }

    /// Creates or replaces every object of a multi-document YAML text (the lab's manifests);
    /// returns the version after the last.
    pub fn put_yaml(&self, text: &str) -> u64 {
        yaml_objects(text).into_iter().fold(self.version(), |_, object| self.put(object))
    }

    /// Deletes an object (which must exist); returns the version of the deletion.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> u64 {
        let mut inner = self.inner.lock().unwrap();
        inner.delete(resource, namespace, name)
    }

    /// Runs `f` while every watch is cut: open watches end first, and nothing `f` does reaches a
    /// client before it reconnects.
    pub fn outage<T>(&self, f: impl FnOnce(&mut Outage<'_>) -> T) -> T {
        let mut inner = self.inner.lock().unwrap();
        inner.watchers.clear();
        f(&mut Outage { inner: &mut inner })
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that asked for them.
    pub fn bookmark(&self) -> u64 {
        let inner = self.inner.lock().unwrap();
        for w in &inner.watchers {
            if w.bookmarks {
                let _ = w.sender.send(event_line(
                    "BOOKMARK",
                    &bookmark_object(w.resource, inner.version, false),
                ));
            }
        }
        inner.version
    }

    /// Makes requests for `resource` wait until [`FakeApi::release`].
    pub fn hold(&self, resource: Resource) {
        self.holds[&resource].send_replace(true);
    }

    /// Answers the requests [`FakeApi::hold`] kept waiting.
    pub fn release(&self, resource: Resource) {
        self.holds[&resource].send_replace(false);
    }

    /// How watches from a compacted resourceVersion are answered from now on.
    pub fn set_gone_style(&self, style: GoneStyle) {
        self.inner.lock().unwrap().gone_style = style;
    }

    /// Answer `sendInitialEvents=true` with 422 Invalid, as servers without WatchList do.
    pub fn refuse_streaming_lists(&self) {
        self.inner.lock().unwrap().refuse_streaming = true;
    }

    /// Ignore `sendInitialEvents`, as servers before Kubernetes 1.27 do: a watch from
    /// resourceVersion 0 gets the current objects as ADDED events but no end-of-list bookmark.
    pub fn ignore_streaming_lists(&self) {
        self.inner.lock().unwrap().ignore_streaming = true;
    }

    /// Installs or removes our CRDs (installed at start). Removing them ends open watches of
    /// their resources, and requests get 404 until they are installed again.
    pub fn set_crds_installed(&self, installed: bool) {
        let mut inner = self.inner.lock().unwrap();
        inner.crds_installed = installed;
        if !installed {
            inner.watchers.retain(|w| !w.resource.is_custom());
        }
    }

    /// The next `count` writes (PUT, PATCH) of `resource` get 409 Conflict.
    pub fn conflict_next_writes(&self, resource: Resource, count: usize) {
        self.inner.lock().unwrap().conflicts.insert(resource, count);
    }

    /// The object `namespace/name` (empty namespace: cluster-scoped) as stored.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().unwrap();
        inner.objects.get(&(resource, namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Every stored object of `resource`, by namespace and name.
    pub fn objects(&self, resource: Resource) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == resource)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The current (global) resourceVersion.
    pub fn version(&self) -> u64 {
        self.inner.lock().unwrap().version
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        self.inner.lock().unwrap().watchers.len()
    }
}

/// Changes made while the watches are down.
#[derive(Debug)]
pub struct Outage<'a> {
    inner: &'a mut Inner,
}

impl Outage<'_> {
    /// As [`FakeApi::put`], unseen by the watches.
    pub fn put(&mut self, object: Value) -> u64 {
        self.inner.put(object)
    }
    /// As [`FakeApi::delete`], unseen by the watches.
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> u64 {
        self.inner.delete(resource, namespace, name)
    }
    /// Forgets history: a watch from any resourceVersion before now gets 410 Gone.
    pub fn compact(&mut self) {
        self.inner.compacted_below = self.inner.version + 1;
    }
    /// Forgets history before `version` only.
    pub fn compact_below(&mut self, version: u64) {
        self.inner.compacted_below = version;
    }
}

impl Inner {
    fn put(&mut self, mut object: Value) -> u64 {
        let kind = object["kind"].as_str();
        let Some(resource) = kind.and_then(Resource::from_kind) else {
            panic!("fake API server: unknown kind {kind:?}")
        };
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let key = (resource, namespace_of(&object), name_of(&object));
        let old = self.objects.insert(key, object.clone());
        self.record(LogEntry { version: self.version, resource, old, new: Some(object) });
        self.version
    }

    fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> u64 {
        let key = (resource, namespace.to_owned(), name.to_owned());
        let Some(old) = self.objects.remove(&key) else { panic!("no {name} to delete") };
        self.version += 1;
        self.record(LogEntry { version: self.version, resource, old: Some(old), new: None });
        self.version
    }

    fn record(&mut self, entry: LogEntry) {
        self.watchers.retain(|w| {
            match entry_event(&entry, w.resource, &w.selector, entry.version) {
                Some(line) => w.sender.send(line).is_ok(),
                None => !w.sender.is_closed(),
            }
        });
        self.log.push(entry);
    }
}

/// The watch event a log entry means for a watch with `selector` (None if it does not see it).
fn entry_event(
    entry: &LogEntry,
    resource: Resource,
    selector: &Selector,
    version: u64,
) -> Option<Bytes> {
    if entry.resource != resource {
        return None;
    }
    let was = entry.old.as_ref().is_some_and(|o| selector.matches(o));
    let is = entry.new.as_ref().is_some_and(|o| selector.matches(o));
    match (was, is) {
        (false, true) => Some(event_line("ADDED", entry.new.as_ref()?)),
        (true, true) => Some(event_line("MODIFIED", entry.new.as_ref()?)),
        (true, false) => {
            // Leaving the selector looks like a deletion, at the version of the change.
            let mut gone = entry.new.clone().or_else(|| entry.old.clone())?;
            gone["metadata"]["resourceVersion"] = json!(version.to_string());
            Some(event_line("DELETED", &gone))
        }
        (false, false) => None,
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_object(resource: Resource, version: u64, initial_end: bool) -> Value {
    let mut metadata = json!({ "resourceVersion": version.to_string() });
    if initial_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": resource.kind(), "apiVersion": resource.api_version(), "metadata": metadata })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

/// Serves `shared` on `listener`: its address and the task.
fn serve(
    shared: Shared,
    listener: std::net::TcpListener,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new().fallback(handle).with_state(shared);
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

/// The objects of a multi-document YAML text, as JSON (empty documents skipped).
pub fn yaml_objects(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|object| !object.is_null())
        .collect()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [("content-type", "application/json")], serde_json::to_vec(body).unwrap())
        .into_response()
}

fn namespace_of(object: &Value) -> String {
    object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let query: BTreeMap<String, String> =
        request.uri().query().map(form_urlencoded_pairs).unwrap_or_default();
    let route = Route::parse(&path);
    shared.inner.lock().unwrap().requests.push(Logged {
        method: method.to_string(),
        resource: route.as_ref().map(|r| r.resource),
        name: route.as_ref().and_then(|r| r.name.clone()),
        subresource: route.as_ref().and_then(|r| r.subresource.clone()),
        query: query.clone(),
    });
    let crds_installed = shared.inner.lock().unwrap().crds_installed;
    let Some(route) = route.filter(|r| crds_installed || !r.resource.is_custom()) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "the server could not find the requested resource"),
        );
    };
    let resource = route.resource;
    // Held resources answer only once released.
    let mut hold = shared.holds[&resource].subscribe();
    let _ = hold.wait_for(|held| !*held).await;
    if route.name.is_some() || method != axum::http::Method::GET {
        let Ok(body) = axum::body::to_bytes(request.into_body(), 16 << 20).await else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", "unreadable body"),
            );
        };
        let mut inner = shared.inner.lock().unwrap();
        return routes::object_request(&mut inner, &method, &route, &body);
    }

    // A namespaced path lists and watches that namespace only.
    let mut fields = query.get("fieldSelector").cloned().unwrap_or_default();
    if let Some(namespace) = &route.namespace {
        let comma = if fields.is_empty() { "" } else { "," };
        fields += &format!("{comma}metadata.namespace={namespace}");
    }
    let selector =
        match Selector::parse(query.get("labelSelector").map_or("", String::as_str), &fields) {
            Ok(s) => s,
            Err(message) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", &message),
                );
            }
        };
    let mut inner = shared.inner.lock().unwrap();
    if query.get("watch").map(String::as_str) != Some("true") {
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((r, ns, _), o)| {
                *r == resource
                    && route.namespace.as_ref().is_none_or(|n| n == ns)
                    && selector.matches(o)
            })
            .map(|(_, o)| {
                // List items carry no kind/apiVersion, as the API server sends them.
                let mut item = o.clone();
                if let Some(map) = item.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                item
            })
            .collect();
        let list = json!({
            "kind": format!("{}List", resource.kind()),
            "apiVersion": resource.api_version(),
            "metadata": { "resourceVersion": inner.version.to_string() },
            "items": items,
        });
        return json_response(StatusCode::OK, &list);
    }

    let streaming = query.get("sendInitialEvents").map(String::as_str) == Some("true")
        && !inner.ignore_streaming;
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
    if streaming {
        if inner.refuse_streaming {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &status(
                    422,
                    "Invalid",
                    "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                ),
            );
        }
        for ((r, _, _), object) in &inner.objects {
            if *r == resource && selector.matches(object) {
                let _ = sender.send(event_line("ADDED", object));
            }
        }
        let _ =
            sender.send(event_line("BOOKMARK", &bookmark_object(resource, inner.version, true)));
    } else {
        let from: u64 = match query.get("resourceVersion").map(|v| v.parse()) {
            Some(Ok(v)) => v,
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", "resourceVersion required"),
                );
            }
        };
        if from < inner.compacted_below {
            let message = format!("too old resource version: {from} ({})", inner.compacted_below);
            match inner.gone_style {
                GoneStyle::Http => {
                    return json_response(StatusCode::GONE, &status(410, "Expired", &message));
                }
                GoneStyle::ErrorEvent => {
                    let _ = sender.send(event_line("ERROR", &status(410, "Expired", &message)));
                    drop(sender);
                    return stream_response(receiver);
                }
            }
        }
        if from == 0 {
            // "Any version": the current state as ADDED events, then what follows.
            for ((r, _, _), object) in &inner.objects {
                if *r == resource && selector.matches(object) {
                    let _ = sender.send(event_line("ADDED", object));
                }
            }
        }
        for entry in inner.log.iter().filter(|e| from != 0 && e.version > from) {
            if let Some(line) = entry_event(entry, resource, &selector, entry.version) {
                let _ = sender.send(line);
            }
        }
    }
    inner.watchers.push(Watcher { resource, selector, bookmarks, sender });
    stream_response(receiver)
}

fn stream_response(receiver: mpsc::UnboundedReceiver<Bytes>) -> Response {
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, Infallible>(line), receiver))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap()
}

fn form_urlencoded_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

// Objects as the API server would store them (built on [`crate::objects`]).

/// A ClusterIP Service `<namespace>/<name>` with `labels`, one IPv4 cluster IP and port `http`
/// `port`/TCP → 8080.
pub fn service(namespace: &str, name: &str, labels: Value, cluster_ip: &str, port: u16) -> Value {
    let spec = json!({
        "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
        "ipFamilies": ["IPv4"],
        "ports": [{ "name": "http", "port": port, "protocol": "TCP", "targetPort": 8080 }]
    });
    let metadata =
        json!({ "namespace": namespace, "labels": labels, "uid": format!("uid-svc-{name}") });
    objects::with(objects::service(name, spec), json!({ "metadata": metadata }))
}

/// An EndpointSlice of `service` managed by the EndpointSlice controller: ready endpoints at
/// `addresses` on node-a, port `http` 8080/TCP.
pub fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    labels: Value,
    addresses: &[&str],
) -> Value {
    let endpoints = addresses.iter().map(|a| objects::endpoint(a, "node-a", "ready")).collect();
    let mut labels = labels;
    labels["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    objects::with(
        objects::slice(name, service, endpoints),
        json!({ "metadata": { "namespace": namespace, "labels": labels } }),
    )
}

/// A Node in `zone` with InternalIP `address`.
pub fn node(name: &str, address: &str, zone: &str) -> Value {
    objects::node(name, zone, &[("InternalIP", address), ("Hostname", name)])
}
