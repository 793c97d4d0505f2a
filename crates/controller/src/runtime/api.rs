//! The controller against the API server: watches Services, IPPools and Namespaces, takes part
//! in the leader election, and — only while it leads — allocates and writes Service status, pool
//! status and Events.
//!
//! A follower keeps its copy of the objects current but runs no allocator. On becoming leader it
//! builds a fresh one from those objects, so what it adopts is the status the previous leader
//! wrote, never a guess of its own made while it could not write.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event as KubeEvent, EventSource, Namespace, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};
use switchyard_k8s::api::{ApiOptions, ApiWatcher};
use switchyard_model::crd::IPPool;
use switchyard_model::{Change, ObjectKey};
use tokio::sync::{mpsc, watch};

use super::status::{apply_service_status, pool_matches, pool_status, service_matches};
use crate::allocator::{Allocator, Effects, Event, PoolReport, ServiceStatus, Subject};
use crate::election::{self, ElectionConfig};

/// `source.component` and `reportingComponent` of our Events.
pub const COMPONENT: &str = "switchyard-controller";

/// Settings of the controller against an API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `--load-balancer-class`.
    pub class: Option<String>,
    pub election: ElectionConfig,
    /// Watch settings (scope is set to the controller's).
    pub watch: ApiOptions,
    /// How often failed writes are retried.
    pub retry_period: Duration,
}

impl ApiConfig {
    pub fn new(class: Option<String>, election: ElectionConfig) -> Self {
        Self {
            class,
            election,
            watch: ApiOptions::controller(),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The watch of the API server ended (it never does while the process runs).
    #[error("the watch of the API server ended")]
    WatchEnded,
}

/// Runs the controller until `stop` fires.
pub async fn run(
    client: Client,
    config: ApiConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let mut watch_options = config.watch.clone();
    watch_options.scope = switchyard_k8s::api::WatchScope::Controller;
    let mut updates = ApiWatcher::start(client.clone(), watch_options);
    let (leading_sender, mut leading) = watch::channel(false);
    let mut election = Task(tokio::spawn(election::run(
        Api::<Lease>::namespaced(client.clone(), &config.election.namespace),
        config.election.clone(),
        leading_sender,
        stop.clone(),
    )));
    let (namespace_sender, mut namespaces) = mpsc::channel(64);
    let _namespace_task = Task(tokio::spawn(watch_namespaces(
        Api::<Namespace>::all(client.clone()),
        namespace_sender,
    )));
    let mut controller = Controller::new(client, &config);
    let mut stop = stop;
    let mut retry = tokio::time::interval(config.retry_period);
    let result = loop {
        tokio::select! {
            update = updates.next() => {
                let Some(update) = update else { break Err(ControllerError::WatchEnded) };
                controller.objects_changed(update.changes).await;
            }
            Some((name, labels)) = namespaces.recv() => controller.namespace_changed(name, labels).await,
            changed = leading.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let is_leader = *leading.borrow_and_update();
                controller.leadership(is_leader).await;
            }
            _ = retry.tick() => controller.flush().await,
            _ = stop.changed() => break Ok(()),
        }
    };
    // The election releases the Lease on stop.
    let _ = (&mut election.0).await;
    result
}

/// A task that ends with its owner: a controller whose future is dropped (a crashed process, in
/// tests) neither renews the Lease nor watches anything any more.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Namespace labels, for `namespaceSelector`.
async fn watch_namespaces(
    api: Api<Namespace>,
    sender: mpsc::Sender<(String, Option<BTreeMap<String, String>>)>,
) {
    let mut stream = pin!(watcher(api, watcher::Config::default()));
    while let Some(event) = stream.next().await {
        let (namespace, labels) = match event {
            Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns)) => {
                (ns.name_any(), Some(ns.labels().clone()))
            }
            Ok(watcher::Event::Delete(ns)) => (ns.name_any(), None),
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "watching Namespaces (for namespaceSelector); retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if sender.send((namespace, labels)).await.is_err() {
            return;
        }
    }
}

struct Controller {
    client: Client,
    class: Option<String>,
    identity: String,
    services: BTreeMap<ObjectKey, Service>,
    pools: BTreeMap<String, IPPool>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    synced: bool,
    leading: bool,
    /// Present only while leading and synced.
    allocator: Option<Allocator>,
    /// Desired Service status not yet confirmed written.
    pending_services: BTreeMap<ObjectKey, ServiceStatus>,
    pending_pools: BTreeMap<String, PoolReport>,
}

impl Controller {
    fn new(client: Client, config: &ApiConfig) -> Self {
        Self {
            client,
            class: config.class.clone(),
            identity: config.election.identity.clone(),
            services: BTreeMap::new(),
            pools: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            synced: false,
            leading: false,
            allocator: None,
            pending_services: BTreeMap::new(),
            pending_pools: BTreeMap::new(),
        }
    }

    async fn objects_changed(&mut self, changes: Vec<Change>) {
        self.synced = true;
        for change in &changes {
            match change {
                Change::Service(key, Some(service)) => {
                    self.services.insert(key.clone(), (**service).clone());
                }
                Change::Service(key, None) => {
                    self.services.remove(key);
                    self.pending_services.remove(key);
                }
                Change::IPPool(key, Some(pool)) => {
                    self.pools.insert(key.name.to_string(), (**pool).clone());
                }
                Change::IPPool(key, None) => {
                    self.pools.remove(key.name.as_str());
                    self.pending_pools.remove(key.name.as_str());
                }
                _ => {}
            }
        }
        match &mut self.allocator {
            Some(allocator) => {
                for change in &changes {
                    allocator.apply(change);
                }
                self.reconcile().await;
            }
            None => self.start_allocating().await,
        }
    }

    async fn namespace_changed(&mut self, name: String, labels: Option<BTreeMap<String, String>>) {
        match &labels {
            Some(labels) => self.namespaces.insert(name.clone(), labels.clone()),
            None => self.namespaces.remove(&name),
        };
        if let Some(allocator) = &mut self.allocator {
            allocator.set_namespace(&name, labels);
            self.reconcile().await;
        }
    }

    async fn leadership(&mut self, leading: bool) {
        self.leading = leading;
        if leading {
            tracing::info!(identity = %self.identity, "leading: allocating LoadBalancer addresses");
            self.start_allocating().await;
        } else if self.allocator.take().is_some() {
            tracing::info!(identity = %self.identity, "no longer leading: writing nothing");
            self.pending_services.clear();
            self.pending_pools.clear();
        }
    }

    /// Builds the allocator from the objects as they are, once leading and synced.
    async fn start_allocating(&mut self) {
        if !self.leading || !self.synced || self.allocator.is_some() {
            return;
        }
        let mut allocator = Allocator::new(self.class.clone());
        for (name, labels) in &self.namespaces {
            allocator.set_namespace(name, Some(labels.clone()));
        }
        for (name, pool) in &self.pools {
            allocator
                .apply(&Change::IPPool(ObjectKey::cluster(name), Some(Box::new(pool.clone()))));
        }
        for (key, service) in &self.services {
            allocator.apply(&Change::Service(key.clone(), Some(Box::new(service.clone()))));
        }
        self.allocator = Some(allocator);
        self.reconcile().await;
    }

    async fn reconcile(&mut self) {
        let Some(allocator) = &mut self.allocator else { return };
        let effects: Effects = allocator.reconcile();
        for status in effects.services {
            self.pending_services.insert(status.service.clone(), status);
        }
        for (name, report) in effects.pools {
            self.pending_pools.insert(name, report);
        }
        for event in &effects.events {
            self.record(event).await;
        }
        self.flush().await;
    }

    /// Writes what is pending and differs from the objects; failures stay pending.
    async fn flush(&mut self) {
        if self.allocator.is_none() {
            return;
        }
        let now = Time(Timestamp::now());
        let keys: Vec<ObjectKey> = self.pending_services.keys().cloned().collect();
        for key in keys {
            let (Some(desired), Some(current)) =
                (self.pending_services.get(&key), self.services.get(&key))
            else {
                self.pending_services.remove(&key);
                continue;
            };
            if service_matches(current, desired) {
                self.pending_services.remove(&key);
                continue;
            }
            let mut updated = current.clone();
            apply_service_status(&mut updated, desired, &now);
            let api = Api::<Service>::namespaced(self.client.clone(), &key.namespace);
            match api.replace_status(&key.name, &PostParams::default(), &updated).await {
                Ok(written) => {
                    self.services.insert(key.clone(), written);
                    self.pending_services.remove(&key);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.pending_services.remove(&key);
                }
                // 409: the object changed under us; the watch brings the new version and the
                // write is retried against it.
                Err(err) => {
                    tracing::debug!(service = %key, error = %err, "status write failed; retrying")
                }
            }
        }
        let names: Vec<String> = self.pending_pools.keys().cloned().collect();
        for name in names {
            let (Some(report), Some(current)) =
                (self.pending_pools.get(&name), self.pools.get(&name))
            else {
                self.pending_pools.remove(&name);
                continue;
            };
            if pool_matches(current.status.as_ref(), report) {
                self.pending_pools.remove(&name);
                continue;
            }
            let mut updated = current.clone();
            updated.status = Some(pool_status(report, current.status.as_ref(), &now));
            let api = Api::<IPPool>::all(self.client.clone());
            match api.replace_status(&name, &PostParams::default(), &updated).await {
                Ok(written) => {
                    self.pools.insert(name.clone(), written);
                    self.pending_pools.remove(&name);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.pending_pools.remove(&name);
                }
                Err(err) => {
                    tracing::debug!(pool = %name, error = %err, "pool status write failed; retrying")
                }
            }
        }
    }

    /// Records an Event (best effort: a lost Event is logged, never retried).
    async fn record(&self, event: &Event) {
        let (namespace, reference) = match &event.subject {
            Subject::Service(key) => {
                let uid = self.services.get(key).and_then(|s| s.metadata.uid.clone());
                (
                    key.namespace.to_string(),
                    ObjectReference {
                        api_version: Some("v1".to_owned()),
                        kind: Some("Service".to_owned()),
                        namespace: Some(key.namespace.to_string()),
                        name: Some(key.name.to_string()),
                        uid,
                        ..ObjectReference::default()
                    },
                )
            }
            Subject::IPPool(name) => {
                let uid = self.pools.get(name).and_then(|p| p.metadata.uid.clone());
                (
                    "default".to_owned(),
                    ObjectReference {
                        api_version: Some(switchyard_model::crd::API_VERSION.to_owned()),
                        kind: Some("IPPool".to_owned()),
                        name: Some(name.clone()),
                        uid,
                        ..ObjectReference::default()
                    },
                )
            }
        };
        if event.warning {
            tracing::warn!(object = ?reference.name, reason = %event.reason, message = %event.message, "event");
        } else {
            tracing::info!(object = ?reference.name, reason = %event.reason, message = %event.message, "event");
        }
        let now = Timestamp::now();
        let object_name = reference.name.clone().unwrap_or_default();
        let kube_event = KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: reference,
            reason: Some(event.reason.clone()),
            message: Some(event.message.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(EventSource { component: Some(COMPONENT.to_owned()), host: None }),
            reporting_component: Some(COMPONENT.to_owned()),
            reporting_instance: Some(self.identity.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..KubeEvent::default()
        };
        let api = Api::<KubeEvent>::namespaced(self.client.clone(), &namespace);
        if let Err(err) = api.create(&PostParams::default(), &kube_event).await {
            tracing::debug!(error = %err, "recording an Event failed");
        }
    }
}
