//! The sans-IO BGP session (RFC 4271 §8): a state machine that takes bytes, connection events and
//! the current time, and returns bytes to send, events and the next deadline. No sockets, no clock:
//! the runtime and the tests drive it, like quinn-proto's `Connection`.
//!
//! One session speaks to one peer over at most one TCP connection at a time. It is either active
//! (it asks for connections) or passive (it waits for them), never both, so connection collision
//! (§6.8) cannot happen. We announce and import nothing: UPDATEs from the peer are checked for
//! well-formedness and otherwise ignored.

mod config;
mod outbound;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use config::{DEFAULT_LOCAL_PREF, GracefulRestart, RouteAttributes, SessionConfig};
use outbound::Outbound;

use crate::prefix::{Family, Prefix};
use crate::wire::notification::{cease, code, fsm, open as open_error};
use crate::wire::{
    AS_TRANS, Capability, Codec, DecodeError, GracefulRestartCap, Message, Notification, Open,
    RouteRefresh, Update,
};

/// Hold time while waiting for the peer's OPEN (RFC 4271 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// The RFC 4271 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Not started, or waiting to restart after an error.
    Idle,
    /// Asking the runtime for a TCP connection.
    Connect,
    /// Waiting for a connection (passive) or for the next attempt (active).
    Active,
    /// Connected, our OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl State {
    /// Lower-case name, as `switchyard bgp` and the metrics print it.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "opensent",
            State::OpenConfirm => "openconfirm",
            State::Established => "established",
        }
    }
}

/// What the runtime must do, or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a TCP connection to the peer (dropping any attempt in progress), then call
    /// [`Session::connection_up`] or [`Session::connection_lost`].
    Connect,
    /// Close the connection after writing what [`Session::poll_transmit`] holds.
    Disconnect,
    /// The session reached Established.
    Established,
    /// A session that had reached OpenSent went down.
    Down(DownReason),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION (malformed input, hold timer expired, unexpected message).
    Sent {
        /// What we saw.
        reason: String,
        /// What we sent.
        notification: Notification,
    },
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The TCP connection closed or failed.
    ConnectionLost,
    /// [`Session::stop`] or [`Session::abandon`] was called.
    Stopped,
    /// [`Session::bfd_down`]: the BFD session beside this one declared the peer unreachable.
    BfdDown,
}

/// What the two OPENs agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// Hold time: the smaller of both proposals (zero: no keepalives).
    pub hold_time: Duration,
    /// Interval between our KEEPALIVEs.
    pub keepalive_time: Duration,
    /// Families both sides offered.
    pub families: Vec<Family>,
    /// Both sides speak four-octet AS numbers.
    pub four_octet_as: bool,
    /// The peer accepts ROUTE-REFRESH.
    pub route_refresh: bool,
    /// The peer offered graceful restart (it will keep our routes when we restart).
    pub peer_graceful_restart: bool,
}

/// Counters, for `switchyard bgp` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// UPDATE messages sent (End-of-RIB markers included).
    pub updates_sent: u64,
    /// UPDATE messages received (and ignored).
    pub updates_received: u64,
    /// Prefixes announced (each time one is sent).
    pub prefixes_announced: u64,
    /// Prefixes withdrawn.
    pub prefixes_withdrawn: u64,
    /// NOTIFICATIONs sent.
    pub notifications_sent: u64,
    /// NOTIFICATIONs received.
    pub notifications_received: u64,
    /// Times an established session went down.
    pub flaps: u64,
    /// Times the session reached Established.
    pub established: u64,
}

/// A configuration the session cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A family is offered but has no next hop to announce with.
    #[error("family {0} is offered without a next hop of that family")]
    NoNextHop(Family),
    /// Hold time of 1 or 2 seconds, or longer than 65535.
    #[error("hold time {0:?} is neither 0 nor between 3 s and 65535 s")]
    HoldTime(Duration),
    /// Restart time longer than the 12-bit field allows.
    #[error("graceful restart time {0:?} is longer than 4095 s")]
    RestartTime(Duration),
    /// AS 0 is reserved.
    #[error("AS number 0 is reserved")]
    ZeroAs,
    /// The BGP identifier 0.0.0.0 is invalid.
    #[error("router id 0.0.0.0 is invalid")]
    ZeroRouterId,
    /// No family offered.
    #[error("no address family offered")]
    NoFamily,
}

/// Timers; `None` is stopped.
#[derive(Debug, Clone, Default)]
struct Timers {
    connect_retry: Option<Instant>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
}

/// One BGP session; see the module documentation.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Automatic restart after errors: set by `start`, cleared by `stop`.
    started: bool,
    timers: Timers,
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<Event>,
    negotiated: Option<Negotiated>,
    outbound: Option<Outbound>,
    /// Routes we want the peer to have.
    desired: BTreeMap<Prefix, RouteAttributes>,
    /// Routes the peer has from us in this session (Adj-RIB-Out).
    adj_out: BTreeMap<Prefix, RouteAttributes>,
    established_at: Option<Instant>,
    last_down: Option<DownReason>,
    stats: Stats,
}

impl Session {
    /// A session in Idle; call [`Session::start`].
    pub fn new(config: SessionConfig) -> Result<Session, ConfigError> {
        let hold = config.hold_time.as_secs();
        if hold == 1 || hold == 2 || hold > u64::from(u16::MAX) {
            return Err(ConfigError::HoldTime(config.hold_time));
        }
        if let Some(gr) = config.graceful_restart
            && gr.restart_time.as_secs() > 4095
        {
            return Err(ConfigError::RestartTime(gr.restart_time));
        }
        if config.local_as == 0 || config.peer_as == 0 {
            return Err(ConfigError::ZeroAs);
        }
        if config.router_id.is_unspecified() {
            return Err(ConfigError::ZeroRouterId);
        }
        if config.families.is_empty() {
            return Err(ConfigError::NoFamily);
        }
        for family in &config.families {
            let has_hop = match family {
                Family::Ipv4Unicast => config.next_hop_v4.is_some(),
                Family::Ipv6Unicast => config.next_hop_v6.is_some(),
            };
            if !has_hop {
                return Err(ConfigError::NoNextHop(*family));
            }
        }
        Ok(Session {
            config,
            state: State::Idle,
            started: false,
            timers: Timers::default(),
            rx: Vec::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            negotiated: None,
            outbound: None,
            desired: BTreeMap::new(),
            adj_out: BTreeMap::new(),
            established_at: None,
            last_down: None,
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the OPENs agreed on, while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// When the session last reached Established, if it is Established.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// Why the session last went down.
    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Routes we want announced.
    pub fn desired(&self) -> &BTreeMap<Prefix, RouteAttributes> {
        &self.desired
    }

    /// Routes the peer has from us now (empty unless Established).
    pub fn announced(&self) -> &BTreeMap<Prefix, RouteAttributes> {
        &self.adj_out
    }

    /// Starts the session (ManualStart): active sessions ask for a connection, passive ones wait.
    /// After an error the session restarts by itself after the connect-retry time.
    pub fn start(&mut self, now: Instant) {
        self.started = true;
        if self.state == State::Idle {
            self.connect_or_wait(now);
        }
    }

    /// Stops the session (ManualStop): sends Cease / administrative shutdown, so the peer drops
    /// our routes at once, and stays Idle.
    pub fn stop(&mut self, now: Instant) {
        self.started = false;
        if self.state >= State::OpenSent {
            self.send(&Message::Notification(Notification::new(
                code::CEASE,
                cease::ADMINISTRATIVE_SHUTDOWN,
            )));
        }
        self.go_down(now, DownReason::Stopped);
    }

    /// Closes the connection without a NOTIFICATION and stays Idle: a peer that offered graceful
    /// restart keeps our routes for the restart time (an agent restarting or upgrading).
    pub fn abandon(&mut self, now: Instant) {
        self.started = false;
        self.go_down(now, DownReason::Stopped);
    }

    /// The BFD session beside this one went from Up to Down (RFC 5882 §4.1): the peer is
    /// unreachable, so the session is torn down now rather than when the hold timer runs out.
    /// Sends Cease / BFD Down (RFC 9384) in case the peer still hears us, and restarts after
    /// the connect-retry time like any other failure. Does nothing below OpenSent.
    pub fn bfd_down(&mut self, now: Instant) {
        if self.state < State::OpenSent {
            return;
        }
        self.send(&Message::Notification(Notification::new(code::CEASE, cease::BFD_DOWN)));
        self.go_down(now, DownReason::BfdDown);
    }

    /// The TCP connection is up (ours connected, or the peer's accepted). Returns `false` when
    /// the session cannot take a connection now; the runtime then closes it.
    pub fn connection_up(&mut self, now: Instant) -> bool {
        let expected = if self.config.passive { State::Active } else { State::Connect };
        if self.state != expected {
            return false;
        }
        self.rx.clear();
        self.tx.clear();
        self.timers.connect_retry = None;
        let open = self.our_open();
        self.send(&Message::Open(open));
        self.timers.hold = Some(now + OPEN_HOLD_TIME);
        self.state = State::OpenSent;
        true
    }

    /// The TCP connection failed or closed.
    pub fn connection_lost(&mut self, now: Instant) {
        match self.state {
            State::Idle | State::Active => {}
            State::Connect => {
                // A failed attempt: wait for the connect-retry timer (RFC 4271 §8.2.2, Connect).
                self.state = State::Active;
            }
            _ => self.go_down(now, DownReason::ConnectionLost),
        }
    }

    /// Bytes from the peer.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.state < State::OpenSent {
            return;
        }
        self.rx.extend_from_slice(bytes);
        let mut used = 0;
        while self.state >= State::OpenSent {
            match Message::decode(&self.rx[used..], self.codec()) {
                Ok(Some((message, len))) => {
                    used += len;
                    self.handle(message, now);
                }
                Ok(None) => break,
                Err(error) => {
                    self.fail(now, error);
                    break;
                }
            }
        }
        if self.state >= State::OpenSent {
            self.rx.drain(..used);
        }
    }

    /// The earliest deadline; call [`Session::handle_timeout`] when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timers.connect_retry, self.timers.hold, self.timers.keepalive]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.hold.is_some_and(|t| t <= now) {
            self.timers.hold = None;
            let notification = Notification::new(code::HOLD_TIMER_EXPIRED, 0);
            self.send(&Message::Notification(notification.clone()));
            let reason = "hold timer expired".to_owned();
            self.go_down(now, DownReason::Sent { reason, notification });
        }
        if self.timers.keepalive.is_some_and(|t| t <= now) {
            self.send(&Message::Keepalive);
            self.timers.keepalive = self.negotiated.as_ref().map(|n| now + n.keepalive_time);
        }
        if self.timers.connect_retry.is_some_and(|t| t <= now) {
            self.timers.connect_retry = None;
            match self.state {
                State::Idle if self.started => self.connect_or_wait(now),
                State::Connect | State::Active if !self.config.passive => self.connect_or_wait(now),
                _ => {}
            }
        }
    }

    /// Bytes to write to the connection (empty when there are none).
    pub fn poll_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Replaces the routes to announce. Only the difference is sent: a prefix whose attributes
    /// did not change costs nothing, so unrelated changes cause no UPDATE.
    pub fn set_routes(&mut self, routes: BTreeMap<Prefix, RouteAttributes>) {
        self.desired = routes;
        self.sync();
    }

    /// Announces or changes one route.
    pub fn announce(&mut self, prefix: Prefix, attributes: RouteAttributes) {
        if self.desired.get(&prefix) != Some(&attributes) {
            self.desired.insert(prefix, attributes);
            self.sync();
        }
    }

    /// Withdraws one route.
    pub fn withdraw(&mut self, prefix: &Prefix) {
        if self.desired.remove(prefix).is_some() {
            self.sync();
        }
    }

    fn codec(&self) -> Codec {
        self.outbound.as_ref().map(|o| o.codec).unwrap_or_default()
    }

    fn connect_or_wait(&mut self, now: Instant) {
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            self.timers.connect_retry = Some(now + self.config.connect_retry_time);
            self.events.push_back(Event::Connect);
        }
    }

    fn our_open(&self) -> Open {
        let config = &self.config;
        let mut capabilities: Vec<Capability> =
            config.families.iter().map(|f| Capability::multiprotocol(*f)).collect();
        capabilities.push(Capability::RouteRefresh);
        if let Some(gr) = config.graceful_restart {
            capabilities.push(Capability::GracefulRestart(GracefulRestartCap {
                restarting: gr.restarting,
                notification: false,
                restart_time: gr.restart_time.as_secs() as u16,
                families: config
                    .families
                    .iter()
                    .map(|f| (f.afi(), f.safi(), gr.restarting))
                    .collect(),
            }));
        }
        capabilities.push(Capability::FourOctetAs(config.local_as));
        Open {
            my_as: u16::try_from(config.local_as).unwrap_or(AS_TRANS),
            hold_time: config.hold_time.as_secs() as u16,
            router_id: config.router_id,
            capabilities,
        }
    }

    fn send(&mut self, message: &Message) {
        message.encode(self.codec(), &mut self.tx);
        match message {
            Message::Update(update) => {
                self.stats.updates_sent += 1;
                let reach = update.attributes.iter().map(|a| match a {
                    crate::wire::Attribute::MpReach(r) => r.nlri.len(),
                    _ => 0,
                });
                let unreach = update.attributes.iter().map(|a| match a {
                    crate::wire::Attribute::MpUnreach(_, w) => w.len(),
                    _ => 0,
                });
                self.stats.prefixes_announced += (update.nlri.len() + reach.sum::<usize>()) as u64;
                self.stats.prefixes_withdrawn +=
                    (update.withdrawn.len() + unreach.sum::<usize>()) as u64;
            }
            Message::Notification(_) => self.stats.notifications_sent += 1,
            _ => {}
        }
    }

    /// Sends the NOTIFICATION a decoding error calls for and drops the session.
    fn fail(&mut self, now: Instant, error: DecodeError) {
        self.send(&Message::Notification(error.notification.clone()));
        let reason = error.reason.to_owned();
        self.go_down(now, DownReason::Sent { reason, notification: error.notification });
    }

    fn fsm_error(&mut self, now: Instant, message: &Message) {
        let subcode = match self.state {
            State::OpenSent => fsm::IN_OPEN_SENT,
            State::OpenConfirm => fsm::IN_OPEN_CONFIRM,
            _ => fsm::IN_ESTABLISHED,
        };
        let reason =
            format!("unexpected message type {} in {}", message.type_code(), self.state.name());
        let notification = Notification::new(code::FSM, subcode);
        self.send(&Message::Notification(notification.clone()));
        self.go_down(now, DownReason::Sent { reason, notification });
    }

    /// Leaves the session: Disconnect, Down for sessions that got as far as OpenSent, Idle, and
    /// the connect-retry timer for the automatic restart.
    fn go_down(&mut self, now: Instant, reason: DownReason) {
        let was = self.state;
        if was == State::Established {
            self.stats.flaps += 1;
        }
        if was >= State::Connect {
            self.events.push_back(Event::Disconnect);
        }
        if was >= State::OpenSent {
            self.events.push_back(Event::Down(reason.clone()));
            self.last_down = Some(reason);
        }
        self.state = State::Idle;
        self.rx.clear();
        self.adj_out.clear();
        self.negotiated = None;
        self.outbound = None;
        self.established_at = None;
        self.timers = Timers::default();
        if self.started {
            self.timers.connect_retry = Some(now + self.config.connect_retry_time);
        }
    }

    fn handle(&mut self, message: Message, now: Instant) {
        if let Message::Notification(n) = message {
            self.stats.notifications_received += 1;
            self.go_down(now, DownReason::Received(n));
            return;
        }
        match (self.state, message) {
            (State::OpenSent, Message::Open(open)) => self.handle_open(open, now),
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.state = State::Established;
                self.established_at = Some(now);
                self.stats.established += 1;
                self.events.push_back(Event::Established);
                self.send_initial();
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(_)) => {
                self.stats.updates_received += 1;
                self.restart_hold(now);
            }
            (State::Established, Message::RouteRefresh(rr)) => {
                self.restart_hold(now);
                self.handle_route_refresh(rr);
            }
            (_, message) => self.fsm_error(now, &message),
        }
    }

    fn handle_open(&mut self, open: Open, now: Instant) {
        let config = &self.config;
        let refuse = |subcode: u8, reason: &'static str, data: Vec<u8>| DecodeError {
            reason,
            notification: Notification::with_data(code::OPEN, subcode, data),
        };
        if open.asn() != config.peer_as {
            let error = refuse(
                open_error::BAD_PEER_AS,
                "peer AS is not the configured one",
                open.my_as.to_be_bytes().to_vec(),
            );
            return self.fail(now, error);
        }
        if !config.is_ebgp() && open.router_id == config.router_id {
            let error = refuse(
                open_error::BAD_BGP_ID,
                "iBGP peer has our router id",
                open.router_id.octets().to_vec(),
            );
            return self.fail(now, error);
        }
        let hold_time = Duration::from_secs(u64::from(open.hold_time)).min(config.hold_time);
        let keepalive_time = if hold_time.is_zero() {
            Duration::ZERO
        } else {
            let third = hold_time / 3;
            config.keepalive_time.map_or(third, |k| k.min(third)).max(Duration::from_secs(1))
        };
        let theirs = open.families();
        let families: Vec<Family> = config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(&(f.afi(), f.safi())))
            .collect();
        let four_octet_as = open.has(|c| matches!(c, Capability::FourOctetAs(_)));
        let negotiated = Negotiated {
            peer_router_id: open.router_id,
            hold_time,
            keepalive_time,
            families,
            four_octet_as,
            route_refresh: open.has(|c| matches!(c, Capability::RouteRefresh)),
            peer_graceful_restart: open.has(|c| matches!(c, Capability::GracefulRestart(_))),
        };
        self.outbound = Some(Outbound {
            local_as: config.local_as,
            ebgp: config.is_ebgp(),
            codec: Codec { four_octet_as },
            next_hop_v4: config.next_hop_v4,
            next_hop_v6: config.next_hop_v6,
        });
        self.negotiated = Some(negotiated);
        self.send(&Message::Keepalive);
        self.state = State::OpenConfirm;
        self.restart_hold(now);
        self.timers.keepalive = (!keepalive_time.is_zero()).then(|| now + keepalive_time);
    }

    fn restart_hold(&mut self, now: Instant) {
        self.timers.hold =
            self.negotiated.as_ref().filter(|n| !n.hold_time.is_zero()).map(|n| now + n.hold_time);
    }

    fn families(&self) -> Vec<Family> {
        self.negotiated.as_ref().map(|n| n.families.clone()).unwrap_or_default()
    }

    /// On Established: every desired route, then End-of-RIB for each family (RFC 4724 §2).
    fn send_initial(&mut self) {
        self.sync();
        for family in self.families() {
            self.send(&Message::Update(Update::end_of_rib(family)));
        }
    }

    /// Sends the difference between the desired routes and what the peer has.
    fn sync(&mut self) {
        if self.state != State::Established {
            return;
        }
        let families = self.families();
        let wanted = |p: &Prefix| families.contains(&p.family());
        let withdraw: Vec<Prefix> = self
            .adj_out
            .keys()
            .filter(|p| !self.desired.contains_key(p) || !wanted(p))
            .copied()
            .collect();
        let announce: BTreeMap<Prefix, RouteAttributes> = self
            .desired
            .iter()
            .filter(|(p, attrs)| wanted(p) && self.adj_out.get(p) != Some(attrs))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        if withdraw.is_empty() && announce.is_empty() {
            return;
        }
        let Some(outbound) = self.outbound.clone() else { return };
        for update in outbound.withdraw(&withdraw).into_iter().chain(outbound.announce(&announce)) {
            self.send(&Message::Update(update));
        }
        for prefix in &withdraw {
            self.adj_out.remove(prefix);
        }
        self.adj_out.extend(announce);
    }

    /// ROUTE-REFRESH: the peer asks for everything again (it may have changed its import policy).
    fn handle_route_refresh(&mut self, rr: RouteRefresh) {
        let Some(family) = rr.family().filter(|f| self.families().contains(f)) else { return };
        let Some(outbound) = self.outbound.clone() else { return };
        let routes: Vec<(Prefix, RouteAttributes)> = self
            .adj_out
            .iter()
            .filter(|(p, _)| p.family() == family)
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for update in outbound.announce(routes.iter().map(|(p, a)| (p, a))) {
            self.send(&Message::Update(update));
        }
    }
}
