//! Observability for the node role.
//!
//! - [`bgp`]: the BGP speaker's sessions and decisions (`/bgp`, `switchyard bgp`) and metrics.
//! - [`kernel`]: a snapshot of what is programmed in the kernel (pinned maps), with map fill
//!   and memory, for `switchyard status` / `services --live` and for metrics.
//! - [`explain`]: one flow's fate, decided from the maps the way the programs decide it.
//! - [`labels`]: which Service a frontend entry belongs to (the kernel only knows ids).
//! - [`metrics`]: Prometheus metrics (prometheus-client): kube-proxy-equivalent sync metrics
//!   kept by the agent, and per-Service / per-reason counters read from the maps on scrape.
//! - [`server`]: the local API (unix socket; TCP only when asked) serving `/metrics` and
//!   `/status`.

pub mod bgp;
pub mod error;
pub mod explain;
pub mod kernel;
pub mod labels;
pub mod metrics;
pub mod server;

pub use error::Error;
