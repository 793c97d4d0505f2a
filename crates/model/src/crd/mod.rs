//! Switchyard's own kinds (group `switchyard.io`, version `v1alpha1`, all cluster-scoped):
//! `IPPool` for LoadBalancer addresses, `BGPPeer` and `BGPAdvertisement` for announcing them,
//! `L2Advertisement` for answering ARP / NDP for them where no BGP router is.
//!
//! Plain data with kube's `CustomResource` derive, so the CRDs in deploy/ are generated from
//! these types ([`definitions`]). What the fields *mean* beyond their syntax is checked by
//! `validate` with every other kind; the controller and the BGP speaker decide the rest.

mod addresses;
mod bgp_advertisement;
mod bgp_peer;
mod community;
mod ip_pool;
mod l2_advertisement;
mod schema;

pub use addresses::{AddressRange, AddressRangeError, is_buggy};
pub use bgp_advertisement::{BGPAdvertisement, BGPAdvertisementSpec};
pub use bgp_peer::{
    BGPPeer, BGPPeerSpec, BfdSpec, DEFAULT_BFD_INTERVAL, DEFAULT_DETECT_MULTIPLIER,
    DEFAULT_HOLD_TIME, DEFAULT_PEER_PORT, DEFAULT_SECRET_NAMESPACE, SecretKeyRef,
};
pub use community::{Community, parse_community};
pub use ip_pool::{IPPool, IPPoolSpec, IPPoolStatus, pool_ranges};
pub use l2_advertisement::{L2Advertisement, L2AdvertisementSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

/// The API group of every Switchyard kind and annotation.
pub const GROUP: &str = "switchyard.io";
/// The version of every Switchyard kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Switchyard object.
pub const API_VERSION: &str = "switchyard.io/v1alpha1";

/// The CustomResourceDefinitions of every Switchyard kind, in the order deploy/crds.yaml has them.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![IPPool::crd(), BGPPeer::crd(), BGPAdvertisement::crd(), L2Advertisement::crd()]
}
