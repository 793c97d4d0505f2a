//! The Kubernetes API server as a source of model input.
//!
//! Watches Services and EndpointSlices (filtered at the API server with kube-proxy's label
//! selector) and this node's Node object (field selector) — for the controller, every Service and
//! IPPool instead ([`WatchScope`]) — with kube-runtime watchers: streaming
//! lists where the server has them, backoff, bookmarks. Changes reach the consumer as
//! [`ApiUpdate`]s only after the first complete list of every kind, and a relist after a broken
//! watch reports the objects deleted in between.

mod annotate;
mod backoff;
mod client;
mod options;
mod reflection;
mod undecodable;
mod watch;

pub use annotate::annotate_node;
pub use backoff::JitteredBackoff;
pub use client::{ClientError, ClusterAccess};
pub use options::{ApiOptions, InitialList, WatchScope};
pub use reflection::{KindEvent, Reflection, Watched, object_key};
pub use watch::{ApiUpdate, ApiWatcher, DEFAULT_STREAMING_LIST_TIMEOUT};
