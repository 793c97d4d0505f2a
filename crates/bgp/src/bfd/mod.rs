//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop) as a sans-IO state machine, like
//! [`crate::session::Session`]: received bytes and the time in; bytes to send, state changes and
//! the next deadline out. It runs beside a BGP session so a router drops a dead director (or
//! node) within the detection time (default 3 × 100 ms) instead of the BGP hold time.
//!
//! Only what a single-hop, unauthenticated, asynchronous session needs: no echo function, no
//! demand mode, no authentication (a packet with the A bit is discarded). The socket side
//! (UDP port 3784, TTL 255 sent and required on receipt, RFC 5881 §5) belongs to a runtime.

mod packet;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use packet::{BfdState, CONTROL_PORT, ControlPacket, Diagnostic, PACKET_LEN, PacketError};

/// While a session is not Up it sends at most one packet a second (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Settings of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// Our discriminator: non-zero, unique among our sessions.
    pub local_discriminator: u32,
    /// How often we would like to send once Up.
    pub desired_min_tx: Duration,
    /// How often we can receive: the peer sends no faster.
    pub required_min_rx: Duration,
    /// Packets the peer may miss before it declares us down.
    pub detect_mult: u8,
}

impl BfdConfig {
    /// 100 ms both ways, multiplier 3: a failure is detected within 300 ms.
    pub fn new(local_discriminator: u32) -> BfdConfig {
        BfdConfig {
            local_discriminator,
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
        }
    }
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BfdConfigError {
    #[error("local discriminator 0 (must be non-zero)")]
    Discriminator,
    #[error("detect multiplier 0")]
    DetectMult,
    #[error("interval {0:?} does not fit in 32 bits of microseconds, or is zero")]
    Interval(Duration),
}

/// Why a received packet was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("malformed control packet")]
    Packet(#[from] PacketError),
    #[error("your discriminator {0} is not ours")]
    NotOurs(u32),
}

/// What the owner of a session learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BfdEvent {
    /// The session changed state (`Up` → `Down` is the failure a BGP session acts on).
    StateChanged { from: BfdState, to: BfdState, diagnostic: Diagnostic },
}

/// One BFD session with one neighbour.
#[derive(Debug)]
pub struct BfdSession {
    config: BfdConfig,
    state: BfdState,
    diagnostic: Diagnostic,
    remote_state: BfdState,
    remote_discriminator: u32,
    remote_desired_min_tx: Duration,
    /// The peer's Required Min RX (RFC: initially 1 µs); zero: it wants no periodic packets.
    remote_min_rx: Duration,
    remote_detect_mult: u8,
    next_tx: Instant,
    detection_deadline: Option<Instant>,
    /// A poll sequence runs (our timers changed): P set until the peer answers with F.
    polling: bool,
    /// The peer polled: answer with F at once.
    final_due: bool,
    events: VecDeque<BfdEvent>,
    rng: u64,
    /// Packets sent and received (for status and tests).
    sent: u64,
    received: u64,
}

fn micros(duration: Duration) -> Option<u32> {
    u32::try_from(duration.as_micros()).ok().filter(|&us| us > 0)
}

impl BfdSession {
    /// A session in state Down that sends its first packet at `now`; `seed` varies the jitter.
    pub fn new(config: BfdConfig, now: Instant, seed: u64) -> Result<BfdSession, BfdConfigError> {
        if config.local_discriminator == 0 {
            return Err(BfdConfigError::Discriminator);
        }
        if config.detect_mult == 0 {
            return Err(BfdConfigError::DetectMult);
        }
        for interval in [config.desired_min_tx, config.required_min_rx] {
            micros(interval).ok_or(BfdConfigError::Interval(interval))?;
        }
        Ok(BfdSession {
            config,
            state: BfdState::Down,
            diagnostic: Diagnostic::None,
            remote_state: BfdState::Down,
            remote_discriminator: 0,
            remote_desired_min_tx: Duration::ZERO,
            remote_min_rx: Duration::from_micros(1),
            remote_detect_mult: 0,
            next_tx: now,
            detection_deadline: None,
            polling: false,
            final_due: false,
            events: VecDeque::new(),
            rng: seed | 1,
            sent: 0,
            received: 0,
        })
    }

    /// The session's state.
    pub fn state(&self) -> BfdState {
        self.state
    }

    /// Why the session last went down (`Diagnostic::None` before it ever did).
    pub fn diagnostic(&self) -> Diagnostic {
        self.diagnostic
    }

    /// The peer's last reported state.
    pub fn remote_state(&self) -> BfdState {
        self.remote_state
    }

    /// Control packets sent and received.
    pub fn counters(&self) -> (u64, u64) {
        (self.sent, self.received)
    }

    /// How long without a packet from the peer before the session goes down (RFC 5880 §6.8.4,
    /// asynchronous mode): the peer's multiplier × the slower of what we can receive and what
    /// it wants to send.
    pub fn detection_time(&self) -> Duration {
        self.config.required_min_rx.max(self.remote_desired_min_tx)
            * u32::from(self.remote_detect_mult)
    }

    /// Our Desired Min TX as sent: at least a second until Up (RFC 5880 §6.8.3).
    fn local_desired_min_tx(&self) -> Duration {
        if self.state == BfdState::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW_TX)
        }
    }

    /// The periodic transmit interval before jitter (`None`: the peer wants no packets).
    fn tx_interval(&self) -> Option<Duration> {
        (!self.remote_min_rx.is_zero()).then(|| self.local_desired_min_tx().max(self.remote_min_rx))
    }

    /// `interval` reduced by 0–25 % (0–10 % more with multiplier 1), RFC 5880 §6.8.7.
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64: deterministic under a seed, so simulations are reproducible.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span: u64 = if self.config.detect_mult == 1 { 16 } else { 26 };
        let percent = 75 + self.rng % span; // 75..=100 (75..=90 with multiplier 1)
        interval * u32::try_from(percent).unwrap_or(100) / 100
    }

    fn set_state(&mut self, to: BfdState, diagnostic: Diagnostic, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        // The diagnostic says why the session last went down; Init and Up keep it.
        if matches!(to, BfdState::Down | BfdState::AdminDown) {
            self.diagnostic = diagnostic;
        }
        match to {
            // Going Up lowers our Desired Min TX from the slow rate: tell the peer with a poll
            // sequence (RFC 5880 §6.8.3) and send the first packet now.
            BfdState::Up => {
                self.polling = true;
                self.next_tx = now;
            }
            BfdState::Down | BfdState::AdminDown => {
                self.polling = false;
                self.detection_deadline = None;
                self.next_tx = self.next_tx.min(now + SLOW_TX);
            }
            BfdState::Init => {}
        }
        self.events.push_back(BfdEvent::StateChanged { from, to, diagnostic });
    }

    /// A packet from the neighbour (RFC 5880 §6.8.6).
    pub fn receive(&mut self, bytes: &[u8], now: Instant) -> Result<(), ReceiveError> {
        let packet = ControlPacket::decode(bytes)?;
        if packet.your_discriminator != 0
            && packet.your_discriminator != self.config.local_discriminator
        {
            return Err(ReceiveError::NotOurs(packet.your_discriminator));
        }
        self.received += 1;
        self.remote_discriminator = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_desired_min_tx = Duration::from_micros(u64::from(packet.desired_min_tx_us));
        self.remote_min_rx = Duration::from_micros(u64::from(packet.required_min_rx_us));
        self.remote_detect_mult = packet.detect_mult;
        if packet.final_ {
            self.polling = false;
        }
        if packet.poll {
            self.final_due = true;
        }
        if self.state == BfdState::AdminDown {
            return Ok(());
        }
        if packet.state == BfdState::AdminDown {
            if self.state != BfdState::Down {
                self.set_state(BfdState::Down, Diagnostic::NeighborSignaledDown, now);
            }
        } else {
            match (self.state, packet.state) {
                (BfdState::Down, BfdState::Down) => {
                    self.set_state(BfdState::Init, Diagnostic::None, now)
                }
                (BfdState::Down, BfdState::Init)
                | (BfdState::Init, BfdState::Init | BfdState::Up) => {
                    self.set_state(BfdState::Up, Diagnostic::None, now)
                }
                (BfdState::Up, BfdState::Down) => {
                    self.set_state(BfdState::Down, Diagnostic::NeighborSignaledDown, now)
                }
                _ => {}
            }
        }
        if matches!(self.state, BfdState::Init | BfdState::Up) {
            self.detection_deadline = Some(now + self.detection_time());
        }
        // A peer that now wants packets faster gets them from the next one on.
        if let Some(interval) = self.tx_interval() {
            self.next_tx = self.next_tx.min(now + interval);
        }
        Ok(())
    }

    /// Acts on the deadlines that passed: the detection time (→ Down, diagnostic 1).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.detection_deadline.is_some_and(|deadline| now >= deadline) {
            self.set_state(BfdState::Down, Diagnostic::DetectionTimeExpired, now);
            // RFC 5880 §6.8.1: the peer's discriminator is forgotten when it timed out.
            self.remote_discriminator = 0;
            self.remote_min_rx = Duration::from_micros(1);
        }
    }

    /// Takes the session down administratively: the peer goes Down without counting a failure.
    pub fn admin_down(&mut self, now: Instant) {
        self.set_state(BfdState::AdminDown, Diagnostic::AdministrativelyDown, now);
        self.next_tx = now;
    }

    /// The next packet to send, if one is due at `now`: the Final a Poll asked for at once,
    /// else the periodic packet.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<[u8; PACKET_LEN]> {
        if std::mem::take(&mut self.final_due) {
            return Some(self.packet(false, true));
        }
        let interval = self.tx_interval()?;
        if now < self.next_tx {
            return None;
        }
        self.next_tx = now + self.jittered(interval);
        Some(self.packet(self.polling, false))
    }

    fn packet(&mut self, poll: bool, final_: bool) -> [u8; PACKET_LEN] {
        self.sent += 1;
        ControlPacket {
            diagnostic: self.diagnostic,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.config.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx_us: micros(self.local_desired_min_tx()).unwrap_or(u32::MAX),
            required_min_rx_us: micros(self.config.required_min_rx).unwrap_or(u32::MAX),
            required_min_echo_rx_us: 0,
        }
        .encode()
    }

    /// The next deadline: a packet to send or the detection time (`now` when a Final is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx_interval().map(|_| self.next_tx);
        match (tx, self.detection_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when a Final must be sent at once (call [`BfdSession::poll_transmit`]).
    pub fn final_due(&self) -> bool {
        self.final_due
    }

    /// The next state change, if any.
    pub fn poll_event(&mut self) -> Option<BfdEvent> {
        self.events.pop_front()
    }
}
