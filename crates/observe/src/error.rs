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
    #[error("local API socket {path}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A TCP listener could not be bound.
    #[error("binding {address}")]
    Bind {
        /// Address asked for.
        address: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_error::assert_source_not_repeated;

    #[test]
    fn no_message_repeats_its_source() {
        let os = || std::io::Error::from_raw_os_error(98); // EADDRINUSE
        let errors = [
            Error::Socket { path: "/run/switchyard/api.sock".into(), source: os() },
            Error::Bind { address: ([127, 0, 0, 1], 10249).into(), source: os() },
            Error::Bpf(switchyard_bpf::Error::Cgroup {
                path: "/sys/fs/cgroup".into(),
                source: os(),
            }),
        ];
        for error in &errors {
            assert_source_not_repeated(error);
        }
    }
}
