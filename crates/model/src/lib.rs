//! The Switchyard model: everything Kubernetes *means* for a service proxy, decided without I/O.
//!
//! Input is ordinary Kubernetes objects (k8s-openapi `Service`, `EndpointSlice`, `Node`), fed either
//! as a whole [`ClusterState`] or as a stream of [`Change`]s. Output is the desired state of one
//! node's data plane and the difference from the previous desired state. Kernel and network code
//! only carry that difference out.

pub mod input;

pub use input::{Change, ClusterState, ObjectKey, ObjectKind};
