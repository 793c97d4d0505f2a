//! The executor for real BPF maps (`crates/bpf`), and the reader that adoption starts from.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;

use aya::maps::{IterableMap, MapError};
use switchyard_bpf::Maps;
use switchyard_bpf::abi;
use switchyard_bpf::maps::{MaglevTable, names};
use switchyard_model::{FrontendKey, Protocol};
use tracing::warn;

use crate::ops::{BackendId, FrontendId, FrontendValue, MapOps, Op, Snapshot};
use crate::translate::{FrontendAttrs, MapBackend, MapKey, Scope};
use switchyard_bpf::batch;

/// `BPF_F_INNER_MAP`: inner arrays of any size fit the `sy_maglev` template.
const BPF_F_INNER_MAP: u32 = 1 << 12;

pub type KernelOp = Op<MapKey, MapBackend, FrontendAttrs>;
pub type KernelSnapshot = Snapshot<MapKey, MapBackend, FrontendAttrs>;

/// A map operation the kernel refused.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A batched map syscall failed.
    #[error("map {map}")]
    Io {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    /// aya refused a map operation.
    #[error("map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    /// A Maglev table does not have the size the maps were created with.
    #[error("Maglev table of frontend {frontend} has {len} entries, the maps expect {expected}")]
    TableSize { frontend: u32, len: usize, expected: u32 },
}

fn proto(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => abi::PROTO_TCP,
        Protocol::Udp => abi::PROTO_UDP,
        Protocol::Sctp => abi::PROTO_SCTP,
    }
}

fn protocol(proto: u8) -> Option<Protocol> {
    match proto {
        abi::PROTO_TCP => Some(Protocol::Tcp),
        abi::PROTO_UDP => Some(Protocol::Udp),
        abi::PROTO_SCTP => Some(Protocol::Sctp),
        _ => None,
    }
}

pub fn frontend_key(key: &MapKey) -> abi::FrontendKey {
    let f = &key.frontend;
    abi::FrontendKey::new(f.ip, f.port, proto(f.protocol), key.scope.to_abi())
}

fn map_key(key: &abi::FrontendKey) -> Option<MapKey> {
    let scope = match key.scope {
        abi::SCOPE_DEFAULT => Scope::Default,
        abi::SCOPE_INTERNAL => Scope::Internal,
        _ => return None,
    };
    let frontend = FrontendKey::new(key.addr.to_ip(key.family), key.port(), protocol(key.proto)?);
    Some(MapKey { frontend, scope })
}

fn frontend_value(value: &FrontendValue<FrontendAttrs>) -> abi::Frontend {
    let mut flags = value.attrs.flags & !abi::FE_MAGLEV;
    if value.maglev {
        flags |= abi::FE_MAGLEV;
    }
    abi::Frontend {
        id: value.id.0,
        flags,
        backend_count: value.count,
        affinity_timeout_s: value.attrs.affinity_timeout_s,
    }
}

pub fn backend_value(backend: &MapBackend) -> abi::Backend {
    abi::Backend::new(backend.ip, backend.port, backend.flags)
}

fn slot_key(frontend: FrontendId, slot: u32) -> abi::SlotKey {
    abi::SlotKey { frontend_id: frontend.0, slot }
}

/// Carries out planned operations on the pinned maps, batching each phase per map.
#[derive(Debug)]
pub struct KernelMaps<'a> {
    maps: &'a mut Maps,
    table_size: u32,
    batch_size: usize,
    threads: usize,
}

impl<'a> KernelMaps<'a> {
    pub fn new(maps: &'a mut Maps) -> Result<Self, KernelError> {
        let table_size = maps.config().map_err(|e| KernelError::Io {
            map: names::CONFIG,
            source: io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            maps,
            table_size: table_size.maglev_table_size,
            batch_size: batch::DEFAULT_CHUNK,
            threads: 2,
        })
    }

    /// Entries per batched syscall; 1 means one syscall per entry (the benchmark's peer).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Threads writing one large batch (default 2; 1 for the benchmark's comparison).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Maglev table size M of the loaded maps.
    pub fn table_size(&self) -> u32 {
        self.table_size
    }

    /// Applies one phase: operations in any order, grouped per map.
    fn apply_phase(&mut self, ops: &[KernelOp]) -> Result<(), KernelError> {
        let io = |map| move |source| KernelError::Io { map, source };
        let mut backend_ids = Vec::new();
        let mut backend_values = Vec::new();
        let mut slot_keys = Vec::new();
        let mut slot_values = Vec::new();
        let mut fe_keys = Vec::new();
        let mut fe_values = Vec::new();
        let mut fe_deletes = Vec::new();
        let mut slot_deletes = Vec::new();
        let mut backend_deletes = Vec::new();
        for op in ops {
            match op {
                Op::PutBackend { id, backend } => {
                    backend_ids.push(id.0);
                    backend_values.push(backend_value(backend));
                }
                Op::PutSlot { frontend, slot, backend } => {
                    slot_keys.push(slot_key(*frontend, *slot));
                    slot_values.push(backend.0);
                }
                Op::PutFrontend { key, value } => {
                    fe_keys.push(frontend_key(key));
                    fe_values.push(frontend_value(value));
                }
                Op::DeleteFrontend { key } => fe_deletes.push(frontend_key(key)),
                Op::DeleteSlot { frontend, slot } => slot_deletes.push(slot_key(*frontend, *slot)),
                Op::DeleteBackend { id } => backend_deletes.push(id.0),
                Op::PutMaglev { frontend, table } => self.write_table(*frontend, table)?,
                Op::DeleteMaglev { frontend } => match self.maps.maglev.remove(&frontend.0) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(source) => return Err(KernelError::Map { map: names::MAGLEV, source }),
                },
                // Reverse translation is per socket (sy_sock_revnat), written by the programs.
                Op::PutRevNat { .. } | Op::DeleteRevNat { .. } => {}
            }
        }
        if !backend_ids.is_empty() {
            let fd = self.maps.backends.map().fd().as_fd();
            batch::update_parallel(
                fd,
                &backend_ids,
                &backend_values,
                self.batch_size,
                self.threads,
            )
            .map_err(io(names::BACKENDS))?;
        }
        if !slot_keys.is_empty() {
            let fd = self.maps.slots.map().fd().as_fd();
            batch::update_parallel(fd, &slot_keys, &slot_values, self.batch_size, self.threads)
                .map_err(io(names::SLOTS))?;
        }
        if !fe_keys.is_empty() {
            let fd = self.maps.frontends.map().fd().as_fd();
            batch::update(fd, &fe_keys, &fe_values, self.batch_size)
                .map_err(io(names::FRONTENDS))?;
        }
        if !fe_deletes.is_empty() {
            let fd = self.maps.frontends.map().fd().as_fd();
            batch::delete(fd, &fe_deletes, self.batch_size).map_err(io(names::FRONTENDS))?;
        }
        if !slot_deletes.is_empty() {
            let fd = self.maps.slots.map().fd().as_fd();
            batch::delete(fd, &slot_deletes, self.batch_size).map_err(io(names::SLOTS))?;
        }
        if !backend_deletes.is_empty() {
            let fd = self.maps.backends.map().fd().as_fd();
            batch::delete(fd, &backend_deletes, self.batch_size).map_err(io(names::BACKENDS))?;
        }
        Ok(())
    }

    /// Fills a fresh inner array and swaps it in with one update of `sy_maglev`.
    fn write_table(
        &mut self,
        frontend: FrontendId,
        table: &[BackendId],
    ) -> Result<(), KernelError> {
        if table.len() != self.table_size as usize {
            return Err(KernelError::TableSize {
                frontend: frontend.0,
                len: table.len(),
                expected: self.table_size,
            });
        }
        let map_err = |source| KernelError::Map { map: names::MAGLEV, source };
        let inner = MaglevTable::create(self.table_size, BPF_F_INNER_MAP).map_err(map_err)?;
        let indices: Vec<u32> = (0..self.table_size).collect();
        let ids: Vec<u32> = table.iter().map(|b| b.0).collect();
        batch::update(inner.map().fd().as_fd(), &indices, &ids, batch::DEFAULT_CHUNK)
            .map_err(|source| KernelError::Io { map: names::MAGLEV, source })?;
        self.maps.maglev.insert(frontend.0, &inner, 0).map_err(map_err)
    }

    /// Reads the reconciler's maps back, for [`crate::Planner::adopt`].
    pub fn snapshot(&self) -> Result<KernelSnapshot, KernelError> {
        let mut snapshot = KernelSnapshot::default();
        let map_err = |map| move |source| KernelError::Map { map, source };
        let io = |map| move |source| KernelError::Io { map, source };
        let frontends: Vec<(abi::FrontendKey, abi::Frontend)> =
            batch::lookup_all(self.maps.frontends.map().fd().as_fd(), batch::DEFAULT_CHUNK)
                .map_err(io(names::FRONTENDS))?;
        for (key, value) in frontends {
            let Some(map_key) = map_key(&key) else {
                warn!(?key, "frontend entry this agent cannot read; left alone");
                continue;
            };
            let value = FrontendValue {
                id: FrontendId(value.id),
                count: value.backend_count,
                maglev: value.flags & abi::FE_MAGLEV != 0,
                attrs: FrontendAttrs {
                    flags: value.flags & !abi::FE_MAGLEV,
                    affinity_timeout_s: value.affinity_timeout_s,
                },
            };
            // Reverse translation has no map of its own: it exists with the frontend.
            snapshot.rev_nat.push((value.id, map_key));
            snapshot.frontends.push((map_key, value));
        }
        let slots: Vec<(abi::SlotKey, u32)> =
            batch::lookup_all(self.maps.slots.map().fd().as_fd(), batch::DEFAULT_CHUNK)
                .map_err(io(names::SLOTS))?;
        for (key, backend) in slots {
            snapshot.slots.push((FrontendId(key.frontend_id), key.slot, BackendId(backend)));
        }
        let backends: Vec<(u32, abi::Backend)> =
            batch::lookup_all(self.maps.backends.map().fd().as_fd(), batch::DEFAULT_CHUNK)
                .map_err(io(names::BACKENDS))?;
        for (id, b) in backends {
            let backend = MapBackend { ip: b.addr.to_ip(b.family), port: b.port(), flags: b.flags };
            snapshot.backends.push((BackendId(id), backend));
        }
        let mut tables = BTreeMap::new();
        for id in self.maps.maglev.keys() {
            let id = id.map_err(map_err(names::MAGLEV))?;
            let table = self
                .maps
                .maglev_table(id)
                .map_err(|e| KernelError::Io { map: names::MAGLEV, source: io::Error::other(e) })?;
            if let Some(table) = table {
                tables.insert(id, table);
            }
        }
        snapshot.maglev = tables
            .into_iter()
            .map(|(id, t)| (FrontendId(id), t.into_iter().map(BackendId).collect()))
            .collect();
        Ok(snapshot)
    }
}

impl MapOps<MapKey, MapBackend, FrontendAttrs> for KernelMaps<'_> {
    type Error = KernelError;

    fn apply(&mut self, ops: &[KernelOp]) -> Result<(), KernelError> {
        let mut start = 0;
        while start < ops.len() {
            let phase = ops[start].phase();
            let len = ops[start..].iter().take_while(|op| op.phase() == phase).count();
            self.apply_phase(&ops[start..start + len])?;
            start += len;
        }
        Ok(())
    }
}
