//! L2 mode's responder: for the LoadBalancer addresses the model says this node owns
//! (`switchyard_model::announce::l2`), answer ARP requests and IPv6 neighbour solicitations on
//! the chosen interfaces with the interface's MAC, and announce a gained address with
//! gratuitous ARP / unsolicited neighbour advertisements so that neighbours' caches move to
//! this node at once. The address is never added to any interface: the data plane serves it.
//!
//! [`frame`] and [`responder`] are sans-IO (tested without root); [`socket`], [`interfaces`]
//! and [`runtime`] are the thin Linux part (AF_PACKET sockets, tokio tasks).

pub mod frame;
pub mod interfaces;
pub mod responder;
pub mod runtime;
pub mod socket;

pub use responder::Counters;
pub use runtime::{InterfaceReport, L2Reporter, L2Runtime, Ownership, ResponderReport, Scope};
