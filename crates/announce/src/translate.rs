//! The model's plan in the speaker's terms (pure): a peer's settings as a session configuration,
//! its routes as prefixes with attributes, and a peer's status as a line of the `/bgp` report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use switchyard_bgp::bfd::BfdConfig;
use switchyard_bgp::runtime::{BfdStatus, ConnectOptions, PeerSpec, PeerStatus};
use switchyard_bgp::wire::LargeCommunity;
use switchyard_bgp::{DownReason, GracefulRestart, Prefix, RouteAttributes, SessionConfig};
use switchyard_model::announce::{BfdSettings, PeerPlan, PeerSettings};
use switchyard_model::crd::Community;
use switchyard_observe::bgp::SessionReport;

/// How long a router keeps our routes while the agent restarts (BIRD's default too).
pub const RESTART_TIME: Duration = Duration::from_secs(120);

/// The session with the router `name` as `settings` describe it; `restarting`: this agent
/// restarted with the data plane still forwarding (graceful restart's R and F bits).
pub fn peer_spec(name: &str, settings: &PeerSettings, restarting: bool) -> PeerSpec {
    let mut session = SessionConfig::new(settings.my_asn, settings.peer_asn, settings.router_id);
    session.hold_time = settings.hold_time;
    session.keepalive_time = settings.keepalive_time;
    session.next_hop_v4 = settings.next_hop_v4;
    session.next_hop_v6 = settings.next_hop_v6;
    session.graceful_restart = settings
        .graceful_restart
        .then_some(GracefulRestart { restart_time: RESTART_TIME, restarting });
    // Active only: the speaker never listens on port 179, so it coexists with a routing daemon
    // on the node.
    session.passive = false;
    PeerSpec {
        name: name.to_owned(),
        address: SocketAddr::new(settings.address, settings.port),
        session,
        connect: ConnectOptions {
            local_address: settings.source,
            md5_key: settings.password.as_ref().map(|p| p.bytes().to_vec()),
            ttl: Some(if settings.ebgp_multi_hop { 255 } else { 1 }),
        },
    }
}

/// The routes of a peer's plan as the speaker announces them.
pub fn routes(plan: &PeerPlan) -> BTreeMap<Prefix, RouteAttributes> {
    plan.routes
        .iter()
        .filter_map(|(route, attributes)| {
            // The model clears host bits and checks lengths, so this never drops a route.
            let prefix = Prefix::new(route.network, route.length).ok()?;
            let mut out =
                RouteAttributes { local_pref: attributes.local_pref, ..RouteAttributes::default() };
            for community in &attributes.communities {
                match *community {
                    Community::Standard(value) => out.communities.push(value),
                    Community::Large(global, local1, local2) => {
                        out.large_communities.push(LargeCommunity { global, local1, local2 })
                    }
                }
            }
            Some((prefix, out))
        })
        .collect()
}

/// The BFD session of a peer with `settings.bfd`: our discriminator and timers.
pub fn bfd_config(settings: &BfdSettings, local_discriminator: u32) -> BfdConfig {
    BfdConfig {
        local_discriminator,
        desired_min_tx: settings.interval,
        required_min_rx: settings.interval,
        detect_mult: settings.detect_multiplier,
    }
}

/// One session of the `/bgp` report: the peer's live status (and its BFD session's) and the
/// plan's decisions.
pub fn session_report(
    plan: &PeerPlan,
    status: &PeerStatus,
    bfd: Option<&BfdStatus>,
) -> SessionReport {
    let settings = &plan.settings;
    let kind = if settings.my_asn == settings.peer_asn { "iBGP" } else { "eBGP" };
    let mut capabilities = Vec::new();
    if let Some(negotiated) = &status.negotiated {
        capabilities.extend(negotiated.families.iter().map(ToString::to_string));
        if negotiated.four_octet_as {
            capabilities.push("4-octet-as".to_owned());
        }
        if negotiated.route_refresh {
            capabilities.push("route-refresh".to_owned());
        }
        if negotiated.peer_graceful_restart && settings.graceful_restart {
            capabilities.push(format!("graceful-restart {}s", RESTART_TIME.as_secs()));
        }
        capabilities.push(format!("hold {}s", negotiated.hold_time.as_secs()));
    }
    SessionReport {
        peer: status.name.clone(),
        address: status.address.to_string(),
        asns: format!("{} -> {} ({kind})", settings.my_asn, settings.peer_asn),
        state: status.state.name().to_owned(),
        uptime_seconds: status
            .established_since
            .and_then(|since| SystemTime::now().duration_since(since).ok())
            .map(|up| up.as_secs()),
        capabilities,
        last_down: status.last_down.as_ref().map(down_reason),
        connect_error: status.connect_error.clone(),
        bfd: settings.bfd.map(|timers| {
            let state = bfd.map_or("not running", |b| b.state.name());
            let (sent, received, failures) =
                bfd.map_or((0, 0, 0), |b| (b.sent, b.received, b.failures));
            format!(
                "{state}, {}ms x {}, {sent} sent, {received} received, {failures} failures",
                timers.interval.as_millis(),
                timers.detect_multiplier
            )
        }),
        updates_sent: status.stats.updates_sent,
        flaps: status.stats.flaps,
        routes_announced: status.announced.len(),
        addresses: plan
            .addresses
            .iter()
            .map(|(address, decision)| (address.to_string(), decision.to_string()))
            .collect(),
    }
}

fn down_reason(reason: &DownReason) -> String {
    match reason {
        DownReason::Sent { reason, notification } => {
            format!("sent NOTIFICATION {notification}: {reason}")
        }
        DownReason::Received(notification) => format!("received NOTIFICATION {notification}"),
        DownReason::ConnectionLost => "connection lost".to_owned(),
        DownReason::Stopped => "stopped".to_owned(),
        DownReason::BfdDown => "BFD down".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]
mod tests {
    use std::collections::BTreeSet;

    use switchyard_model::announce::{Route, RouteAttributes as ModelAttributes};

    use super::*;

    fn settings(graceful_restart: bool, ebgp_multi_hop: bool) -> PeerSettings {
        PeerSettings {
            address: "192.0.2.1".parse().unwrap(),
            port: 1179,
            peer_asn: 64500,
            my_asn: 4_200_000_000,
            hold_time: Duration::from_secs(9),
            keepalive_time: Some(Duration::from_secs(2)),
            graceful_restart,
            ebgp_multi_hop,
            password: None,
            router_id: "10.0.0.2".parse().unwrap(),
            next_hop_v4: Some("10.0.0.2".parse().unwrap()),
            next_hop_v6: None,
            source: Some("10.0.0.2".parse().unwrap()),
            bfd: None,
        }
    }

    #[test]
    fn bfd_timers_become_the_session_config_and_its_report_line() {
        let timers = BfdSettings { interval: Duration::from_millis(50), detect_multiplier: 4 };
        let config = bfd_config(&timers, 7);
        assert_eq!(config.local_discriminator, 7);
        assert_eq!(
            (config.desired_min_tx, config.required_min_rx),
            (timers.interval, timers.interval)
        );
        assert_eq!(config.detect_mult, 4);

        let mut with_bfd = settings(false, false);
        with_bfd.bfd = Some(timers);
        let plan =
            PeerPlan { settings: with_bfd, routes: BTreeMap::new(), addresses: BTreeMap::new() };
        let peer_status = PeerStatus {
            name: "tor".to_owned(),
            address: "192.0.2.1:1179".parse().unwrap(),
            state: switchyard_bgp::State::Established,
            established_since: None,
            negotiated: None,
            stats: switchyard_bgp::Stats::default(),
            announced: BTreeMap::new(),
            desired: BTreeMap::new(),
            last_down: None,
            connect_error: None,
        };
        let bfd = BfdStatus {
            state: switchyard_bgp::bfd::BfdState::Up,
            diagnostic: switchyard_bgp::bfd::Diagnostic::None,
            sent: 12,
            received: 11,
            failures: 0,
        };
        let report = session_report(&plan, &peer_status, Some(&bfd));
        assert_eq!(report.bfd.as_deref(), Some("up, 50ms x 4, 12 sent, 11 received, 0 failures"));
        let report = session_report(&plan, &peer_status, None);
        assert_eq!(
            report.bfd.as_deref(),
            Some("not running, 50ms x 4, 0 sent, 0 received, 0 failures")
        );
        let plan = PeerPlan { settings: settings(false, false), ..plan };
        assert_eq!(session_report(&plan, &peer_status, None).bfd, None, "no BFD asked for");
    }

    #[test]
    fn settings_become_an_active_session_with_ttl_and_graceful_restart() {
        let spec = peer_spec("tor", &settings(true, false), true);
        assert_eq!(spec.address.to_string(), "192.0.2.1:1179");
        assert!(!spec.session.passive, "active only: no listener on port 179");
        assert_eq!((spec.session.local_as, spec.session.peer_as), (4_200_000_000, 64500));
        assert_eq!(spec.session.hold_time, Duration::from_secs(9));
        assert_eq!(spec.session.keepalive_time, Some(Duration::from_secs(2)));
        assert_eq!(
            spec.session.graceful_restart,
            Some(GracefulRestart { restart_time: RESTART_TIME, restarting: true })
        );
        assert_eq!(spec.connect.ttl, Some(1));
        assert_eq!(spec.connect.local_address, Some("10.0.0.2".parse().unwrap()));
        let multihop = peer_spec("far", &settings(false, true), false);
        assert_eq!(multihop.connect.ttl, Some(255));
        assert_eq!(multihop.session.graceful_restart, None);
    }

    #[test]
    fn routes_carry_communities_and_local_pref() {
        let route = Route::aggregate("198.51.100.7".parse().unwrap(), 24).unwrap();
        let attributes = ModelAttributes {
            communities: BTreeSet::from([
                Community::Standard(65000 << 16 | 1),
                Community::Large(1, 2, 3),
            ]),
            local_pref: Some(200),
        };
        let plan = PeerPlan {
            settings: settings(false, false),
            routes: BTreeMap::from([(route, attributes)]),
            addresses: BTreeMap::new(),
        };
        let routes = routes(&plan);
        let (prefix, attributes) = routes.iter().next().unwrap();
        assert_eq!(prefix.to_string(), "198.51.100.0/24");
        assert_eq!(attributes.communities, [65000 << 16 | 1]);
        assert_eq!(
            attributes.large_communities,
            [LargeCommunity { global: 1, local1: 2, local2: 3 }]
        );
        assert_eq!(attributes.local_pref, Some(200));
    }
}
