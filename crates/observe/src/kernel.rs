//! A snapshot of the live kernel state, read from the pinned maps.
//!
//! This is what the programs act on, independent of what the agent believes it wrote: the
//! source of truth for `switchyard status`, `switchyard services --live` and the metrics.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;

use aya::maps::{MapError, MapInfo};
use serde::Serialize;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::{self, Reason};
use switchyard_bpf::maps::names;
use switchyard_bpf::nodeport_abi::PacketReason;

use crate::Error;

/// One `sy_frontends` entry and the backends its slots point at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgrammedFrontend {
    /// Frontend id (keys slots, Maglev table, counters).
    pub id: u32,
    /// Address; `None` for a NodePort wildcard (any node address).
    pub ip: Option<IpAddr>,
    /// `ipv4` or `ipv6`; tells the two NodePort wildcards of a dual-stack port apart.
    pub family: &'static str,
    /// Port.
    pub port: u16,
    /// `tcp`, `udp`, `sctp` or the number.
    pub protocol: String,
    /// `default` or `internal`.
    pub scope: &'static str,
    /// `FE_*` flag names.
    pub flags: Vec<&'static str>,
    /// Whether a Maglev table is installed for it.
    pub maglev_table: bool,
    /// Backends in slot order (slot k is `backends[k]`).
    pub backends: Vec<ProgrammedBackend>,
    /// Slots below `backend_count` that are missing or name an unknown backend.
    pub broken_slots: Vec<u32>,
}

/// One backend as programmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgrammedBackend {
    /// Backend id.
    pub id: u32,
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// `BE_*` flag names.
    pub flags: Vec<&'static str>,
}

/// Fill and memory of one map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapFill {
    /// Map name.
    pub name: &'static str,
    /// Entries present (arrays: their size).
    pub entries: u64,
    /// Capacity.
    pub max_entries: u32,
    /// Memory the kernel accounts to the map (`memlock` in fdinfo), when known.
    pub memory_bytes: Option<u64>,
}

/// Calls (socket path) or packets, and bytes, of one reason, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    /// Calls or packets.
    pub packets: u64,
    /// Bytes (per-packet path).
    pub bytes: u64,
}

/// One frontend's traffic, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTraffic {
    /// New flows (socket path).
    pub connections: u64,
    /// Packets (per-packet path).
    pub packets: u64,
    /// Bytes (per-packet path).
    pub bytes: u64,
}

/// Everything read in one pass.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelState {
    /// Frontends, sorted by (address, port, protocol, scope).
    pub frontends: Vec<ProgrammedFrontend>,
    /// Counters by reason name, summed over CPUs.
    pub reasons: BTreeMap<&'static str, ReasonCount>,
    /// Per-frontend traffic by frontend id, summed over CPUs.
    pub frontend_counters: BTreeMap<u32, FrontendTraffic>,
    /// Fill of every map.
    pub maps: Vec<MapFill>,
}

/// Protocol name of an `IPPROTO_*` number.
pub fn protocol_name(proto: u8) -> String {
    match proto {
        abi::PROTO_TCP => "tcp".into(),
        abi::PROTO_UDP => "udp".into(),
        abi::PROTO_SCTP => "sctp".into(),
        other => other.to_string(),
    }
}

/// Names of the `FE_*` flags set in `flags`.
pub fn frontend_flag_names(flags: u32) -> Vec<&'static str> {
    [
        (abi::FE_AFFINITY, "affinity"),
        (abi::FE_MAGLEV, "maglev"),
        (abi::FE_REJECT_EMPTY, "reject-empty"),
        (abi::FE_LOCAL_ONLY, "local-only"),
        (abi::FE_TERMINATING_FALLBACK, "terminating-fallback"),
        (abi::FE_SPLIT_SCOPE, "split-scope"),
        (abi::FE_NODEPORT, "nodeport"),
        (abi::FE_SOURCE_RANGES, "source-ranges"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// Names of the `BE_*` flags set in `flags`.
pub fn backend_flag_names(flags: u8) -> Vec<&'static str> {
    [(abi::BE_TERMINATING, "terminating"), (abi::BE_LOCAL, "local"), (abi::BE_ENCAP, "encap")]
        .into_iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| name)
        .collect()
}

/// Whether a reason means the flow did not get through (refused, dropped or an error).
pub fn is_drop(reason: Reason) -> bool {
    is_drop_name(reason.name())
}

/// [`is_drop`] by reason name, for either path's reasons (`PacketReason` names too).
pub fn is_drop_name(name: &str) -> bool {
    name.starts_with("reject_") || name.starts_with("drop_") || name.starts_with("err_")
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> Error {
    move |source| Error::Bpf(switchyard_bpf::Error::Map { name, source })
}

/// The frontends as programmed, with their backends in slot order.
pub fn frontends(maps: &Maps) -> Result<Vec<ProgrammedFrontend>, Error> {
    let mut out = Vec::new();
    for entry in maps.frontends.iter() {
        let (key, value) = entry.map_err(map_err(names::FRONTENDS))?;
        let mut backends = Vec::with_capacity(value.backend_count as usize);
        let mut broken_slots = Vec::new();
        for slot in 0..value.backend_count {
            let slot_key = abi::SlotKey { frontend_id: value.id, slot };
            let Ok(backend_id) = maps.slots.get(&slot_key, 0) else {
                broken_slots.push(slot);
                continue;
            };
            match maps.backends.get(&backend_id, 0) {
                Ok(b) => backends.push(ProgrammedBackend {
                    id: backend_id,
                    ip: b.addr.to_ip(b.family),
                    port: b.port(),
                    flags: backend_flag_names(b.flags),
                }),
                Err(_) => broken_slots.push(slot),
            }
        }
        let maglev_table = maps.maglev.get(&value.id, 0).is_ok();
        out.push(ProgrammedFrontend {
            id: value.id,
            ip: (key.addr != abi::Addr::UNSPECIFIED).then(|| key.addr.to_ip(key.family)),
            family: if key.family == abi::AF_INET6 { "ipv6" } else { "ipv4" },
            port: key.port(),
            protocol: protocol_name(key.proto),
            scope: if key.scope == abi::SCOPE_INTERNAL { "internal" } else { "default" },
            flags: frontend_flag_names(value.flags),
            maglev_table,
            backends,
            broken_slots,
        });
    }
    out.sort_by(|a, b| {
        (a.ip, a.port, &a.protocol, a.scope).cmp(&(b.ip, b.port, &b.protocol, b.scope))
    });
    Ok(out)
}

/// Memory the kernel accounts to the map pinned at `path` (`memlock:` of its fdinfo).
fn memlock(name: &'static str, path: &Path) -> Result<u64, Error> {
    let detail = |e: &dyn std::fmt::Display| Error::MapInfo { name, detail: e.to_string() };
    let info = MapInfo::from_pin(path).map_err(|e| detail(&e))?;
    let fd = info.fd().map_err(|e| detail(&e))?;
    let raw = fd.as_fd().as_raw_fd();
    let text =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).map_err(|e| detail(&e))?;
    parse_memlock(&text).ok_or_else(|| detail(&"no memlock line"))
}

/// The `memlock:` figure of a map's fdinfo text.
pub fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Fill and memory of every map, the per-packet `sy_ct` and `sy_nat` included when pinned.
/// Counting walks the keys of hash maps (one syscall each: a full `sy_ct` of 262,144 flows
/// costs a few hundred milliseconds of a scrape).
pub fn map_fill(maps: &Maps, bpf_dir: &Path) -> Result<Vec<MapFill>, Error> {
    let config = maps.config()?;
    let entries: [(&'static str, u64, u32); 11] = [
        (names::FRONTENDS, maps.frontends.keys().count() as u64, 0),
        (names::SLOTS, maps.slots.keys().count() as u64, 0),
        (names::BACKENDS, maps.backends.keys().count() as u64, 0),
        (names::MAGLEV, maps.maglev.keys().count() as u64, 0),
        (names::SOCK_REVNAT, maps.sock_revnat.keys().count() as u64, 0),
        (names::AFFINITY, maps.affinity.keys().count() as u64, 0),
        (names::SOCK_STICKY, maps.sock_sticky.keys().count() as u64, 0),
        (names::NODE_ADDRS, maps.node_addrs.keys().count() as u64, 0),
        (names::COUNTERS, u64::from(Reason::MAX), 0),
        (names::CONFIG, u64::from(config.maglev_table_size != 0), 0),
        (names::FE_COUNTERS, maps.fe_counters.keys().count() as u64, 0),
    ];
    let mut entries = entries.to_vec();
    entries.push((names::SRC_RANGES, maps.src_ranges.keys().count() as u64, 0));
    // The per-packet maps exist only where the agent runs with --devices.
    if bpf_dir.join(switchyard_bpf::nodeport::names::CT).exists() {
        let packet = switchyard_bpf::nodeport::PacketMaps::open_pinned(bpf_dir)
            .map_err(|e| Error::MapInfo { name: "sy_ct", detail: e.to_string() })?;
        entries.push((switchyard_bpf::nodeport::names::CT, packet.ct.keys().count() as u64, 0));
        entries.push((switchyard_bpf::nodeport::names::NAT, packet.nat.keys().count() as u64, 0));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (name, count, _) in entries {
        let path = bpf_dir.join(name);
        let info =
            MapInfo::from_pin(&path).map_err(|e| Error::MapInfo { name, detail: e.to_string() })?;
        out.push(MapFill {
            name,
            entries: count,
            max_entries: info.max_entries(),
            memory_bytes: memlock(name, &path).ok(),
        });
    }
    Ok(out)
}

/// Names of the pinned program links (`<bpf_dir>/links`): one per attached program.
pub fn attached_programs(bpf_dir: &Path) -> Vec<String> {
    let dir = bpf_dir.join(switchyard_bpf::loader::LINKS_DIR);
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads everything: frontends, counters, per-frontend counters and map fill.
pub fn read(maps: &Maps, bpf_dir: &Path) -> Result<KernelState, Error> {
    let mut reasons: BTreeMap<&'static str, ReasonCount> = maps
        .counters()?
        .into_iter()
        .map(|(r, c)| (r.name(), ReasonCount { packets: c.packets, bytes: c.bytes }))
        .collect();
    // The per-packet reasons share sy_counters (indexes 32..63).
    for reason in PacketReason::ALL {
        let per_cpu = maps.counters.get(&(reason as u32), 0).map_err(map_err(names::COUNTERS))?;
        let sum = per_cpu.iter().fold(ReasonCount::default(), |acc, c| ReasonCount {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        });
        reasons.insert(reason.name(), sum);
    }
    // A node that decapsulates directors' packets: its counters too (the open-relay guard's
    // `drop_not_director` among them). Absent pins: a node without directors.
    if let Ok(decap) = switchyard_bpf::decap::DecapMaps::open_pinned(bpf_dir) {
        for (reason, count) in decap.counters()? {
            reasons
                .insert(reason.name(), ReasonCount { packets: count.packets, bytes: count.bytes });
        }
    }
    let frontend_counters = maps
        .frontend_counters()?
        .into_iter()
        .map(|(id, c)| {
            (id, FrontendTraffic { connections: c.connections, packets: c.packets, bytes: c.bytes })
        })
        .collect();
    Ok(KernelState {
        frontends: frontends(maps)?,
        reasons,
        frontend_counters,
        maps: map_fill(maps, bpf_dir)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_the_fdinfo_line() {
        let text = "pos:\t0\nflags:\t02000002\nmap_type:\t1\nmemlock:\t73728\nmap_id:\t5\n";
        assert_eq!(parse_memlock(text), Some(73728));
        assert_eq!(parse_memlock("map_type:\t1\n"), None);
    }

    #[test]
    fn the_node_s_reason_names_are_distinct_across_its_three_counter_maps() {
        // `read` keys one map by name: a name shared by sy_counters and sy_decap_counters would
        // hide one of the two counts (and repeat a series in /metrics).
        let names: Vec<&str> = Reason::ALL
            .into_iter()
            .map(Reason::name)
            .chain(PacketReason::ALL.into_iter().map(PacketReason::name))
            .chain(switchyard_bpf::decap::DecapReason::ALL.into_iter().map(|r| r.name()))
            .collect();
        let distinct: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }

    #[test]
    fn drop_reasons_are_the_refusals_drops_and_errors() {
        let drops: Vec<&str> =
            Reason::ALL.into_iter().filter(|r| is_drop(*r)).map(Reason::name).collect();
        assert!(drops.contains(&"reject_no_backend"));
        assert!(drops.contains(&"drop_no_backend"));
        assert!(drops.contains(&"err_maglev_missing"));
        assert!(!drops.contains(&"translated_maglev"));
        assert!(!drops.contains(&"sock_released"));
    }

    #[test]
    fn flag_names_follow_the_bits() {
        assert_eq!(
            frontend_flag_names(abi::FE_MAGLEV | abi::FE_NODEPORT),
            vec!["maglev", "nodeport"]
        );
        assert_eq!(backend_flag_names(abi::BE_LOCAL), vec!["local"]);
        assert!(frontend_flag_names(0).is_empty());
    }
}
