//! What the per-packet programs need besides the frontend maps: this node's NodePort addresses
//! (`sy_node_addrs`, for wildcard NodePort entries), loadBalancerSourceRanges (`sy_src_ranges`,
//! keyed by frontend id) and the SNAT settings (`sy_pkt_config`).
//!
//! The model decides which prefixes apply (LoadBalancer frontends only) and which address is
//! this node's; this module only writes them, make-before-break around the planner's plan:
//! [`PacketState::prepare`] adds the prefixes of frontends that already have an id *before*
//! the plan sets `FE_SOURCE_RANGES` on them (an allowed client is never dropped while the flag
//! is ahead of its prefixes), [`PacketState::finish`] adds those of new frontends and removes
//! stale ones *after* it (a prefix outlives its flag, never the other way round).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use switchyard_bpf::Maps;
use switchyard_bpf::abi::NodeAddrKey;
use switchyard_bpf::nodeport::{PacketMaps, PacketSettings, SourceRangeMap};
use switchyard_bpf::nodeport_abi::SrcRangeKey;
use switchyard_model::{DesiredState, Frontend, FrontendKey};

use crate::reconciler::KernelPlanner;
use crate::translate::{MapKey, Scope};

/// A per-packet map write that failed; names what it was for.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The loadBalancerSourceRanges of one frontend could not be written.
    #[error("source ranges of {frontend} (Service {service})")]
    SourceRange {
        frontend: FrontendKey,
        service: String,
        #[source]
        source: Box<switchyard_bpf::Error>,
    },
    /// Another per-packet map (settings, node addresses) could not be written.
    #[error("{what}")]
    Map {
        what: &'static str,
        #[source]
        source: Box<switchyard_bpf::Error>,
    },
}

/// What the agent last wrote into the per-packet maps.
#[derive(Debug, Default)]
pub struct PacketState {
    /// Prefixes in the kernel per frontend (default scope), as written.
    ranges: HashMap<FrontendKey, Vec<SrcRangeKey>>,
    /// Prefixes found at adoption that no frontend has claimed yet.
    adopted: HashSet<SrcRangeKey>,
    node_addrs: BTreeSet<IpAddr>,
    settings: Option<PacketSettings>,
}

impl PacketState {
    /// Reads what an earlier agent left in the pinned maps.
    pub fn adopt(maps: &Maps) -> Result<Self, PacketError> {
        let read =
            |source| PacketError::Map { what: "reading the pinned maps", source: Box::new(source) };
        let mut state = PacketState::default();
        for key in maps.node_addrs.keys() {
            let key = key.map_err(|source| {
                read(switchyard_bpf::Error::Map { name: "sy_node_addrs", source })
            })?;
            state.node_addrs.insert(key.addr.to_ip(key.family));
        }
        for key in maps.src_ranges.keys() {
            let key = key.map_err(|source| {
                read(switchyard_bpf::Error::Map { name: "sy_src_ranges", source })
            })?;
            let data = key.data();
            state.adopted.insert(SrcRangeKey {
                prefixlen: key.prefix_len(),
                frontend_id: data.frontend_id,
                addr: data.addr,
            });
        }
        Ok(state)
    }

    /// Node addresses currently written.
    pub fn node_addresses(&self) -> &BTreeSet<IpAddr> {
        &self.node_addrs
    }

    /// Writes this node's addresses into `sy_node_addrs`: new ones first, then the old ones
    /// go. Returns whether anything changed.
    pub fn set_node_addresses(
        &mut self,
        maps: &mut Maps,
        addresses: &[IpAddr],
    ) -> Result<bool, PacketError> {
        let wanted: BTreeSet<IpAddr> = addresses.iter().copied().collect();
        if wanted == self.node_addrs {
            return Ok(false);
        }
        let err = |source| PacketError::Map {
            what: "writing sy_node_addrs",
            source: Box::new(switchyard_bpf::Error::Map { name: "sy_node_addrs", source }),
        };
        for ip in wanted.difference(&self.node_addrs) {
            maps.node_addrs.insert(NodeAddrKey::new(*ip), 0, 0).map_err(err)?;
        }
        for ip in self.node_addrs.difference(&wanted) {
            match maps.node_addrs.remove(&NodeAddrKey::new(*ip)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(err(source)),
            }
        }
        self.node_addrs = wanted;
        Ok(true)
    }

    /// Writes the SNAT settings unless they are already in place. Returns whether it wrote.
    pub fn set_settings(
        &mut self,
        packet: &mut PacketMaps,
        settings: &PacketSettings,
    ) -> Result<bool, PacketError> {
        if self.settings.as_ref() == Some(settings) {
            return Ok(false);
        }
        packet.set_settings(settings).map_err(|source| PacketError::Map {
            what: "writing sy_pkt_config",
            source: Box::new(source),
        })?;
        self.settings = Some(settings.clone());
        Ok(true)
    }

    /// Before a plan: adds the prefixes of changed frontends that already have an id.
    pub fn prepare<'a>(
        &mut self,
        packet: &mut impl SourceRangeMap,
        planner: &KernelPlanner,
        changes: impl IntoIterator<Item = (FrontendKey, Option<&'a Frontend>)>,
    ) -> Vec<PacketError> {
        self.prepare_resolved(packet, &resolve(planner, changes))
    }

    /// [`PacketState::prepare`] with the frontend ids already looked up (before the plan).
    pub fn prepare_resolved(
        &mut self,
        packet: &mut impl SourceRangeMap,
        frontends: &[FrontendRanges],
    ) -> Vec<PacketError> {
        let mut errors = Vec::new();
        for frontend in frontends {
            if frontend.wanted.is_empty() {
                continue;
            }
            let have = self.ranges.entry(frontend.key).or_default();
            for range in &frontend.wanted {
                if have.contains(range) {
                    continue;
                }
                if !self.adopted.remove(range)
                    && let Err(source) = packet.add_source_range(range.frontend_id, *range)
                {
                    errors.push(range_error(frontend, source));
                    continue;
                }
                have.push(*range);
            }
        }
        errors
    }

    /// After a plan: every changed frontend has exactly its prefixes under its current id.
    pub fn finish<'a>(
        &mut self,
        packet: &mut impl SourceRangeMap,
        planner: &KernelPlanner,
        changes: impl IntoIterator<Item = (FrontendKey, Option<&'a Frontend>)>,
    ) -> Vec<PacketError> {
        self.finish_resolved(packet, &resolve(planner, changes))
    }

    /// [`PacketState::finish`] with the frontend ids already looked up (after the plan).
    pub fn finish_resolved(
        &mut self,
        packet: &mut impl SourceRangeMap,
        frontends: &[FrontendRanges],
    ) -> Vec<PacketError> {
        let mut errors = Vec::new();
        for frontend in frontends {
            let wanted = &frontend.wanted;
            let have = self.ranges.remove(&frontend.key).unwrap_or_default();
            let mut kept = Vec::with_capacity(wanted.len());
            for range in wanted {
                if have.contains(range) || self.adopted.remove(range) {
                    kept.push(*range);
                    continue;
                }
                match packet.add_source_range(range.frontend_id, *range) {
                    Ok(()) => kept.push(*range),
                    Err(source) => errors.push(range_error(frontend, source)),
                }
            }
            for range in have.iter().filter(|r| !wanted.contains(r)) {
                if let Err(source) = packet.remove_source_range(*range) {
                    errors.push(PacketError::Map {
                        what: "removing a source range",
                        source: Box::new(source),
                    });
                    kept.push(*range); // still in the kernel: try again next time
                }
            }
            if !kept.is_empty() {
                self.ranges.insert(frontend.key, kept);
            }
        }
        errors
    }

    /// After a full reconciliation: `finish` for every frontend, then whatever no frontend of
    /// `desired` claims (debris of an earlier agent, frontends gone) is removed.
    pub fn finish_full(
        &mut self,
        packet: &mut impl SourceRangeMap,
        planner: &KernelPlanner,
        desired: &DesiredState,
    ) -> Vec<PacketError> {
        let all = resolve(planner, desired.frontends.iter().map(|(k, f)| (*k, Some(f))));
        self.finish_full_resolved(packet, &all)
    }

    /// [`PacketState::finish_full`] with `all`, every frontend of the desired state resolved.
    pub fn finish_full_resolved(
        &mut self,
        packet: &mut impl SourceRangeMap,
        all: &[FrontendRanges],
    ) -> Vec<PacketError> {
        let listed: HashSet<FrontendKey> = all.iter().map(|f| f.key).collect();
        let gone: Vec<FrontendRanges> = self
            .ranges
            .keys()
            .filter(|k| !listed.contains(k))
            .map(|&key| FrontendRanges { key, service: String::new(), wanted: Vec::new() })
            .collect();
        let mut errors = self.finish_resolved(packet, all);
        errors.extend(self.finish_resolved(packet, &gone));
        for range in std::mem::take(&mut self.adopted) {
            if let Err(source) = packet.remove_source_range(range) {
                errors.push(PacketError::Map {
                    what: "removing a stale source range",
                    source: Box::new(source),
                });
            }
        }
        errors
    }

    /// Prefixes currently written, for tests and status.
    pub fn source_ranges(&self, key: &FrontendKey) -> &[SrcRangeKey] {
        self.ranges.get(key).map_or(&[], Vec::as_slice)
    }
}

/// The loadBalancerSourceRanges of one changed frontend as trie keys under its frontend id:
/// empty when it has none, has no id (not programmed) or is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendRanges {
    pub key: FrontendKey,
    /// The Service, for error messages.
    pub service: String,
    pub wanted: Vec<SrcRangeKey>,
}

/// Looks up the frontend ids of `changes` in `planner` as it is now (before a plan: the ids
/// frontends keep; after it: their current ids).
pub fn resolve<'a>(
    planner: &KernelPlanner,
    changes: impl IntoIterator<Item = (FrontendKey, Option<&'a Frontend>)>,
) -> Vec<FrontendRanges> {
    changes
        .into_iter()
        .map(|(key, frontend)| FrontendRanges {
            key,
            service: frontend.map(|f| f.service.to_string()).unwrap_or_default(),
            wanted: frontend.and_then(|f| wanted(planner, key, f)).unwrap_or_default(),
        })
        .collect()
}

/// The trie keys `frontend` needs, or `None` when it has no id (not programmed).
fn wanted(
    planner: &KernelPlanner,
    key: FrontendKey,
    frontend: &Frontend,
) -> Option<Vec<SrcRangeKey>> {
    if frontend.source_ranges.is_empty() {
        return Some(Vec::new());
    }
    let id = planner.frontend_id(&MapKey { frontend: key, scope: Scope::Default })?;
    Some(
        frontend
            .source_ranges
            .iter()
            .filter_map(|cidr| SrcRangeKey::new(id.0, cidr.network(), cidr.prefix_len()).ok())
            .collect(),
    )
}

fn range_error(frontend: &FrontendRanges, source: switchyard_bpf::Error) -> PacketError {
    PacketError::SourceRange {
        frontend: frontend.key,
        service: frontend.service.clone(),
        source: Box::new(source),
    }
}
