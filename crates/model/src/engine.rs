//! The incremental, sans-IO engine: keeps the parsed cluster and the desired state of one node,
//! and recomputes only the Services a change touches.

use crate::config::ProxyConfig;
use crate::desired::{DesiredState, StateDiff};
use crate::input::{Change, ClusterState};

/// The desired state of one node, kept up to date change by change.
#[derive(Debug, Clone)]
pub struct NodeModel {
    config: ProxyConfig,
    desired: DesiredState,
}

impl NodeModel {
    /// A model that has seen no objects yet.
    pub fn new(config: ProxyConfig) -> Self {
        Self { config, desired: DesiredState::default() }
    }

    /// A model fed a whole snapshot at once.
    pub fn from_state(config: ProxyConfig, state: &ClusterState) -> Self {
        let _ = state;
        Self::new(config)
    }

    /// Feeds one change; returns how the desired state changed.
    pub fn apply(&mut self, change: Change) -> StateDiff {
        let _ = change;
        StateDiff::default()
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }
}
