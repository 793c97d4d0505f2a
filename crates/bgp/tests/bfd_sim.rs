//! The BFD state machine (RFC 5880 asynchronous mode) wired to a second one with the time
//! advanced by hand: the three-way handshake, the slow rate until Up and the poll sequence to
//! the fast one, jitter bounds, failure detection within the detection time, administrative
//! down, and the packet checks of §6.8.6. Plus arbitrary bytes (proptest).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchyard_bgp::bfd::{
    BfdConfig, BfdEvent, BfdSession, BfdState, ControlPacket, Diagnostic, PacketError, ReceiveError,
};

const STEP: Duration = Duration::from_millis(1);

/// Two sessions and a clock; `link_up[i]` says whether packets from session `i` arrive.
struct Pair {
    sessions: [BfdSession; 2],
    now: Instant,
    link_up: [bool; 2],
    /// Every state change with its time: (session, event, when).
    events: Vec<(usize, BfdEvent, Instant)>,
    /// Times session `i` sent a periodic (non-Final) packet while Up.
    sent_up: [Vec<Instant>; 2],
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        Pair {
            sessions: [
                BfdSession::new(BfdConfig::new(0x1111), now, 1).unwrap(),
                BfdSession::new(BfdConfig::new(0x2222), now, 2).unwrap(),
            ],
            now,
            link_up: [true, true],
            events: Vec::new(),
            sent_up: [Vec::new(), Vec::new()],
        }
    }

    /// Advances the clock by `duration` in 1 ms steps, delivering packets at once.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += STEP;
            for i in 0..2 {
                self.sessions[i].handle_timeout(self.now);
                while let Some(bytes) = self.sessions[i].poll_transmit(self.now) {
                    let packet = ControlPacket::decode(&bytes).unwrap();
                    if packet.state == BfdState::Up && !packet.final_ {
                        self.sent_up[i].push(self.now);
                    }
                    if self.link_up[i] {
                        self.sessions[1 - i].receive(&bytes, self.now).unwrap();
                    }
                }
            }
            for i in 0..2 {
                while let Some(event) = self.sessions[i].poll_event() {
                    self.events.push((i, event, self.now));
                }
            }
        }
    }

    fn states(&self) -> [BfdState; 2] {
        [self.sessions[0].state(), self.sessions[1].state()]
    }
}

#[test]
fn two_sessions_come_up_and_switch_to_the_fast_rate_with_a_poll_sequence() {
    let mut pair = Pair::new();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.states(), [BfdState::Up, BfdState::Up], "{:?}", pair.events);
    for i in 0..2 {
        let path: Vec<BfdState> = pair
            .events
            .iter()
            .filter(|(who, ..)| *who == i)
            .map(|(_, BfdEvent::StateChanged { to, .. }, _)| *to)
            .collect();
        assert!(
            path == [BfdState::Init, BfdState::Up] || path == [BfdState::Up],
            "session {i}: {path:?}"
        );
    }
    // Up: one packet every 75–100 ms (100 ms less up to 25 % jitter), never faster.
    pair.sent_up = [Vec::new(), Vec::new()];
    pair.run(Duration::from_secs(2));
    for sent in &pair.sent_up {
        assert!((20..=27).contains(&sent.len()), "{} packets in 2 s", sent.len());
        for gap in sent.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap >= Duration::from_millis(75) && gap <= Duration::from_millis(101),
                "{gap:?}"
            );
        }
    }
    assert_eq!(pair.sessions[0].detection_time(), Duration::from_millis(300));
}

#[test]
fn a_silent_peer_is_detected_within_the_detection_time_and_the_other_side_follows() {
    let mut pair = Pair::new();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.states(), [BfdState::Up, BfdState::Up]);
    let (_, received_before) = pair.sessions[1].counters();
    pair.link_up[0] = false; // session 0's packets are lost (a dead director)
    let cut = pair.now;
    pair.run(Duration::from_millis(400));
    assert_eq!(pair.sessions[1].counters().1, received_before);
    let down = pair
        .events
        .iter()
        .find(|(who, BfdEvent::StateChanged { to, .. }, _)| *who == 1 && *to == BfdState::Down)
        .copied()
        .unwrap();
    let (_, BfdEvent::StateChanged { diagnostic, .. }, at) = down;
    assert_eq!(diagnostic, Diagnostic::DetectionTimeExpired);
    // The last packet arrived at most one interval (100 ms) before the cut, and the detection
    // time is 300 ms after it.
    assert!(at - cut <= Duration::from_millis(300), "detected after {:?}", at - cut);
    assert!(at - cut >= Duration::from_millis(199), "detected after {:?}", at - cut);
    // Session 0 hears session 1's Down and goes down too (neighbour signalled down), then waits
    // in Init for an answer that cannot arrive.
    pair.run(Duration::from_millis(1100));
    assert!(
        pair.events.iter().any(|(who, event, _)| *who == 0
            && *event
                == BfdEvent::StateChanged {
                    from: BfdState::Up,
                    to: BfdState::Down,
                    diagnostic: Diagnostic::NeighborSignaledDown
                }),
        "{:?}",
        pair.events
    );
    assert_eq!(pair.sessions[0].state(), BfdState::Init);
    assert_eq!(pair.sessions[0].diagnostic(), Diagnostic::NeighborSignaledDown);
    // The link comes back: up again.
    pair.link_up[0] = true;
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.states(), [BfdState::Up, BfdState::Up]);
}

#[test]
fn administrative_down_takes_the_peer_down_without_a_detection_failure() {
    let mut pair = Pair::new();
    pair.run(Duration::from_secs(3));
    let now = pair.now;
    pair.sessions[0].admin_down(now);
    pair.run(Duration::from_millis(200));
    assert_eq!(pair.states(), [BfdState::AdminDown, BfdState::Down]);
    assert_eq!(pair.sessions[1].diagnostic(), Diagnostic::NeighborSignaledDown);
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.states(), [BfdState::AdminDown, BfdState::Down], "stays down");
    assert!(
        !pair.events.iter().any(|(_, BfdEvent::StateChanged { diagnostic, .. }, _)| {
            *diagnostic == Diagnostic::DetectionTimeExpired
        }),
        "{:?}",
        pair.events
    );
}

#[test]
fn a_poll_is_answered_with_a_final_at_once() {
    let now = Instant::now();
    let mut session = BfdSession::new(BfdConfig::new(7), now, 3).unwrap();
    let first = session.poll_transmit(now).unwrap();
    assert_eq!(ControlPacket::decode(&first).unwrap().state, BfdState::Down);
    assert!(session.poll_transmit(now).is_none(), "nothing more is due");
    let poll = ControlPacket {
        diagnostic: Diagnostic::None,
        state: BfdState::Down,
        poll: true,
        final_: false,
        control_plane_independent: false,
        detect_mult: 3,
        my_discriminator: 9,
        your_discriminator: 7,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    };
    session.receive(&poll.encode(), now).unwrap();
    assert!(session.final_due());
    let answer = ControlPacket::decode(&session.poll_transmit(now).unwrap()).unwrap();
    assert!(answer.final_ && !answer.poll, "{answer:?}");
    assert_eq!((answer.my_discriminator, answer.your_discriminator), (7, 9));
    assert_eq!(answer.state, BfdState::Init, "Down + peer Down -> Init");
    // A packet for another session is refused.
    let other = ControlPacket { your_discriminator: 8, poll: false, ..poll };
    assert_eq!(session.receive(&other.encode(), now), Err(ReceiveError::NotOurs(8)));
}

#[test]
fn malformed_packets_are_discarded_with_their_reason() {
    let valid = ControlPacket {
        diagnostic: Diagnostic::None,
        state: BfdState::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        detect_mult: 3,
        my_discriminator: 1,
        your_discriminator: 2,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
    .encode();
    let with = |at: usize, value: u8| {
        let mut bytes = valid;
        bytes[at] = value;
        bytes
    };
    let cases: Vec<(Vec<u8>, PacketError)> = vec![
        (valid[..23].to_vec(), PacketError::Short(23)),
        (with(0, 2 << 5).to_vec(), PacketError::Version(2)),
        (with(3, 23).to_vec(), PacketError::Length { length: 23, received: 24 }),
        (with(3, 30).to_vec(), PacketError::Length { length: 30, received: 24 }),
        (with(1, (3 << 6) | 0x04).to_vec(), PacketError::Authentication),
        (with(1, (3 << 6) | 0x01).to_vec(), PacketError::Multipoint),
        (with(2, 0).to_vec(), PacketError::DetectMult),
        (with(7, 0).to_vec(), PacketError::MyDiscriminator),
        (with(11, 0).to_vec(), PacketError::YourDiscriminator(BfdState::Up)),
    ];
    for (bytes, error) in cases {
        assert_eq!(ControlPacket::decode(&bytes), Err(error), "{bytes:?}");
    }
    assert!(ControlPacket::decode(&valid).is_ok());
    // Longer datagrams whose length field says 24 are accepted (trailing bytes ignored).
    let mut longer = valid.to_vec();
    longer.push(0);
    assert!(ControlPacket::decode(&longer).is_ok());
}

#[test]
fn bad_configurations_are_refused() {
    let now = Instant::now();
    assert!(BfdSession::new(BfdConfig::new(0), now, 0).is_err());
    let zero_mult = BfdConfig { detect_mult: 0, ..BfdConfig::new(1) };
    assert!(BfdSession::new(zero_mult, now, 0).is_err());
    let zero_rx = BfdConfig { required_min_rx: Duration::ZERO, ..BfdConfig::new(1) };
    assert!(BfdSession::new(zero_rx, now, 0).is_err());
}

fn state() -> impl Strategy<Value = BfdState> {
    prop_oneof![
        Just(BfdState::AdminDown),
        Just(BfdState::Down),
        Just(BfdState::Init),
        Just(BfdState::Up)
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_only_valid_packets_count(
        inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)
    ) {
        let now = Instant::now();
        let mut session = BfdSession::new(BfdConfig::new(5), now, 4).unwrap();
        let mut accepted = 0u64;
        for (i, bytes) in inputs.iter().enumerate() {
            let at = now + Duration::from_millis(i as u64);
            if session.receive(bytes, at).is_ok() {
                accepted += 1;
                prop_assert!(ControlPacket::decode(bytes).is_ok());
            }
            session.handle_timeout(at);
            let _ = session.poll_transmit(at);
        }
        prop_assert_eq!(session.counters().1, accepted);
        if accepted == 0 {
            prop_assert_eq!(session.state(), BfdState::Down);
        }
    }

    #[test]
    fn valid_packets_round_trip(
        state in state(), poll in any::<bool>(), final_ in any::<bool>(),
        detect_mult in 1u8.., my in 1u32.., your in any::<u32>(),
        tx in any::<u32>(), rx in any::<u32>(), echo in any::<u32>(), diag in 0u8..32,
    ) {
        let your = if matches!(state, BfdState::Down | BfdState::AdminDown) { your } else { your.max(1) };
        let packet = ControlPacket {
            diagnostic: match diag {
                0 => Diagnostic::None,
                1 => Diagnostic::DetectionTimeExpired,
                3 => Diagnostic::NeighborSignaledDown,
                7 => Diagnostic::AdministrativelyDown,
                other => Diagnostic::Other(other),
            },
            state, poll, final_, control_plane_independent: false, detect_mult,
            my_discriminator: my, your_discriminator: your,
            desired_min_tx_us: tx, required_min_rx_us: rx, required_min_echo_rx_us: echo,
        };
        prop_assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
    }
}
