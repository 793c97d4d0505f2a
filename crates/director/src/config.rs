//! What every director of a cluster must agree on (table size, seed, encapsulation) and how
//! Services and Nodes opt in.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use switchyard_maglev::{Seed, TableSize};

/// Service annotation that puts a LoadBalancer Service's addresses behind the directors
/// (value `"true"`; `"false"` or absent: the Service is not a VIP of the directors). Defined by
/// the model, which also keeps nodes from announcing those addresses over BGP.
pub use switchyard_model::announce::DIRECTOR_ANNOTATION;

/// Node annotation with the node's Maglev weight on the directors (a whole number, default 1;
/// 0 keeps the node out of every table).
pub const NODE_WEIGHT_ANNOTATION: &str = "switchyard.io/director-weight";

/// Node annotation that drains a node from the directors (value `"true"`; `"false"` or absent:
/// not drained): weight 0, so no new flow goes to it, while the flows it holds finish through
/// the second chance (the next node hands their packets back to it). A cordon of our own:
/// `kubectl cordon` stops new pods, this stops new connections.
pub const DRAIN_ANNOTATION: &str = "switchyard.io/drain";

/// Node label that keeps a node out of every external load balancer (Kubernetes' own).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Default destination UDP port of GUE and FOU (Katran's).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// How the director wraps a packet for its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encap {
    /// GUE variant 0 (draft-ietf-intarea-gue): outer IP, UDP, a 4-byte GUE header naming the
    /// inner protocol, the inner IP packet.
    #[default]
    Gue,
    /// FOU / GUE variant 1: outer IP, UDP, the inner IP packet directly (what the kernel's
    /// `ip fou add port P ipproto 4|41` receives).
    Fou,
    /// IP in IP: IPv4-in-IPv4 (protocol 4), IPv6-in-IPv6 (41), IPv4-in-IPv6, IPv6-in-IPv4.
    Ipip,
}

impl Encap {
    /// The spelling of `--encap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encap::Gue => "gue",
            Encap::Fou => "fou",
            Encap::Ipip => "ipip",
        }
    }

    /// Bytes added in front of the inner IP packet when the outer header is of this family.
    pub fn overhead(self, outer_ipv6: bool) -> u32 {
        let ip = if outer_ipv6 { 40 } else { 20 };
        match self {
            Encap::Gue => ip + 8 + 4,
            Encap::Fou => ip + 8,
            Encap::Ipip => ip,
        }
    }
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--encap` named something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encapsulation {0:?}: expected gue, fou or ipip")]
pub struct UnknownEncap(pub String);

impl FromStr for Encap {
    type Err = UnknownEncap;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gue" => Ok(Encap::Gue),
            "fou" => Ok(Encap::Fou),
            "ipip" => Ok(Encap::Ipip),
            other => Err(UnknownEncap(other.to_owned())),
        }
    }
}

/// Settings of the director's tables. Every director of a cluster must use the same
/// `table_size` and `seed`, or a flow that switches directors lands on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectorConfig {
    /// M of every VIP's Maglev table (prime; default 65,537).
    pub table_size: TableSize,
    /// The cluster-wide hash seed (tables and the per-packet flow hash).
    pub seed: Seed,
    /// How long a table keeps naming the previous nodes of its slots (the second chance) before
    /// the VIP gets a table without them; `None`: until the VIP's next change.
    pub previous_ttl: Option<Duration>,
}

/// Default of `--previous-node-ttl-seconds`: long enough for the connections of a drain to
/// finish, short enough that a node long gone (whose address may be reused) stops being named.
pub const DEFAULT_PREVIOUS_TTL: Duration = Duration::from_secs(600);

impl Default for DirectorConfig {
    /// M = 65,537, the default seed, previous nodes named for 10 minutes.
    fn default() -> Self {
        DirectorConfig {
            table_size: TableSize::DIRECTOR_DEFAULT,
            seed: Seed::default(),
            previous_ttl: Some(DEFAULT_PREVIOUS_TTL),
        }
    }
}
