//! Carrying the allocator's decisions out: against the API server ([`api`]), and the status
//! both runtimes write ([`status`]).

pub mod api;
pub mod status;
