//! What the node agent's BGP speaker reports: sessions (state, uptime, capabilities, counters)
//! and, per peer, every address announced or not and why; and L2 mode's responder. Served as
//! `/bgp` for `switchyard bgp` and `switchyard l2`, and as Prometheus metrics; the agent
//! supplies it through a [`BgpSource`].

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::{Deserialize, Serialize};

/// The `/bgp` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpReport {
    /// Sessions this node runs, by BGPPeer name.
    pub sessions: Vec<SessionReport>,
    /// BGPPeers this node runs no session with: `(name, why)`.
    pub not_peering: Vec<(String, String)>,
    /// L2 mode: who answers ARP / NDP for each address, and this node's responder.
    #[serde(default)]
    pub l2: L2Report,
    /// A director that holds its VIPs back: why (e.g. `settle window (2000 ms left)`);
    /// `None`: it announces them (and on agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_held: Option<String>,
}

/// L2 mode as one agent sees it (`switchyard l2`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Report {
    /// Every LoadBalancer IP and externalIP with the node answering for it, or why none does.
    pub addresses: Vec<L2AddressReport>,
    /// This node's responder: per interface, the addresses it answers for and what it did.
    pub interfaces: Vec<switchyard_l2::InterfaceReport>,
    /// Interfaces an L2Advertisement names that this host does not have.
    pub missing_interfaces: Vec<String>,
}

/// One address of the L2 plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AddressReport {
    pub address: String,
    /// `namespace/name` of the Services on it.
    pub services: Vec<String>,
    /// The node answering for it (`None`: no node does).
    pub owner: Option<String>,
    /// The decision in words, e.g. `answered by node-b on all interfaces (L2Advertisement all)`.
    pub decision: String,
}

/// One session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReport {
    /// BGPPeer name.
    pub peer: String,
    /// `address:port` of the router.
    pub address: String,
    /// `my ASN -> peer ASN`, e.g. `64512 -> 64500 (eBGP)`.
    pub asns: String,
    /// FSM state (`idle` … `established`).
    pub state: String,
    /// Seconds since the session reached Established (`None`: not established).
    pub uptime_seconds: Option<u64>,
    /// Negotiated capabilities, e.g. `ipv4-unicast`, `graceful-restart 120s`.
    pub capabilities: Vec<String>,
    /// Why the session last went down.
    pub last_down: Option<String>,
    /// Why the last connection attempt failed, until a session establishes.
    #[serde(default)]
    pub connect_error: Option<String>,
    /// The BFD session beside it (`spec.bfd`), e.g. `up, 100ms x 3, 12 sent, 11 received, 0
    /// failures`; `None` without BFD.
    #[serde(default)]
    pub bfd: Option<String>,
    /// UPDATE messages sent (End-of-RIB included).
    pub updates_sent: u64,
    /// Times the established session went down.
    pub flaps: u64,
    /// Routes the router has from us.
    pub routes_announced: usize,
    /// Every candidate address: `(address, decision)`, e.g. `announced as 192.0.2.1/32 (…)`.
    pub addresses: Vec<(String, String)>,
}

/// Supplies the current report on demand (on each `/bgp` request and each scrape).
#[derive(Clone)]
pub struct BgpSource(Arc<dyn Fn() -> BgpReport + Send + Sync>);

impl BgpSource {
    /// A source that calls `report`.
    pub fn new(report: impl Fn() -> BgpReport + Send + Sync + 'static) -> BgpSource {
        BgpSource(Arc::new(report))
    }

    /// A source for agents without BGP: no sessions.
    pub fn none() -> BgpSource {
        BgpSource::new(BgpReport::default)
    }

    /// The report now.
    pub fn report(&self) -> BgpReport {
        (self.0)()
    }
}

impl std::fmt::Debug for BgpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BgpSource")
    }
}

/// Prometheus metrics of the sessions, read from the report on every scrape.
#[derive(Debug)]
pub struct BgpCollector(pub BgpSource);

impl Collector for BgpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let report = self.0.report();
        let mut family = encoder.encode_descriptor(
            "switchyard_bgp_session_established",
            "1 when the BGP session is established, else 0",
            None,
            MetricType::Gauge,
        )?;
        for session in &report.sessions {
            let up = i64::from(session.state == "established");
            ConstGauge::new(up).encode(family.encode_family(&labels(session))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "switchyard_bgp_routes_announced",
            "Routes the router has from this node",
            None,
            MetricType::Gauge,
        )?;
        for session in &report.sessions {
            let routes = i64::try_from(session.routes_announced).unwrap_or(i64::MAX);
            ConstGauge::new(routes).encode(family.encode_family(&labels(session))?)?;
        }
        type Pick = fn(&SessionReport) -> u64;
        let counters: [(&str, &str, Pick); 2] = [
            ("switchyard_bgp_updates_sent", "BGP UPDATE messages sent", |s| s.updates_sent),
            ("switchyard_bgp_session_flaps", "Times an established session went down", |s| s.flaps),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for session in &report.sessions {
                ConstCounter::new(pick(session)).encode(family.encode_family(&labels(session))?)?;
            }
        }
        encode_l2(&report.l2, &mut encoder)
    }
}

/// A director's `switchyard_director_announce_held` gauge: 1 while it holds its VIPs back
/// (a first start, until its tables are settled: docs/director.md), else 0.
#[derive(Debug)]
pub struct AnnounceHeldCollector(pub BgpSource);

impl Collector for AnnounceHeldCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let held = i64::from(self.0.report().announce_held.is_some());
        let family = encoder.encode_descriptor(
            "switchyard_director_announce_held",
            "1 while the director holds its VIPs back until its tables are settled, else 0",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(held).encode(family)
    }
}

/// L2 mode's responder, per interface: answers sent per family, gratuitous announcements,
/// requests for addresses it does not own, and the addresses it owns.
fn encode_l2(l2: &L2Report, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let with_family = |name: &str, family: &str| {
        vec![("interface", name.to_owned()), ("family", family.to_owned())]
    };
    let mut family = encoder.encode_descriptor(
        "switchyard_l2_answers",
        "ARP replies (ipv4) and neighbour advertisements answering solicitations (ipv6) sent",
        None,
        MetricType::Counter,
    )?;
    for i in &l2.interfaces {
        for (fam, sent) in [("ipv4", i.counters.arp_replies), ("ipv6", i.counters.ndp_replies)] {
            ConstCounter::new(sent).encode(family.encode_family(&with_family(&i.name, fam))?)?;
        }
    }
    type Pick = fn(&switchyard_l2::Counters) -> u64;
    let counters: [(&str, &str, Pick); 2] = [
        (
            "switchyard_l2_announcements",
            "Gratuitous ARPs and unsolicited neighbour advertisements sent (an address gained)",
            |c| c.announcements,
        ),
        (
            "switchyard_l2_requests_not_owned",
            "Well-formed requests for addresses this node does not answer for",
            |c| c.not_owned,
        ),
    ];
    for (name, help, pick) in counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for i in &l2.interfaces {
            let labels = vec![("interface", i.name.clone())];
            ConstCounter::new(pick(&i.counters)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "switchyard_l2_addresses_owned",
        "Addresses this node answers ARP (ipv4) or NDP (ipv6) for, per interface",
        None,
        MetricType::Gauge,
    )?;
    for i in &l2.interfaces {
        let v4 = i.addresses.iter().filter(|a| a.is_ipv4()).count();
        for (fam, count) in [("ipv4", v4), ("ipv6", i.addresses.len() - v4)] {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(family.encode_family(&with_family(&i.name, fam))?)?;
        }
    }
    Ok(())
}

fn labels(session: &SessionReport) -> Vec<(&'static str, String)> {
    vec![("peer", session.peer.clone()), ("address", session.address.clone())]
}
