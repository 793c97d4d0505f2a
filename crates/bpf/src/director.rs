//! The director's XDP program (`c/director.bpf.c`): `#[repr(C)]` mirrors of its section of
//! `include/switchyard.h`, the loader (maps pinned in the director's own bpffs directory,
//! links pinned under `links/`), typed map handles, and the Rust mirror of the program's
//! lookup for `explain`.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, ArrayOfMaps, HashMap, IterableMap, Map, MapData, PerCpuArray},
    programs::{
        Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpMode as AyaXdpMode},
    },
};
use switchyard_maglev::Seed;
use tracing::{debug, info, warn};

use crate::{
    Error,
    abi::{Addr, Counter, FrontendKey},
    director_ids::{Slots, id_slots},
    loader::{LINKS_DIR, error_chain, generation},
    maps::typed,
};

/// `SY_GUE_PORT_DEFAULT`.
pub const GUE_PORT_DEFAULT: u16 = 6080;
/// `SY_ENCAP_GUE`.
pub const ENCAP_GUE: u8 = 0;
/// `SY_ENCAP_FOU`.
pub const ENCAP_FOU: u8 = 1;
/// `SY_ENCAP_IPIP`.
pub const ENCAP_IPIP: u8 = 2;
/// `SY_ENCAP_SPORT_BASE`.
pub const ENCAP_SPORT_BASE: u16 = 0xc000;
/// `SY_ENCAP_SPORT_MASK`.
pub const ENCAP_SPORT_MASK: u16 = 0x3fff;

/// The XDP program's function name.
pub const PROGRAM: &str = "sy_director";

/// Link pins of the director start with this (`xdp-<device>-<generation>`).
pub const LINK_PREFIX: &str = "xdp-";

/// Map names (pin file names in the director's bpffs directory).
pub mod names {
    /// `sy_dir_vip_slots`: home slot -> VIP (an array; see [`crate::director_vips`]).
    pub const VIP_SLOTS: &str = "sy_dir_vip_slots";
    /// `sy_dir_vips`: VIP key -> VIP, the VIPs whose home slot holds another.
    pub const VIPS: &str = "sy_dir_vips";
    /// `sy_dir_tables`: table id -> Maglev table (array of node ids); an array of maps.
    pub const TABLES: &str = "sy_dir_tables";
    /// `sy_dir_prev_tables`: table id -> per slot the previous table's node (0: same); an
    /// array of maps.
    pub const PREV_TABLES: &str = "sy_dir_prev_tables";
    /// `sy_dir_nodes`: node id -> node (an array: an unused id is all zero).
    pub const NODES: &str = "sy_dir_nodes";
    /// `sy_dir_config`: 0 -> settings.
    pub const CONFIG: &str = "sy_dir_config";
    /// `sy_dir_counters`: reason -> per-CPU counter.
    pub const COUNTERS: &str = "sy_dir_counters";
    /// `sy_dir_vip_counters`: VIP id -> per-CPU counter (an array).
    pub const VIP_COUNTERS: &str = "sy_dir_vip_counters";
    /// `sy_dir_node_counters`: node id -> per-CPU counter (an array).
    pub const NODE_COUNTERS: &str = "sy_dir_node_counters";
    /// `sy_dir_table_nodes`: (table, node) -> Node name and weight (user space only).
    pub const TABLE_NODES: &str = "sy_dir_table_nodes";
    /// `sy_dir_health`: probed target -> its health (user space only).
    pub const HEALTH: &str = "sy_dir_health";
    /// `sy_monitor`: the monitor's switch and sampling (the node's map, the director's pin).
    pub const MONITOR: &str = crate::maps::names::MONITOR;
    /// `sy_events`: the monitor's ring buffer (events with `PATH_DIR`).
    pub const EVENTS: &str = crate::maps::names::EVENTS;
    /// Every map.
    pub const ALL: [&str; 13] = [
        VIP_SLOTS,
        VIPS,
        TABLES,
        PREV_TABLES,
        NODES,
        CONFIG,
        COUNTERS,
        VIP_COUNTERS,
        NODE_COUNTERS,
        TABLE_NODES,
        HEALTH,
        MONITOR,
        EVENTS,
    ];
}

/// `struct sy_gue_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct GueHdr {
    /// version << 6 | C << 5 | hlen.
    pub vc_hlen: u8,
    /// Inner IP protocol (4 or 41).
    pub proto: u8,
    /// Flags, network order (zero).
    pub flags: u16,
}

/// `struct sy_gue_prev`: the second chance's GUE private data (then the previous node's
/// address: 4 bytes for IPv4, 16 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct GuePrev {
    /// [`GUE_PREV_KIND`].
    pub kind: u8,
    /// 0 from a director; 1 once a node re-sent the packet.
    pub hops: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Zero.
    pub reserved: u8,
}

/// `SY_GUE_PREV_KIND`.
pub const GUE_PREV_KIND: u8 = 0x53;
/// `SY_GUE_PREV_HLEN4`: GUE hlen (words) of the private data naming an IPv4 node.
pub const GUE_PREV_HLEN4: u8 = 2;
/// `SY_GUE_PREV_HLEN6`: the same for an IPv6 node.
pub const GUE_PREV_HLEN6: u8 = 5;

/// A VIP's entry as user space gives it ([`DirMaps::put_vip`]); the map holds it as
/// [`DirVipEntry`], with the flow hash's state after the VIP's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirVip {
    /// Nonzero; key of the per-VIP counters.
    pub id: u32,
    /// Table id; 0 when no node serves the VIP.
    pub table_id: u32,
}

/// `struct sy_flow_prefix`: the flow hash's state after a VIP's words under the key
/// `(k0, k1)`. The program uses it only while that key is `sy_dir_config`'s, else it hashes
/// from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FlowPrefixEntry {
    /// The key it was made under (seed bytes 0..8, little-endian).
    pub k0: u64,
    /// Seed bytes 8..16, little-endian.
    pub k1: u64,
    /// SipHash's `v0..v3` after the VIP's words.
    pub v: [u64; 4],
}

impl FlowPrefixEntry {
    /// The state for flows to the VIP `key` under `seed` (crates/maglev [`FlowPrefix`]).
    ///
    /// [`FlowPrefix`]: switchyard_maglev::FlowPrefix
    pub fn new(seed: &Seed, key: &FrontendKey) -> Self {
        let prefix = switchyard_maglev::FlowPrefix::new(
            seed,
            key.addr.to_ip(key.family),
            key.port(),
            key.proto,
        );
        let (k0, k1) = seed.words();
        FlowPrefixEntry { k0, k1, v: prefix.state.v }
    }

    /// Whether it was made under the key of `config`.
    pub fn made_under(&self, config: &DirConfig) -> bool {
        (self.k0, self.k1) == (config.hash_k0, config.hash_k1)
    }
}

/// `struct sy_dir_vip`: a VIP's map value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DirVipEntry {
    /// Nonzero; key of the per-VIP counters.
    pub id: u32,
    /// Table id; 0 when no node serves the VIP.
    pub table_id: u32,
    /// The flow hash's state after the VIP's words.
    pub hash: FlowPrefixEntry,
}

impl DirVipEntry {
    /// The entry of VIP `key` under `seed`.
    pub fn new(vip: DirVip, seed: &Seed, key: &FrontendKey) -> Self {
        DirVipEntry { id: vip.id, table_id: vip.table_id, hash: FlowPrefixEntry::new(seed, key) }
    }

    /// The id and table.
    pub fn vip(&self) -> DirVip {
        DirVip { id: self.id, table_id: self.table_id }
    }
}

/// `struct sy_dir_node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DirNode {
    /// The node's address.
    pub addr: Addr,
    /// `AF_INET` or `AF_INET6`: the outer header's family.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// Zero (reserved for node health).
    pub flags: u32,
}

impl DirNode {
    /// The entry for a node at `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let (addr, family) = Addr::from_ip(ip);
        DirNode { addr, family, pad: [0; 3], flags: 0 }
    }

    /// The node's address.
    pub fn ip(&self) -> IpAddr {
        self.addr.to_ip(self.family)
    }
}

/// `struct sy_dir_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DirConfig {
    /// Outer source towards IPv4 nodes (mapped); zero: none.
    pub source4: Addr,
    /// Outer source towards IPv6 nodes; zero: none.
    pub source6: Addr,
    /// SipHash key, seed bytes 0..8 little-endian.
    pub hash_k0: u64,
    /// SipHash key, seed bytes 8..16 little-endian.
    pub hash_k1: u64,
    /// M.
    pub table_size: u32,
    /// GUE / FOU destination port, network order.
    pub gue_port: u16,
    /// `ENCAP_*`.
    pub encap: u8,
    /// Zero.
    pub pad: u8,
    /// `sy_dir_vip_slots` has `2^(32 - shift)` entries.
    pub vip_slot_shift: u32,
    /// Zero.
    pub reserved: u32,
}

/// `struct sy_dir_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DirCounter {
    /// Packets sent encapsulated.
    pub packets: u64,
    /// Their inner IP bytes.
    pub bytes: u64,
}

/// `SY_DIR_PROBE_MARK`: the socket mark (SO_MARK) of the director's health probes; the TC
/// egress program `sy_dir_probe` encapsulates packets carrying it ("SYHP").
pub const PROBE_MARK: u32 = 0x5359_4850;

/// `SY_DIR_NODE_NAME_LEN`.
pub const NODE_NAME_LEN: usize = 60;

/// `struct sy_dir_table_node_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct TableNodeKey {
    /// Table id.
    pub table_id: u32,
    /// Node id.
    pub node_id: u32,
}

/// `struct sy_dir_table_node`: a node's name and weight in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct TableNode {
    /// Maglev weight of the node in the table.
    pub weight: u32,
    /// Node name, NUL-padded (cut at [`NODE_NAME_LEN`] bytes).
    pub name: [u8; NODE_NAME_LEN],
}

impl TableNode {
    /// The entry for node `name` with `weight` (a longer name is cut at a character boundary).
    pub fn new(name: &str, weight: u32) -> Self {
        let mut end = name.len().min(NODE_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; NODE_NAME_LEN];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        TableNode { weight, name: bytes }
    }

    /// The name as stored.
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NODE_NAME_LEN);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

// SAFETY: plain `#[repr(C)]` data without padding holes (checked by tests/layout_director.rs).
unsafe impl aya::Pod for TableNodeKey {}
// SAFETY: as above.
unsafe impl aya::Pod for TableNode {}
// SAFETY: plain `#[repr(C)]` data without padding holes (checked by tests/layout_director.rs).
unsafe impl aya::Pod for GueHdr {}
// SAFETY: as above.
unsafe impl aya::Pod for DirVipEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowPrefixEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for DirNode {}
// SAFETY: as above.
unsafe impl aya::Pod for DirConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for DirCounter {}

pub use crate::director_reason::DirReason;

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// In the driver (`xdpdrv`; veth supports it).
    #[default]
    Native,
    /// After the stack built an skb (`xdpgeneric`): any device, slower.
    Generic,
}

impl XdpMode {
    pub(crate) fn aya(self) -> AyaXdpMode {
        match self {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        }
    }
}

/// Settings written to `sy_dir_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSettings {
    /// Outer source towards IPv4 nodes.
    pub source4: Option<std::net::Ipv4Addr>,
    /// Outer source towards IPv6 nodes.
    pub source6: Option<std::net::Ipv6Addr>,
    /// The cluster seed (must match every director's).
    pub seed: Seed,
    /// M (must match every director's).
    pub table_size: u32,
    /// GUE / FOU destination port.
    pub gue_port: u16,
    /// `ENCAP_*`.
    pub encap: u8,
}

impl DirSettings {
    /// The map value.
    pub fn to_config(&self) -> DirConfig {
        let (hash_k0, hash_k1) = self.seed.words();
        DirConfig {
            source4: self.source4.map(|a| Addr::from_ip(a.into()).0).unwrap_or_default(),
            source6: self.source6.map(|a| Addr::from_ip(a.into()).0).unwrap_or_default(),
            hash_k0,
            hash_k1,
            table_size: self.table_size,
            gue_port: self.gue_port.to_be(),
            encap: self.encap,
            pad: 0,
            vip_slot_shift: 0,
            reserved: 0,
        }
    }
}

/// max_entries of the director's maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMapSizes {
    /// VIPs (address, port, protocol).
    pub vips: u32,
    /// Maglev tables (VIPs with the same nodes share one).
    pub tables: u32,
    /// Node entries (one per node and address family in use).
    pub nodes: u32,
}

impl Default for DirMapSizes {
    /// The header's `SY_DIR_DEFAULT_*`.
    fn default() -> Self {
        DirMapSizes { vips: 4096, tables: 4096, nodes: 8192 }
    }
}

/// One Maglev table of the director: slot -> node id.
pub type DirTable = Array<MapData, u32>;

/// `BPF_F_INNER_MAP`.
const BPF_F_INNER_MAP: u32 = 1 << 12;

/// Typed handles on the director's maps.
pub struct DirMaps {
    /// Home slot -> VIP ([`DirMaps::put_vip`], [`DirMaps::delete_vip`], [`DirMaps::vip`]).
    pub vip_slots: Array<MapData, crate::director_vips::VipSlot>,
    /// VIP key -> VIP: the overflow, VIPs whose home slot holds another (write through
    /// [`DirMaps::put_vip`]: a VIP only here is not found without its slot's flag).
    pub vips: HashMap<MapData, FrontendKey, DirVipEntry>,
    /// Table id -> table (an array of maps indexed by id; [`DirMaps::table_ids`] lists them).
    pub tables: ArrayOfMaps<MapData, DirTable>,
    /// Table id -> the previous node per slot (0: the same node), for the second chance.
    pub prev_tables: ArrayOfMaps<MapData, DirTable>,
    /// Clears slots of `tables` and `prev_tables` (aya's arrays of maps only set them).
    clear_tables: Slots,
    clear_prev_tables: Slots,
    /// Node id -> node (an array indexed by id; [`DirMaps::node`] reads it).
    pub nodes: Array<MapData, DirNode>,
    /// Settings.
    pub config: Array<MapData, DirConfig>,
    /// Reason -> per-CPU counter.
    pub counters: PerCpuArray<MapData, Counter>,
    /// VIP id -> per-CPU counter (an array indexed by id).
    pub vip_counters: PerCpuArray<MapData, DirCounter>,
    /// Node id -> per-CPU counter (an array indexed by id).
    pub node_counters: PerCpuArray<MapData, DirCounter>,
    /// (Table, node) -> Node name and weight.
    pub table_nodes: HashMap<MapData, TableNodeKey, TableNode>,
}

impl std::fmt::Debug for DirMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirMaps").finish_non_exhaustive()
    }
}

/// Where a flow to a VIP goes according to the maps (the program's lookup, in Rust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirLookup {
    /// The VIP entry.
    pub vip: DirVip,
    /// The flow hash (of the 5-tuple under the configured seed, `FlowKey::hash`).
    pub hash: u64,
    /// `hash mod M`; `None` when the VIP has no table.
    pub slot: Option<u32>,
    /// The node id in that slot and its entry.
    pub node: Option<(u32, DirNode)>,
}

impl DirMaps {
    fn from_map_source(
        mut take: impl FnMut(&'static str) -> Result<Map, Error>,
    ) -> Result<Self, Error> {
        let (tables, prev_tables) = (take(names::TABLES)?, take(names::PREV_TABLES)?);
        Ok(DirMaps {
            vip_slots: typed(names::VIP_SLOTS, take(names::VIP_SLOTS)?)?,
            vips: typed(names::VIPS, take(names::VIPS)?)?,
            clear_tables: Slots::of(names::TABLES, &tables)?,
            clear_prev_tables: Slots::of(names::PREV_TABLES, &prev_tables)?,
            tables: typed(names::TABLES, tables)?,
            prev_tables: typed(names::PREV_TABLES, prev_tables)?,
            nodes: typed(names::NODES, take(names::NODES)?)?,
            config: typed(names::CONFIG, take(names::CONFIG)?)?,
            counters: typed(names::COUNTERS, take(names::COUNTERS)?)?,
            vip_counters: typed(names::VIP_COUNTERS, take(names::VIP_COUNTERS)?)?,
            node_counters: typed(names::NODE_COUNTERS, take(names::NODE_COUNTERS)?)?,
            table_nodes: typed(names::TABLE_NODES, take(names::TABLE_NODES)?)?,
        })
    }

    /// Opens the maps a director pinned in `bpf_dir` (for `explain`, `status`, tests).
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        Self::from_map_source(|name| {
            let data = MapData::from_pin(bpf_dir.join(name))
                .map_err(|source| Error::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| Error::Map { name, source })
        })
    }

    /// The settings as stored.
    pub fn config(&self) -> Result<DirConfig, Error> {
        self.config.get(&0, 0).map_err(|source| Error::Map { name: names::CONFIG, source })
    }

    /// Writes the settings (and the slot array's shift, from its size), then makes every VIP's
    /// flow hash prefix follow the seed ([`DirMaps::refresh_flow_prefixes`]).
    pub fn set_config(&mut self, settings: &DirSettings) -> Result<(), Error> {
        let config = DirConfig { vip_slot_shift: self.vip_slot_shift(), ..settings.to_config() };
        self.config
            .set(0, config, 0)
            .map_err(|source| Error::Map { name: names::CONFIG, source })?;
        self.refresh_flow_prefixes().map(drop)
    }

    /// Creates table `id` (a new inner array filled completely) and inserts it: the program
    /// sees it only once a VIP points at it.
    pub fn put_table(&mut self, id: u32, slots: &[u32]) -> Result<(), Error> {
        let size = self.config()?.table_size;
        if slots.len() != size as usize || slots.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "director table {id}: {} slots (M is {size}), node ids must be nonzero",
                slots.len()
            )));
        }
        let map_err = |source| Error::Map { name: names::TABLES, source };
        let inner = DirTable::create(size, BPF_F_INNER_MAP).map_err(map_err)?;
        // One syscall per 16 Ki slots instead of one per slot (M = 65,537: ≈ 60 ms less).
        let indices: Vec<u32> = (0..size).collect();
        crate::batch::update(
            inner.map().fd().as_fd(),
            &indices,
            slots,
            crate::batch::DEFAULT_CHUNK,
        )
        .map_err(|source| Error::MapIo { name: names::TABLES, source })?;
        self.tables.set(id, &inner, 0).map_err(map_err)
    }

    /// Creates the previous nodes of table `id` (slot -> node id the VIP's previous table had
    /// there, 0 where the node is the same): written before the table itself, so the program
    /// finds them as soon as a VIP points at the table.
    pub fn put_prev_table(&mut self, id: u32, previous: &[u32]) -> Result<(), Error> {
        let size = self.config()?.table_size;
        if previous.len() != size as usize {
            return Err(Error::InvalidArgument(format!(
                "director table {id}: {} previous slots (M is {size})",
                previous.len()
            )));
        }
        let map_err = |source| Error::Map { name: names::PREV_TABLES, source };
        let inner = DirTable::create(size, BPF_F_INNER_MAP).map_err(map_err)?;
        // Only the slots that changed node (the array starts zeroed), in batches.
        let (indices, nodes): (Vec<u32>, Vec<u32>) =
            (0u32..).zip(previous.iter().copied()).filter(|(_, node)| *node != 0).unzip();
        crate::batch::update(
            inner.map().fd().as_fd(),
            &indices,
            &nodes,
            crate::batch::DEFAULT_CHUNK,
        )
        .map_err(|source| Error::MapIo { name: names::PREV_TABLES, source })?;
        self.prev_tables.set(id, &inner, 0).map_err(map_err)
    }

    /// The previous node id of `slot` in table `id` (0: the same node, or none recorded).
    pub fn prev_node(&self, id: u32, slot: u32) -> Result<u32, Error> {
        let map_err = |source| Error::Map { name: names::PREV_TABLES, source };
        match self.prev_tables.get(&id, 0) {
            Ok(table) => table.get(&slot, 0).map_err(map_err),
            Err(aya::maps::MapError::KeyNotFound | aya::maps::MapError::OutOfBounds { .. }) => {
                Ok(0)
            }
            Err(source) => Err(map_err(source)),
        }
    }

    /// Removes the previous nodes of table `id` (missing is fine: most tables have none).
    pub fn delete_prev_table(&mut self, id: u32) -> Result<(), Error> {
        self.clear_prev_tables.clear(id, self.prev_tables.len())
    }

    /// Removes table `id` (missing is fine), then its previous nodes and its nodes' names.
    pub fn delete_table(&mut self, id: u32) -> Result<(), Error> {
        self.clear_tables.clear(id, self.tables.len())?;
        self.delete_prev_table(id)?;
        let keys: Vec<TableNodeKey> =
            self.table_nodes.keys().filter_map(Result::ok).filter(|k| k.table_id == id).collect();
        for key in keys {
            let _ = self.table_nodes.remove(&key);
        }
        Ok(())
    }

    /// Records the name and weight of each node of table `id`: `(node id, name, weight)`.
    pub fn put_table_nodes<'a>(
        &mut self,
        id: u32,
        nodes: impl IntoIterator<Item = (u32, &'a str, u32)>,
    ) -> Result<(), Error> {
        for (node_id, name, weight) in nodes {
            self.table_nodes
                .insert(TableNodeKey { table_id: id, node_id }, TableNode::new(name, weight), 0)
                .map_err(|source| Error::Map { name: names::TABLE_NODES, source })?;
        }
        Ok(())
    }

    /// The name and weight of node `node_id` in table `table_id`, if recorded.
    pub fn table_node(&self, table_id: u32, node_id: u32) -> Option<TableNode> {
        self.table_nodes.get(&TableNodeKey { table_id, node_id }, 0).ok()
    }

    /// A name of node `node_id` (from any table that has it; id 0 is no node, its entries
    /// hold a table's build time).
    pub fn node_name(&self, node_id: u32) -> Option<String> {
        if node_id == 0 {
            return None;
        }
        self.table_nodes
            .iter()
            .filter_map(Result::ok)
            .find(|(k, _)| k.node_id == node_id)
            .map(|(_, v)| v.name())
    }

    /// Every reason counter summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<DirReason, Counter>, Error> {
        crate::maps::sum_reason_counters(
            &self.counters,
            names::COUNTERS,
            DirReason::ALL.iter().map(|&reason| (reason, reason as u32)),
        )
    }
}

/// The loaded director program and its maps.
#[derive(Debug)]
pub struct DirectorDatapath {
    ebpf: Ebpf,
    maps: DirMaps,
    bpf_dir: PathBuf,
    /// The pinned maps were of an older layout and were recreated empty (the program an
    /// earlier run attached keeps forwarding with its own maps until it is replaced).
    recreated: bool,
}

impl DirectorDatapath {
    /// Loads `c/director.bpf.c` with its maps pinned in `bpf_dir` (a bpffs directory of the
    /// director's own; mounted if `mount` and it is not one yet), and writes the settings.
    /// Tables of another size already pinned there are refused.
    pub fn load(
        bpf_dir: &Path,
        mount: bool,
        sizes: DirMapSizes,
        settings: &DirSettings,
    ) -> Result<Self, Error> {
        if settings.table_size == 0 {
            return Err(Error::InvalidArgument("director table size must be at least 1".into()));
        }
        crate::loader::prepare_bpf_dir(bpf_dir, mount)?;
        let recreated = crate::director_ids::recreate_incompatible_pins(bpf_dir, sizes)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(bpf_dir)
            .map_max_entries(names::VIP_SLOTS, crate::director_vips::vip_slots(sizes.vips))
            .map_max_entries(names::VIPS, sizes.vips)
            .map_max_entries(names::TABLES, id_slots(sizes.tables))
            .map_max_entries(names::PREV_TABLES, id_slots(sizes.tables))
            .map_max_entries(names::NODES, id_slots(sizes.nodes))
            .map_max_entries(names::VIP_COUNTERS, id_slots(sizes.vips))
            .map_max_entries(names::NODE_COUNTERS, id_slots(sizes.nodes))
            .map_max_entries(names::TABLE_NODES, sizes.nodes.saturating_mul(8))
            .load(crate::director_object())?;
        let mut maps =
            DirMaps::from_map_source(|name| ebpf.take_map(name).ok_or(Error::MissingMap { name }))?;
        let previous = maps.config()?;
        if previous.table_size != 0
            && previous.table_size != settings.table_size
            && !maps.table_ids()?.is_empty()
        {
            return Err(Error::IncompatiblePin {
                name: names::TABLES,
                detail: format!(
                    "holds tables of size {}, configured size is {}",
                    previous.table_size, settings.table_size
                ),
            });
        }
        maps.set_config(settings)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        crate::loader::load_retrying(PROGRAM, || program.load())?;
        info!(bpf_dir = %bpf_dir.display(), "director program loaded");
        Ok(DirectorDatapath { ebpf, maps, bpf_dir: bpf_dir.to_owned(), recreated })
    }

    /// Whether [`DirectorDatapath::load`] found pins of an older layout and recreated the map
    /// set (see [`crate::director_ids::recreate_incompatible_pins`]).
    pub fn recreated_pins(&self) -> bool {
        self.recreated
    }

    /// The maps.
    pub fn maps(&self) -> &DirMaps {
        &self.maps
    }

    /// The loaded object (the probe program lives in it: `director_probe`).
    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The maps, for the runtime.
    pub fn maps_mut(&mut self) -> &mut DirMaps {
        &mut self.maps
    }

    /// The loaded program (e.g. for `TestRun`).
    pub fn program(&self) -> Result<&Xdp, Error> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })
    }

    /// Attaches the program to `device` and pins the link. A link an earlier run pinned for
    /// the device is taken over: the program behind it is replaced in one step
    /// (`BPF_LINK_UPDATE`), so no packet meets a device without a director (an XDP device holds
    /// one link; a second attach would fail). Then this device's older pins are removed.
    /// Switches on forwarding on `device` (IPv4 and IPv6): the program's route lookup
    /// (bpf_fib_lookup) refuses to work on a device that does not forward.
    pub fn attach(&mut self, device: &str, mode: XdpMode) -> Result<(), Error> {
        crate::nodeport::check_device(device)?;
        enable_forwarding(device)?;
        let links_dir = self.bpf_dir.join(LINKS_DIR);
        let took_over =
            attach_pinned(&mut self.ebpf, PROGRAM, device, mode, &links_dir, LINK_PREFIX)?;
        info!(device, ?mode, took_over, "director attached");
        Ok(())
    }
}

/// Attaches `program` (named `name`) to `device` in `mode` and pins the link as
/// `<links_dir>/<prefix><device>-<generation>`. A link pinned there for the device earlier is
/// taken over: the program behind it is replaced in one step (`BPF_LINK_UPDATE`), so no packet
/// meets the device without a program (an XDP device holds one link; a second attach would
/// fail). Then the device's older pins are removed. Returns whether a link was taken over.
pub(crate) fn attach_pinned(
    ebpf: &mut Ebpf,
    name: &'static str,
    device: &str,
    mode: XdpMode,
    links_dir: &Path,
    prefix: &str,
) -> Result<bool, Error> {
    std::fs::create_dir_all(links_dir).map_err(|source| Error::BpfDir {
        path: links_dir.to_owned(),
        reason: "creating the links directory",
        source,
    })?;
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram { name })?
        .try_into()
        .map_err(|source| Error::Program { name, source })?;
    let generation = generation();
    let prefix = format!("{prefix}{device}-");
    let replaced = match pinned_link(links_dir, &prefix)? {
        Some(path) => match replace_program(program, name, &path) {
            Ok(link_id) => Some(link_id),
            Err(err) => {
                // E.g. the device was recreated: the old link is defunct. Attach anew.
                warn!(device, link = %path.display(), err = %err, "taking over the pinned link failed");
                crate::loader::unpin_link(&path)?;
                None
            }
        },
        None => None,
    };
    let took_over = replaced.is_some();
    let link_id = match replaced {
        Some(link_id) => link_id,
        None => {
            program.attach(device, mode.aya()).map_err(|source| Error::Program { name, source })?
        }
    };
    let link = program.take_link(link_id).map_err(|source| Error::Program { name, source })?;
    let path = links_dir.join(format!("{prefix}{generation}"));
    let fd_link = FdLink::try_from(link)
        .map_err(|e| Error::LinkPin { path: path.clone(), detail: error_chain(&e) })?;
    fd_link
        .pin(&path)
        .map_err(|e| Error::LinkPin { path: path.clone(), detail: error_chain(&e) })?;
    debug!(program = name, device, link = %path.display(), "XDP link pinned");
    crate::loader::unpin_older_links(links_dir, &prefix, &generation)?;
    Ok(took_over)
}

/// The newest link pin named `<prefix><generation>` in `links_dir`, if any.
fn pinned_link(links_dir: &Path, prefix: &str) -> Result<Option<PathBuf>, Error> {
    let listing =
        |source| Error::BpfDir { path: links_dir.to_owned(), reason: "listing links", source };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(links_dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(prefix)
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            found.push(entry.path());
        }
    }
    Ok(found.into_iter().max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()))
}

/// Puts `program` (named `name`) behind the XDP link pinned at `path` (atomic replacement).
fn replace_program(
    program: &mut Xdp,
    name: &'static str,
    path: &Path,
) -> Result<aya::programs::xdp::XdpLinkId, Error> {
    let pin_err = |detail: String| Error::LinkPin { path: path.to_owned(), detail };
    let pinned = PinnedLink::from_pin(path).map_err(|e| pin_err(error_chain(&e)))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_err(error_chain(&e)))?;
    program.attach_to_link(link).map_err(|source| Error::Program { name, source })
}

/// Sets `net.ipv{4,6}.conf.<device>.forwarding` to 1 in the caller's network namespace.
pub fn enable_forwarding(device: &str) -> Result<(), Error> {
    for family in ["ipv4", "ipv6"] {
        let path = PathBuf::from(format!("/proc/sys/net/{family}/conf/{device}/forwarding"));
        std::fs::write(&path, "1").map_err(|source| Error::BpfDir {
            path,
            reason: "enabling forwarding for the director's route lookups",
            source,
        })?;
    }
    Ok(())
}

/// Removes the director's links (detaching it) and map pins from `bpf_dir`.
pub fn cleanup(bpf_dir: &Path) -> Result<(), Error> {
    crate::loader::detach(bpf_dir)?;
    crate::director_ids::remove_map_pins(bpf_dir)
}
