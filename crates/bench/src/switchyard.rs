//! Switchyard's side of the benchmarks: the hook the data plane fills when it lands.
//!
//! Each function returns `None` while the part of Switchyard it measures does not exist; the
//! report then shows the peers alone and says so. When the reconciler lands, convert the
//! benchmark's [`DesiredState`] to `switchyard_model::DesiredState` (one ClusterIP frontend per
//! service port, one NodePort frontend where `node_port` is set), program it into a namespace of
//! our own, and return the same steps the peers report.

use crate::programming::{Limits, StepRecord};
use crate::state::DesiredState;

/// Programming time of Switchyard's reconciler, as one [`StepRecord`] per step (see
/// [`crate::programming::Step`]).
pub fn measure_programming(
    _before: &DesiredState,
    _after: &DesiredState,
    _limits: Limits,
) -> Option<Vec<StepRecord>> {
    None
}

/// Latency through Switchyard (socket-level from a pod, per-packet for NodePort from an external
/// client): sorted samples in microseconds and the number of failed connections, for `state`
/// programmed into the lab's node 1, connecting to `target`.
pub fn measure_latency(
    _lab: &switchyard_lab::Lab,
    _state: &DesiredState,
    _target: std::net::SocketAddr,
    _connections: usize,
) -> Option<Result<(Vec<f64>, usize), crate::error::BenchError>> {
    None
}
