//! Previous-node records (issue 17 (f)): what every director publishes about the previous
//! nodes its tables name, and how a director that starts for the first time (no pins) takes
//! them over, so it names the same previous node for every slot as the directors that saw the
//! change — also for changes the objects do not show (a drain removed, a node deleted
//! outright, a node out or back by health).
//!
//! A record is per *generation*: the VIPs whose table has one node list and names one previous
//! node list, built at one time. Compact: the current list only as a fingerprint (every
//! director derives it from the same objects), the previous list as its difference to the
//! current one (the names that joined, the nodes that left with their address and weight), and
//! the build time, so the previous nodes expire on every director at once. Its size depends on
//! the nodes that changed, not on M or the cluster's size.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchyard_model::{FrontendKey, Protocol};

use crate::vips::NodeTarget;

/// Node annotation with the director's record (JSON, [`Record::encode`]); each director
/// writes it on its own Node object (`--node-name`) and reads everyone's.
pub const PREVIOUS_ANNOTATION: &str = "switchyard.io/director-previous";

/// The most a record may take (annotations of one object share 256 KiB): the oldest
/// generations are left out beyond it ([`Record::encode`]).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One generation of previous nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation {
    /// [`fingerprint`] of the table's node list.
    pub nodes: u64,
    /// When the table naming the previous nodes was built (Unix milliseconds).
    pub built_ms: u64,
    /// Names of the current list's nodes that were not in the previous list as they are now
    /// (added, or another address or weight).
    pub joined: Vec<Arc<str>>,
    /// Nodes of the previous list not in the current one as they were.
    pub left: Vec<NodeTarget>,
}

/// What one director publishes: each generation with the VIPs whose table it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Generation → VIPs.
    pub generations: BTreeMap<Generation, BTreeSet<FrontendKey>>,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {PREVIOUS_ANNOTATION}: {0}")]
pub struct RecordError(String);

/// What a director that builds a VIP for the first time takes over: the previous node list
/// the others' tables name, and when they built them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// [`fingerprint`] of the node list it applies to.
    pub nodes: u64,
    /// The previous node list, sorted by name.
    pub previous: Vec<NodeTarget>,
    /// When the others built the table naming them.
    pub built: SystemTime,
}

/// FNV-1a (64 bits) of a node list (names, addresses, weights; in order): stable across
/// versions and machines, as every director must compute the same.
pub fn fingerprint(nodes: &[NodeTarget]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for node in nodes {
        eat(node.name.as_bytes());
        eat(&[0]);
        eat(node.address.to_string().as_bytes());
        eat(&[0]);
        eat(&node.weight.to_le_bytes());
    }
    hash
}

/// The generation of a table of `current` (sorted) that names the nodes of `previous` (sorted)
/// as previous nodes, built at `built`.
pub fn generation(
    current: &[NodeTarget],
    previous: &[NodeTarget],
    built: SystemTime,
) -> Generation {
    let joined = current.iter().filter(|n| !previous.contains(n)).map(|n| n.name.clone()).collect();
    let left = previous.iter().filter(|n| !current.contains(n)).cloned().collect();
    Generation { nodes: fingerprint(current), built_ms: unix_ms(built), joined, left }
}

impl Generation {
    /// The previous node list for `current` (sorted): `None` unless this generation is of
    /// `current`'s tables.
    pub fn previous_of(&self, current: &[NodeTarget]) -> Option<Vec<NodeTarget>> {
        if fingerprint(current) != self.nodes
            || !self.joined.iter().all(|j| current.iter().any(|n| &n.name == j))
        {
            return None;
        }
        let mut out: Vec<NodeTarget> = current
            .iter()
            .filter(|n| !self.joined.contains(&n.name))
            .chain(&self.left)
            .cloned()
            .collect();
        out.sort();
        // A name twice would not be a node list.
        let names: BTreeSet<&Arc<str>> = out.iter().map(|n| &n.name).collect();
        (names.len() == out.len() && !out.is_empty()).then_some(out)
    }

    /// When the table was built.
    pub fn built(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.built_ms)
    }
}

/// Chooses the seed of VIP `key` with node list `current` (sorted) from every director's
/// record: the generations of `current`'s tables that have not expired (`ttl`), the newest
/// (then the smallest, so the order records are read in does not matter). Directors that saw
/// the same changes publish the same generation; ones that differ (one missed a change while
/// it was down, they disagree on health) all lead a new director to one choice, the same on
/// every new director.
pub fn choose<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    key: &FrontendKey,
    current: &[NodeTarget],
    now: SystemTime,
    ttl: Option<Duration>,
) -> Option<Seed> {
    let live = |g: &Generation| ttl.is_none_or(|ttl| g.built() + ttl > now);
    let best = records
        .into_iter()
        .flat_map(|r| r.generations.iter())
        .filter(|(g, vips)| vips.contains(key) && live(g))
        .filter_map(|(g, _)| Some((g, g.previous_of(current)?)))
        .max_by(|(a, _), (b, _)| a.built_ms.cmp(&b.built_ms).then_with(|| b.cmp(a)))?;
    Some(Seed { nodes: best.0.nodes, previous: best.1, built: best.0.built() })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn key_text(key: &FrontendKey) -> String {
    format!("{}/{}", SocketAddr::new(key.ip, key.port), key.protocol)
}

fn parse_key(text: &str) -> Option<FrontendKey> {
    let (address, protocol) = text.rsplit_once('/')?;
    let address: SocketAddr = address.parse().ok()?;
    let protocol = match protocol {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        _ => return None,
    };
    Some(FrontendKey::new(address.ip(), address.port(), protocol))
}

impl Record {
    /// The annotation's value: `{"v":1,"generations":[{"vips":[..],"nodes":"<hex>","built":ms,
    /// "joined":[..],"left":[{"name","address","weight"}]}]}`, newest first, leaving out the
    /// oldest generations beyond [`MAX_RECORD_BYTES`] (returns how many).
    pub fn encode(&self) -> (String, usize) {
        let mut generations: Vec<(&Generation, &BTreeSet<FrontendKey>)> =
            self.generations.iter().collect();
        generations.sort_by(|(a, _), (b, _)| b.built_ms.cmp(&a.built_ms).then_with(|| a.cmp(b)));
        const FRAME: &str = r#"{"v":1,"generations":[]}"#;
        let mut parts = Vec::with_capacity(generations.len());
        let mut size = FRAME.len();
        for (g, vips) in &generations {
            let part = json!({
                "vips": vips.iter().map(key_text).collect::<Vec<_>>(),
                "nodes": format!("{:016x}", g.nodes),
                "built": g.built_ms,
                "joined": g.joined.iter().map(|n| &**n).collect::<Vec<_>>(),
                "left": g.left.iter().map(|n| json!({
                    "name": &*n.name, "address": n.address.to_string(), "weight": n.weight,
                })).collect::<Vec<_>>(),
            })
            .to_string();
            // The part and its separating comma.
            if size + part.len() + 1 > MAX_RECORD_BYTES {
                break;
            }
            size += part.len() + 1;
            parts.push(part);
        }
        let left_out = generations.len() - parts.len();
        (format!(r#"{{"v":1,"generations":[{}]}}"#, parts.join(",")), left_out)
    }

    /// Reads an annotation's value written by [`Record::encode`].
    pub fn decode(text: &str) -> Result<Record, RecordError> {
        let bad = |what: &str| RecordError(what.to_owned());
        let value: Value = serde_json::from_str(text).map_err(|e| RecordError(e.to_string()))?;
        if value["v"] != 1 {
            return Err(bad("unknown version (\"v\" is not 1)"));
        }
        let mut record = Record::default();
        for g in value["generations"].as_array().ok_or_else(|| bad("no \"generations\" list"))? {
            let strings = |field: &str| -> Result<Vec<&str>, RecordError> {
                let list = g[field].as_array().ok_or_else(|| bad(&format!("no {field:?} list")))?;
                list.iter().map(|v| v.as_str().ok_or_else(|| bad(field))).collect()
            };
            let vips = strings("vips")?
                .into_iter()
                .map(|t| parse_key(t).ok_or_else(|| bad(&format!("VIP {t:?}"))))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let nodes = g["nodes"]
                .as_str()
                .and_then(|t| u64::from_str_radix(t, 16).ok())
                .ok_or_else(|| bad("\"nodes\" is no hexadecimal fingerprint"))?;
            let built_ms = g["built"].as_u64().ok_or_else(|| bad("\"built\" is no number"))?;
            let joined = strings("joined")?.into_iter().map(Arc::from).collect();
            let left = g["left"]
                .as_array()
                .ok_or_else(|| bad("no \"left\" list"))?
                .iter()
                .map(|n| {
                    let name = n["name"].as_str().filter(|s| !s.is_empty());
                    let address = n["address"].as_str().and_then(|a| a.parse::<IpAddr>().ok());
                    let weight = n["weight"].as_u64().and_then(|w| u32::try_from(w).ok());
                    match (name, address, weight) {
                        (Some(name), Some(address), Some(weight)) => {
                            Ok(NodeTarget { name: Arc::from(name), address, weight })
                        }
                        _ => Err(bad("a node of \"left\" without name, address or weight")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let generation = Generation { nodes, built_ms, joined, left };
            record.generations.entry(generation).or_default().extend(vips);
        }
        Ok(record)
    }
}
