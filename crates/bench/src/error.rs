//! Errors of the benchmark harness.

use std::time::Duration;

/// What can go wrong while measuring.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("network namespace {name}: {action} failed: {detail}")]
    Netns { name: String, action: &'static str, detail: String },
    #[error("{program} in namespace {namespace}: could not run: {source}")]
    Spawn {
        program: String,
        namespace: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} in namespace {namespace} exited with {status}: {stderr}")]
    Failed { program: String, namespace: String, status: String, stderr: String },
    #[error("{program} in namespace {namespace} did not finish within {limit:?}")]
    TimedOut { program: String, namespace: String, limit: Duration },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lab: {0}")]
    Lab(String),
    #[error("{0}")]
    NotAvailable(String),
    #[error("switchyard: {0}")]
    Switchyard(String),
    #[error("plotting {path}: {detail}")]
    Plot { path: String, detail: String },
}
