//! The API source: one kube-runtime watcher per kind, feeding a [`Reflection`] that hands
//! batches of model changes to the consumer.
//!
//! Each kind runs in a task of its own. A task restarts its watcher from scratch (a full relist)
//! when the API server says the resourceVersion is gone, however it says it (an ERROR event with
//! code 410 — handled inside kube-runtime — or an HTTP 410 on the watch request, which
//! kube-runtime would otherwise retry forever with the same stale version), and falls back from
//! streaming lists to LIST+WATCH when the API server refuses or ignores `sendInitialEvents`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use switchyard_error::ErrorChain;
use switchyard_model::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::{Change, ObjectKey, ObjectKind};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;

use super::backoff::JitteredBackoff;
use super::options::{ApiOptions, InitialList, WatchScope};
use super::reflection::{KindEvent, Reflection, Watched};
use super::undecodable::{Namer, is_decode_error, tolerant_watcher};

/// Model changes from the API server. The first update holds the whole cluster (every kind
/// completely listed); later ones hold what changed since, each object at most once.
#[derive(Debug, Clone)]
pub struct ApiUpdate {
    pub changes: Vec<Change>,
}

/// Every kind the director's watch covers.
const DIRECTOR_KINDS: [ObjectKind; 6] = [
    ObjectKind::Service,
    ObjectKind::EndpointSlice,
    ObjectKind::Node,
    ObjectKind::IPPool,
    ObjectKind::BGPPeer,
    ObjectKind::BGPAdvertisement,
];

/// Every kind the node agent's watch covers: the director's and L2Advertisements.
const NODE_KINDS: [ObjectKind; 7] = [
    ObjectKind::Service,
    ObjectKind::EndpointSlice,
    ObjectKind::Node,
    ObjectKind::IPPool,
    ObjectKind::BGPPeer,
    ObjectKind::BGPAdvertisement,
    ObjectKind::L2Advertisement,
];

/// How long a streaming list may go without its end marker before the API server is assumed to
/// ignore `sendInitialEvents` (servers before Kubernetes 1.27 do) and LIST+WATCH is used instead.
pub const DEFAULT_STREAMING_LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// A running watch of Services, EndpointSlices, Nodes, our own kinds (IPPools, BGPPeers,
/// BGPAdvertisements, L2Advertisements; a kind whose CRD is not installed counts as empty until
/// it is),
/// and the Secrets BGPPeers name (each by name: no other Secret is read).
/// Dropping it stops the watches.
#[derive(Debug)]
pub struct ApiWatcher {
    updates: mpsc::Receiver<ApiUpdate>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiWatcher {
    /// Starts the watches; must be called within a tokio runtime. The first update arrives once
    /// every kind has been listed completely — until then nothing is handed on.
    pub fn start(client: Client, options: ApiOptions) -> Self {
        Self::start_with(client, options, DEFAULT_STREAMING_LIST_TIMEOUT)
    }

    /// [`ApiWatcher::start`] with a chosen streaming-list timeout (tests use a short one).
    pub fn start_with(
        client: Client,
        options: ApiOptions,
        streaming_list_timeout: Duration,
    ) -> Self {
        let (event_sender, events) = mpsc::channel(256);
        let (update_sender, updates) = mpsc::channel(1);
        let labels = options.label_selector();
        let tuning = Tuning { options: options.clone(), streaming_list_timeout };

        let pools = KindWatch::custom(Api::<IPPool>::all(client.clone()), KindEvent::IPPool);
        let mut tasks = Vec::new();
        // The Secrets to watch, as the reflection learns them from BGPPeers (node and director).
        let mut named_secrets = None;
        let watched: &[ObjectKind] = match options.scope {
            WatchScope::Node => {
                let services = KindWatch {
                    api: Api::<Service>::all(client.clone()),
                    config: watcher::Config::default().labels(&labels),
                    wrap: Arc::new(KindEvent::Service),
                    custom: false,
                };
                let slices = KindWatch {
                    api: Api::<EndpointSlice>::all(client.clone()),
                    config: watcher::Config::default().labels(&labels),
                    wrap: Arc::new(KindEvent::EndpointSlice),
                    custom: false,
                };
                // Every Node: L2 mode picks the node answering for an address among all of
                // them, and every agent must pick the same one.
                let nodes = KindWatch {
                    api: Api::<Node>::all(client.clone()),
                    config: watcher::Config::default(),
                    wrap: Arc::new(KindEvent::Node),
                    custom: false,
                };
                let peers =
                    KindWatch::custom(Api::<BGPPeer>::all(client.clone()), KindEvent::BGPPeer);
                let advertisements = KindWatch::custom(
                    Api::<BGPAdvertisement>::all(client.clone()),
                    KindEvent::BGPAdvertisement,
                );
                let l2 = KindWatch::custom(
                    Api::<L2Advertisement>::all(client.clone()),
                    KindEvent::L2Advertisement,
                );
                tasks.push(tokio::spawn(l2.run(tuning.clone(), event_sender.clone())));
                let (named, named_rx) = watch::channel(BTreeSet::new());
                named_secrets = Some(named);
                tasks.push(tokio::spawn(watch_secrets(
                    client,
                    tuning.clone(),
                    named_rx,
                    event_sender.clone(),
                )));
                tasks.push(tokio::spawn(services.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(slices.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(nodes.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(peers.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(advertisements.run(tuning.clone(), event_sender.clone())));
                &NODE_KINDS
            }
            WatchScope::Director => {
                let services = KindWatch {
                    api: Api::<Service>::all(client.clone()),
                    config: watcher::Config::default().labels(&labels),
                    wrap: Arc::new(KindEvent::Service),
                    custom: false,
                };
                let slices = KindWatch {
                    api: Api::<EndpointSlice>::all(client.clone()),
                    config: watcher::Config::default().labels(&labels),
                    wrap: Arc::new(KindEvent::EndpointSlice),
                    custom: false,
                };
                let nodes = KindWatch {
                    api: Api::<Node>::all(client.clone()),
                    config: watcher::Config::default(),
                    wrap: Arc::new(KindEvent::Node),
                    custom: false,
                };
                // The director announces its VIPs to the BGPPeers that select its Node.
                let peers =
                    KindWatch::custom(Api::<BGPPeer>::all(client.clone()), KindEvent::BGPPeer);
                let advertisements = KindWatch::custom(
                    Api::<BGPAdvertisement>::all(client.clone()),
                    KindEvent::BGPAdvertisement,
                );
                let (named, named_rx) = watch::channel(BTreeSet::new());
                named_secrets = Some(named);
                tasks.push(tokio::spawn(watch_secrets(
                    client,
                    tuning.clone(),
                    named_rx,
                    event_sender.clone(),
                )));
                tasks.push(tokio::spawn(services.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(slices.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(nodes.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(peers.run(tuning.clone(), event_sender.clone())));
                tasks.push(tokio::spawn(advertisements.run(tuning.clone(), event_sender.clone())));
                &DIRECTOR_KINDS
            }
            WatchScope::Controller => {
                let services = KindWatch {
                    api: Api::<Service>::all(client),
                    config: watcher::Config::default(),
                    wrap: Arc::new(KindEvent::Service),
                    custom: false,
                };
                tasks.push(tokio::spawn(services.run(tuning.clone(), event_sender.clone())));
                &[ObjectKind::Service, ObjectKind::IPPool]
            }
        };
        tasks.push(tokio::spawn(pools.run(tuning, event_sender)));
        let reflection = Reflection::watching(watched);
        tasks.push(tokio::spawn(hand_on(reflection, events, update_sender, named_secrets)));
        Self { updates, tasks }
    }

    /// The next update; `None` once the watches have ended.
    pub async fn next(&mut self) -> Option<ApiUpdate> {
        self.updates.recv().await
    }
}

impl Drop for ApiWatcher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Clone)]
struct Tuning {
    options: ApiOptions,
    streaming_list_timeout: Duration,
}

/// Collects watcher events into the reflection and hands ready batches on. While the consumer is
/// busy, changes keep collecting (and coalescing) instead of queueing up one by one.
async fn hand_on(
    mut reflection: Reflection,
    mut events: mpsc::Receiver<KindEvent>,
    updates: mpsc::Sender<ApiUpdate>,
    named_secrets: Option<watch::Sender<BTreeSet<ObjectKey>>>,
) {
    let mut first = true;
    loop {
        let ready = reflection.synced() && reflection.has_pending();
        tokio::select! {
            // Handing on first: a steady stream of events must not hold updates back.
            biased;
            permit = updates.reserve(), if ready => {
                let Ok(permit) = permit else { return };
                if let Some(changes) = reflection.take_ready() {
                    if first {
                        tracing::info!(objects = changes.len(), "API server: first complete list");
                        first = false;
                    }
                    permit.send(ApiUpdate { changes });
                }
            }
            event = events.recv() => match event {
                Some(event) => {
                    reflection.handle(event);
                    if let Some(named) = &named_secrets {
                        let now = reflection.named_secrets();
                        named.send_if_modified(|watched| {
                            let changed = *watched != now;
                            *watched = now;
                            changed
                        });
                    }
                }
                None => return,
            },
        }
    }
}

/// Watches each Secret a BGPPeer names, by namespace and name (a `metadata.name` field selector,
/// which RBAC authorises against `resourceNames`), starting and stopping watches as peers
/// change. Dropping the task stops them all.
async fn watch_secrets(
    client: Client,
    tuning: Tuning,
    mut named: watch::Receiver<BTreeSet<ObjectKey>>,
    events: mpsc::Sender<KindEvent>,
) {
    let mut watches = JoinSet::new();
    let mut running: HashMap<ObjectKey, AbortHandle> = HashMap::new();
    loop {
        while watches.try_join_next().is_some() {}
        let wanted = named.borrow_and_update().clone();
        running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let watched = key.clone();
            let secret = KindWatch {
                api: Api::<Secret>::namespaced(client.clone(), &key.namespace),
                config: watcher::Config::default().fields(&format!("metadata.name={}", key.name)),
                wrap: Arc::new(move |event| KindEvent::Secret(watched.clone(), event)),
                custom: false,
            };
            let task = watches.spawn(secret.run(tuning.clone(), events.clone()));
            running.insert(key, task);
        }
        if named.changed().await.is_err() {
            return;
        }
    }
}

/// The watch of one kind.
struct KindWatch<K: Watched> {
    api: Api<K>,
    config: watcher::Config,
    wrap: Arc<dyn Fn(Event<K>) -> KindEvent + Send + Sync>,
    /// One of our own kinds: its CRD may not be installed (404), which means "none of them"
    /// rather than an error that holds every other kind back.
    custom: bool,
}

impl<K: Watched> KindWatch<K> {
    fn custom(api: Api<K>, wrap: fn(Event<K>) -> KindEvent) -> Self {
        Self { api, config: watcher::Config::default(), wrap: Arc::new(wrap), custom: true }
    }
}

/// Why a watcher is thrown away and started again.
enum Restart {
    /// The resourceVersion is gone (HTTP 410 on the watch request): list again.
    Gone,
    /// Streaming lists are not available: use LIST+WATCH from now on.
    NoStreamingLists,
    /// A LIST did not decode: watch through the tolerant type from now on.
    Tolerant,
}

impl<K> KindWatch<K>
where
    K: Watched + DeserializeOwned + Debug + kube::Resource<DynamicType = ()>,
{
    async fn run(self, tuning: Tuning, events: mpsc::Sender<KindEvent>) {
        let options = &tuning.options;
        let mut strategy = options.initial_list;
        let mut restarts = JitteredBackoff::new(options.min_backoff, options.max_backoff);
        // True while our CRD is missing and the kind has been handed on as empty.
        let mut absent = false;
        // Names objects the typed decode fails on (Services, EndpointSlices, Nodes: what a
        // version skew could make undecodable; all watched cluster-wide).
        let mut namer =
            matches!(K::KIND, ObjectKind::Service | ObjectKind::EndpointSlice | ObjectKind::Node)
                .then(|| Namer::new(&self.api, &self.config));
        // After a LIST that did not decode: watch through the tolerant type (each object
        // decoded per object, the bad ones named and skipped) instead of failing forever.
        let mut tolerant = false;
        loop {
            let mut config = self.config.clone();
            config = match strategy {
                InitialList::Streaming => config.streaming_lists(),
                InitialList::ListWatch => match options.page_size {
                    Some(size) => config.page_size(size),
                    None => config,
                },
            };
            let backoff = JitteredBackoff::new(options.min_backoff, options.max_backoff);
            let mut stream: futures::stream::BoxStream<'static, watcher::Result<Event<K>>> =
                match namer.as_ref().filter(|_| tolerant) {
                    Some(namer) => {
                        tolerant_watcher::<K>(namer.client(), config).backoff(backoff).boxed()
                    }
                    None => watcher(self.api.clone(), config).backoff(backoff).boxed(),
                };
            // Deadline for the end marker of a streaming list.
            let mut list_deadline = (strategy == InitialList::Streaming)
                .then(|| Instant::now() + tuning.streaming_list_timeout);
            let restart = loop {
                let next = match list_deadline {
                    Some(deadline) => {
                        match tokio::time::timeout_at(deadline, stream.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                tracing::warn!(
                                    kind = %K::KIND,
                                    "streaming list did not complete; the API server seems to ignore \
                                     sendInitialEvents, using LIST+WATCH"
                                );
                                break Restart::NoStreamingLists;
                            }
                        }
                    }
                    None => stream.next().await,
                };
                match next {
                    // A watcher stream never ends on its own; if it does, start over.
                    None => break Restart::Gone,
                    Some(Ok(event)) => {
                        if matches!(event, Event::InitDone) {
                            list_deadline = None;
                            restarts.reset();
                            if absent {
                                tracing::info!(kind = %K::KIND, "CustomResourceDefinition installed; watching");
                                absent = false;
                            }
                        }
                        if events.send((self.wrap)(event)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(err)) => {
                        if self.custom && is_not_found(&err) {
                            if !absent {
                                tracing::warn!(
                                    kind = %K::KIND,
                                    "CustomResourceDefinition not installed (kubectl apply -f \
                                     deploy/crds.yaml); treating it as empty and retrying"
                                );
                                absent = true;
                                // An empty complete list: other kinds go ahead, and objects
                                // seen before the CRD was removed are reported deleted.
                                list_deadline = None;
                                for event in [Event::Init, Event::InitDone] {
                                    if events.send((self.wrap)(event)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            continue;
                        }
                        if let Some(restart) = restart_for(&err, strategy) {
                            if matches!(restart, Restart::NoStreamingLists) {
                                tracing::warn!(
                                    kind = %K::KIND, error = %ErrorChain(&err),
                                    "API server refused a streaming list; using LIST+WATCH"
                                );
                            } else {
                                tracing::info!(kind = %K::KIND, "resourceVersion gone; listing again");
                            }
                            break restart;
                        }
                        log_watch_error(K::KIND, &err);
                        if let Some(namer) = namer.as_mut().filter(|_| is_decode_error(&err)) {
                            namer.name::<K>(K::KIND).await;
                            if !tolerant && matches!(err, watcher::Error::InitialListFailed(_)) {
                                tracing::warn!(kind = %K::KIND, "listing again, skipping the objects that cannot be decoded");
                                break Restart::Tolerant;
                            }
                        }
                    }
                }
            };
            match restart {
                Restart::NoStreamingLists => strategy = InitialList::ListWatch,
                Restart::Tolerant => tolerant = true,
                Restart::Gone => {}
            }
            tokio::time::sleep(restarts.next().unwrap_or(options.min_backoff)).await;
        }
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: Watched + DeserializeOwned + Debug + kube::Resource<DynamicType = ()>,
{
    watcher::watcher(api, config)
}

/// True when the API server does not know the resource at all (its CRD is not installed).
fn is_not_found(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 404,
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

/// The errors the watcher cannot recover from by itself.
fn restart_for(err: &watcher::Error, strategy: InitialList) -> Option<Restart> {
    let watcher::Error::WatchStartFailed(kube::Error::Api(status)) = err else { return None };
    match status.code {
        410 => Some(Restart::Gone),
        // Bad request / invalid: `sendInitialEvents` is refused unless the WatchList feature
        // is on (Kubernetes 1.27 and later).
        400 | 422 if strategy == InitialList::Streaming => Some(Restart::NoStreamingLists),
        _ => None,
    }
}

fn log_watch_error(kind: ObjectKind, err: &watcher::Error) {
    if let watcher::Error::WatchError(status) = err
        && status.code == 410
    {
        // Routine after a reconnect: the watcher lists again by itself.
        tracing::info!(%kind, "resourceVersion expired; listing again");
        return;
    }
    let forbidden = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    };
    if forbidden {
        tracing::error!(
            %kind, error = %ErrorChain(err),
            "forbidden: the service account needs list and watch on this kind (see deploy/rbac.yaml)"
        );
    } else {
        tracing::warn!(%kind, error = %ErrorChain(err), "watch failed; retrying with backoff");
    }
}
