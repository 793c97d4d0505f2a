//! Errors of the benchmark harness.

use std::time::Duration;

/// What can go wrong while measuring.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A network namespace could not be created, entered or removed.
    #[error("network namespace {name}: {action} failed: {detail}")]
    Netns { name: String, action: &'static str, detail: String },
    // The cause is part of the message and deliberately not a `source`: reports keep errors as
    // text (`to_string`), where no chain printer runs.
    /// A program could not be started in a namespace.
    #[error("{program} in namespace {namespace}: could not run: {cause}")]
    Spawn { program: String, namespace: String, cause: std::io::Error },
    /// A program ran and exited unsuccessfully.
    #[error("{program} in namespace {namespace} exited with {status}: {stderr}")]
    Failed { program: String, namespace: String, status: String, stderr: String },
    /// A program did not finish in time (it was killed).
    #[error("{program} in namespace {namespace} did not finish within {limit:?}")]
    TimedOut { program: String, namespace: String, limit: Duration },
    // The cause is part of the message, as for `Spawn`.
    /// A result or temporary file could not be written.
    #[error("writing {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
    /// The lab (namespaces, links, servers) failed.
    #[error("lab: {0}")]
    Lab(String),
    /// A peer or tool this measurement needs is not installed or not usable here.
    #[error("{0}")]
    NotAvailable(String),
    /// Loading or programming Switchyard's own data plane failed.
    #[error("switchyard: {0}")]
    Switchyard(String),
    /// A plot could not be drawn.
    #[error("plotting {path}: {detail}")]
    Plot { path: String, detail: String },
}
