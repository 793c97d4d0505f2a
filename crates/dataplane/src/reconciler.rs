//! The reconciler the agent runs: model output in, kernel maps out, through the planner.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_bpf::{MapSizes, Maps};
use switchyard_model::{DesiredState, StateDiff};

use crate::kernel::{KernelError, KernelMaps};
use crate::ops::MapOps;
use crate::planner::{AdoptReport, Limits, Plan, PlanError, Planner, TableBuilder};
use crate::translate::{self, FrontendAttrs, MapBackend, MapKey};

pub type KernelPlanner = Planner<MapKey, MapBackend, FrontendAttrs>;

/// What one reconciliation did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub ops: usize,
    /// Backends no frontend uses any more (deleted from the maps): candidates for tearing down
    /// their sockets.
    pub released: Vec<MapBackend>,
    /// Frontends that did not fit; they keep their previous state.
    pub errors: Vec<PlanError>,
    pub plan_time: Duration,
    pub apply_time: Duration,
}

/// Planner plus the knowledge of how to reach the kernel.
pub struct Reconciler {
    planner: KernelPlanner,
    /// Endpoints (address, port) whose backend entries are held ([`Reconciler::hold`]).
    holds: HashSet<(IpAddr, u16)>,
    limits: Limits,
    tables: Arc<dyn TableBuilder<MapBackend>>,
    batch_size: usize,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").field("planner", &self.planner).finish_non_exhaustive()
    }
}

/// Capacities of maps of `sizes`, with Maglev tables of `table_size` entries (a frontend cannot
/// have more backends than its table has entries).
pub fn limits_for(sizes: &MapSizes, table_size: u32) -> Limits {
    Limits {
        frontends: sizes.frontends,
        backends: sizes.backends,
        slots: sizes.slots,
        slots_per_frontend: table_size.min(sizes.slots),
    }
}

/// What a desired state needs of the state maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateNeeds {
    /// Frontend entries.
    pub frontends: u32,
    /// Distinct backends (address, port, flags), as the planner gives them ids.
    pub backends: u32,
    /// Slots summed over all frontends.
    pub slots: u32,
    /// Frontends with a Maglev table.
    pub maglev_tables: u32,
}

/// The smallest state maps: a small cluster pays a few hundred KiB of hash buckets for them.
pub const STATE_FLOOR: StateNeeds =
    StateNeeds { frontends: 1024, backends: 4096, slots: 4096, maglev_tables: 64 };

/// Counts what `desired` puts into the state maps.
pub fn state_needs(desired: &DesiredState) -> StateNeeds {
    let mut backends = HashSet::new();
    let mut needs = StateNeeds::default();
    for (_, spec) in translate::desired(desired) {
        needs.frontends += 1;
        needs.maglev_tables += u32::from(spec.maglev);
        let mut own = HashSet::with_capacity(spec.backends.len());
        for backend in spec.backends {
            if own.insert(backend) {
                backends.insert(backend);
            }
        }
        needs.slots = needs.slots.saturating_add(u32::try_from(own.len()).unwrap_or(u32::MAX));
    }
    needs.backends = u32::try_from(backends.len()).unwrap_or(u32::MAX);
    needs
}

/// Sizes of state maps that hold `needs` twice over (room to grow before the maps must be
/// migrated), at least [`STATE_FLOOR`], at most `bounds` (the configured maxima); the other
/// maps as in `bounds`.
pub fn sizes_for_state(needs: StateNeeds, bounds: &MapSizes) -> MapSizes {
    let size = |need: u32, floor: u32, bound: u32| need.saturating_mul(2).max(floor).min(bound);
    MapSizes {
        frontends: size(needs.frontends, STATE_FLOOR.frontends, bounds.frontends),
        backends: size(needs.backends, STATE_FLOOR.backends, bounds.backends),
        slots: size(needs.slots, STATE_FLOOR.slots, bounds.slots),
        maglev_tables: size(needs.maglev_tables, STATE_FLOOR.maglev_tables, bounds.maglev_tables),
        ..*bounds
    }
}

/// Whether maps of `loaded` sizes hold less than `wanted` in any state map.
pub fn state_maps_smaller(loaded: &MapSizes, wanted: &MapSizes) -> bool {
    loaded.frontends < wanted.frontends
        || loaded.backends < wanted.backends
        || loaded.slots < wanted.slots
        || loaded.maglev_tables < wanted.maglev_tables
}

impl Reconciler {
    /// Reads the pinned maps (empty on a first start) and takes over their ids. Nothing is
    /// written until the first [`Reconciler::apply_full`].
    pub fn adopt(
        maps: &mut Maps,
        limits: Limits,
        tables: Arc<dyn TableBuilder<MapBackend>>,
    ) -> Result<(Self, AdoptReport), KernelError> {
        let snapshot = KernelMaps::new(maps)?.snapshot()?;
        let (planner, report) = Planner::adopt(snapshot, limits, tables.clone());
        Ok((
            Self { planner, holds: HashSet::new(), limits, tables, batch_size: usize::MAX },
            report,
        ))
    }

    /// Entries per batched map syscall (default: as many as the executor takes).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }

    pub fn planner(&self) -> &KernelPlanner {
        &self.planner
    }

    /// Brings the maps to exactly `desired` (first reconciliation after adoption, resyncs).
    pub fn apply_full(
        &mut self,
        maps: &mut Maps,
        desired: &DesiredState,
    ) -> Result<Applied, KernelError> {
        let started = Instant::now();
        let plan = self.planner.plan_full(translate::desired(desired));
        self.execute(maps, plan, started)
    }

    /// Applies one model difference.
    pub fn apply_diff(
        &mut self,
        maps: &mut Maps,
        diff: &StateDiff,
    ) -> Result<Applied, KernelError> {
        self.apply_diffs(maps, std::slice::from_ref(diff))
    }

    /// Applies consecutive model differences as one plan (later ones win).
    pub fn apply_diffs(
        &mut self,
        maps: &mut Maps,
        diffs: &[StateDiff],
    ) -> Result<Applied, KernelError> {
        let started = Instant::now();
        let plan = self.planner.plan(diffs.iter().flat_map(translate::changes));
        self.execute(maps, plan, started)
    }

    /// Keeps the backend entries of exactly these endpoints (under any flags) in the maps
    /// while no frontend uses them — terminating endpoints, whose per-packet flows (conntrack
    /// remembers the backend id) keep working until the endpoint is gone. Takes effect with
    /// the next plan; ends the holds of endpoints no longer listed (true when any ended: the
    /// next plan, even an empty one, deletes their entries).
    pub fn hold(&mut self, endpoints: &HashSet<(IpAddr, u16)>) -> bool {
        self.holds.clone_from(endpoints);
        hold_endpoints(&mut self.planner, endpoints)
    }

    /// Whether any frontend still uses `ip:port` (under any flags).
    pub fn uses_address(&self, ip: IpAddr, port: u16) -> bool {
        uses_address(&self.planner, ip, port)
    }

    /// After a failed apply the planner's view may be ahead of the kernel: read the maps back
    /// and reconcile everything against them.
    pub fn resync(
        &mut self,
        maps: &mut Maps,
        desired: &DesiredState,
    ) -> Result<Applied, KernelError> {
        let (mut fresh, _) = Self::adopt(maps, self.limits, self.tables.clone())?;
        fresh.batch_size = self.batch_size;
        let holds = std::mem::take(&mut self.holds);
        *self = fresh;
        self.hold(&holds);
        self.apply_full(maps, desired)
    }

    fn execute(
        &mut self,
        maps: &mut Maps,
        plan: Plan<MapKey, MapBackend, FrontendAttrs>,
        started: Instant,
    ) -> Result<Applied, KernelError> {
        let plan_time = started.elapsed();
        let applying = Instant::now();
        let mut kernel = KernelMaps::new(maps)?;
        if self.batch_size != usize::MAX {
            kernel = kernel.with_batch_size(self.batch_size);
        }
        kernel.apply(&plan.ops)?;
        Ok(Applied {
            ops: plan.ops.len(),
            released: plan.released,
            errors: plan.errors,
            plan_time,
            apply_time: applying.elapsed(),
        })
    }
}

/// Every combination of the backend flags a frontend may give one endpoint.
const ALL_FLAGS: [u8; 4] = {
    use switchyard_bpf::abi::{BE_LOCAL, BE_TERMINATING};
    [0, BE_LOCAL, BE_TERMINATING, BE_LOCAL | BE_TERMINATING]
};

/// Makes `planner` keep the backend entries of exactly these endpoints (under any flags) while
/// no frontend uses them; ends the holds of endpoints no longer listed. True when a hold ended:
/// the next plan, even an empty one, deletes those entries.
pub fn hold_endpoints(planner: &mut KernelPlanner, endpoints: &HashSet<(IpAddr, u16)>) -> bool {
    let ended: Vec<MapBackend> =
        planner.held().filter(|b| !endpoints.contains(&(b.ip, b.port))).copied().collect();
    for backend in &ended {
        planner.release(backend);
    }
    for &(ip, port) in endpoints {
        for flags in ALL_FLAGS {
            planner.hold(&MapBackend { ip, port, flags });
        }
    }
    !ended.is_empty()
}

/// Whether any frontend `planner` knows uses `ip:port` (under any flags).
pub fn uses_address(planner: &KernelPlanner, ip: IpAddr, port: u16) -> bool {
    ALL_FLAGS.into_iter().any(|flags| planner.backend_id(&MapBackend { ip, port, flags }).is_some())
}
