//! The objects a manifest directory can contribute to the model, as parsed and as kept.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use switchyard_model::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::{Change, ObjectKey, ObjectKind};

/// One Kubernetes object the model reads, as parsed (the directory keeps it as a
/// [`StoredObject`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Node(Arc<Node>),
    IPPool(Arc<IPPool>),
    BGPPeer(Arc<BGPPeer>),
    BGPAdvertisement(Arc<BGPAdvertisement>),
    L2Advertisement(Arc<L2Advertisement>),
    Namespace(Arc<Namespace>),
    /// A Secret (BGPPeers' TCP MD5 passwords).
    Secret(Arc<Secret>),
}

/// Identifies an object across files: kind plus namespace/name.
pub type ObjectId = (ObjectKind, ObjectKey);

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Service(_) => ObjectKind::Service,
            Self::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Self::Node(_) => ObjectKind::Node,
            Self::IPPool(_) => ObjectKind::IPPool,
            Self::BGPPeer(_) => ObjectKind::BGPPeer,
            Self::BGPAdvertisement(_) => ObjectKind::BGPAdvertisement,
            Self::L2Advertisement(_) => ObjectKind::L2Advertisement,
            Self::Namespace(_) => ObjectKind::Namespace,
            Self::Secret(_) => ObjectKind::Secret,
        }
    }
}

/// An object as the directory keeps it between readings: the compact JSON its typed form
/// serializes to, LZ4-compressed. A k8s-openapi struct is mostly `None` fields laid out inline
/// (an EndpointSlice endpoint is about 350 bytes as a struct, 90 as JSON), and the directory
/// holds every object of the cluster for as long as the agent runs: at 10,000 Services × 25
/// endpoints the typed objects took 110 MB, the JSON 30 MB. An EndpointSlice's JSON repeats
/// the same endpoint shape with other addresses, which LZ4 (against a dictionary of the field
/// names every object spells) stores in a fraction. The typed form is rebuilt only for the
/// change that hands the object to the model. Shared (`Arc`) so that unchanged files cost no
/// copies when the directory state is recomputed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredObject {
    kind: ObjectKind,
    /// The JSON's length, then its LZ4 block against [`DICTIONARY`]. Compression is
    /// deterministic: equal JSON is equal bytes here.
    packed: Arc<[u8]>,
}

/// Text most stored objects contain, so that even a small object (a Service) finds matches.
/// Changing it only changes what is kept in memory (nothing stored outlives the process).
const DICTIONARY: &[u8] = br#"{"metadata":{"name":"","namespace":"default","labels":{"kubernetes.io/service-name":"","app":""},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":""}},"spec":{"clusterIP":"","clusterIPs":[""],"externalTrafficPolicy":"Cluster","internalTrafficPolicy":"Cluster","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","ports":[{"name":"http","nodePort":30000,"port":80,"protocol":"TCP","targetPort":8080}],"selector":{"app":""},"sessionAffinity":"None","type":"ClusterIP"},"status":{"loadBalancer":{}}}{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"","targetRef":{"kind":"Pod","name":"","namespace":"","uid":""},"zone":""}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}"#;

impl StoredObject {
    /// Serializes `object` for keeping.
    pub fn store(object: &Object) -> Result<Self, serde_json::Error> {
        let json = match object {
            Object::Service(o) => serde_json::to_vec(o),
            Object::EndpointSlice(o) => serde_json::to_vec(o),
            Object::Node(o) => serde_json::to_vec(o),
            Object::IPPool(o) => serde_json::to_vec(o),
            Object::BGPPeer(o) => serde_json::to_vec(o),
            Object::BGPAdvertisement(o) => serde_json::to_vec(o),
            Object::L2Advertisement(o) => serde_json::to_vec(o),
            Object::Namespace(o) => serde_json::to_vec(o),
            Object::Secret(o) => serde_json::to_vec(o),
        }?;
        let packed = lz4_flex::block::compress_prepend_size_with_dict(&json, DICTIONARY);
        Ok(Self { kind: object.kind(), packed: packed.into() })
    }

    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// Bytes kept for this object.
    pub fn stored_bytes(&self) -> usize {
        self.packed.len()
    }

    /// Cheap identity check first: objects from files that were not re-read are the same `Arc`.
    /// Equal typed objects serialize to equal bytes (fields in declaration order, maps sorted),
    /// and equal bytes compress to equal bytes.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed) || self == other
    }

    /// The JSON again. Our own compression of our own bytes: failing is a bug, reported as a
    /// JSON error so that callers keep one error path (the fuzz check counts any).
    fn json(&self) -> Result<Vec<u8>, serde_json::Error> {
        lz4_flex::block::decompress_size_prepended_with_dict(&self.packed, DICTIONARY)
            .map_err(|err| serde::de::Error::custom(format!("stored object unpacks: {err}")))
    }

    fn typed<T: DeserializeOwned>(&self) -> Result<Arc<T>, serde_json::Error> {
        serde_json::from_slice(&self.json()?).map(Arc::new)
    }

    fn boxed<T: DeserializeOwned>(&self) -> Result<Box<T>, serde_json::Error> {
        serde_json::from_slice(&self.json()?)
    }

    /// The typed object again.
    pub fn object(&self) -> Result<Object, serde_json::Error> {
        Ok(match self.kind {
            ObjectKind::Service => Object::Service(self.typed()?),
            ObjectKind::EndpointSlice => Object::EndpointSlice(self.typed()?),
            ObjectKind::Node => Object::Node(self.typed()?),
            ObjectKind::IPPool => Object::IPPool(self.typed()?),
            ObjectKind::BGPPeer => Object::BGPPeer(self.typed()?),
            ObjectKind::BGPAdvertisement => Object::BGPAdvertisement(self.typed()?),
            ObjectKind::L2Advertisement => Object::L2Advertisement(self.typed()?),
            ObjectKind::Namespace => Object::Namespace(self.typed()?),
            ObjectKind::Secret => Object::Secret(self.typed()?),
        })
    }

    /// The model change that sets this object.
    pub fn to_change(&self, key: ObjectKey) -> Result<Change, serde_json::Error> {
        Ok(match self.kind {
            ObjectKind::Service => Change::Service(key, Some(self.boxed()?)),
            ObjectKind::EndpointSlice => Change::EndpointSlice(key, Some(self.boxed()?)),
            ObjectKind::Node => Change::Node(key, Some(self.boxed()?)),
            ObjectKind::IPPool => Change::IPPool(key, Some(self.boxed()?)),
            ObjectKind::BGPPeer => Change::BGPPeer(key, Some(self.boxed()?)),
            ObjectKind::BGPAdvertisement => Change::BGPAdvertisement(key, Some(self.boxed()?)),
            ObjectKind::L2Advertisement => Change::L2Advertisement(key, Some(self.boxed()?)),
            ObjectKind::Namespace => Change::Namespace(key, Some(self.boxed()?)),
            ObjectKind::Secret => Change::Secret(key, Some(self.boxed()?)),
        })
    }
}

impl fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredObject")
            .field("kind", &self.kind)
            .field("json", &self.json().map(|json| String::from_utf8_lossy(&json).into_owned()))
            .finish()
    }
}

/// The model change that removes an object.
pub(crate) fn delete_change(kind: ObjectKind, key: ObjectKey) -> Change {
    match kind {
        ObjectKind::Service => Change::Service(key, None),
        ObjectKind::EndpointSlice => Change::EndpointSlice(key, None),
        ObjectKind::Node => Change::Node(key, None),
        ObjectKind::IPPool => Change::IPPool(key, None),
        ObjectKind::BGPPeer => Change::BGPPeer(key, None),
        ObjectKind::BGPAdvertisement => Change::BGPAdvertisement(key, None),
        ObjectKind::L2Advertisement => Change::L2Advertisement(key, None),
        ObjectKind::Namespace => Change::Namespace(key, None),
        ObjectKind::Secret => Change::Secret(key, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use switchyard_testing::objects::{self, typed, with};

    use super::*;

    /// Every kind, with the fields real clusters carry (annotations, managed fields, owner
    /// references, target references, hints, bytes, CRD specs), reads back equal to what was
    /// stored, and equal objects are stored as equal bytes.
    #[test]
    fn stored_objects_read_back_equal_and_equal_objects_store_equal() {
        let meta = json!({"metadata": {
            "annotations": {"b": "2", "a": "1", "endpoints.kubernetes.io/last-change-trigger-time":
                            "2026-01-01T00:00:00Z"},
            "labels": {"z": "1", "app": "web"},
            "uid": "4c1e6c3e-0000-4000-8000-000000000001", "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                 "uid": "u", "controller": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Apply",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:ports": {}}}}]
        }});
        let service = with(
            objects::service(
                "web",
                json!({"type": "LoadBalancer", "externalIPs": ["192.0.2.1"],
                "sessionAffinity": "ClientIP", "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}),
            ),
            meta.clone(),
        );
        let service =
            with(service, json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}}));
        let mut endpoint = objects::endpoint("10.0.0.1", "node-a", "terminating");
        endpoint = with(
            endpoint,
            json!({"zone": "zone-a", "hostname": "pod-1",
            "hints": {"forZones": [{"name": "zone-a"}]},
            "targetRef": {"kind": "Pod", "name": "pod-1", "namespace": "default", "uid": "p"}}),
        );
        let slice = with(objects::slice("web-1", "web", vec![endpoint]), meta.clone());
        let node = with(objects::this_node(), meta);
        let secret = objects::secret("default", "bgp", json!({"password": "s3cret"}));
        let secret = with(secret, json!({"data": {"bin": "AAEC/w=="}, "stringData": null}));
        let peer = objects::bgp_peer("r1", "192.0.2.254", json!({"holdTime": "90s"}));
        let cases = [
            Object::Service(Arc::new(typed(&service))),
            Object::EndpointSlice(Arc::new(typed(&slice))),
            Object::Node(Arc::new(typed(&node))),
            Object::IPPool(Arc::new(typed(&objects::ip_pool("pool", &["192.0.2.0/28"])))),
            Object::BGPPeer(Arc::new(typed(&peer))),
            Object::BGPAdvertisement(Arc::new(typed(&objects::bgp_advertisement(
                "all",
                json!({"communities": ["64512:1"]}),
            )))),
            Object::L2Advertisement(Arc::new(typed(&objects::l2_advertisement(
                "r1",
                json!({"nodeSelectors": [{"matchLabels": {"rack": "r1"}}], "interfaces": ["eth1"]}),
            )))),
            Object::Namespace(Arc::new(typed(&json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team", "labels": {"env": "prod"}}})))),
            Object::Secret(Arc::new(typed(&secret))),
        ];
        for object in cases {
            let stored = StoredObject::store(&object).unwrap();
            assert_eq!(stored.kind(), object.kind());
            assert_eq!(stored.object().unwrap(), object, "{stored:?}");
            let again = StoredObject::store(&stored.object().unwrap()).unwrap();
            assert!(again.same_as(&stored), "{again:?} != {stored:?}");
            let change = stored.to_change(ObjectKey::new("default", "x")).unwrap();
            assert_eq!(change.kind(), object.kind());
            assert!(!change.is_delete());
        }
    }

    /// The point of keeping JSON: a typical EndpointSlice is several times smaller than its
    /// struct form (the struct's inline size alone is counted, an underestimate).
    #[test]
    fn a_stored_slice_is_smaller_than_its_endpoints_inline() {
        let endpoints =
            (0..25).map(|i| objects::endpoint(&format!("10.0.0.{i}"), "node-a", "ready")).collect();
        let slice: EndpointSlice = typed(&objects::slice("web-1", "web", endpoints));
        let inline = slice.endpoints.len() * size_of::<k8s_openapi::api::discovery::v1::Endpoint>();
        let stored = StoredObject::store(&Object::EndpointSlice(Arc::new(slice))).unwrap();
        assert!(stored.stored_bytes() * 2 < inline, "{} vs {inline}", stored.stored_bytes());
    }

    /// Issue 20: the directory keeps every object for as long as the agent runs, and a slice's
    /// JSON repeats one endpoint shape; kept compressed, it costs a fraction of its JSON (and
    /// reads back equal, which the round-trip test above checks for every kind).
    #[test]
    fn a_stored_slice_keeps_a_fraction_of_its_json() {
        let endpoints = (0..25)
            .map(|i| objects::endpoint(&format!("10.128.{}.{}", i / 7, i * 9), "node-a", "ready"))
            .collect();
        let slice: EndpointSlice = typed(&objects::slice("web-1", "web", endpoints));
        let json = serde_json::to_vec(&slice).unwrap().len();
        let stored = StoredObject::store(&Object::EndpointSlice(Arc::new(slice))).unwrap();
        eprintln!("JSON {json} B, stored {} B", stored.stored_bytes());
        assert!(stored.stored_bytes() * 3 < json, "{} of {json} B", stored.stored_bytes());
    }
}
