//! What a lab looks like: nodes with pods, and external clients, read from YAML.
//!
//! Only names are described; every address is derived from the position of a node, pod or client
//! (see [`crate::plan`]), so a topology file cannot route anything out of the lab.

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Most nodes, pods per node and clients a lab may have: each gets one octet of an address plan.
pub const MAX_MEMBERS: usize = 200;

/// Longest node, pod or client name (keeps netns names and cgroup paths short).
pub const MAX_NAME_LEN: usize = 40;

/// Names the lab uses itself and that a topology may not take.
const RESERVED_NAMES: &[&str] = &["fabric"];

/// A cluster to build: nodes (each with pods) and external clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Cluster nodes, in order; the position decides the node's addresses.
    pub nodes: Vec<NodeSpec>,
    /// External clients: namespaces outside the cluster that reach nodes through the router.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Directors: one-armed namespaces behind the router for `switchyard director` (VIPs are
    /// routed to them with [`crate::Lab::route_to_directors`]).
    #[serde(default)]
    pub directors: Vec<String>,
}

/// One node and the pods scheduled on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    #[serde(default)]
    pub pods: Vec<String>,
}

impl Default for Topology {
    /// Three nodes with two pods each and one external client: the smallest cluster where a
    /// Service has local and remote backends from every node.
    fn default() -> Self {
        let node = |n: u32| NodeSpec {
            name: format!("node{n}"),
            pods: vec![format!("pod{n}a"), format!("pod{n}b")],
        };
        Self {
            nodes: (1..=3).map(node).collect(),
            clients: vec!["client1".to_string()],
            directors: Vec::new(),
        }
    }
}

impl Topology {
    /// Parses and validates a YAML topology; `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, LabError> {
        let topology: Topology = serde_norway::from_str(text).map_err(|err| {
            LabError::Topology { origin: origin.to_string(), reason: err.to_string() }
        })?;
        topology.validate(origin)?;
        Ok(topology)
    }

    /// Reads a YAML topology file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|cause| LabError::Io {
            what: format!("reading topology {}", path.display()),
            cause,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Checks names (safe characters, unique, not reserved) and sizes (fit the address plan).
    pub fn validate(&self, origin: &str) -> Result<(), LabError> {
        let fail = |reason: String| Err(LabError::Topology { origin: origin.to_string(), reason });
        if self.nodes.is_empty() {
            return fail("a topology needs at least one node".to_string());
        }
        if self.nodes.len() > MAX_MEMBERS {
            return fail(format!(
                "{} nodes, at most {MAX_MEMBERS} are supported",
                self.nodes.len()
            ));
        }
        if self.clients.len() > MAX_MEMBERS {
            return fail(format!(
                "{} clients, at most {MAX_MEMBERS} are supported",
                self.clients.len()
            ));
        }
        if self.directors.len() > MAX_MEMBERS {
            return fail(format!(
                "{} directors, at most {MAX_MEMBERS} are supported",
                self.directors.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let names = self
            .nodes
            .iter()
            .flat_map(|node| std::iter::once(&node.name).chain(node.pods.iter()))
            .chain(self.clients.iter())
            .chain(self.directors.iter());
        for name in names {
            if let Err(reason) = check_name(name) {
                return fail(reason);
            }
            if !seen.insert(name.as_str()) {
                return fail(format!(
                    "name {name:?} is used twice (nodes, pods, clients and directors share one namespace)"
                ));
            }
        }
        for node in &self.nodes {
            if node.pods.len() > MAX_MEMBERS {
                return fail(format!(
                    "node {:?} has {} pods, at most {MAX_MEMBERS} are supported",
                    node.name,
                    node.pods.len()
                ));
            }
        }
        Ok(())
    }
}

/// A name becomes part of a netns name, a cgroup path and a bpffs path: keep it to `[a-z0-9-]`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name {name:?} must have 1 to {MAX_NAME_LEN} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("name {name:?} may only contain a-z, 0-9 and '-'"));
    }
    if name.starts_with('-') {
        return Err(format!("name {name:?} must not start with '-'"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("name {name:?} is reserved by the lab"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_topology_is_three_nodes_six_pods_one_client() {
        let topology = Topology::default();
        topology.validate("default").unwrap();
        assert_eq!(topology.nodes.len(), 3);
        assert_eq!(topology.nodes.iter().map(|n| n.pods.len()).sum::<usize>(), 6);
        assert_eq!(topology.clients, vec!["client1"]);
    }

    #[test]
    fn yaml_topology_parses() {
        let text = "nodes:\n  - name: a\n    pods: [p1, p2]\n  - name: b\nclients: [c]\ndirectors: [d1, d2]\n";
        let topology = Topology::from_yaml(text, "t.yaml").unwrap();
        assert_eq!(topology.nodes[0].pods, vec!["p1", "p2"]);
        assert!(topology.nodes[1].pods.is_empty());
        assert_eq!(topology.clients, vec!["c"]);
        assert_eq!(topology.directors, vec!["d1", "d2"]);
    }

    #[test]
    fn bad_topologies_are_rejected_with_the_reason() {
        let cases = [
            ("nodes: []\n", "at least one node"),
            ("nodes:\n  - name: a\n  - name: a\n", "used twice"),
            ("nodes:\n  - name: a\n    pods: [a]\n", "used twice"),
            ("nodes:\n  - name: A\n", "may only contain"),
            ("nodes:\n  - name: a/b\n", "may only contain"),
            ("nodes:\n  - name: fabric\n", "reserved"),
            ("nodes:\n  - name: -a\n", "must not start"),
            ("nodes:\n  - name: a\nclients: ['']\n", "1 to 40"),
            ("nodes:\n  - name: a\nclients: [c]\ndirectors: [c]\n", "used twice"),
            ("nodes:\n  - name: a\n    extra: 1\n", "unknown field"),
            ("nodes: 3\n", "invalid type"),
        ];
        for (text, expected) in cases {
            let err = Topology::from_yaml(text, "bad.yaml").unwrap_err().to_string();
            assert!(err.contains("bad.yaml"), "{text:?}: error does not name the file: {err}");
            assert!(err.contains(expected), "{text:?}: expected {expected:?} in {err}");
        }
    }

    #[test]
    fn too_many_nodes_is_rejected() {
        let topology = Topology {
            nodes: (0..=MAX_MEMBERS)
                .map(|i| NodeSpec { name: format!("n{i}"), pods: vec![] })
                .collect(),
            clients: vec![],
            directors: vec![],
        };
        let err = topology.validate("big").unwrap_err().to_string();
        assert!(err.contains("at most 200"), "{err}");
    }
}
