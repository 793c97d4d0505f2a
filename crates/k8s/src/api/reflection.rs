//! Turning kube-runtime watcher events into model [`Change`]s, without I/O.
//!
//! kube-runtime's watcher restarts itself after a broken connection or a 410 Gone by listing
//! again: `Init`, then every object as `InitApply`, then `InitDone`. It does not say which objects
//! vanished while it was away — the bug behind Cilium's lost EndpointSlice deletions
//! (cilium#48050). So every kind keeps the keys (and resourceVersions) it has handed on, and a
//! relist ends with a diff against them: deletions for what is no longer listed, upserts only for
//! what changed. Nothing leaves [`Reflection`] before every kind has finished its first list, so
//! the data plane never sees a partial cluster.
//!
//! Secrets are the exception: only those BGPPeers name (`spec.passwordSecret`) are watched, each
//! on a watch of its own that starts when a peer names it. They do not hold the first batch back
//! (a peer whose Secret has not arrived yet only waits for its session, and a Secret the agent
//! may not read must not stop it from proxying).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use switchyard_model::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::{Change, ObjectKey, ObjectKind};

/// An object kind the API source watches, and how it becomes a model change.
pub trait Watched: kube::Resource + Clone + Send + Sync + 'static {
    const KIND: ObjectKind;
    /// The model change that sets (`Some`) or removes (`None`) the object.
    fn change(key: ObjectKey, object: Option<Self>) -> Change;
    /// An object of this kind with only `meta` (the deletion of one that does not decode),
    /// for the kinds whose undecodable objects are named and skipped (`None`: not one).
    fn bare(meta: ObjectMeta) -> Option<Self> {
        let _ = meta;
        None
    }
}

impl Watched for Service {
    const KIND: ObjectKind = ObjectKind::Service;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::Service(key, object.map(Box::new))
    }
    fn bare(metadata: ObjectMeta) -> Option<Self> {
        Some(Service { metadata, ..Default::default() })
    }
}

impl Watched for EndpointSlice {
    const KIND: ObjectKind = ObjectKind::EndpointSlice;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::EndpointSlice(key, object.map(Box::new))
    }
    fn bare(metadata: ObjectMeta) -> Option<Self> {
        Some(EndpointSlice { metadata, ..Default::default() })
    }
}

impl Watched for Node {
    const KIND: ObjectKind = ObjectKind::Node;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::Node(key, object.map(Box::new))
    }
    fn bare(metadata: ObjectMeta) -> Option<Self> {
        Some(Node { metadata, ..Default::default() })
    }
}

impl Watched for IPPool {
    const KIND: ObjectKind = ObjectKind::IPPool;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::IPPool(key, object.map(Box::new))
    }
}

impl Watched for BGPPeer {
    const KIND: ObjectKind = ObjectKind::BGPPeer;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::BGPPeer(key, object.map(Box::new))
    }
}

impl Watched for BGPAdvertisement {
    const KIND: ObjectKind = ObjectKind::BGPAdvertisement;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::BGPAdvertisement(key, object.map(Box::new))
    }
}

impl Watched for L2Advertisement {
    const KIND: ObjectKind = ObjectKind::L2Advertisement;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::L2Advertisement(key, object.map(Box::new))
    }
}

impl Watched for Secret {
    const KIND: ObjectKind = ObjectKind::Secret;
    fn change(key: ObjectKey, object: Option<Self>) -> Change {
        Change::Secret(key, object.map(Box::new))
    }
}

/// The key the model knows an object by; `None` for an object without a name (never sent by a
/// real API server, ignored with a warning).
pub fn object_key<K: kube::Resource>(object: &K) -> Option<ObjectKey> {
    let name = object.meta().name.clone().filter(|n| !n.is_empty())?;
    Some(ObjectKey::new(object.meta().namespace.clone().unwrap_or_default(), name))
}

/// What one kind has handed on, and the relist in progress if there is one.
#[derive(Debug)]
struct KindTracker<K> {
    /// Objects handed on (or about to be), with the resourceVersion last seen for each.
    known: HashMap<ObjectKey, String>,
    /// Objects of the list in progress, between `Init` and `InitDone`.
    relist: Option<Vec<(ObjectKey, K)>>,
    /// True once the first list has completed.
    synced: bool,
}

impl<K> Default for KindTracker<K> {
    fn default() -> Self {
        Self { known: HashMap::new(), relist: None, synced: false }
    }
}

impl<K: Watched> KindTracker<K> {
    fn handle(&mut self, event: Event<K>, out: &mut Vec<Change>) {
        match event {
            Event::Init => self.relist = Some(Vec::new()),
            Event::InitApply(object) => {
                let Some(key) = keyed(&object) else { return };
                match &mut self.relist {
                    Some(listed) => listed.push((key, object)),
                    // kube-runtime always sends Init first; should it not, treat it as an update.
                    None => self.apply(key, object, out),
                }
            }
            Event::InitDone => self.finish_relist(out),
            Event::Apply(object) => {
                let Some(key) = keyed(&object) else { return };
                match &mut self.relist {
                    Some(listed) => listed.push((key, object)),
                    None => self.apply(key, object, out),
                }
            }
            Event::Delete(object) => {
                let Some(key) = keyed(&object) else { return };
                if let Some(listed) = &mut self.relist {
                    listed.retain(|(k, _)| *k != key);
                } else if self.known.remove(&key).is_some() {
                    out.push(K::change(key, None));
                }
            }
        }
    }

    /// An upsert, unless the same version was already handed on (a replayed event).
    fn apply(&mut self, key: ObjectKey, object: K, out: &mut Vec<Change>) {
        let version = object.resource_version().unwrap_or_default();
        if !version.is_empty() && self.known.get(&key) == Some(&version) {
            return;
        }
        self.known.insert(key.clone(), version);
        out.push(K::change(key, Some(object)));
    }

    /// The list is complete: what it holds replaces what was known.
    fn finish_relist(&mut self, out: &mut Vec<Change>) {
        let listed = self.relist.take().unwrap_or_default();
        let mut previous = std::mem::take(&mut self.known);
        for (key, object) in listed {
            let version = object.resource_version().unwrap_or_default();
            let unchanged = !version.is_empty() && previous.get(&key) == Some(&version);
            previous.remove(&key);
            if !unchanged {
                out.push(K::change(key.clone(), Some(object)));
            }
            self.known.insert(key, version);
        }
        // Whatever was known but is not listed any more was deleted while we were not watching.
        let mut vanished: Vec<ObjectKey> = previous.into_keys().collect();
        vanished.sort();
        if !vanished.is_empty() {
            tracing::info!(
                kind = %K::KIND,
                count = vanished.len(),
                "objects deleted while the watch was down"
            );
        }
        out.extend(vanished.into_iter().map(|key| K::change(key, None)));
        self.synced = true;
    }
}

fn keyed<K: Watched>(object: &K) -> Option<ObjectKey> {
    let key = object_key(object);
    if key.is_none() {
        tracing::warn!(kind = %K::KIND, "ignoring an object without a name");
    }
    key
}

/// A watcher event of any of the watched kinds.
// Each event moves once through a channel; boxing the larger ones would cost an allocation per
// event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum KindEvent {
    Service(Event<Service>),
    EndpointSlice(Event<EndpointSlice>),
    Node(Event<Node>),
    IPPool(Event<IPPool>),
    BGPPeer(Event<BGPPeer>),
    BGPAdvertisement(Event<BGPAdvertisement>),
    L2Advertisement(Event<L2Advertisement>),
    /// An event of the watch of one Secret (namespace/name) that some BGPPeer names.
    Secret(ObjectKey, Event<Secret>),
}

/// The cluster as far as the API source has handed it on, plus changes not yet handed on.
#[derive(Debug, Default)]
pub struct Reflection {
    services: KindTracker<Service>,
    slices: KindTracker<EndpointSlice>,
    nodes: KindTracker<Node>,
    ip_pools: KindTracker<IPPool>,
    bgp_peers: KindTracker<BGPPeer>,
    bgp_advertisements: KindTracker<BGPAdvertisement>,
    l2_advertisements: KindTracker<L2Advertisement>,
    /// One tracker per watched Secret: each watch lists only its own Secret.
    secrets: HashMap<ObjectKey, KindTracker<Secret>>,
    /// The Secret each BGPPeer names.
    peer_secrets: HashMap<ObjectKey, ObjectKey>,
    pending: Vec<Change>,
    /// Position of each pending key in `pending`, so a later change replaces an earlier one.
    pending_index: HashMap<(ObjectKind, ObjectKey), usize>,
}

impl Reflection {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reflection of some kinds only: the others count as listed (and empty) from the start.
    pub fn watching(kinds: &[ObjectKind]) -> Self {
        let mut reflection = Self::default();
        let unwatched = |kind| !kinds.contains(&kind);
        reflection.services.synced = unwatched(ObjectKind::Service);
        reflection.slices.synced = unwatched(ObjectKind::EndpointSlice);
        reflection.nodes.synced = unwatched(ObjectKind::Node);
        reflection.ip_pools.synced = unwatched(ObjectKind::IPPool);
        reflection.bgp_peers.synced = unwatched(ObjectKind::BGPPeer);
        reflection.bgp_advertisements.synced = unwatched(ObjectKind::BGPAdvertisement);
        reflection.l2_advertisements.synced = unwatched(ObjectKind::L2Advertisement);
        reflection
    }

    /// Takes in one watcher event.
    pub fn handle(&mut self, event: KindEvent) {
        let mut changes = Vec::new();
        match event {
            KindEvent::Service(e) => self.services.handle(e, &mut changes),
            KindEvent::EndpointSlice(e) => self.slices.handle(e, &mut changes),
            KindEvent::Node(e) => self.nodes.handle(e, &mut changes),
            KindEvent::IPPool(e) => self.ip_pools.handle(e, &mut changes),
            KindEvent::BGPPeer(e) => self.bgp_peers.handle(e, &mut changes),
            KindEvent::BGPAdvertisement(e) => self.bgp_advertisements.handle(e, &mut changes),
            KindEvent::L2Advertisement(e) => self.l2_advertisements.handle(e, &mut changes),
            KindEvent::Secret(key, e) => {
                // Events of a watch that was stopped (its Secret no longer named) are late.
                if self.peer_secrets.values().any(|k| *k == key) {
                    self.secrets.entry(key).or_default().handle(e, &mut changes);
                }
            }
        }
        self.follow_peer_secrets(&mut changes);
        for change in changes {
            let slot = (change.kind(), change.key().clone());
            match self.pending_index.get(&slot) {
                Some(&at) => self.pending[at] = change,
                None => {
                    self.pending_index.insert(slot, self.pending.len());
                    self.pending.push(change);
                }
            }
        }
    }

    /// The Secrets BGPPeers name (namespace/name): the ones to watch.
    pub fn named_secrets(&self) -> BTreeSet<ObjectKey> {
        self.peer_secrets.values().cloned().collect()
    }

    /// Keeps the Secrets each peer names up to date with the peer changes in `changes`; a Secret
    /// no peer names any more is forgotten (a deletion for the model) with its tracker.
    fn follow_peer_secrets(&mut self, changes: &mut Vec<Change>) {
        let mut renamed = false;
        for change in changes.iter() {
            let Change::BGPPeer(peer, object) = change else { continue };
            let named = object
                .as_ref()
                .and_then(|p| p.spec.password_secret.as_ref())
                .map(|s| ObjectKey::new(s.namespace.clone(), s.name.clone()));
            renamed |= match named {
                Some(secret) => {
                    self.peer_secrets.insert(peer.clone(), secret.clone()) != Some(secret)
                }
                None => self.peer_secrets.remove(peer).is_some(),
            };
        }
        if !renamed {
            return;
        }
        let named = self.named_secrets();
        let unnamed: Vec<ObjectKey> =
            self.secrets.keys().filter(|k| !named.contains(*k)).cloned().collect();
        for key in unnamed {
            if let Some(tracker) = self.secrets.remove(&key) {
                changes.extend(tracker.known.into_keys().map(|k| Change::Secret(k, None)));
            }
        }
    }

    /// True once every kind has been listed completely (a kind whose CustomResourceDefinition
    /// is not installed counts as listed, and empty).
    pub fn synced(&self) -> bool {
        self.services.synced
            && self.slices.synced
            && self.nodes.synced
            && self.ip_pools.synced
            && self.bgp_peers.synced
            && self.bgp_advertisements.synced
            && self.l2_advertisements.synced
    }

    /// True when changes wait to be handed on (whether or not they may be yet).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The changes to hand on now: `None` before the first complete list of every kind or when
    /// nothing changed. The first batch holds the whole cluster.
    pub fn take_ready(&mut self) -> Option<Vec<Change>> {
        if !self.synced() || self.pending.is_empty() {
            return None;
        }
        self.pending_index.clear();
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn slice(name: &str, version: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".to_owned(),
            endpoints: Vec::new(),
            ports: None,
        }
    }

    fn service(name: &str, version: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    fn node(name: &str, version: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    /// `+name` for an upsert, `-name` for a deletion, in order.
    fn describe(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{}{}", if c.is_delete() { '-' } else { '+' }, c.key().name))
            .collect()
    }

    /// Completes an empty list of each of our own kinds.
    fn list_own_kinds(reflection: &mut Reflection) {
        reflection.handle(KindEvent::IPPool(Event::Init));
        reflection.handle(KindEvent::IPPool(Event::InitDone));
        reflection.handle(KindEvent::BGPPeer(Event::Init));
        reflection.handle(KindEvent::BGPPeer(Event::InitDone));
        reflection.handle(KindEvent::BGPAdvertisement(Event::Init));
        reflection.handle(KindEvent::BGPAdvertisement(Event::InitDone));
        reflection.handle(KindEvent::L2Advertisement(Event::Init));
        reflection.handle(KindEvent::L2Advertisement(Event::InitDone));
    }

    fn list_all(reflection: &mut Reflection, slices: Vec<EndpointSlice>) {
        list_own_kinds(reflection);
        reflection.handle(KindEvent::Service(Event::Init));
        reflection.handle(KindEvent::Service(Event::InitDone));
        reflection.handle(KindEvent::Node(Event::Init));
        reflection.handle(KindEvent::Node(Event::InitDone));
        reflection.handle(KindEvent::EndpointSlice(Event::Init));
        for s in slices {
            reflection.handle(KindEvent::EndpointSlice(Event::InitApply(s)));
        }
        reflection.handle(KindEvent::EndpointSlice(Event::InitDone));
    }

    #[test]
    fn nothing_is_handed_on_before_every_kind_has_listed() {
        let mut r = Reflection::new();
        list_own_kinds(&mut r);
        r.handle(KindEvent::Service(Event::Init));
        r.handle(KindEvent::Service(Event::InitApply(service("web", "1"))));
        r.handle(KindEvent::Service(Event::InitDone));
        r.handle(KindEvent::Service(Event::Apply(service("api", "2"))));
        assert_eq!(r.take_ready().map(|c| describe(&c)), None);
        r.handle(KindEvent::Node(Event::Init));
        r.handle(KindEvent::Node(Event::InitApply(node("n1", "3"))));
        r.handle(KindEvent::Node(Event::InitDone));
        assert_eq!(r.take_ready().map(|c| describe(&c)), None, "slices not listed yet");
        r.handle(KindEvent::EndpointSlice(Event::Init));
        r.handle(KindEvent::EndpointSlice(Event::InitApply(slice("web-1", "4"))));
        assert_eq!(r.take_ready().map(|c| describe(&c)), None, "slice list not complete");
        r.handle(KindEvent::EndpointSlice(Event::InitDone));
        assert_eq!(
            r.take_ready().map(|c| describe(&c)),
            Some(vec!["+web".into(), "+api".into(), "+n1".into(), "+web-1".into()])
        );
        assert_eq!(r.take_ready().map(|c| describe(&c)), None, "handed on once");
    }

    #[test]
    fn relist_after_reconnect_reports_what_vanished_and_only_what_changed() {
        type Versions = &'static [(&'static str, &'static str)];
        let cases: &[(&str, Versions, Versions, &[&str])] = &[
            ("deleted while down", &[("a", "1"), ("b", "2")], &[("a", "1")], &["-b"]),
            ("modified while down", &[("a", "1")], &[("a", "5")], &["+a"]),
            ("added while down", &[("a", "1")], &[("a", "1"), ("c", "6")], &["+c"]),
            ("nothing happened", &[("a", "1"), ("b", "2")], &[("b", "2"), ("a", "1")], &[]),
            ("everything gone", &[("a", "1"), ("b", "2")], &[], &["-a", "-b"]),
        ];
        for (name, before, after, expected) in cases {
            let mut r = Reflection::new();
            list_all(&mut r, before.iter().map(|(n, v)| slice(n, v)).collect());
            r.take_ready().unwrap();
            r.handle(KindEvent::EndpointSlice(Event::Init));
            for (n, v) in *after {
                r.handle(KindEvent::EndpointSlice(Event::InitApply(slice(n, v))));
            }
            assert_eq!(r.take_ready().map(|c| describe(&c)), None, "{name}: mid-relist");
            r.handle(KindEvent::EndpointSlice(Event::InitDone));
            let got = r.take_ready().map(|c| describe(&c)).unwrap_or_default();
            let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn replayed_and_unknown_events_are_not_handed_on_twice() {
        let mut r = Reflection::new();
        list_all(&mut r, vec![slice("a", "1")]);
        r.take_ready().unwrap();
        r.handle(KindEvent::EndpointSlice(Event::Apply(slice("a", "1"))));
        r.handle(KindEvent::EndpointSlice(Event::Delete(slice("ghost", "7"))));
        assert_eq!(r.take_ready().map(|c| describe(&c)), None);
        r.handle(KindEvent::EndpointSlice(Event::Delete(slice("a", "8"))));
        r.handle(KindEvent::EndpointSlice(Event::Delete(slice("a", "8"))));
        assert_eq!(r.take_ready().map(|c| describe(&c)), Some(vec!["-a".into()]));
    }

    #[test]
    fn later_changes_to_a_pending_key_replace_earlier_ones() {
        let mut r = Reflection::new();
        list_all(&mut r, vec![]);
        r.take_ready();
        r.handle(KindEvent::EndpointSlice(Event::Apply(slice("a", "2"))));
        r.handle(KindEvent::EndpointSlice(Event::Apply(slice("b", "3"))));
        r.handle(KindEvent::EndpointSlice(Event::Apply(slice("a", "4"))));
        let ready = r.take_ready().unwrap();
        assert_eq!(describe(&ready), vec!["+a".to_owned(), "+b".to_owned()]);
        let Change::EndpointSlice(_, Some(latest)) = &ready[0] else { panic!("not an upsert") };
        assert_eq!(latest.metadata.resource_version.as_deref(), Some("4"));
    }

    #[test]
    fn objects_without_a_name_are_ignored() {
        let mut r = Reflection::new();
        list_all(&mut r, vec![slice("", "1"), slice("a", "2")]);
        assert_eq!(r.take_ready().map(|c| describe(&c)), Some(vec!["+a".into()]));
    }
}
