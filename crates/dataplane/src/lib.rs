//! Reconciler: desired state into BPF maps, make-before-break; attach, pin and adopt.
//!
//! Sans-IO at the core: [`planner::Planner`] turns desired frontends into ordered map
//! operations ([`ops::Op`]); an executor ([`ops::MapOps`]) carries them out — the in-memory
//! [`fake::FakeKernel`] in tests, the BPF maps in production.

mod backend_table;
pub mod fake;
mod ids;
pub mod ops;
pub mod packet_settings;
pub mod planner;
pub mod reconciler;
pub mod sockdiag;

pub use ops::{BackendId, FrontendId, FrontendValue, MapOps, Op, Phase, Snapshot};
pub use planner::{AdoptReport, FrontendSpec, Limits, Plan, PlanError, Planner, TableBuilder};

pub mod kernel;
pub mod maglev_tables;
pub mod translate;
