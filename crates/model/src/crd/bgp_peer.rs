//! `BGPPeer`: a router the node agents' BGP speakers open sessions with.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TCP port of BGP when `spec.peerPort` is not set.
pub const DEFAULT_PEER_PORT: u16 = 179;
/// `spec.holdTime` when not set (RFC 4271's suggested value).
pub const DEFAULT_HOLD_TIME: &str = "90s";

/// A BGP neighbour. Every node its `nodeSelector` selects (unset: every node) peers with it.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    crates(kube_core = "::kube_core"),
    doc = "A BGPPeer: a router the node agents announce LoadBalancer addresses to",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    shortname = "bgppeer",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
    printcolumn = r#"{"name":"Peer ASN","type":"integer","jsonPath":".spec.peerASN"}"#,
    printcolumn = r#"{"name":"My ASN","type":"integer","jsonPath":".spec.myASN"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The router's address (IPv4 or IPv6).
    pub peer_address: String,
    /// The router's AS number (1-4294967295; 4-octet ASNs are fine).
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    /// Our AS number on this session; equal to peerASN for iBGP.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// The router's TCP port.
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
    /// Proposed hold time, a duration such as `9s` or `90s` (0 or at least 3 s).
    #[serde(default = "default_hold_time")]
    pub hold_time: String,
    /// Keepalive interval (default: a third of the hold time); shorter than the hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// Announce graceful restart (RFC 4724) so the router keeps our routes while the agent
    /// restarts.
    #[serde(default)]
    pub graceful_restart: bool,
    /// TCP MD5 password of the session (RFC 2385), from a key of a Secret. A peer whose Secret
    /// or key is missing gets no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
    /// The router is more than one hop away (eBGP multihop: TTL 255 instead of 1).
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    /// Bidirectional Forwarding Detection beside the session (RFC 5880/5881, asynchronous mode,
    /// single hop): the router notices a dead speaker within `detectMultiplier` × `interval`
    /// instead of the hold time. The router must run BFD for this neighbour too. Not with
    /// `ebgpMultiHop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSpec>,
    /// Nodes that peer with this router (unset: every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub node_selector: Option<LabelSelector>,
}

fn default_peer_port() -> u16 {
    DEFAULT_PEER_PORT
}

fn default_hold_time() -> String {
    DEFAULT_HOLD_TIME.to_owned()
}

/// BFD settings of a BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BfdSpec {
    /// How often we send and how often we can receive once Up, a duration such as `100ms`
    /// (10ms to 60s; default 100ms).
    #[serde(default = "default_bfd_interval")]
    pub interval: String,
    /// Packets the router may miss before it declares us down (1-255; default 3).
    #[serde(default = "default_detect_multiplier")]
    pub detect_multiplier: u8,
}

/// `spec.bfd.interval` when not set.
pub const DEFAULT_BFD_INTERVAL: &str = "100ms";
/// `spec.bfd.detectMultiplier` when not set.
pub const DEFAULT_DETECT_MULTIPLIER: u8 = 3;

fn default_bfd_interval() -> String {
    DEFAULT_BFD_INTERVAL.to_owned()
}

fn default_detect_multiplier() -> u8 {
    DEFAULT_DETECT_MULTIPLIER
}

/// Namespace of a `passwordSecret` that names none: the one `deploy/` runs the agent in.
pub const DEFAULT_SECRET_NAMESPACE: &str = "kube-system";

/// A key of a Secret (peers are cluster-scoped, so the namespace is named or defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace (default `kube-system`).
    #[serde(default = "default_secret_namespace")]
    pub namespace: String,
    /// The key holding the password.
    #[serde(default = "default_password_key")]
    pub key: String,
}

fn default_secret_namespace() -> String {
    DEFAULT_SECRET_NAMESPACE.to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}
