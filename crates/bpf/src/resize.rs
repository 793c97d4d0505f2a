//! Maps whose `max_entries` follow the state: adopted at any size that is large enough,
//! migrated to a larger map (every entry copied) when they are not.
//!
//! A migration keeps the old map pinned as `<name>_old` until its entries are in the new map
//! (bpffs refuses dots in names): the programs attached by an earlier load keep the old map
//! through their own references, the new programs get the new map, and a crash in between
//! finds the old pin again on the next start and migrates once more. The LRU maps, which the
//! programs write, are copied again once the new programs are attached
//! ([`Migrated::catch_up`]): entries the old programs wrote in between are not lost.

use std::{fs, io, os::fd::AsFd as _, path::Path};

use aya::{
    Pod,
    maps::{HashMap, HashOfMaps, IterableMap as _, Map, MapData, MapError, MapInfo, PerCpuHashMap},
};
use tracing::{info, warn};

use crate::{
    Error,
    abi::{
        Affinity, AffinityKey, Backend, Frontend, FrontendCounter, FrontendKey, SlotKey,
        SockRevnat, SockRevnatKey, SockStickyKey,
    },
    loader::MapSizes,
    maps::{MaglevTable, Maps, names},
};

/// Suffix of a map's pin while it is being migrated.
const OLD_SUFFIX: &str = "_old";

/// `BPF_NOEXIST`: insert only keys the map does not hold.
const BPF_NOEXIST: u64 = 1;

/// The socket object's maps whose size is chosen at load and may differ from a pin's.
pub(crate) const RESIZABLE: [&str; 8] = [
    names::FRONTENDS,
    names::SLOTS,
    names::BACKENDS,
    names::MAGLEV,
    names::FE_COUNTERS,
    names::SOCK_REVNAT,
    names::AFFINITY,
    names::SOCK_STICKY,
];

/// The size `sizes` asks for `name` (one of [`RESIZABLE`]).
pub(crate) fn wanted(sizes: &MapSizes, name: &str) -> u32 {
    match name {
        names::FRONTENDS | names::FE_COUNTERS => sizes.frontends,
        names::SLOTS => sizes.slots,
        names::BACKENDS => sizes.backends,
        names::MAGLEV => sizes.maglev_tables,
        names::SOCK_REVNAT => sizes.sock_revnat,
        names::AFFINITY => sizes.affinity,
        _ => sizes.sock_sticky,
    }
}

/// What a load does with each resizable map: its size, and the old maps being migrated.
pub(crate) struct Resizing {
    /// `(name, max_entries)` for every resizable map: the pin's size when adopted.
    pub(crate) sizes: Vec<(&'static str, u32)>,
    /// Old maps whose entries go to the new ones, by name.
    old: Vec<(&'static str, Map)>,
}

/// Decides, for every resizable map pinned in `bpf_dir`, whether it is adopted (its size is at
/// least what `sizes` asks) or migrated (moved aside to `<name>_old`, created anew at the
/// asked size by the load, filled by [`Resizing::copy`]). Key and value sizes were checked
/// by the caller.
pub(crate) fn prepare(bpf_dir: &Path, sizes: &MapSizes) -> Result<Resizing, Error> {
    let mut out = Resizing { sizes: Vec::new(), old: Vec::new() };
    for name in RESIZABLE {
        let want = wanted(sizes, name);
        let path = bpf_dir.join(name);
        let old_path = bpf_dir.join(format!("{name}{OLD_SUFFIX}"));
        if old_path.exists() {
            // An earlier migration did not finish: the old map is the complete one.
            warn!(map = name, "an unfinished migration: migrating from the old map again");
            remove_pin(&path)?;
        } else if path.exists() {
            let info = MapInfo::from_pin(&path).map_err(|source| Error::Map { name, source })?;
            if info.max_entries() >= want {
                out.sizes.push((name, info.max_entries()));
                continue;
            }
            fs::rename(&path, &old_path).map_err(|source| Error::BpfDir {
                path: path.clone(),
                reason: "moving a map aside to migrate it",
                source,
            })?;
        } else {
            out.sizes.push((name, want));
            continue;
        }
        let data = MapData::from_pin(&old_path).map_err(|source| Error::Map { name, source })?;
        let old = Map::from_map_data(data).map_err(|source| Error::Map { name, source })?;
        info!(map = name, max_entries = want, "migrating to a larger map");
        out.sizes.push((name, want));
        out.old.push((name, old));
    }
    Ok(out)
}

impl Resizing {
    /// The size chosen for `name`.
    pub(crate) fn size(&self, name: &str) -> u32 {
        self.sizes.iter().find(|(n, _)| *n == name).map_or(0, |(_, size)| *size)
    }

    /// The chosen sizes as [`MapSizes`] (the rest taken from `requested`).
    pub(crate) fn map_sizes(&self, requested: &MapSizes) -> MapSizes {
        MapSizes {
            frontends: self.size(names::FRONTENDS).min(self.size(names::FE_COUNTERS)),
            slots: self.size(names::SLOTS),
            backends: self.size(names::BACKENDS),
            maglev_tables: self.size(names::MAGLEV),
            sock_revnat: self.size(names::SOCK_REVNAT),
            affinity: self.size(names::AFFINITY),
            sock_sticky: self.size(names::SOCK_STICKY),
            ..*requested
        }
    }

    /// Puts the old pins back (the load failed: the old maps stay in use).
    pub(crate) fn abandon(self, bpf_dir: &Path) {
        for (name, _) in &self.old {
            let old_path = bpf_dir.join(format!("{name}{OLD_SUFFIX}"));
            let path = bpf_dir.join(name);
            let _ = fs::remove_file(&path);
            if let Err(err) = fs::rename(&old_path, &path) {
                warn!(map = name, %err, "could not put the old map back; the next start migrates it");
            }
        }
    }

    /// Copies every entry of the old maps into `maps` (ids and all, so the planner adopts
    /// them unchanged), then removes the old pins. The LRU maps are kept for
    /// [`Migrated::catch_up`].
    pub(crate) fn copy(self, maps: &mut Maps, bpf_dir: &Path) -> Result<Migrated, Error> {
        let mut lru = Vec::new();
        for (name, old) in self.old {
            let copied = copy_one(name, &old, maps, 0)?;
            info!(map = name, entries = copied, "migrated");
            remove_pin(&bpf_dir.join(format!("{name}{OLD_SUFFIX}")))?;
            if matches!(name, names::SOCK_REVNAT | names::AFFINITY | names::SOCK_STICKY) {
                lru.push((name, old));
            }
        }
        Ok(Migrated { lru })
    }
}

/// Old LRU maps of a migration, until the new programs are attached.
#[derive(Default)]
pub(crate) struct Migrated {
    lru: Vec<(&'static str, Map)>,
}

impl std::fmt::Debug for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.lru.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Migrated").field("lru", &names).finish()
    }
}

impl Migrated {
    /// Copies the entries the old programs wrote since [`Resizing::copy`] (keys the new map
    /// does not hold yet), then lets the old maps go.
    pub(crate) fn catch_up(&mut self, maps: &mut Maps) -> Result<(), Error> {
        for (name, old) in self.lru.drain(..) {
            let copied = copy_one(name, &old, maps, BPF_NOEXIST)?;
            info!(map = name, entries = copied, "entries written during the migration copied");
        }
        Ok(())
    }
}

fn remove_pin(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => {
            Err(Error::BpfDir { path: path.to_owned(), reason: "removing a map pin", source })
        }
    }
}

/// Copies `old`'s entries into the map `name` of `maps`; returns how many.
fn copy_one(name: &'static str, old: &Map, maps: &mut Maps, flags: u64) -> Result<usize, Error> {
    let map_err = |source| Error::Map { name, source };
    match name {
        names::FRONTENDS => {
            copy_hash::<FrontendKey, Frontend>(name, old, &mut maps.frontends, flags)
        }
        names::SLOTS => copy_hash::<SlotKey, u32>(name, old, &mut maps.slots, flags),
        names::BACKENDS => copy_hash::<u32, Backend>(name, old, &mut maps.backends, flags),
        names::SOCK_REVNAT => {
            copy_hash::<SockRevnatKey, SockRevnat>(name, old, &mut maps.sock_revnat, flags)
        }
        names::AFFINITY => copy_hash::<AffinityKey, Affinity>(name, old, &mut maps.affinity, flags),
        names::SOCK_STICKY => {
            copy_hash::<SockStickyKey, Affinity>(name, old, &mut maps.sock_sticky, flags)
        }
        names::FE_COUNTERS => {
            let old: PerCpuHashMap<&MapData, u32, FrontendCounter> =
                PerCpuHashMap::try_from(old).map_err(map_err)?;
            let mut copied = 0;
            for entry in old.iter() {
                let (key, values) = entry.map_err(map_err)?;
                insert_ignoring_existing(maps.fe_counters.insert(key, values, flags), name)?;
                copied += 1;
            }
            Ok(copied)
        }
        names::MAGLEV => {
            // The new outer map refers to the same inner tables.
            let old: HashOfMaps<&MapData, u32, MaglevTable> =
                HashOfMaps::try_from(old).map_err(map_err)?;
            let mut copied = 0;
            for key in old.keys() {
                let key = key.map_err(map_err)?;
                let inner = old.get(&key, 0).map_err(map_err)?;
                insert_ignoring_existing(maps.maglev.insert(key, &inner, flags), name)?;
                copied += 1;
            }
            Ok(copied)
        }
        _ => Err(Error::InvalidArgument(format!("{name} is not a resizable map"))),
    }
}

/// A hash map's entries into `new`: batched (`BPF_MAP_*_BATCH`, thousands per syscall) for the
/// full copy, one at a time for the `BPF_NOEXIST` catch-up.
fn copy_hash<K: Pod + Default, V: Pod + Default>(
    name: &'static str,
    old: &Map,
    new: &mut HashMap<MapData, K, V>,
    flags: u64,
) -> Result<usize, Error> {
    let map_err = |source| Error::Map { name, source };
    let old: HashMap<&MapData, K, V> = HashMap::try_from(old).map_err(map_err)?;
    if flags == 0 {
        let batch_err = |source| Error::MapIo { name, source };
        let entries: Vec<(K, V)> =
            crate::batch::lookup_all(old.map().fd().as_fd(), crate::batch::DEFAULT_CHUNK)
                .map_err(batch_err)?;
        let (keys, values): (Vec<K>, Vec<V>) = entries.into_iter().unzip();
        crate::batch::update(new.map().fd().as_fd(), &keys, &values, crate::batch::DEFAULT_CHUNK)
            .map_err(batch_err)?;
        return Ok(keys.len());
    }
    let mut copied = 0;
    for entry in old.iter() {
        let (key, value) = entry.map_err(map_err)?;
        insert_ignoring_existing(new.insert(key, value, flags), name)?;
        copied += 1;
    }
    Ok(copied)
}

/// With `BPF_NOEXIST` an existing key is not an error: the new programs wrote it already.
fn insert_ignoring_existing(result: Result<(), MapError>, name: &'static str) -> Result<(), Error> {
    match result {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(source) => Err(Error::Map { name, source }),
    }
}
