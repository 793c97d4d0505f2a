//! Typed handles on the maps declared in `include/switchyard.h`.
//!
//! The reconciler (crates/dataplane) writes frontends, slots, backends, Maglev tables and node
//! addresses through these handles; the programs write the reverse-translation, affinity and
//! sticky maps and the counters. See docs/datapath.md for the protocol (make-before-break).

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use aya::maps::{Array, HashMap, HashOfMaps, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap};

use crate::{
    Error,
    abi::{
        Affinity, AffinityKey, Backend, Config, Counter, Frontend, FrontendCounter, FrontendKey,
        NodeAddrKey, Reason, SlotKey, SockRevnat, SockRevnatKey, SockStickyKey,
    },
    nodeport_abi::SrcRangeData,
};

/// Map names, as in the header (also their pin file names in the bpffs directory).
pub mod names {
    /// `sy_frontends`: frontend key -> frontend.
    pub const FRONTENDS: &str = "sy_frontends";
    /// `sy_slots`: (frontend id, slot) -> backend id.
    pub const SLOTS: &str = "sy_slots";
    /// `sy_backends`: backend id -> backend.
    pub const BACKENDS: &str = "sy_backends";
    /// `sy_maglev`: frontend id -> Maglev table (array of backend ids).
    pub const MAGLEV: &str = "sy_maglev";
    /// `sy_sock_revnat`: (socket cookie, backend) -> frontend.
    pub const SOCK_REVNAT: &str = "sy_sock_revnat";
    /// `sy_affinity`: (client, frontend id) -> remembered backend.
    pub const AFFINITY: &str = "sy_affinity";
    /// `sy_sock_sticky`: (socket cookie, frontend id) -> remembered backend.
    pub const SOCK_STICKY: &str = "sy_sock_sticky";
    /// `sy_node_addrs`: node address -> flags.
    pub const NODE_ADDRS: &str = "sy_node_addrs";
    /// `sy_counters`: reason -> per-CPU counter.
    pub const COUNTERS: &str = "sy_counters";
    /// `sy_config`: 0 -> load-time settings.
    pub const CONFIG: &str = "sy_config";
    /// `sy_fe_counters`: frontend id -> per-CPU traffic counters.
    pub const FE_COUNTERS: &str = "sy_fe_counters";
    /// `sy_monitor`: 0 -> monitor settings (off unless `switchyard monitor` runs).
    pub const MONITOR: &str = "sy_monitor";
    /// `sy_events`: ring buffer of decisions and drops for the monitor.
    pub const EVENTS: &str = "sy_events";
    /// `sy_src_ranges`: (frontend id, source prefix) LPM trie of loadBalancerSourceRanges,
    /// checked by both paths.
    pub const SRC_RANGES: &str = "sy_src_ranges";

    /// Every map, in the order the loader checks them.
    pub const ALL: [&str; 14] = [
        FRONTENDS,
        SLOTS,
        BACKENDS,
        MAGLEV,
        SOCK_REVNAT,
        AFFINITY,
        SOCK_STICKY,
        NODE_ADDRS,
        COUNTERS,
        CONFIG,
        FE_COUNTERS,
        MONITOR,
        EVENTS,
        SRC_RANGES,
    ];
}

/// One Maglev table: index -> backend id, M entries.
pub type MaglevTable = Array<MapData, u32>;

/// `BPF_F_INNER_MAP`: inner arrays of any size fit the `sy_maglev` template.
const BPF_F_INNER_MAP: u32 = 1 << 12;

/// Typed handles on every shared map.
pub struct Maps {
    /// Frontend key -> frontend.
    pub frontends: HashMap<MapData, FrontendKey, Frontend>,
    /// (frontend id, slot) -> backend id.
    pub slots: HashMap<MapData, SlotKey, u32>,
    /// Backend id -> backend.
    pub backends: HashMap<MapData, u32, Backend>,
    /// Frontend id -> Maglev table; use [`Maps::set_maglev_table`] to write.
    pub maglev: HashOfMaps<MapData, u32, MaglevTable>,
    /// (socket cookie, backend) -> frontend; written by the programs (LRU).
    pub sock_revnat: HashMap<MapData, SockRevnatKey, SockRevnat>,
    /// (client, frontend id) -> remembered backend; written by the programs (LRU).
    pub affinity: HashMap<MapData, AffinityKey, Affinity>,
    /// (socket cookie, frontend id) -> remembered backend; written by the programs (LRU).
    pub sock_sticky: HashMap<MapData, SockStickyKey, Affinity>,
    /// Node address -> flags (zero): where NodePort wildcards match.
    pub node_addrs: HashMap<MapData, NodeAddrKey, u32>,
    /// Reason -> per-CPU counter.
    pub counters: PerCpuArray<MapData, Counter>,
    /// The single load-time settings entry.
    pub config: Array<MapData, Config>,
    /// Frontend id -> per-CPU traffic counters; written by the programs.
    pub fe_counters: PerCpuHashMap<MapData, u32, FrontendCounter>,
    /// loadBalancerSourceRanges (written by the agent, read by both paths).
    pub src_ranges: LpmTrie<MapData, SrcRangeData, u32>,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").finish_non_exhaustive()
    }
}

/// One map of a loaded object as its typed aya handle; the error names the map.
pub(crate) fn typed<T>(name: &'static str, map: Map) -> Result<T, Error>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|source| Error::Map { name, source })
}

/// A per-CPU array of reason counters summed over CPUs, one entry per reason (zeros included):
/// every program (socket, per-packet, director, decapsulation) counts its reasons this way.
pub(crate) fn sum_reason_counters<R: Copy + Ord>(
    map: &PerCpuArray<MapData, Counter>,
    name: &'static str,
    reasons: impl IntoIterator<Item = (R, u32)>,
) -> Result<BTreeMap<R, Counter>, Error> {
    let mut out = BTreeMap::new();
    for (reason, index) in reasons {
        let per_cpu = map.get(&index, 0).map_err(|source| Error::Map { name, source })?;
        let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        });
        out.insert(reason, sum);
    }
    Ok(out)
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub(crate) fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, Error> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap { name });
        Ok(Maps {
            frontends: typed(names::FRONTENDS, take(names::FRONTENDS)?)?,
            slots: typed(names::SLOTS, take(names::SLOTS)?)?,
            backends: typed(names::BACKENDS, take(names::BACKENDS)?)?,
            maglev: typed(names::MAGLEV, take(names::MAGLEV)?)?,
            sock_revnat: typed(names::SOCK_REVNAT, take(names::SOCK_REVNAT)?)?,
            affinity: typed(names::AFFINITY, take(names::AFFINITY)?)?,
            sock_sticky: typed(names::SOCK_STICKY, take(names::SOCK_STICKY)?)?,
            node_addrs: typed(names::NODE_ADDRS, take(names::NODE_ADDRS)?)?,
            counters: typed(names::COUNTERS, take(names::COUNTERS)?)?,
            config: typed(names::CONFIG, take(names::CONFIG)?)?,
            fe_counters: typed(names::FE_COUNTERS, take(names::FE_COUNTERS)?)?,
            src_ranges: typed(names::SRC_RANGES, take(names::SRC_RANGES)?)?,
        })
    }

    /// Opens the maps pinned in `bpf_dir` by a running (or earlier) agent, without loading
    /// programs: for inspection (`explain`, counters) and for tests. Key and value sizes are
    /// checked against the kernel's view of each map.
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        let open = |name: &'static str| -> Result<Map, Error> {
            let data = MapData::from_pin(bpf_dir.join(name))
                .map_err(|source| Error::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| Error::Map { name, source })
        };
        Ok(Maps {
            frontends: typed(names::FRONTENDS, open(names::FRONTENDS)?)?,
            slots: typed(names::SLOTS, open(names::SLOTS)?)?,
            backends: typed(names::BACKENDS, open(names::BACKENDS)?)?,
            maglev: typed(names::MAGLEV, open(names::MAGLEV)?)?,
            sock_revnat: typed(names::SOCK_REVNAT, open(names::SOCK_REVNAT)?)?,
            affinity: typed(names::AFFINITY, open(names::AFFINITY)?)?,
            sock_sticky: typed(names::SOCK_STICKY, open(names::SOCK_STICKY)?)?,
            node_addrs: typed(names::NODE_ADDRS, open(names::NODE_ADDRS)?)?,
            counters: typed(names::COUNTERS, open(names::COUNTERS)?)?,
            config: typed(names::CONFIG, open(names::CONFIG)?)?,
            fe_counters: typed(names::FE_COUNTERS, open(names::FE_COUNTERS)?)?,
            src_ranges: typed(names::SRC_RANGES, open(names::SRC_RANGES)?)?,
        })
    }

    /// The load-time settings.
    pub fn config(&self) -> Result<Config, Error> {
        self.config.get(&0, 0).map_err(|source| Error::Map { name: names::CONFIG, source })
    }

    /// Maglev table size M every table must have.
    pub fn maglev_table_size(&self) -> Result<u32, Error> {
        Ok(self.config()?.maglev_table_size)
    }

    /// Builds a Maglev table in a new inner array and swaps it in for `frontend_id` with one
    /// map update, so programs see either the old table or the new one, never a mix.
    /// `table` must have exactly M entries (see [`Maps::maglev_table_size`]), all nonzero
    /// backend ids.
    pub fn set_maglev_table(&mut self, frontend_id: u32, table: &[u32]) -> Result<(), Error> {
        let size = self.maglev_table_size()?;
        if table.len() != size as usize {
            return Err(Error::InvalidArgument(format!(
                "Maglev table for frontend {frontend_id} has {} entries, the loaded size is {size}",
                table.len()
            )));
        }
        if let Some(pos) = table.iter().position(|&b| b == 0) {
            return Err(Error::InvalidArgument(format!(
                "Maglev table for frontend {frontend_id}: entry {pos} is backend id 0 (ids start at 1)"
            )));
        }
        let map_err = |source| Error::Map { name: names::MAGLEV, source };
        let mut inner = MaglevTable::create(size, BPF_F_INNER_MAP).map_err(map_err)?;
        for (index, backend) in (0u32..).zip(table) {
            inner.set(index, backend, 0).map_err(map_err)?;
        }
        self.maglev.insert(frontend_id, &inner, 0).map_err(map_err)
    }

    /// Removes the Maglev table of `frontend_id` (missing is fine).
    pub fn remove_maglev_table(&mut self, frontend_id: u32) -> Result<(), Error> {
        match self.maglev.remove(&frontend_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::Map { name: names::MAGLEV, source }),
        }
    }

    /// Reads the Maglev table of `frontend_id`, if any (for `explain` and tests).
    pub fn maglev_table(&self, frontend_id: u32) -> Result<Option<Vec<u32>>, Error> {
        let map_err = |source| Error::Map { name: names::MAGLEV, source };
        let inner: MaglevTable = match self.maglev.get(&frontend_id, 0) {
            Ok(inner) => inner,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(source) => return Err(map_err(source)),
        };
        let mut table = Vec::with_capacity(inner.len() as usize);
        for index in 0..inner.len() {
            table.push(inner.get(&index, 0).map_err(map_err)?);
        }
        Ok(Some(table))
    }

    /// The frontend the socket programs use for a destination, following the same steps as
    /// `lookup_frontend()` in `c/lib/lb.h`: the exact entry, else the NodePort wildcard when
    /// the address is loopback or in `sy_node_addrs`; then the internal-scope entry when the
    /// frontend is split. For `switchyard explain` and tests. `None`: not a frontend.
    pub fn resolve(
        &self,
        destination: SocketAddr,
        proto: u8,
    ) -> Result<Option<(FrontendKey, Frontend)>, Error> {
        self.resolve_on_path(destination, proto, true)
    }

    /// [`Maps::resolve`] for either path: `from_inside` is the socket path (loopback counts as
    /// a node address, the internal scope is preferred); otherwise the per-packet path (no
    /// loopback, default scope only). [`crate::mirror::lookup_frontend`], C `lookup_frontend()`
    /// in `c/lib/lb.h`.
    pub fn resolve_on_path(
        &self,
        destination: SocketAddr,
        proto: u8,
        from_inside: bool,
    ) -> Result<Option<(FrontendKey, Frontend)>, Error> {
        crate::mirror::lookup_frontend(self, destination, proto, from_inside)
    }

    /// Every counter summed over CPUs, by reason (reasons with a zero count included).
    pub fn counters(&self) -> Result<BTreeMap<Reason, Counter>, Error> {
        sum_reason_counters(
            &self.counters,
            names::COUNTERS,
            Reason::ALL.iter().map(|&reason| (reason, reason as u32)),
        )
    }

    /// Per-frontend traffic summed over CPUs, by frontend id (only frontends that saw traffic).
    pub fn frontend_counters(&self) -> Result<BTreeMap<u32, FrontendCounter>, Error> {
        let mut out = BTreeMap::new();
        for entry in self.fe_counters.iter() {
            let (id, per_cpu) =
                entry.map_err(|source| Error::Map { name: names::FE_COUNTERS, source })?;
            let sum = per_cpu.iter().fold(FrontendCounter::default(), |acc, c| acc.plus(*c));
            out.insert(id, sum);
        }
        Ok(out)
    }

    /// Forgets the counters of a removed frontend (missing is fine), so a reused id starts at
    /// zero.
    pub fn remove_frontend_counters(&mut self, frontend_id: u32) -> Result<(), Error> {
        match self.fe_counters.remove(&frontend_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::Map { name: names::FE_COUNTERS, source }),
        }
    }
}
