//! Two sessions wired together without sockets, time advanced by hand: establishment, timers,
//! announcements (only what changed), errors and graceful restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use switchyard_bgp::wire::{Attribute, Capability, Codec, Message, Update};
use switchyard_bgp::{
    DownReason, Event, Family, GracefulRestart, Prefix, RouteAttributes, Session, SessionConfig,
    State,
};

/// Our speaker (`a`, active) and a peer playing the router (`b`, passive), plus what `a` sent.
struct Wire {
    a: Session,
    b: Session,
    now: Instant,
    connected: bool,
    /// Messages `a` sent, decoded.
    sent: Vec<Message>,
    events_a: Vec<Event>,
    /// When false, `b`'s bytes are lost (a dead peer).
    b_alive: bool,
}

fn config(local_as: u32, peer_as: u32, id: u8, passive: bool) -> SessionConfig {
    let mut c = SessionConfig::new(local_as, peer_as, Ipv4Addr::new(10, 0, 0, id));
    c.next_hop_v4 = Some(Ipv4Addr::new(10, 100, 1, id));
    c.next_hop_v6 = Some(Ipv6Addr::new(0xfd00, 100, 0, 1, 0, 0, 0, u16::from(id)));
    c.hold_time = Duration::from_secs(9);
    c.passive = passive;
    c
}

impl Wire {
    fn new(a: SessionConfig, b: SessionConfig) -> Wire {
        Wire::with_session(Session::new(a).expect("valid config a"), b)
    }

    fn with_session(a: Session, b: SessionConfig) -> Wire {
        let now = Instant::now();
        let mut wire = Wire {
            a,
            b: Session::new(b).expect("valid config b"),
            now,
            connected: false,
            sent: Vec::new(),
            events_a: Vec::new(),
            b_alive: true,
        };
        wire.a.start(now);
        wire.b.start(now);
        wire.pump();
        wire
    }

    fn codec(&self) -> Codec {
        Codec { four_octet_as: self.a.negotiated().is_none_or(|n| n.four_octet_as) }
    }

    /// Moves bytes and events until nothing changes.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut progress = false;
            while let Some(event) = self.a.poll_event() {
                progress = true;
                match event {
                    Event::Connect => {
                        if self.b.connection_up(self.now) {
                            assert!(self.a.connection_up(self.now));
                            self.connected = true;
                        } else {
                            self.a.connection_lost(self.now);
                        }
                    }
                    Event::Disconnect => {
                        self.flush_a();
                        self.connected = false;
                        self.b.connection_lost(self.now);
                    }
                    _ => {}
                }
                self.events_a.push(event);
            }
            while let Some(event) = self.b.poll_event() {
                progress = true;
                if event == Event::Disconnect {
                    self.connected = false;
                    self.a.connection_lost(self.now);
                }
            }
            progress |= self.flush_a();
            let to_a = self.b.poll_transmit();
            if !to_a.is_empty() && self.connected && self.b_alive {
                progress = true;
                self.a.receive(&to_a, self.now);
            }
            if !progress {
                return;
            }
        }
        panic!("the sessions never settle");
    }

    fn flush_a(&mut self) -> bool {
        let bytes = self.a.poll_transmit();
        if bytes.is_empty() {
            return false;
        }
        let codec = self.codec();
        let mut rest = bytes.as_slice();
        while let Ok(Some((m, len))) = Message::decode(rest, codec) {
            self.sent.push(m);
            rest = &rest[len..];
        }
        if self.connected {
            self.b.receive(&bytes, self.now);
        }
        true
    }

    /// Advances time by `step` up to `total`, firing timers on the way.
    fn advance(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.pump();
        }
    }

    fn updates(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.sent)
            .into_iter()
            .filter_map(|m| match m {
                Message::Update(u) => Some(u),
                _ => None,
            })
            .collect()
    }
}

fn ebgp() -> Wire {
    Wire::new(config(64512, 64513, 1, false), config(64513, 64512, 2, true))
}

fn host(text: &str) -> Prefix {
    text.parse().expect("prefix")
}

fn routes(prefixes: &[&str]) -> BTreeMap<Prefix, RouteAttributes> {
    prefixes.iter().map(|p| (host(p), RouteAttributes::default())).collect()
}

fn announced(updates: &[Update]) -> Vec<Prefix> {
    let mut out: Vec<Prefix> = updates.iter().flat_map(|u| u.nlri.clone()).collect();
    for u in updates {
        for a in &u.attributes {
            if let Attribute::MpReach(r) = a {
                out.extend(r.nlri.iter().copied());
            }
        }
    }
    out.sort();
    out
}

fn withdrawn(updates: &[Update]) -> Vec<Prefix> {
    let mut out: Vec<Prefix> = updates.iter().flat_map(|u| u.withdrawn.clone()).collect();
    for u in updates {
        for a in &u.attributes {
            if let Attribute::MpUnreach(_, w) = a {
                out.extend(w.iter().copied());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sessions_establish_and_negotiate_families_four_octet_as_and_refresh() {
    let mut w = ebgp();
    assert_eq!(w.a.state(), State::Established);
    assert_eq!(w.b.state(), State::Established);
    let n = w.a.negotiated().expect("negotiated");
    assert_eq!(n.families, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    assert!(n.four_octet_as && n.route_refresh);
    assert_eq!(n.hold_time, Duration::from_secs(9));
    assert_eq!(n.keepalive_time, Duration::from_secs(3));
    assert!(w.events_a.contains(&Event::Established));
    // Nothing to announce: one End-of-RIB per family.
    let eor: Vec<_> = w.updates().iter().filter_map(Update::end_of_rib_family).collect();
    assert_eq!(eor, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
}

#[test]
fn routes_set_before_establishment_go_out_before_end_of_rib() {
    let mut a = Session::new(config(64512, 64513, 1, false)).expect("valid");
    a.set_routes(routes(&["192.0.2.1", "2001:db8::1"]));
    let mut w = Wire::with_session(a, config(64513, 64512, 2, true));
    assert_eq!(w.a.state(), State::Established);
    let updates = w.updates();
    assert_eq!(announced(&updates), vec![host("192.0.2.1"), host("2001:db8::1")]);
    let eor: Vec<_> = updates.iter().rev().take(2).filter_map(Update::end_of_rib_family).collect();
    assert_eq!(eor.len(), 2, "End-of-RIB comes after the routes");
}

#[test]
fn only_changed_prefixes_are_sent_and_unchanged_sets_send_nothing() {
    let mut w = ebgp();
    w.updates();
    let many: Vec<String> = (0..100).map(|i| format!("198.51.100.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    w.a.set_routes(routes(&many));
    w.pump();
    let first = w.updates();
    assert_eq!(announced(&first).len(), 100);
    assert_eq!(first.len(), 1, "100 prefixes with one attribute set fit one UPDATE");
    // 1,000 unrelated changes: the same set again.
    for _ in 0..1000 {
        w.a.set_routes(routes(&many));
        w.pump();
    }
    assert!(w.updates().is_empty(), "an unchanged set sends no UPDATE");
    let stats_before = w.a.stats();
    // One prefix changes attributes, one goes, one comes.
    let mut next = routes(&many);
    next.remove(&host("198.51.100.7"));
    next.insert(host("203.0.113.1"), RouteAttributes::default());
    next.insert(
        host("198.51.100.8"),
        RouteAttributes { communities: vec![0xfde8_0064], ..RouteAttributes::default() },
    );
    w.a.set_routes(next);
    w.pump();
    let updates = w.updates();
    assert_eq!(withdrawn(&updates), vec![host("198.51.100.7")]);
    assert_eq!(announced(&updates), vec![host("198.51.100.8"), host("203.0.113.1")]);
    assert_eq!(w.a.stats().updates_sent - stats_before.updates_sent, updates.len() as u64);
    assert_eq!(w.a.state(), State::Established, "changes never reset the session");
}

#[test]
fn ebgp_routes_carry_our_as_and_next_hop_ibgp_routes_carry_local_pref() {
    let mut w = ebgp();
    w.updates();
    let attrs = RouteAttributes {
        communities: vec![0xfc00_0001],
        large_communities: vec![switchyard_bgp::wire::LargeCommunity {
            global: 64512,
            local1: 1,
            local2: 2,
        }],
        local_pref: Some(200),
    };
    w.a.set_routes(
        [(host("192.0.2.1"), attrs.clone()), (host("2001:db8::1"), attrs.clone())].into(),
    );
    w.pump();
    let updates = w.updates();
    assert_eq!(updates.len(), 2);
    let v4 = &updates[0].attributes;
    assert!(v4.contains(&Attribute::AsPath(vec![switchyard_bgp::wire::AsSegment {
        sequence: true,
        asns: vec![64512]
    }])));
    assert!(v4.contains(&Attribute::NextHop(Ipv4Addr::new(10, 100, 1, 1))));
    assert!(v4.contains(&Attribute::Communities(vec![0xfc00_0001])));
    assert!(v4.iter().any(|a| matches!(a, Attribute::LargeCommunities(_))));
    assert!(
        !v4.iter().any(|a| matches!(a, Attribute::LocalPref(_))),
        "no LOCAL_PREF to eBGP peers"
    );
    let v6_hop = updates[1].attributes.iter().find_map(|a| match a {
        Attribute::MpReach(r) => Some(r.next_hops.clone()),
        _ => None,
    });
    assert_eq!(v6_hop, Some(vec![IpAddr::V6(Ipv6Addr::new(0xfd00, 100, 0, 1, 0, 0, 0, 1))]));

    let mut i = Wire::new(config(64512, 64512, 1, false), config(64512, 64512, 2, true));
    i.updates();
    i.a.set_routes(
        [(host("192.0.2.1"), attrs), (host("192.0.2.2"), RouteAttributes::default())].into(),
    );
    i.pump();
    let prefs: Vec<_> = i
        .updates()
        .iter()
        .flat_map(|u| {
            u.attributes
                .iter()
                .filter_map(|a| match a {
                    Attribute::LocalPref(p) => Some(*p),
                    Attribute::AsPath(path) => {
                        assert!(path.is_empty(), "iBGP: empty AS_PATH");
                        None
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(prefs.len(), 2);
    assert!(
        prefs.contains(&200) && prefs.contains(&100),
        "LOCAL_PREF as asked, 100 by default: {prefs:?}"
    );
}

#[test]
fn a_thousand_routes_per_family_fit_in_messages_of_at_most_4096_bytes() {
    let mut w = ebgp();
    w.updates();
    let mut all = BTreeMap::new();
    for i in 0..1000u32 {
        all.insert(
            Prefix::host(IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))),
            RouteAttributes::default(),
        );
        all.insert(
            Prefix::host(IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))),
            RouteAttributes::default(),
        );
    }
    w.a.set_routes(all.clone());
    w.pump();
    let updates = w.updates();
    assert_eq!(announced(&updates), all.keys().copied().collect::<Vec<_>>());
    for u in &updates {
        let mut bytes = Vec::new();
        assert!(
            Message::Update(u.clone()).encode(Codec { four_octet_as: true }, &mut bytes) <= 4096
        );
    }
    assert!(updates.len() <= 8, "{} UPDATEs for 2,000 prefixes", updates.len());
    w.a.set_routes(BTreeMap::new());
    w.pump();
    assert_eq!(withdrawn(&w.updates()).len(), 2000);
}

#[test]
fn keepalives_hold_the_session_and_a_silent_peer_is_dropped_by_the_hold_timer() {
    let mut w = ebgp();
    w.advance(Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(w.a.state(), State::Established, "keepalives every 3 s keep a 9 s hold timer");
    let keepalives = w.sent.iter().filter(|m| **m == Message::Keepalive).count();
    assert!((19..=21).contains(&keepalives), "{keepalives} keepalives in 60 s");
    w.b_alive = false;
    w.sent.clear();
    w.advance(Duration::from_secs(10), Duration::from_millis(500));
    assert!(w.events_a.iter().any(|e| matches!(e, Event::Down(DownReason::Sent { notification, .. }) if notification.code == 4)));
    assert!(w.sent.iter().any(|m| matches!(m, Message::Notification(n) if n.code == 4)));
    assert_eq!(w.a.stats().flaps, 1);
    // The peer comes back: the session restarts by itself after the connect-retry time.
    w.b_alive = true;
    w.advance(Duration::from_secs(11), Duration::from_millis(500));
    assert_eq!(w.a.state(), State::Established);
    assert_eq!(w.a.stats().established, 2);
}

#[test]
fn garbage_from_the_peer_gets_a_notification_and_a_reset_then_a_fresh_session() {
    let mut w = ebgp();
    w.a.set_routes(routes(&["192.0.2.1"]));
    w.pump();
    w.sent.clear();
    w.a.receive(b"this is not BGP at all, it is garbage", w.now);
    w.pump();
    assert!(
        w.sent
            .iter()
            .any(|m| matches!(m, Message::Notification(n) if (n.code, n.subcode) == (1, 1)))
    );
    assert_ne!(w.a.state(), State::Established);
    assert!(w.a.announced().is_empty());
    w.advance(Duration::from_secs(6), Duration::from_millis(500));
    assert_eq!(w.a.state(), State::Established);
    assert_eq!(announced(&w.updates()), vec![host("192.0.2.1")], "the routes are sent again");
}

#[test]
fn a_peer_in_another_as_than_configured_is_refused() {
    let mut w = Wire::new(config(64512, 65000, 1, false), config(64513, 64512, 2, true));
    assert_ne!(w.a.state(), State::Established);
    assert!(w.updates().is_empty());
    assert!(matches!(
        w.a.last_down(),
        Some(DownReason::Sent { notification, .. }) if (notification.code, notification.subcode) == (2, 2)
    ));
}

#[test]
fn stop_sends_cease_and_stays_idle() {
    let mut w = ebgp();
    w.sent.clear();
    w.a.stop(w.now);
    w.pump();
    assert!(
        w.sent
            .iter()
            .any(|m| matches!(m, Message::Notification(n) if (n.code, n.subcode) == (6, 2)))
    );
    w.advance(Duration::from_secs(20), Duration::from_secs(1));
    assert_eq!(w.a.state(), State::Idle);
    assert!(matches!(w.b.last_down(), Some(DownReason::Received(n)) if n.code == 6));
}

#[test]
fn bfd_down_ends_the_session_at_once_with_cease_bfd_down_and_it_restarts_later() {
    let mut w = ebgp();
    w.sent.clear();
    // The link went silent: a hold timer would take 9 s; BFD says so now.
    w.b_alive = false;
    w.a.bfd_down(w.now);
    w.pump();
    assert!(w.events_a.contains(&Event::Down(DownReason::BfdDown)));
    assert_eq!(w.a.last_down(), Some(&DownReason::BfdDown));
    assert!(
        w.sent
            .iter()
            .any(|m| matches!(m, Message::Notification(n) if (n.code, n.subcode) == (6, 10))),
        "Cease / BFD Down (RFC 9384) is sent in case the peer still hears us"
    );
    assert_eq!(w.a.stats().flaps, 1);
    // Below OpenSent it is nothing to act on.
    w.a.bfd_down(w.now);
    w.pump();
    assert_eq!(w.a.stats().flaps, 1);
    // Reachable again: the session comes back after the connect-retry time, like any failure.
    w.b_alive = true;
    w.advance(Duration::from_secs(11), Duration::from_millis(500));
    assert_eq!(w.a.state(), State::Established);
    assert_eq!(w.a.stats().established, 2);
}

#[test]
fn graceful_restart_is_offered_with_the_restart_bit_after_a_restart() {
    let mut c = config(64512, 64513, 1, false);
    c.graceful_restart =
        Some(GracefulRestart { restart_time: Duration::from_secs(120), restarting: true });
    let mut w = Wire::new(c, config(64513, 64512, 2, true));
    let open = w.sent.iter().find_map(|m| match m {
        Message::Open(o) => Some(o.clone()),
        _ => None,
    });
    let gr = open.expect("an OPEN was sent").capabilities.into_iter().find_map(|c| match c {
        Capability::GracefulRestart(gr) => Some(gr),
        _ => None,
    });
    let gr = gr.expect("graceful restart offered");
    assert!(gr.restarting);
    assert_eq!(gr.restart_time, 120);
    assert_eq!(
        gr.families,
        vec![(1, 1, true), (2, 1, true)],
        "forwarding state kept for both families"
    );
    assert_eq!(w.a.state(), State::Established);
    // abandon(): no NOTIFICATION, so the peer may keep our routes.
    w.sent.clear();
    w.a.abandon(w.now);
    w.pump();
    assert!(!w.sent.iter().any(|m| matches!(m, Message::Notification(_))));
}

#[test]
fn route_refresh_resends_the_family() {
    let mut w = ebgp();
    w.a.set_routes(routes(&["192.0.2.1", "2001:db8::1"]));
    w.pump();
    w.sent.clear();
    let mut bytes = Vec::new();
    Message::RouteRefresh(switchyard_bgp::wire::RouteRefresh { afi: 2, subtype: 0, safi: 1 })
        .encode(Codec { four_octet_as: true }, &mut bytes);
    w.a.receive(&bytes, w.now);
    w.pump();
    assert_eq!(announced(&w.updates()), vec![host("2001:db8::1")]);
}

#[test]
fn a_peer_without_four_octet_as_gets_as_trans_and_as4_path() {
    let now = Instant::now();
    let mut a = Session::new(config(4_200_000_001, 64513, 1, false)).expect("valid");
    a.start(now);
    assert!(a.connection_up(now));
    // An old peer: no four-octet capability, IPv4 only (no multiprotocol capability).
    let old = switchyard_bgp::wire::Open {
        my_as: 64513,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    let mut bytes = Vec::new();
    Message::Open(old).encode(Codec::default(), &mut bytes);
    Message::Keepalive.encode(Codec::default(), &mut bytes);
    a.receive(&bytes, now);
    assert_eq!(a.state(), State::Established);
    assert_eq!(a.negotiated().map(|n| n.families.clone()), Some(vec![Family::Ipv4Unicast]));
    a.poll_transmit();
    a.set_routes(routes(&["192.0.2.1", "2001:db8::1"]));
    let out = a.poll_transmit();
    let (message, len) = Message::decode(&out, Codec::default()).expect("valid").expect("whole");
    assert_eq!(len, out.len(), "one UPDATE: the IPv6 route is not negotiated");
    let Message::Update(update) = message else { panic!("not an UPDATE") };
    assert_eq!(update.nlri, vec![host("192.0.2.1")]);
    let seq = |asn| vec![switchyard_bgp::wire::AsSegment { sequence: true, asns: vec![asn] }];
    assert!(update.attributes.contains(&Attribute::AsPath(seq(23456))));
    assert!(update.attributes.contains(&Attribute::As4Path(seq(4_200_000_001))));
}

#[test]
fn configurations_that_cannot_work_are_refused_with_the_reason() {
    let mut c = config(64512, 64513, 1, false);
    c.next_hop_v6 = None;
    assert_eq!(
        Session::new(c).err().map(|e| e.to_string()).as_deref(),
        Some("family ipv6-unicast is offered without a next hop of that family")
    );
    let mut c = config(64512, 64513, 1, false);
    c.hold_time = Duration::from_secs(2);
    assert!(Session::new(c).is_err());
}
