//! What one session is configured with, and the attributes of the routes it announces.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::prefix::Family;
use crate::wire::LargeCommunity;

/// Configuration of one BGP session (one peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS number.
    pub local_as: u32,
    /// The peer's AS number (equal to `local_as` for iBGP).
    pub peer_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose (0 disables keepalives; otherwise at least 3 s).
    pub hold_time: Duration,
    /// Keepalive interval; `None` is a third of the negotiated hold time.
    pub keepalive_time: Option<Duration>,
    /// Wait between connection attempts, and before restarting after an error.
    pub connect_retry_time: Duration,
    /// Families we offer (each needs a next hop below to announce anything).
    pub families: Vec<Family>,
    /// Next hop of IPv4 routes (the node's own IPv4 address).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop of IPv6 routes (the node's own IPv6 address).
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Graceful restart (RFC 4724) as the restarting speaker; `None` to not offer it.
    pub graceful_restart: Option<GracefulRestart>,
    /// `true`: wait for the peer to connect (passive); `false`: connect to it (active).
    pub passive: bool,
}

/// Graceful restart settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// How long the peer keeps our routes after the session drops (at most 4095 s).
    pub restart_time: Duration,
    /// We are coming back from a restart (R bit): set by a restarted agent that kept forwarding.
    pub restarting: bool,
}

impl SessionConfig {
    /// A configuration with RFC 4271's suggested timers (hold 90 s, connect retry 120 s is too slow
    /// for a node agent: 5 s), IPv4 and IPv6 unicast, active.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> SessionConfig {
        SessionConfig {
            local_as,
            peer_as,
            router_id,
            hold_time: Duration::from_secs(90),
            keepalive_time: None,
            connect_retry_time: Duration::from_secs(5),
            families: Family::ALL.to_vec(),
            next_hop_v4: None,
            next_hop_v6: None,
            graceful_restart: None,
            passive: false,
        }
    }

    /// True when the peer is in another AS.
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.peer_as
    }
}

/// Attributes of one announced route beyond what the session adds (origin, AS path, next hop).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// Standard communities (RFC 1997), `high << 16 | low`.
    pub communities: Vec<u32>,
    /// Large communities (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
    /// LOCAL_PREF, sent to iBGP peers only (default 100 there).
    pub local_pref: Option<u32>,
}

/// LOCAL_PREF sent to iBGP peers when a route names none.
pub const DEFAULT_LOCAL_PREF: u32 = 100;
