//! `IPPool`: addresses the controller hands to LoadBalancer Services.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AddressRange;

/// A pool of LoadBalancer addresses. Services get one address per IP family they ask for from
/// the pools that select them.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    crates(kube_core = "::kube_core"),
    doc = "An IPPool: LoadBalancer addresses the controller hands out",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    shortname = "ippool",
    status = "IPPoolStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Used v4","type":"integer","jsonPath":".status.usedIPv4"}"#,
    printcolumn = r#"{"name":"Free v4","type":"integer","jsonPath":".status.availableIPv4"}"#,
    printcolumn = r#"{"name":"Used v6","type":"integer","jsonPath":".status.usedIPv6"}"#,
    printcolumn = r#"{"name":"Free v6","type":"integer","jsonPath":".status.availableIPv6"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// CIDRs (`192.0.2.0/28`, `2001:db8::/120`) and ranges (`192.0.2.10-192.0.2.20`), IPv4 and
    /// IPv6. Pools may not overlap.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Skip IPv4 addresses ending in .0 or .255 (some clients and routers drop them).
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Hand out addresses to Services that did not ask for this pool. When false, only Services
    /// that name the pool (annotation `switchyard.io/ip-pool`) or request one of its addresses get
    /// one.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
    /// Only Services with these labels get addresses from this pool (unset: every Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub service_selector: Option<LabelSelector>,
    /// Only Services in namespaces with these labels get addresses from this pool (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub namespace_selector: Option<LabelSelector>,
    /// Hand out no new addresses from this pool; Services that hold one keep it.
    #[serde(default)]
    pub disabled: bool,
}

fn default_true() -> bool {
    true
}

/// What the controller reports about a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// IPv4 addresses held by Services.
    #[serde(default, rename = "usedIPv4")]
    pub used_ipv4: u64,
    /// IPv4 addresses still free (after avoidBuggyIPs).
    #[serde(default, rename = "availableIPv4")]
    pub available_ipv4: u64,
    /// IPv6 addresses held by Services.
    #[serde(default, rename = "usedIPv6")]
    pub used_ipv6: u64,
    /// IPv6 addresses still free; saturates at 2^64-1.
    #[serde(default, rename = "availableIPv6")]
    pub available_ipv6: u64,
    /// `switchyard.io/Valid`: False when addresses do not parse or overlap another pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,
}

/// The parsed address ranges of every pool, with the field each came from. Entries that do not
/// parse are left out (and reported by [`check`]).
pub fn pool_ranges(pool: &IPPool) -> Vec<(String, AddressRange)> {
    pool.spec
        .addresses
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            AddressRange::parse(text).ok().map(|r| (format!("spec.addresses[{i}]"), r))
        })
        .collect()
}
