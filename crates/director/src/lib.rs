//! The director role: a stateless Maglev load balancer at the edge (docs/director.md).
//!
//! Packets for a VIP reach any director (the routers spread them with ECMP); every director
//! computes the same per-VIP Maglev table from the same objects and seed, so a flow goes to the
//! same node whichever director sees it. The director encapsulates it (GUE, FOU or IPIP) to the
//! node, which decapsulates it and answers the client directly.
//!
//! - [`vips`]: which addresses are VIPs and which nodes serve each, from the model's view.
//! - [`tables`]: ids, Maglev tables and the ordered map operations of every update (pure).
//! - [`runtime`]: loads the XDP program and carries every update into its maps.
//! - [`announce`]: announces the VIPs over BGP with the director as next hop.
//! - [`health`]: node health from probes (sans IO): which nodes stay in the tables.
//! - [`previous`]: the previous-node records directors publish and a new director takes over.
//! - [`probe`]: sends the probes through the encapsulated path.
//! - [`settle`]: when a director that starts for the first time may announce (sans IO).

pub mod announce;
pub mod config;
pub mod health;
pub mod previous;
pub mod probe;
pub mod runtime;
pub mod settle;
pub mod tables;
pub mod vips;

pub use config::{DEFAULT_PREVIOUS_TTL, DirectorConfig, Encap};
pub use tables::{Adopted, AdoptedTable, Choice, Op, Plan, Tables};
pub use vips::{NodeTarget, Problem, Vip, VipSet, vip_set, vip_set_at};
