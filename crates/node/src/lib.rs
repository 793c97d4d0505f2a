//! The node role (replaces kube-proxy): Services to BPF maps on one node, kept current.
//!
//! [`core`] decides, without I/O, what happens in which order: changes and kernel feedback in,
//! effects out (tested against the planner's fake kernel, without root). [`runtime`] drives it
//! with tokio: a source of objects (manifest directory or API
//! server), the model, the reconciler and the kernel, the kube-proxy compatible health
//! endpoints and the local API. [`api_client`] is how the inspection commands ask a running
//! agent for its desired state. The binary only turns flags into a [`NodeConfig`] and calls
//! [`run`].

mod announce;
pub mod api_client;
mod config;
pub mod core;
mod error;
mod findings;
pub mod kube_proxy_config;
pub mod runtime;

pub use config::{Directors, NodeConfig, NodePortMode, SourceConfig};
pub use error::NodeError;
pub use runtime::{cleanup, mount_bpffs, run};
