//! The Prometheus text the metrics produce, from a fixed kernel state (no root needed).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use switchyard_observe::kernel::{
    FrontendTraffic, KernelState, MapFill, ProgrammedBackend, ProgrammedFrontend, ReasonCount,
};
use switchyard_observe::labels::{ServiceIndex, ServiceLabel};
use switchyard_observe::metrics::{SyncMetrics, encode_kernel, render};

#[derive(Debug)]
struct Fixed(KernelState, ServiceIndex);

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_kernel(&self.0, &self.1, encoder)
    }
}

fn frontend(id: u32, ip: Option<&str>, port: u16) -> ProgrammedFrontend {
    let ip: Option<IpAddr> = ip.map(|s| s.parse().unwrap());
    ProgrammedFrontend {
        id,
        ip,
        family: if ip.is_some_and(|ip| ip.is_ipv6()) { "ipv6" } else { "ipv4" },
        port,
        protocol: "tcp".into(),
        scope: "default",
        flags: vec![],
        maglev_table: false,
        backends: vec![ProgrammedBackend {
            id: 1,
            ip: "10.1.0.1".parse().unwrap(),
            port: 8080,
            flags: vec![],
        }],
        broken_slots: vec![],
    }
}

fn label(name: &str, kind: &str) -> ServiceLabel {
    ServiceLabel {
        namespace: "shop".into(),
        name: name.into(),
        port_name: "http".into(),
        kind: kind.into(),
    }
}

fn rendered(state: KernelState, index: ServiceIndex) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Fixed(state, index)));
    render(&registry).unwrap()
}

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn per_service_counters_carry_the_service_of_each_frontend() {
    let mut index = ServiceIndex::default();
    let cluster_ip: IpAddr = "10.96.0.10".parse().unwrap();
    index.insert(cluster_ip, 80, "tcp", label("web", "ClusterIP"));
    index.insert("192.168.1.5".parse().unwrap(), 30080, "tcp", label("web", "NodePort"));
    let state = KernelState {
        frontends: vec![
            frontend(3, Some("10.96.0.10"), 80),
            frontend(4, None, 30080),
            // The IPv6 wildcard of the same dual-stack NodePort.
            ProgrammedFrontend { family: "ipv6", ..frontend(5, None, 30080) },
        ],
        frontend_counters: BTreeMap::from([
            (3, FrontendTraffic { connections: 7, packets: 0, bytes: 0 }),
            (4, FrontendTraffic { connections: 2, packets: 11, bytes: 1500 }),
            (5, FrontendTraffic { connections: 1, packets: 3, bytes: 240 }),
        ]),
        ..KernelState::default()
    };
    let text = rendered(state, index);
    let conns = "switchyard_service_new_connections_total{namespace=\"shop\",service=\"web\",port_name=\"http\",frontend=\"10.96.0.10:80\",protocol=\"tcp\",scope=\"default\"}";
    assert_eq!(sample(&text, conns), Some(7.0), "{text}");
    let node_port = "switchyard_service_bytes_total{namespace=\"shop\",service=\"web\",port_name=\"http\",frontend=\"*:30080\"";
    assert_eq!(sample(&text, node_port), Some(1500.0), "{text}");
    let node_port_v6 = "switchyard_service_bytes_total{namespace=\"shop\",service=\"web\",port_name=\"http\",frontend=\"[*]:30080\"";
    assert_eq!(sample(&text, node_port_v6), Some(240.0), "{text}");
}

#[test]
fn frontends_without_traffic_or_service_still_get_a_zero_series() {
    let state = KernelState {
        frontends: vec![frontend(9, Some("10.96.0.99"), 53)],
        ..KernelState::default()
    };
    let text = rendered(state, ServiceIndex::default());
    let line = "switchyard_service_new_connections_total{namespace=\"\",service=\"\",port_name=\"\",frontend=\"10.96.0.99:53\"";
    assert_eq!(sample(&text, line), Some(0.0), "{text}");
}

#[test]
fn drops_by_reason_and_map_fill_come_from_the_kernel_state() {
    let state = KernelState {
        reasons: BTreeMap::from([
            ("reject_no_backend", ReasonCount { packets: 5, bytes: 0 }),
            ("translated_random", ReasonCount { packets: 40, bytes: 0 }),
        ]),
        maps: vec![MapFill {
            name: "sy_frontends",
            entries: 12,
            max_entries: 65536,
            memory_bytes: Some(4096),
        }],
        ..KernelState::default()
    };
    let text = rendered(state, ServiceIndex::default());
    assert_eq!(
        sample(&text, "switchyard_datapath_drops_total{reason=\"reject_no_backend\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "switchyard_datapath_drops_total{reason=\"drop_no_backend\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "switchyard_datapath_decisions_total{reason=\"translated_random\"}"),
        Some(40.0)
    );
    assert!(!text.contains("switchyard_datapath_drops_total{reason=\"translated_random\"}"));
    assert_eq!(sample(&text, "switchyard_bpf_map_entries{map=\"sy_frontends\"}"), Some(12.0));
    assert_eq!(
        sample(&text, "switchyard_bpf_map_max_entries{map=\"sy_frontends\"}"),
        Some(65536.0)
    );
    assert_eq!(
        sample(&text, "switchyard_bpf_map_memory_bytes{map=\"sy_frontends\"}"),
        Some(4096.0)
    );
}

#[test]
fn sync_metrics_use_kube_proxy_names_with_the_switchyard_prefix() {
    let sync = SyncMetrics::default();
    let mut registry = Registry::default();
    sync.register(&mut registry);
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    sync.observe_sync(false, Duration::from_micros(1500), at, 1);
    sync.observe_sync(true, Duration::from_millis(20), at + Duration::from_secs(5), 0);
    sync.observe_programming(Duration::from_micros(300));
    sync.set_pending(3);
    let text = render(&registry).unwrap();
    assert_eq!(sample(&text, "switchyard_sync_proxy_rules_duration_seconds_count"), Some(2.0));
    assert_eq!(sample(&text, "switchyard_sync_full_proxy_rules_duration_seconds_count"), Some(1.0));
    assert_eq!(
        sample(&text, "switchyard_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchyard_sync_proxy_rules_last_timestamp_seconds"),
        Some(1_700_000_005.0)
    );
    assert_eq!(sample(&text, "switchyard_sync_proxy_rules_changes_pending"), Some(3.0));
    assert_eq!(sample(&text, "switchyard_frontends_not_programmed"), Some(0.0));
    assert_eq!(
        sample(&text, "switchyard_network_programming_duration_seconds_bucket{le=\"0.001\"}"),
        Some(1.0)
    );
    // kube-proxy's own boundaries are all present.
    for le in ["0.25", "0.5", "1.0", "59.0", "60.0", "115.0", "120.0", "300.0"] {
        let line = format!("switchyard_network_programming_duration_seconds_bucket{{le=\"{le}\"}}");
        assert!(text.contains(&line), "missing bucket {le}: {text}");
    }
    assert!(SystemTime::now() > at);
}

#[test]
fn bgp_sessions_become_state_route_update_and_flap_metrics_per_peer() {
    use switchyard_observe::bgp::{BgpCollector, BgpReport, BgpSource, SessionReport};
    let session =
        |peer: &str, state: &str, routes: usize, updates: u64, flaps: u64| SessionReport {
            peer: peer.to_owned(),
            address: "10.100.1.1:179".to_owned(),
            state: state.to_owned(),
            routes_announced: routes,
            updates_sent: updates,
            flaps,
            ..SessionReport::default()
        };
    let report = BgpReport {
        sessions: vec![
            session("tor", "established", 3, 5, 1),
            session("spine", "connect", 0, 0, 0),
        ],
        not_peering: vec![],
        ..BgpReport::default()
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BgpCollector(BgpSource::new(move || report.clone()))));
    let text = render(&registry).unwrap();
    for line in [
        "switchyard_bgp_session_established{peer=\"tor\",address=\"10.100.1.1:179\"} 1",
        "switchyard_bgp_session_established{peer=\"spine\",address=\"10.100.1.1:179\"} 0",
        "switchyard_bgp_routes_announced{peer=\"tor\",address=\"10.100.1.1:179\"} 3",
        "switchyard_bgp_updates_sent_total{peer=\"tor\",address=\"10.100.1.1:179\"} 5",
        "switchyard_bgp_session_flaps_total{peer=\"tor\",address=\"10.100.1.1:179\"} 1",
        "switchyard_bgp_session_flaps_total{peer=\"spine\",address=\"10.100.1.1:179\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
}

/// A director holding its VIPs back (a first start, until its tables are settled) says so on
/// `/metrics` (1, then 0 once it announces) and in `/bgp`'s JSON (`announceHeld`).
#[test]
fn a_director_holding_its_vips_back_shows_it_in_metrics_and_json() {
    use switchyard_observe::bgp::{AnnounceHeldCollector, BgpReport, BgpSource};
    let held = std::sync::Arc::new(std::sync::Mutex::new(Some("settle window".to_owned())));
    let source = {
        let held = std::sync::Arc::clone(&held);
        BgpSource::new(move || BgpReport {
            announce_held: held.lock().unwrap().clone(),
            ..BgpReport::default()
        })
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AnnounceHeldCollector(source.clone())));
    let text = render(&registry).unwrap();
    assert!(text.lines().any(|l| l == "switchyard_director_announce_held 1"), "{text}");
    let json = serde_json::to_value(source.report()).unwrap();
    assert_eq!(json["announceHeld"], "settle window", "{json}");
    *held.lock().unwrap() = None;
    let text = render(&registry).unwrap();
    assert!(text.lines().any(|l| l == "switchyard_director_announce_held 0"), "{text}");
    let json = serde_json::to_value(source.report()).unwrap();
    assert!(json.get("announceHeld").is_none(), "{json}");
}

/// L2 mode's responder on the agent's `/metrics`: answers per family, announcements, requests
/// for addresses not owned, and the addresses owned, per interface.
#[test]
fn l2_responder_counters_become_metrics_per_interface() {
    use switchyard_observe::bgp::{BgpCollector, BgpReport, BgpSource, L2Report};
    let interface = switchyard_l2::InterfaceReport {
        name: "eth0".to_owned(),
        mac: "02:00:00:00:00:01".to_owned(),
        addresses: vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
            "192.0.2.11".parse().unwrap(),
        ],
        counters: switchyard_l2::Counters {
            arp_replies: 7,
            ndp_replies: 4,
            announcements: 6,
            not_owned: 2,
            ..switchyard_l2::Counters::default()
        },
        error: None,
    };
    let report = BgpReport {
        l2: L2Report { interfaces: vec![interface], ..L2Report::default() },
        ..BgpReport::default()
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BgpCollector(BgpSource::new(move || report.clone()))));
    let text = render(&registry).unwrap();
    for line in [
        "switchyard_l2_answers_total{interface=\"eth0\",family=\"ipv4\"} 7",
        "switchyard_l2_answers_total{interface=\"eth0\",family=\"ipv6\"} 4",
        "switchyard_l2_announcements_total{interface=\"eth0\"} 6",
        "switchyard_l2_requests_not_owned_total{interface=\"eth0\"} 2",
        "switchyard_l2_addresses_owned{interface=\"eth0\",family=\"ipv4\"} 2",
        "switchyard_l2_addresses_owned{interface=\"eth0\",family=\"ipv6\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
}

#[test]
fn conntrack_evictions_are_the_entries_created_minus_the_entries_present() {
    let fill = |name: &'static str, entries: u64| MapFill {
        name,
        entries,
        max_entries: 256,
        memory_bytes: None,
    };
    let state = KernelState {
        reasons: BTreeMap::from([("ct_created", ReasonCount { packets: 1000, bytes: 0 })]),
        maps: vec![fill("sy_ct", 256), fill("sy_nat", 256), fill("sy_src_ranges", 3)],
        ..KernelState::default()
    };
    let text = rendered(state, ServiceIndex::default());
    assert_eq!(sample(&text, "switchyard_conntrack_evictions_total"), Some(744.0), "{text}");
    for (map, entries) in [("sy_ct", 256.0), ("sy_nat", 256.0), ("sy_src_ranges", 3.0)] {
        let line = format!("switchyard_bpf_map_entries{{map=\"{map}\"}}");
        assert_eq!(sample(&text, &line), Some(entries), "{map}");
    }
    // Without the per-packet maps (no --devices) there is no conntrack to report on.
    let text = rendered(KernelState::default(), ServiceIndex::default());
    assert!(!text.contains("switchyard_conntrack_evictions"), "{text}");
}
