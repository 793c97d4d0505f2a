//! Benchmarks of Switchyard against kube-proxy's iptables and nftables data planes.
//!
//! The peers' rulesets are generated exactly as kube-proxy writes them ([`kube_proxy`]) from one
//! [`state::DesiredState`], and applied inside network namespaces of our own.

pub mod connection_rate;
pub mod error;
pub mod forwarding;
pub mod golden;
pub mod kube_proxy;
pub mod latency;
pub mod machine;
pub mod memory;
pub mod model_input;
pub mod netns;
pub mod plot;
pub mod programming;
pub mod report;
pub mod state;
pub mod switchyard;
pub mod synthetic;
pub mod throughput;
