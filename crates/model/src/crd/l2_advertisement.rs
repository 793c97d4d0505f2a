//! `L2Advertisement`: which LoadBalancer addresses one node answers ARP / NDP for, from which
//! nodes, on which interfaces (layer-2 mode, for networks without BGP routers).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer ARP (IPv4) and NDP neighbour solicitations (IPv6) for the addresses of some pools'
/// Services. For each address exactly one eligible node answers, the same one whichever agent
/// decides (`switchyard_model::announce::l2`). An advertisement with an empty spec covers every
/// LoadBalancer address, every node and every interface; without any advertisement no node
/// answers for anything.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    crates(kube_core = "::kube_core"),
    doc = "An L2Advertisement: which LoadBalancer addresses a node answers ARP/NDP for",
    version = "v1alpha1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    shortname = "l2adv",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the IPPools whose addresses are answered for (empty: all pools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_pools: Vec<String>,
    /// Only Services with these labels are answered for (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub service_selector: Option<LabelSelector>,
    /// Nodes that may answer: a node is a candidate when any selector selects its labels
    /// (empty: every node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::label_selectors")]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces the answering node answers on (empty: every interface that does ARP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Also answer for the Services' `spec.externalIPs` (off by default).
    #[serde(default, rename = "externalIPs")]
    pub external_ips: bool,
}
