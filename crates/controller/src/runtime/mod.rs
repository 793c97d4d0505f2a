//! Carrying the allocator's decisions out: against the API server ([`api`]) or a manifest
//! directory ([`manifests`]), writing the same status ([`status`]); and reading the API
//! server's objects once for a report ([`snapshot`]).

pub mod api;
pub mod manifests;
pub mod snapshot;
pub mod status;
