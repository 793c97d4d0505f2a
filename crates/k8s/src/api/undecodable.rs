//! Naming the objects a typed watch cannot decode (issue 16). kube's client loses such an
//! object: a watch event it cannot decode becomes an unnamed error (a `Status` of code 0, or a
//! serde error), and a LIST with one such object fails as a whole. On such an error the kind is
//! listed once as untyped objects (`DynamicObject`, same selectors) and each is decoded as the
//! typed kind: the ones that fail are logged with kind, namespace/name and the serde error.
//! Nothing runs on the happy path; at most once a minute per kind.

use std::borrow::Cow;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use switchyard_error::ErrorChain;
use switchyard_model::ObjectKind;
use tokio::time::Instant;

use super::reflection::Watched;

/// How often a kind's objects may be listed to name the undecodable ones.
const INTERVAL: Duration = Duration::from_secs(60);

/// True when `err` says an object (of a watch event or a list) could not be decoded.
pub(super) fn is_decode_error(err: &watcher::Error) -> bool {
    match err {
        // A watch line that is no `WatchEvent<K>` is parsed as a `Status`, which any JSON
        // object is (every field has a default): code 0.
        watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 0,
        watcher::Error::WatchFailed(kube::Error::SerdeError(_))
        | watcher::Error::InitialListFailed(kube::Error::SerdeError(_)) => true,
        _ => false,
    }
}

/// The objects of one kind that do not decode: (namespace/name, serde error).
pub(super) fn undecodable<K: DeserializeOwned>(
    objects: Vec<DynamicObject>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for object in objects {
        let name = named(&object.metadata);
        let decoded = serde_json::to_value(&object)
            .map_err(|e| e.to_string())
            .and_then(|value| serde_json::from_value::<K>(value).map_err(|e| e.to_string()));
        if let Err(error) = decoded {
            out.push((name, error));
        }
    }
    out
}

/// Names a kind's undecodable objects after a decode error, at most once per [`INTERVAL`].
pub(super) struct Namer {
    api: Api<DynamicObject>,
    params: ListParams,
    last: Option<Instant>,
}

impl Namer {
    /// For the cluster-wide watch of `K` through `api` with `config`'s selectors.
    pub(super) fn new<K>(api: &Api<K>, config: &watcher::Config) -> Self
    where
        K: kube::Resource<DynamicType = ()> + Clone,
    {
        let resource = ApiResource::erase::<K>(&());
        let api = Api::all_with(api.clone().into_client(), &resource);
        let mut params = ListParams::default();
        if let Some(labels) = &config.label_selector {
            params = params.labels(labels);
        }
        if let Some(fields) = &config.field_selector {
            params = params.fields(fields);
        }
        Namer { api, params, last: None }
    }

    /// The client (for a tolerant watch of the same kind).
    pub(super) fn client(&self) -> kube::Client {
        self.api.clone().into_client()
    }

    /// Lists the kind and logs each object `K` cannot decode (unless done within the last
    /// minute).
    pub(super) async fn name<K: DeserializeOwned>(&mut self, kind: ObjectKind) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + INTERVAL) {
            return;
        }
        self.last = Some(now);
        let objects = match self.api.list(&self.params).await {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(%kind, error = %ErrorChain(&err), "listing the objects to name the undecodable ones failed");
                return;
            }
        };
        let bad = undecodable::<K>(objects);
        if bad.is_empty() {
            tracing::info!(%kind, "every object decodes now (the undecodable one changed or went)");
        }
        for (object, error) in bad {
            tracing::warn!(%kind, %object, %error, "object cannot be decoded: skipped (fix or delete it)");
        }
    }
}

/// An object as a tolerant watch decodes it: the typed object, or — when that fails — its
/// metadata and the serde error. Used only after a LIST failed to decode (a typed LIST fails
/// as a whole, so the kind would never be listed): each object then costs a second decode.
#[derive(Clone, Debug)]
pub(super) enum Tolerant<K> {
    Good(K),
    Bad { meta: Box<ObjectMeta>, error: String },
}

impl<'de, K: DeserializeOwned> serde::Deserialize<'de> for Tolerant<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let meta = value.get("metadata").cloned();
        match serde_json::from_value::<K>(value) {
            Ok(object) => Ok(Tolerant::Good(object)),
            Err(error) => Ok(Tolerant::Bad {
                meta: Box::new(
                    meta.and_then(|m| serde_json::from_value(m).ok()).unwrap_or_default(),
                ),
                error: error.to_string(),
            }),
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>> kube::Resource for Tolerant<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Tolerant::Good(object) => object.meta(),
            Tolerant::Bad { meta, .. } => meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Tolerant::Good(object) => object.meta_mut(),
            Tolerant::Bad { meta, .. } => meta,
        }
    }
}

/// The namespace/name of `meta`.
fn named(meta: &ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        (None, Some(name)) => name.clone(),
        (_, None) => "(no name)".to_owned(),
    }
}

/// A cluster-wide watch of `K` that names and skips the objects it cannot decode (their
/// deletion still goes through, as a bare object) instead of failing on them.
pub(super) fn tolerant_watcher<K>(
    client: kube::Client,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Watched + DeserializeOwned + std::fmt::Debug + kube::Resource<DynamicType = ()>,
{
    use futures::StreamExt as _;
    let api: Api<Tolerant<K>> = Api::all(client);
    watcher::watcher(api, config).filter_map(|item| {
        futures::future::ready(match item {
            Err(err) => Some(Err(err)),
            Ok(event) => keep(event).map(Ok),
        })
    })
}

/// The typed event, or `None` for an object that does not decode (logged by name).
fn keep<K: Watched>(event: Event<Tolerant<K>>) -> Option<Event<K>> {
    let good = |t: Tolerant<K>| match t {
        Tolerant::Good(object) => Some(object),
        Tolerant::Bad { meta, error } => {
            tracing::warn!(kind = %K::KIND, object = %named(&meta), %error, "object cannot be decoded: skipped (fix or delete it)");
            None
        }
    };
    match event {
        Event::Apply(t) => good(t).map(Event::Apply),
        Event::InitApply(t) => good(t).map(Event::InitApply),
        Event::Delete(Tolerant::Good(object)) => Some(Event::Delete(object)),
        Event::Delete(Tolerant::Bad { meta, .. }) => K::bare(*meta).map(Event::Delete),
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}
