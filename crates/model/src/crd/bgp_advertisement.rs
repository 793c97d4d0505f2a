//! `BGPAdvertisement`: which LoadBalancer addresses are announced, to which peers, how.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Announce the addresses of some pools' Services to some peers. An advertisement with an empty
/// spec announces every LoadBalancer address to every peer; without any advertisement nothing is
/// announced.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    crates(kube_core = "::kube_core"),
    doc = "A BGPAdvertisement: which LoadBalancer addresses are announced to which peers",
    version = "v1alpha1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    shortname = "bgpadv",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Names of the IPPools whose addresses are announced (empty: all pools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_pools: Vec<String>,
    /// Only Services with these labels are announced (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub service_selector: Option<LabelSelector>,
    /// BGP communities attached to the routes: standard `65000:100`, large `65000:1:2`, or the
    /// well-known names `no-export`, `no-advertise`, `no-export-subconfed`, `no-peer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    /// LOCAL_PREF of the routes (iBGP sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Prefix length announced for IPv4 addresses (default 32: each address on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length: Option<u8>,
    /// Prefix length announced for IPv6 addresses (default 128).
    #[serde(default, rename = "aggregationLengthV6", skip_serializing_if = "Option::is_none")]
    pub aggregation_length_v6: Option<u8>,
    /// Names of the BGPPeers the routes go to (empty: all peers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Also announce the Services' `spec.externalIPs` (off by default).
    #[serde(default, rename = "externalIPs")]
    pub external_ips: bool,
}
