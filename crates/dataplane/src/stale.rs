//! Which removed backends get their sockets torn down.
//!
//! A backend leaves the maps for two reasons: its endpoint is gone (or failed), or it is
//! terminating and no longer used for new flows. Only the first breaks existing connections;
//! a terminating endpoint keeps them until the pod exits (KEP-1669). The model's output does not
//! say which it was, so the agent tracks the endpoints that EndpointSlices mark terminating.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use switchyard_model::{Change, ObjectKey};

/// Terminating endpoint addresses, per EndpointSlice (with the slice's ports).
#[derive(Debug, Clone, Default)]
pub struct TerminatingEndpoints {
    by_slice: HashMap<ObjectKey, HashSet<IpAddr>>,
    ports: HashMap<ObjectKey, Vec<u16>>,
}

impl TerminatingEndpoints {
    /// Follows one change of the source.
    pub fn observe(&mut self, change: &Change) {
        let Change::EndpointSlice(key, slice) = change else { return };
        let terminating: HashSet<IpAddr> = slice
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.terminating).unwrap_or(false))
            .flat_map(|e| e.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        if terminating.is_empty() {
            self.by_slice.remove(key);
            self.ports.remove(key);
        } else {
            let ports = slice
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
                .collect();
            self.by_slice.insert(key.clone(), terminating);
            self.ports.insert(key.clone(), ports);
        }
    }

    /// Every terminating (address, port): the backends whose flows must keep working.
    pub fn endpoints(&self) -> HashSet<(IpAddr, u16)> {
        let mut out = HashSet::new();
        for (key, ips) in &self.by_slice {
            for port in self.ports.get(key).into_iter().flatten() {
                out.extend(ips.iter().map(|ip| (*ip, *port)));
            }
        }
        out
    }

    pub fn is_terminating(&self, ip: IpAddr) -> bool {
        self.by_slice.values().any(|set| set.contains(&ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};

    use super::*;

    fn slice(endpoints: &[(&str, bool)]) -> Change {
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, terminating)| Endpoint {
                    addresses: vec![(*ip).into()],
                    conditions: Some(EndpointConditions {
                        terminating: Some(*terminating),
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        };
        Change::EndpointSlice(ObjectKey::new("ns", "s"), Some(Box::new(slice)))
    }

    #[test]
    fn an_endpoint_marked_terminating_is_remembered_until_its_slice_changes() {
        let mut tracker = TerminatingEndpoints::default();
        tracker.observe(&slice(&[("10.0.0.1", false), ("10.0.0.2", true)]));
        assert!(tracker.is_terminating("10.0.0.2".parse().unwrap()));
        assert!(!tracker.is_terminating("10.0.0.1".parse().unwrap()));
        tracker.observe(&slice(&[("10.0.0.1", false)]));
        assert!(!tracker.is_terminating("10.0.0.2".parse().unwrap()));
        tracker.observe(&slice(&[("10.0.0.3", true)]));
        tracker.observe(&Change::EndpointSlice(ObjectKey::new("ns", "s"), None));
        assert!(!tracker.is_terminating("10.0.0.3".parse().unwrap()));
    }
}
