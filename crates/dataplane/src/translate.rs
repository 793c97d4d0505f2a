//! The model's desired state in the planner's terms: one model frontend becomes one map entry,
//! or two when internal and external traffic policies select different backends (scopes).

use std::fmt;
use std::net::IpAddr;

use switchyard_bpf::abi;
use switchyard_model::{
    Algorithm, BackendState, DesiredState, Frontend, FrontendKey, StateDiff, TrafficPolicy,
    WhenEmpty,
};

use crate::planner::FrontendSpec;

/// Which of a frontend's entries: the one every path uses, or the in-cluster view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Default,
    Internal,
}

impl Scope {
    pub fn to_abi(self) -> u8 {
        match self {
            Scope::Default => abi::SCOPE_DEFAULT,
            Scope::Internal => abi::SCOPE_INTERNAL,
        }
    }
}

/// Key of one `sy_frontends` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapKey {
    pub frontend: FrontendKey,
    pub scope: Scope,
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::Default => write!(f, "{}", self.frontend),
            Scope::Internal => write!(f, "{} (internal)", self.frontend),
        }
    }
}

/// One `sy_backends` entry. Flags are part of the identity: a backend that starts terminating
/// is a new entry (the old one goes once nothing points at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapBackend {
    pub ip: IpAddr,
    pub port: u16,
    /// `abi::BE_*`.
    pub flags: u8,
}

/// Everything in a `sy_frontend` value besides id, count and the Maglev flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrontendAttrs {
    /// `abi::FE_*` without `FE_MAGLEV` (that one comes from [`FrontendSpec::maglev`]).
    pub flags: u32,
    pub affinity_timeout_s: u32,
}

pub type Spec = FrontendSpec<MapBackend, FrontendAttrs>;

fn backend(b: &switchyard_model::Backend) -> MapBackend {
    let mut flags = 0;
    if b.state == BackendState::Terminating {
        flags |= abi::BE_TERMINATING;
    }
    if b.is_local {
        flags |= abi::BE_LOCAL;
    }
    MapBackend { ip: b.ip, port: b.port, flags }
}

fn spec(frontend: &Frontend, backends: &[switchyard_model::Backend], mut flags: u32) -> Spec {
    if frontend.affinity_timeout_seconds.is_some() {
        flags |= abi::FE_AFFINITY;
    }
    if frontend.when_empty == WhenEmpty::Reject {
        flags |= abi::FE_REJECT_EMPTY;
    }
    if !backends.is_empty() && backends.iter().all(|b| b.state == BackendState::Terminating) {
        flags |= abi::FE_TERMINATING_FALLBACK;
    }
    FrontendSpec {
        backends: backends.iter().map(backend).collect(),
        maglev: frontend.algorithm == Algorithm::Maglev,
        attrs: FrontendAttrs {
            flags,
            affinity_timeout_s: frontend.affinity_timeout_seconds.unwrap_or(0),
        },
    }
}

/// The map entries for one model frontend (`None`: removed). Always both scopes, so an entry
/// that is no longer split loses its internal entry.
pub fn entries(key: FrontendKey, frontend: Option<&Frontend>) -> [(MapKey, Option<Spec>); 2] {
    let default = MapKey { frontend: key, scope: Scope::Default };
    let internal = MapKey { frontend: key, scope: Scope::Internal };
    let Some(frontend) = frontend else { return [(default, None), (internal, None)] };
    let mut flags = 0;
    if frontend.traffic_policy == TrafficPolicy::Local {
        flags |= abi::FE_LOCAL_ONLY;
    }
    if frontend.in_cluster_backends.is_some() {
        flags |= abi::FE_SPLIT_SCOPE;
    }
    // The model lists source ranges on LoadBalancer frontends only; the per-packet path checks
    // them on the default entry (crate::packet writes the prefixes).
    if !frontend.source_ranges.is_empty() {
        flags |= abi::FE_SOURCE_RANGES;
    }
    let internal_spec = frontend.in_cluster_backends.as_deref().map(|list| spec(frontend, list, 0));
    [(default, Some(spec(frontend, &frontend.backends, flags))), (internal, internal_spec)]
}

/// A model difference as planner changes.
pub fn changes(diff: &StateDiff) -> Vec<(MapKey, Option<Spec>)> {
    let mut out = Vec::with_capacity(2 * (diff.upserted.len() + diff.removed.len()));
    for (key, frontend) in &diff.upserted {
        out.extend(entries(*key, Some(frontend)));
    }
    for key in &diff.removed {
        out.extend(entries(*key, None));
    }
    out
}

/// A whole desired state as planner entries (for [`crate::Planner::plan_full`]).
pub fn desired(state: &DesiredState) -> Vec<(MapKey, Spec)> {
    let mut out = Vec::with_capacity(state.frontends.len());
    for (key, frontend) in &state.frontends {
        for (map_key, spec) in entries(*key, Some(frontend)) {
            if let Some(spec) = spec {
                out.push((map_key, spec));
            }
        }
    }
    out
}
