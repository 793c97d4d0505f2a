//! Carrying the allocator's decisions out: against the API server ([`api`]) or a manifest
//! directory ([`manifests`]), writing the same status ([`status`]).

pub mod api;
pub mod manifests;
pub mod status;
