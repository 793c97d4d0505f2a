//! Errors of the observability crate.

use std::path::PathBuf;

/// What went wrong while reading the kernel state or serving it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A map could not be read.
    #[error(transparent)]
    Bpf(#[from] switchyard_bpf::Error),
    /// A map's fdinfo (memory figure) could not be read.
    #[error("reading the kernel's information on map {name}: {detail}")]
    MapInfo {
        /// Map name.
        name: &'static str,
        /// What failed.
        detail: String,
    },
    /// The local API socket could not be set up.
    #[error("local API socket {path}: {source}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A TCP listener could not be bound.
    #[error("binding {address}: {source}")]
    Bind {
        /// Address asked for.
        address: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}
