//! The controller role: LoadBalancer addresses from IPPools, written to Service status.
//!
//! [`allocator`] decides (sans-IO: objects in, addresses, conditions, pool status and Events
//! out); [`election`] decides who may write (a Lease, client-go's rules); [`runtime`] carries
//! the decisions out against the API server.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod allocator;
pub mod election;
mod run;
pub mod runtime;

pub use allocator::{Allocator, Effects, Outcome, Reason};
pub use run::{ControllerConfig, RunError, Source, run};

/// An error and its sources on one line (`a: b: c`), for logs, which have no chain printer.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
