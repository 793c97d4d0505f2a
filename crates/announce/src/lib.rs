//! BGP sessions of a role, kept in line with the model's announcement plan
//! (`switchyard_model::announce::Plan`). The node agent and the director decide *what* to
//! announce differently (a node its LoadBalancer IPs, a director its VIPs; docs/bgp.md); both
//! run their sessions with [`Speakers`]:
//!
//! - a session per peer of the plan, closed with Cease when its peer goes away or changes a
//!   setting (then started again); a session whose settings did not change is never reset;
//! - each session is told its routes only when they differ from what it was last told;
//! - [`Speakers::source`] is what `/bgp` and the metrics read.

mod speakers;
pub mod translate;

pub use speakers::Speakers;
