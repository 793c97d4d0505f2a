//! The director's id-indexed maps (issue 16: the per-packet cost). VIP, table and node ids are
//! small (`switchyard_director::Tables` reuses freed ids, smallest first), so the program finds
//! a table (and its previous nodes), a node entry and the per-VIP and per-node counters in
//! arrays indexed by id: the verifier inlines an array lookup (of maps, too), where a hash
//! lookup is a call that hashes the key.
//!
//! Pins of an older layout (the hash maps of earlier builds) cannot be adopted: the loader
//! would hand this build's program a map of another type. [`recreate_incompatible_pins`]
//! removes the whole pinned map set before loading, so the director starts from fresh maps
//! (a first start, as far as ids go); the program an earlier run attached keeps forwarding with
//! the maps it holds until [`crate::director::DirectorDatapath::attach`] replaces it.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    path::Path,
};

use aya::maps::{Map, MapData, MapInfo, MapType, PerCpuArray, PerCpuValues};
use tracing::warn;

use crate::{
    Error,
    abi::{Counter, FrontendKey},
    director::{
        DirConfig, DirCounter, DirMapSizes, DirMaps, DirNode, DirVipEntry, TableNode, TableNodeKey,
        names,
    },
};

/// Entries of an array indexed by ids `1..=capacity` (index 0 is never used).
pub fn id_slots(capacity: u32) -> u32 {
    capacity.saturating_add(1)
}

/// `SY_DIR_REASON_MAX`: entries of `sy_dir_counters`.
const REASON_SLOTS: u32 = 32;

/// Every pinned map whose layout this build fixes: (name, type, key size, value size,
/// max_entries).
fn expected(sizes: DirMapSizes) -> [(&'static str, MapType, usize, usize, u32); 10] {
    let id = size_of::<u32>();
    [
        (
            names::VIP_SLOTS,
            MapType::Array,
            id,
            size_of::<crate::director_vips::VipSlot>(),
            crate::director_vips::vip_slots(sizes.vips),
        ),
        (
            names::VIPS,
            MapType::Hash,
            size_of::<FrontendKey>(),
            size_of::<DirVipEntry>(),
            sizes.vips,
        ),
        (names::TABLES, MapType::ArrayOfMaps, id, id, id_slots(sizes.tables)),
        (names::PREV_TABLES, MapType::ArrayOfMaps, id, id, id_slots(sizes.tables)),
        (names::NODES, MapType::Array, id, size_of::<DirNode>(), id_slots(sizes.nodes)),
        (names::CONFIG, MapType::Array, id, size_of::<DirConfig>(), 1),
        (names::COUNTERS, MapType::PerCpuArray, id, size_of::<Counter>(), REASON_SLOTS),
        (
            names::VIP_COUNTERS,
            MapType::PerCpuArray,
            id,
            size_of::<DirCounter>(),
            id_slots(sizes.vips),
        ),
        (
            names::NODE_COUNTERS,
            MapType::PerCpuArray,
            id,
            size_of::<DirCounter>(),
            id_slots(sizes.nodes),
        ),
        (
            names::TABLE_NODES,
            MapType::Hash,
            size_of::<TableNodeKey>(),
            size_of::<TableNode>(),
            sizes.nodes.saturating_mul(8),
        ),
    ]
}

/// What is wrong with the pinned maps in `bpf_dir`, if anything: the first map pinned with
/// another type, key or value size or capacity than this build wants.
pub fn incompatible_pin(bpf_dir: &Path, sizes: DirMapSizes) -> Result<Option<String>, Error> {
    for (name, map_type, key, value, max_entries) in expected(sizes) {
        let path = bpf_dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| Error::Map { name, source })?;
        let found = (
            info.map_type().ok(),
            info.key_size() as usize,
            info.value_size() as usize,
            info.max_entries(),
        );
        if found != (Some(map_type), key, value, max_entries) {
            return Ok(Some(format!(
                "{name}: pinned (type, key, value, max_entries) = {found:?}, this build wants \
                 {:?}",
                (map_type, key, value, max_entries)
            )));
        }
    }
    Ok(None)
}

/// Removes every map pin of the director from `bpf_dir` when one of them has an older layout
/// ([`incompatible_pin`]); links stay (the attached program keeps its own maps, and a new
/// program replaces it behind the pinned link). Returns whether the set was recreated.
/// Counters restart from zero and ids are given anew: the state is rebuilt from the objects
/// before the new program is attached.
pub fn recreate_incompatible_pins(bpf_dir: &Path, sizes: DirMapSizes) -> Result<bool, Error> {
    let Some(why) = incompatible_pin(bpf_dir, sizes)? else { return Ok(false) };
    warn!(bpf_dir = %bpf_dir.display(), %why, "pinned director maps of another layout: recreating them");
    remove_map_pins(bpf_dir)?;
    Ok(true)
}

/// Removes every map pin of the director from `bpf_dir` (absent ones are fine).
pub(crate) fn remove_map_pins(bpf_dir: &Path) -> Result<(), Error> {
    crate::loader::remove_map_pins(bpf_dir, &names::ALL)
}

/// Clears slots of an array of maps: aya's `ArrayOfMaps` sets slots but cannot clear one.
pub(crate) struct Slots {
    name: &'static str,
    fd: OwnedFd,
}

/// `BPF_MAP_DELETE_ELEM`.
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

impl Slots {
    /// A second descriptor of the array of maps `map`.
    pub(crate) fn of(name: &'static str, map: &Map) -> Result<Self, Error> {
        let Map::ArrayOfMaps(data) = map else {
            return Err(Error::InvalidArgument(format!("map {name} is not an array of maps")));
        };
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(|source| Error::BpfDir {
            path: name.into(),
            reason: "duplicating a map descriptor",
            source,
        })?;
        Ok(Slots { name, fd })
    }

    /// Empties slot `index` (of `len`); an empty slot or one beyond the array is fine.
    pub(crate) fn clear(&self, index: u32, len: u32) -> Result<(), Error> {
        if index >= len {
            return Ok(());
        }
        /// The `map_elem` member of `union bpf_attr`.
        #[repr(C)]
        struct Attr {
            map_fd: u32,
            pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let attr = Attr {
            map_fd: self.fd.as_raw_fd() as u32,
            pad: 0,
            key: &raw const index as u64,
            value: 0,
            flags: 0,
        };
        // SAFETY: BPF_MAP_DELETE_ELEM reads `attr` and the 4-byte key it points at, both alive
        // for the call; the descriptor is owned by self.
        let rc = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_MAP_DELETE_ELEM, &raw const attr, size_of::<Attr>())
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(());
        }
        Err(Error::BpfDir { path: self.name.into(), reason: "clearing a table slot", source: err })
    }
}

/// One id's per-CPU counter summed over CPUs (zero beyond the array).
fn sum(
    map: &PerCpuArray<MapData, DirCounter>,
    name: &'static str,
    id: u32,
) -> Result<DirCounter, Error> {
    if id >= map.len() {
        return Ok(DirCounter::default());
    }
    let per_cpu = map.get(&id, 0).map_err(|source| Error::Map { name, source })?;
    Ok(per_cpu.iter().fold(DirCounter::default(), |acc, c| DirCounter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

/// Zeroes one id's counter on every CPU.
fn zero(
    map: &mut PerCpuArray<MapData, DirCounter>,
    name: &'static str,
    id: u32,
) -> Result<(), Error> {
    let cpus =
        aya::util::nr_cpus().map_err(|(what, e)| Error::InvalidArgument(format!("{what}: {e}")))?;
    let values = PerCpuValues::try_from(vec![DirCounter::default(); cpus])
        .map_err(|e| Error::InvalidArgument(format!("per-CPU zeros: {e}")))?;
    map.set(id, values, 0).map_err(|source| Error::Map { name, source })
}

impl DirMaps {
    /// The ids of every table present (slots of the array of maps that hold one).
    pub fn table_ids(&self) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        for id in 1..self.tables.len() {
            match self.tables.get(&id, 0) {
                Ok(_) => out.push(id),
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(Error::Map { name: names::TABLES, source }),
            }
        }
        Ok(out)
    }

    /// Every slot of table `id` (`None`: no such table), as a restarted director reads back
    /// what it pinned.
    pub fn table_slots(&self, id: u32) -> Result<Option<Vec<u32>>, Error> {
        read_inner(&self.tables, names::TABLES, id)
    }

    /// Every slot's previous node of table `id` (`None`: it names none).
    pub fn prev_slots(&self, id: u32) -> Result<Option<Vec<u32>>, Error> {
        read_inner(&self.prev_tables, names::PREV_TABLES, id)
    }

    /// The ids of every previous-node table present.
    pub fn prev_table_ids(&self) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        for id in 1..self.prev_tables.len() {
            match self.prev_tables.get(&id, 0) {
                Ok(_) => out.push(id),
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(Error::Map { name: names::PREV_TABLES, source }),
            }
        }
        Ok(out)
    }

    /// Node `id`'s entry; `None` for an unused id (all zero) or one beyond the array.
    pub fn node(&self, id: u32) -> Result<Option<DirNode>, Error> {
        if id == 0 || id >= self.nodes.len() {
            return Ok(None);
        }
        let node =
            self.nodes.get(&id, 0).map_err(|source| Error::Map { name: names::NODES, source })?;
        Ok((node.family != 0).then_some(node))
    }

    /// Every node entry in use, by id.
    pub fn node_entries(&self) -> Result<BTreeMap<u32, DirNode>, Error> {
        let mut out = BTreeMap::new();
        for id in 1..self.nodes.len() {
            if let Some(node) = self.node(id)? {
                out.insert(id, node);
            }
        }
        Ok(out)
    }

    /// Writes node `id` (nonzero, within the array).
    pub fn put_node(&mut self, id: u32, node: DirNode) -> Result<(), Error> {
        if id == 0 {
            return Err(Error::InvalidArgument("director node id 0".into()));
        }
        self.nodes.set(id, node, 0).map_err(|source| Error::Map { name: names::NODES, source })
    }

    /// Clears node `id` (all zero: the program counts `drop_node_missing` for it).
    pub fn delete_node(&mut self, id: u32) -> Result<(), Error> {
        if id == 0 || id >= self.nodes.len() {
            return Ok(());
        }
        self.put_node(id, DirNode::default())
    }

    /// VIP `id`'s counter summed over CPUs.
    pub fn vip_counter(&self, id: u32) -> Result<DirCounter, Error> {
        sum(&self.vip_counters, names::VIP_COUNTERS, id)
    }

    /// Node `id`'s counter summed over CPUs.
    pub fn node_counter(&self, id: u32) -> Result<DirCounter, Error> {
        sum(&self.node_counters, names::NODE_COUNTERS, id)
    }

    /// Zeroes VIP `id`'s counters (before the id is given to a new VIP).
    pub fn zero_vip_counters(&mut self, id: u32) -> Result<(), Error> {
        zero(&mut self.vip_counters, names::VIP_COUNTERS, id)
    }

    /// Zeroes node `id`'s counters (before the id is given to a new node).
    pub fn zero_node_counters(&mut self, id: u32) -> Result<(), Error> {
        zero(&mut self.node_counters, names::NODE_COUNTERS, id)
    }
}

/// Every entry of the inner array `id` of `outer` (`None`: absent).
fn read_inner(
    outer: &aya::maps::ArrayOfMaps<MapData, crate::director::DirTable>,
    name: &'static str,
    id: u32,
) -> Result<Option<Vec<u32>>, Error> {
    let map_err = |source| Error::Map { name, source };
    let inner = match outer.get(&id, 0) {
        Ok(inner) => inner,
        Err(aya::maps::MapError::KeyNotFound | aya::maps::MapError::OutOfBounds { .. }) => {
            return Ok(None);
        }
        Err(source) => return Err(map_err(source)),
    };
    (0..inner.len())
        .map(|slot| inner.get(&slot, 0).map_err(map_err))
        .collect::<Result<_, _>>()
        .map(Some)
}
