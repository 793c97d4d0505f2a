//! A pool as the allocator uses it: its parsed ranges, whether it may hand out addresses, whom
//! it serves, and its free addresses per family.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use switchyard_model::crd::{AddressRange, IPPool};
use switchyard_model::labels::selects_optional;

use super::free::FreeRanges;
use super::service::Family;

/// Why a pool hands out nothing new (its `switchyard.io/Valid` condition is False).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolProblem {
    /// CamelCase reason of the condition.
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// One IPPool.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) ranges: Vec<AddressRange>,
    pub(crate) problem: Option<PoolProblem>,
    pub(crate) auto_assign: bool,
    /// `avoidBuggyIPs`.
    pub(crate) avoid_buggy: bool,
    pub(crate) disabled: bool,
    service_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    pub(crate) free_v4: FreeRanges,
    pub(crate) free_v6: FreeRanges,
}

impl Pool {
    fn new(
        name: &str,
        pool: &IPPool,
        problem: Option<PoolProblem>,
        ranges: Vec<AddressRange>,
    ) -> Self {
        let ends = |v4: bool| -> Vec<(IpAddr, IpAddr)> {
            ranges.iter().filter(|r| r.is_ipv4() == v4).map(|r| (r.first(), r.last())).collect()
        };
        let avoid = pool.spec.avoid_buggy_ips;
        Self {
            name: name.to_owned(),
            free_v4: FreeRanges::new(true, avoid, &ends(true)),
            free_v6: FreeRanges::new(false, avoid, &ends(false)),
            ranges,
            problem,
            auto_assign: pool.spec.auto_assign,
            avoid_buggy: avoid,
            disabled: pool.spec.disabled,
            service_selector: pool.spec.service_selector.clone(),
            namespace_selector: pool.spec.namespace_selector.clone(),
        }
    }

    pub(crate) fn contains(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(address))
    }

    pub(crate) fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.is_ipv4() == (family == Family::IPv4))
    }

    /// True when the pool's selectors admit a Service with `labels` in a namespace with
    /// `namespace_labels`.
    pub(crate) fn selects(
        &self,
        labels: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
    ) -> bool {
        selects_optional(self.service_selector.as_ref(), labels)
            && selects_optional(self.namespace_selector.as_ref(), namespace_labels)
    }

    pub(crate) fn free(&mut self, family: Family) -> &mut FreeRanges {
        match family {
            Family::IPv4 => &mut self.free_v4,
            Family::IPv6 => &mut self.free_v6,
        }
    }
}

/// Builds every pool, in name order, with its problem: entries that do not parse, no entries at
/// all, or addresses that a pool earlier in name order already has (the later pool is at fault,
/// as `switchyard validate` says).
pub(crate) fn build(pools: &BTreeMap<String, IPPool>) -> BTreeMap<String, Pool> {
    let mut built: BTreeMap<String, Pool> = BTreeMap::new();
    for (name, pool) in pools {
        let mut ranges = Vec::new();
        let mut problem = None;
        for (i, text) in pool.spec.addresses.iter().enumerate() {
            match AddressRange::parse(text) {
                Ok(range) => ranges.push(range),
                Err(err) => {
                    problem.get_or_insert(PoolProblem {
                        reason: "InvalidAddresses",
                        message: format!("spec.addresses[{i}]: {err}"),
                    });
                }
            }
        }
        if pool.spec.addresses.is_empty() {
            problem = Some(PoolProblem {
                reason: "Empty",
                message: "spec.addresses is empty".to_owned(),
            });
        }
        for (j, range) in ranges.iter().enumerate() {
            if problem.is_some() {
                break;
            }
            if let Some(other) = ranges[..j].iter().find(|o| o.overlaps(range)) {
                problem = Some(PoolProblem {
                    reason: "Overlap",
                    message: format!("{range} overlaps {other} of this pool"),
                });
            } else if let Some(other) =
                built.values().find(|p| p.ranges.iter().any(|o| o.overlaps(range)))
            {
                problem = Some(PoolProblem {
                    reason: "Overlap",
                    message: format!(
                        "{range} overlaps IPPool {}: pools may not share addresses",
                        other.name
                    ),
                });
            }
        }
        built.insert(name.clone(), Pool::new(name, pool, problem, ranges));
    }
    built
}
