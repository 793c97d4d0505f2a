//! A small BGP-4 speaker that announces routes (LoadBalancer IPs, director VIPs) to routers.
//!
//! - [`wire`]: the message codec (RFC 4271, 4760, 2918, 4724, 6793, 1997, 8092), fuzzed.
//! - [`session`]: one peering as a sans-IO state machine: bytes, connection events and the time
//!   in; bytes, events and the next deadline out. Tested by wiring two sessions together.
//! - [`runtime`]: tokio tasks that own the sockets (active-only or passive, TCP MD5, TTL) and
//!   drive one session per peer.
//! - [`bfd`]: BFD (RFC 5880/5881, asynchronous, single hop) as a sans-IO state machine, to run
//!   beside a session so a router drops a dead speaker within the detection time.
//!
//! We announce and import nothing. See docs/bgp.md.

pub mod bfd;
pub mod fuzz;
pub mod prefix;
pub mod runtime;
pub mod session;
pub mod wire;

pub use prefix::{Family, Prefix, PrefixError};
pub use session::{
    ConfigError, DownReason, Event, GracefulRestart, Negotiated, RouteAttributes, Session,
    SessionConfig, State, Stats,
};
