//! BFD on real sockets (loopback, no root needed): two speakers bring their sessions Up, notice a
//! silent death within the detection time, take an AdminDown as no failure, ignore packets that
//! did not arrive with TTL 255, and a BGP session is reset when its BFD session fails (RFC 5882).
//! BIRD interoperation and a director's failover are in `crates/switchyard/tests/director_bgp.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchyard_bgp::bfd::{BfdConfig, BfdState, ControlPacket, Diagnostic};
use switchyard_bgp::runtime::{
    BfdListener, BfdPeer, BfdStatus, ConnectOptions, Listener, Peer, PeerSpec,
};
use switchyard_bgp::session::{DownReason, SessionConfig, State};
use tokio::sync::watch;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A listener on a free port of `address` and that port.
fn listen(address: IpAddr) -> (BfdListener, u16) {
    let listener = BfdListener::bind_to(SocketAddr::new(address, 0)).expect("listener");
    let port = listener.local_addrs()[0].port();
    (listener, port)
}

async fn wait_for(
    status: &mut watch::Receiver<BfdStatus>,
    within: Duration,
    until: impl Fn(&BfdStatus) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    let done = tokio::time::timeout(within, status.wait_for(|s| until(s))).await;
    matches!(done, Ok(Ok(_))).then(|| start.elapsed())
}

/// Speaker A at 127.0.0.1, B at 127.0.0.2, each sending to the other's listener.
fn pair(config_b: BfdConfig) -> (BfdListener, BfdPeer, BfdListener, BfdPeer) {
    let (listen_a, pa) = listen(A);
    let (listen_b, pb) = listen(B);
    let a = BfdPeer::spawn_to(&listen_a, Some(A), SocketAddr::new(B, pb), BfdConfig::new(1))
        .expect("session A");
    let b =
        BfdPeer::spawn_to(&listen_b, Some(B), SocketAddr::new(A, pa), config_b).expect("session B");
    (listen_a, a, listen_b, b)
}

#[tokio::test]
async fn sessions_come_up_and_a_silent_death_is_detected_within_the_detection_time() {
    let (_la, a, _lb, b) = pair(BfdConfig::new(2));
    let mut status_a = a.watch();
    let mut status_b = b.watch();
    let up = |s: &BfdStatus| s.state == BfdState::Up;
    assert!(
        wait_for(&mut status_a, Duration::from_secs(5), up).await.is_some(),
        "A never Up: {:?}",
        *status_a.borrow()
    );
    assert!(
        wait_for(&mut status_b, Duration::from_secs(5), up).await.is_some(),
        "B never Up: {:?}",
        *status_b.borrow()
    );

    // Let the poll sequence lower both sides to 100 ms, then kill B without a word.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_before = status_a.borrow().received;
    drop(b);
    let detected = wait_for(&mut status_a, Duration::from_secs(3), |s| s.state == BfdState::Down)
        .await
        .expect("A noticed B's death");
    let status = status_a.borrow().clone();
    assert_eq!(status.diagnostic, Diagnostic::DetectionTimeExpired);
    assert_eq!(status.failures, 1);
    assert!(received_before > 3, "A received packets from B while Up: {received_before}");
    // Detection time 3 × 100 ms, plus up to one receive interval since B's last packet.
    assert!(detected <= Duration::from_millis(450), "detected after {detected:?}");
    println!("bfd: silent death detected after {detected:?} (detection time 300 ms)");
    a.stop().await;
}

#[tokio::test]
async fn an_admin_down_takes_the_peer_down_without_a_failure() {
    let (_la, a, _lb, b) = pair(BfdConfig::new(3));
    let mut status_a = a.watch();
    assert!(
        wait_for(&mut status_a, Duration::from_secs(5), |s| s.state == BfdState::Up)
            .await
            .is_some()
    );
    b.stop().await;
    let down = wait_for(&mut status_a, Duration::from_secs(2), |s| s.state == BfdState::Down).await;
    assert!(down.is_some(), "A did not go down: {:?}", *status_a.borrow());
    assert_eq!(status_a.borrow().diagnostic, Diagnostic::NeighborSignaledDown);
    assert_eq!(status_a.borrow().failures, 0, "an AdminDown is not a failure");
    a.stop().await;
}

#[tokio::test]
async fn packets_that_did_not_arrive_with_ttl_255_are_not_accepted() {
    let (listener, pa) = listen(A);
    // A session with B that B never answers; B's "packets" come from a TTL 64 socket instead.
    let session =
        BfdPeer::spawn_to(&listener, Some(A), SocketAddr::new(B, 9), BfdConfig::new(4)).unwrap();
    let forged = UdpSocket::bind(SocketAddr::new(B, 0)).unwrap();
    forged.set_ttl(64).unwrap();
    let packet = ControlPacket {
        diagnostic: Diagnostic::None,
        state: BfdState::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        detect_mult: 3,
        my_discriminator: 77,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
    .encode();
    for _ in 0..5 {
        forged.send_to(&packet, SocketAddr::new(A, pa)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = session.watch().borrow().clone();
    assert_eq!((status.received, status.state), (0, BfdState::Down), "TTL 64 packets were used");

    // The same packet with TTL 255 is used: the test above would notice a dropped check.
    forged.set_ttl(255).unwrap();
    forged.send_to(&packet, SocketAddr::new(A, pa)).unwrap();
    let mut watch = session.watch();
    let used = wait_for(&mut watch, Duration::from_secs(2), |s| s.received == 1).await;
    assert!(used.is_some(), "a TTL 255 packet was not used: {:?}", *watch.borrow());
    assert_eq!(watch.borrow().state, BfdState::Init, "Down + peer Down → Init");
    session.stop().await;
}

/// Two BGP speakers on loopback (A active at 127.0.0.1, B passive at 127.0.0.2) with a BFD pair
/// beside them; A's session follows its BFD session.
async fn bgp_pair_with_bfd(
    discriminator_b: u32,
) -> (Peer, Peer, BfdListener, BfdPeer, BfdListener, BfdPeer, Listener) {
    let listener = Listener::bind(SocketAddr::new(B, 0)).await.expect("BGP listener");
    let session = |local_as, peer_as, id, passive| {
        let mut c = SessionConfig::new(local_as, peer_as, Ipv4Addr::new(10, 0, 0, id));
        c.next_hop_v4 = Some(Ipv4Addr::new(127, 0, 0, id));
        c.next_hop_v6 = Some(Ipv6Addr::LOCALHOST);
        c.hold_time = Duration::from_secs(9);
        c.connect_retry_time = Duration::from_secs(1);
        c.passive = passive;
        c
    };
    let connect = |local| ConnectOptions { local_address: Some(local), md5_key: None, ttl: None };
    let a = Peer::spawn(
        PeerSpec {
            name: "b".into(),
            address: listener.local_addr(),
            session: session(64512, 64513, 1, false),
            connect: connect(A),
        },
        None,
    )
    .expect("speaker A");
    let b = Peer::spawn(
        PeerSpec {
            name: "a".into(),
            address: SocketAddr::new(A, 179),
            session: session(64513, 64512, 2, true),
            connect: connect(B),
        },
        Some(&listener),
    )
    .expect("speaker B");
    let (la, bfd_a, lb, bfd_b) = pair(BfdConfig::new(discriminator_b));
    a.follow_bfd(bfd_a.watch());
    let mut established = a.watch();
    let up = tokio::time::timeout(
        Duration::from_secs(10),
        established.wait_for(|s| s.state == State::Established),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(up, "BGP never established: {:?}", *established.borrow());
    let mut bfd_up = bfd_a.watch();
    assert!(
        wait_for(&mut bfd_up, Duration::from_secs(5), |s| s.state == BfdState::Up).await.is_some(),
        "BFD never Up"
    );
    (a, b, la, bfd_a, lb, bfd_b, listener)
}

#[tokio::test]
async fn a_bfd_failure_takes_the_bgp_session_down_long_before_its_hold_timer() {
    let (a, b, _la, bfd_a, _lb, bfd_b, _listener) = bgp_pair_with_bfd(4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // B's BFD dies silently while its TCP connection stays up: only BFD can tell.
    let died = Instant::now();
    drop(bfd_b);
    let mut status = a.watch();
    let down = tokio::time::timeout(
        Duration::from_secs(3),
        status.wait_for(|s| s.last_down == Some(DownReason::BfdDown)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(down, "BGP session not reset by the BFD failure: {:?}", *status.borrow());
    let after = died.elapsed();
    // BFD's detection time (300 ms) plus its tolerance; the hold timer would take 9 s.
    assert!(after < Duration::from_secs(1), "reset after {after:?}");
    println!("bgp: session reset {after:?} after the peer's BFD went silent (hold time 9 s)");
    bfd_a.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_admin_down_leaves_the_bgp_session_alone() {
    let (a, b, _la, bfd_a, _lb, bfd_b, _listener) = bgp_pair_with_bfd(5).await;
    let mut bfd = bfd_a.watch();
    bfd_b.stop().await;
    assert!(
        wait_for(&mut bfd, Duration::from_secs(2), |s| s.state == BfdState::Down).await.is_some(),
        "A's BFD did not see the AdminDown"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = a.status();
    assert_eq!(status.state, State::Established, "an orderly BFD goodbye is no failure");
    assert_eq!(status.last_down, None);
    bfd_a.stop().await;
    a.stop().await;
    b.stop().await;
}
