//! Map operations: the planner's output and the executors' input.
//!
//! The operations are abstract over the frontend key `K`, backend `B` and frontend attributes `A`
//! so the planner can be tested with tiny types; the kernel executor fixes them to the BPF
//! mirrors' types.

use std::sync::Arc;

/// Index of a frontend in the slot, Maglev and reverse-translation maps. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendId(pub u32);

/// Index of a backend in the backends map. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub u32);

/// The value of a frontend entry: what a lookup of the frontend's address finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendValue<A> {
    pub id: FrontendId,
    /// Number of backend slots, `0..count`. Zero means "no usable backend": reject.
    pub count: u32,
    /// Select through the frontend's Maglev table instead of a random slot.
    pub maglev: bool,
    /// Everything else the data plane needs (flags, affinity timeout, ...), passed through.
    pub attrs: A,
}

/// One write or delete in one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<K, B, A> {
    PutBackend {
        id: BackendId,
        backend: B,
    },
    PutRevNat {
        id: FrontendId,
        frontend: K,
    },
    PutSlot {
        frontend: FrontendId,
        slot: u32,
        backend: BackendId,
    },
    /// A whole table, swapped in with one update so a lookup sees the old or the new table.
    PutMaglev {
        frontend: FrontendId,
        table: Arc<[BackendId]>,
    },
    PutFrontend {
        key: K,
        value: FrontendValue<A>,
    },
    DeleteFrontend {
        key: K,
    },
    DeleteSlot {
        frontend: FrontendId,
        slot: u32,
    },
    DeleteMaglev {
        frontend: FrontendId,
    },
    DeleteRevNat {
        id: FrontendId,
    },
    DeleteBackend {
        id: BackendId,
    },
}

/// The make-before-break order. Operations of one phase are independent of each other and may be
/// applied in any order (or batched); every phase must complete before the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// New backends, before anything points at them.
    WriteBackends,
    /// Slots, Maglev tables and reverse translations, before a frontend entry announces them.
    WritePointers,
    /// Frontend entries with their new slot counts.
    WriteFrontends,
    /// Removed frontends disappear; nothing can reach their slots any more.
    UnlinkFrontends,
    /// Slots beyond the new counts, tables and reverse translations nothing can reach.
    DeletePointers,
    /// Backends nothing points at.
    DeleteBackends,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::WriteBackends,
        Phase::WritePointers,
        Phase::WriteFrontends,
        Phase::UnlinkFrontends,
        Phase::DeletePointers,
        Phase::DeleteBackends,
    ];
}

impl<K, B, A> Op<K, B, A> {
    pub fn phase(&self) -> Phase {
        match self {
            Op::PutBackend { .. } => Phase::WriteBackends,
            Op::PutRevNat { .. } | Op::PutSlot { .. } | Op::PutMaglev { .. } => {
                Phase::WritePointers
            }
            Op::PutFrontend { .. } => Phase::WriteFrontends,
            Op::DeleteFrontend { .. } => Phase::UnlinkFrontends,
            Op::DeleteSlot { .. } | Op::DeleteMaglev { .. } | Op::DeleteRevNat { .. } => {
                Phase::DeletePointers
            }
            Op::DeleteBackend { .. } => Phase::DeleteBackends,
        }
    }
}

/// Carries out map operations, in order. Implemented by the in-memory fake and the BPF executor.
pub trait MapOps<K, B, A> {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `ops` in order. An executor may batch consecutive operations of one phase. On
    /// error some prefix of the operations may have been applied; the caller re-adopts.
    fn apply(&mut self, ops: &[Op<K, B, A>]) -> Result<(), Self::Error>;
}

/// The contents of the maps as read back from the kernel, for adoption after a restart.
#[derive(Debug, Clone)]
pub struct Snapshot<K, B, A> {
    pub frontends: Vec<(K, FrontendValue<A>)>,
    pub slots: Vec<(FrontendId, u32, BackendId)>,
    pub backends: Vec<(BackendId, B)>,
    pub maglev: Vec<(FrontendId, Vec<BackendId>)>,
    pub rev_nat: Vec<(FrontendId, K)>,
}

impl<K, B, A> Default for Snapshot<K, B, A> {
    fn default() -> Self {
        Self {
            frontends: Vec::new(),
            slots: Vec::new(),
            backends: Vec::new(),
            maglev: Vec::new(),
            rev_nat: Vec::new(),
        }
    }
}
