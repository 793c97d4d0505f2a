//! Observability for the node and director roles.
//!
//! - [`bgp`]: the BGP speaker's sessions and decisions (`/bgp`, `switchyard bgp`) and metrics.
//! - [`director`]: a director's pinned maps: settings, VIPs and their tables' node shares,
//!   counters, and where one flow goes and why (`switchyard status` / `explain` on a director).
//! - [`kernel`]: a snapshot of what is programmed in the kernel (pinned maps), with map fill
//!   and memory, for `switchyard status` / `services --live` and for metrics.
//! - [`explain`]: one flow's fate, decided from the maps the way the programs decide it.
//! - [`labels`]: which Service a frontend entry belongs to (the kernel only knows ids).
//! - [`metrics`]: Prometheus metrics (prometheus-client): kube-proxy-equivalent sync metrics
//!   kept by the agent, and per-Service / per-reason counters read from the maps on scrape.
//! - [`server`]: the local API (unix socket; TCP only when asked) serving `/metrics` and
//!   `/status`.

pub mod bgp;
pub mod director;
pub mod error;
pub mod explain;
pub mod kernel;
pub mod labels;
pub mod metrics;
pub mod server;

pub use error::Error;
