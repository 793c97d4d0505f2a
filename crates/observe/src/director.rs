//! What a director's pinned maps say (docs/director.md): its settings, every VIP with its table,
//! each node's name, weight and share of slots, and the packets sent; the reason counters; for
//! one flow, the node it goes to and why (VIP, hash under the cluster seed, slot, node); and the
//! same as Prometheus metrics, read on every scrape ([`DirectorCollector`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;
use switchyard_bpf::director::{
    DirConfig, DirMaps, DirTable, ENCAP_FOU, ENCAP_GUE, ENCAP_IPIP, names,
};
use switchyard_maglev::{FlowKey, Seed};

use crate::error::Error;
use crate::kernel::ReasonCount;

/// A director's settings as its program reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// M of every table.
    pub table_size: u32,
    /// The cluster seed (`--seed`), 32 hex digits.
    pub seed: String,
    /// `gue`, `fou` or `ipip`.
    pub encapsulation: &'static str,
    /// Destination port of GUE and FOU.
    pub gue_port: u16,
    /// Outer source towards IPv4 nodes.
    pub source4: Option<IpAddr>,
    /// Outer source towards IPv6 nodes.
    pub source6: Option<IpAddr>,
}

/// One node in a table: how many slots it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// Node id (`sy_dir_nodes`).
    pub node_id: u32,
    /// The Node's name (as the director recorded it with the table).
    pub name: Option<String>,
    /// Its Maglev weight in this table (node weight, times ready endpoints under Local).
    pub weight: Option<u32>,
    /// Its address, if the entry exists.
    pub address: Option<IpAddr>,
    /// Slots of the table pointing at it.
    pub slots: u32,
}

/// One VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    /// Counter id.
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: &'static str,
    /// Table id (0: no node serves the VIP; its packets are dropped and counted).
    pub table_id: u32,
    /// Slots per node (the weights Maglev realised), most first.
    pub shares: Vec<Share>,
    /// Packets and inner bytes sent encapsulated.
    pub packets: u64,
    pub bytes: u64,
}

/// One node entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub id: u32,
    /// The Node's name, if recorded.
    pub name: Option<String>,
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
}

/// Everything `switchyard status` shows on a director.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorStatus {
    pub settings: Settings,
    pub vips: Vec<VipStatus>,
    pub nodes: Vec<NodeStatus>,
    /// Every reason counter (`encap_gue`, `drop_no_route`, ...).
    pub reasons: BTreeMap<&'static str, ReasonCount>,
    /// Links pinned under the bpffs directory (one per attached device).
    pub links: Vec<String>,
}

/// Where one flow goes and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowExplanation {
    /// `SRC:PORT -> VIP:PORT/PROTO`.
    pub flow: String,
    /// The VIP (with its table's shares), or `None`: not a VIP, the packet goes to the stack.
    pub vip: Option<VipStatus>,
    pub settings: Settings,
    /// The flow hash of the 5-tuple under the seed (`FlowKey::hash`), hex.
    pub hash: Option<String>,
    /// `hash mod M`.
    pub slot: Option<u32>,
    /// The node in that slot, with its share of the table.
    pub node: Option<Share>,
    /// One sentence: what the program does with the flow's packets.
    pub decision: String,
}

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "other",
    }
}

fn settings(config: &DirConfig) -> Settings {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&config.hash_k0.to_le_bytes());
    seed[8..].copy_from_slice(&config.hash_k1.to_le_bytes());
    let source = |addr: switchyard_bpf::abi::Addr, family: u8| {
        (addr != switchyard_bpf::abi::Addr::UNSPECIFIED).then(|| addr.to_ip(family))
    };
    Settings {
        table_size: config.table_size,
        seed: Seed::from_bytes(seed).to_string(),
        encapsulation: match config.encap {
            ENCAP_GUE => "gue",
            ENCAP_FOU => "fou",
            ENCAP_IPIP => "ipip",
            _ => "unknown",
        },
        gue_port: u16::from_be(config.gue_port),
        source4: source(config.source4, switchyard_bpf::abi::AF_INET),
        source6: source(config.source6, switchyard_bpf::abi::AF_INET6),
    }
}

/// Slots per node of table `table_id` (empty when it is missing), most first.
fn shares(maps: &DirMaps, table_id: u32, table_size: u32) -> Result<Vec<Share>, Error> {
    let map_err = |source| switchyard_bpf::Error::Map { name: names::TABLES, source };
    let table: DirTable = match maps.tables.get(&table_id, 0) {
        Ok(table) => table,
        Err(aya::maps::MapError::KeyNotFound) => return Ok(Vec::new()),
        Err(source) => return Err(map_err(source).into()),
    };
    let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
    for index in 0..table_size {
        let node = table.get(&index, 0).map_err(map_err)?;
        *slots.entry(node).or_default() += 1;
    }
    let mut out: Vec<Share> = slots
        .into_iter()
        .map(|(node_id, slots)| {
            let named = maps.table_node(table_id, node_id);
            Share {
                node_id,
                name: named.map(|n| n.name()),
                address: maps.node(node_id).ok().flatten().map(|n| n.ip()),
                weight: named.map(|n| n.weight),
                slots,
            }
        })
        .collect();
    out.sort_by(|a, b| b.slots.cmp(&a.slots).then(a.node_id.cmp(&b.node_id)));
    Ok(out)
}

/// Reads the director's maps.
pub fn read_status(maps: &DirMaps, bpf_dir: &Path) -> Result<DirectorStatus, Error> {
    let config = maps.config()?;
    let mut vips = Vec::new();
    let mut table_shares: BTreeMap<u32, Vec<Share>> = BTreeMap::new();
    for (key, vip) in maps.vip_entries()? {
        if let std::collections::btree_map::Entry::Vacant(slot) = table_shares.entry(vip.table_id) {
            slot.insert(shares(maps, vip.table_id, config.table_size)?);
        }
        let counter = maps.vip_counter(vip.id)?;
        vips.push(VipStatus {
            id: vip.id,
            address: key.addr.to_ip(key.family),
            port: key.port(),
            protocol: protocol_name(key.proto),
            table_id: vip.table_id,
            shares: table_shares.get(&vip.table_id).cloned().unwrap_or_default(),
            packets: counter.packets,
            bytes: counter.bytes,
        });
    }
    vips.sort_by(|a, b| (a.address, a.port, a.protocol).cmp(&(b.address, b.port, b.protocol)));
    let mut nodes = Vec::new();
    for (id, node) in maps.node_entries()? {
        let counter = maps.node_counter(id)?;
        nodes.push(NodeStatus {
            id,
            name: maps.node_name(id),
            address: node.ip(),
            packets: counter.packets,
            bytes: counter.bytes,
        });
    }
    nodes.sort_by_key(|n| n.id);
    let reasons = maps
        .counters()?
        .into_iter()
        .map(|(r, c)| (r.name(), ReasonCount { packets: c.packets, bytes: c.bytes }))
        .collect();
    Ok(DirectorStatus {
        settings: settings(&config),
        vips,
        nodes,
        reasons,
        links: crate::kernel::attached_programs(bpf_dir),
    })
}

/// Where the director sends `flow` (client -> VIP) and why, by the program's own lookup
/// ([`DirMaps::lookup`], tested against the program).
pub fn explain(maps: &DirMaps, flow: &FlowKey) -> Result<FlowExplanation, Error> {
    let config = maps.config()?;
    let text = format!(
        "{} -> {}/{}",
        std::net::SocketAddr::new(flow.source, flow.source_port),
        std::net::SocketAddr::new(flow.destination, flow.destination_port),
        protocol_name(flow.protocol)
    );
    let mut out = FlowExplanation {
        flow: text,
        vip: None,
        settings: settings(&config),
        hash: None,
        slot: None,
        node: None,
        decision: String::new(),
    };
    let Some(lookup) = maps.lookup(flow)? else {
        out.decision = "not a VIP of this director: XDP_PASS (the stack gets it)".to_string();
        return Ok(out);
    };
    let table = shares(maps, lookup.vip.table_id, config.table_size)?;
    let counter = maps.vip_counter(lookup.vip.id)?;
    out.vip = Some(VipStatus {
        id: lookup.vip.id,
        address: flow.destination,
        port: flow.destination_port,
        protocol: protocol_name(flow.protocol),
        table_id: lookup.vip.table_id,
        shares: table.clone(),
        packets: counter.packets,
        bytes: counter.bytes,
    });
    out.hash = Some(format!("{:#018x}", lookup.hash));
    out.slot = lookup.slot;
    out.decision = match (lookup.vip.table_id, lookup.slot, lookup.node) {
        (0, _, _) => "no node serves this VIP: dropped, counted as drop_no_node".to_string(),
        (_, None, _) => "the VIP's table is missing: dropped (drop_table_missing)".to_string(),
        (_, Some(_), None) => {
            "the slot's node entry is missing: dropped (drop_node_missing)".to_string()
        }
        (_, Some(_), Some((id, node))) => {
            let share = table.iter().find(|s| s.node_id == id).cloned().unwrap_or(Share {
                node_id: id,
                name: None,
                address: Some(node.ip()),
                weight: None,
                slots: 0,
            });
            let whom = match &share.name {
                Some(name) => format!("node {name} ({})", node.ip()),
                None => node.ip().to_string(),
            };
            out.node = Some(share);
            format!(
                "encapsulated ({}) to {whom} and sent out again; the node answers the client \
                 directly",
                out.settings.encapsulation
            )
        }
    };
    Ok(out)
}

/// Reads a director's pinned maps on every scrape and reports what its program counted.
#[derive(Debug)]
pub struct DirectorCollector {
    maps: std::sync::Mutex<DirMaps>,
    bpf_dir: std::path::PathBuf,
}

impl DirectorCollector {
    /// A collector over the maps pinned in `bpf_dir` (handles of its own).
    pub fn open(bpf_dir: &Path) -> Result<Self, Error> {
        Ok(DirectorCollector {
            maps: std::sync::Mutex::new(DirMaps::open_pinned(bpf_dir)?),
            bpf_dir: bpf_dir.to_owned(),
        })
    }

    /// The director's state now (for `/status`).
    pub fn read(&self) -> Result<DirectorStatus, Error> {
        let maps = self.maps.lock().map_err(|_| Error::MapInfo {
            name: "all",
            detail: "map handles poisoned by a panic".into(),
        })?;
        read_status(&maps, &self.bpf_dir)
    }
}

impl prometheus_client::collector::Collector for DirectorCollector {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        match self.read() {
            Ok(status) => encode_director(&status, encoder),
            Err(err) => {
                tracing::warn!(
                    bpf_dir = %self.bpf_dir.display(),
                    err = %switchyard_error::ErrorChain(&err),
                    "reading the director's maps for metrics failed"
                );
                Ok(())
            }
        }
    }
}

/// Writes a director's metrics: packets and inner bytes per VIP and per node, and the program's
/// decisions and drops by reason (the node's `switchyard_datapath_*` families).
pub fn encode_director(
    status: &DirectorStatus,
    mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric as _;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;

    type Pick = fn(u64, u64) -> u64;
    let picks: [(&str, &str, Pick); 2] =
        [("packets", "Packets", |p, _| p), ("bytes", "Inner IP bytes", |_, b| b)];
    for (unit, what, pick) in picks {
        let name = format!("switchyard_director_vip_{unit}");
        let help = format!("{what} encapsulated to nodes, per VIP (address:port, protocol)");
        let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for vip in &status.vips {
            let labels = vec![
                ("vip", std::net::SocketAddr::new(vip.address, vip.port).to_string()),
                ("protocol", vip.protocol.to_owned()),
            ];
            ConstCounter::new(pick(vip.packets, vip.bytes))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    for (unit, what, pick) in picks {
        let name = format!("switchyard_director_node_{unit}");
        let help = format!("{what} encapsulated to each node (Node name, address)");
        let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for node in &status.nodes {
            let labels = vec![
                ("node", node.name.clone().unwrap_or_default()),
                ("address", node.address.to_string()),
            ];
            ConstCounter::new(pick(node.packets, node.bytes))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    let reasons = status.reasons.iter().map(|(name, count)| (*name, count.packets));
    crate::metrics::encode_reasons(reasons, &mut encoder)
}
