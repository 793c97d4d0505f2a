//! Errors of the loader and the map handles.

use std::{io, path::PathBuf};

/// Everything that can go wrong loading, attaching or talking to the maps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bpffs directory could not be created, inspected or mounted.
    #[error("bpffs directory {path}: {reason}")]
    BpfDir {
        /// The directory.
        path: PathBuf,
        /// What was being done.
        reason: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The directory is not on a bpffs and mounting one was not allowed.
    #[error("{path} is not on a bpffs (mount one there, or allow the loader to)")]
    NotBpffs {
        /// The directory.
        path: PathBuf,
    },
    /// No bpffs holds the directory and the loader could not make one (no CAP_SYS_ADMIN, or
    /// its parent is on sysfs, where nothing can be created): the message says what to do.
    #[error(
        "no bpffs at {path} and none could be mounted: mount one on the host \
         (`mount -t bpf bpf /sys/fs/bpf`), or keep the DaemonSet's mount-bpffs init container \
         (deploy/daemonset.yaml), which does that"
    )]
    NoBpffs {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// The object could not be loaded (parse, map creation, pin adoption).
    #[error("loading the BPF object")]
    Load(#[from] aya::EbpfError),
    /// A map is missing from the object or could not be opened as the expected type.
    #[error("map {name}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A batch read or write of a map failed (`BPF_MAP_*_BATCH`, [`crate::batch`]).
    #[error("map {name}: batch read or write")]
    MapIo {
        /// Map name.
        name: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A map is missing from the object.
    #[error("map {name} is not in the BPF object")]
    MissingMap {
        /// Map name.
        name: &'static str,
    },
    /// A pinned map from an earlier run does not match what this build expects.
    #[error(
        "pinned map {name} is incompatible: {detail}; run `switchyard agent --cleanup` to recreate it"
    )]
    IncompatiblePin {
        /// Map name.
        name: &'static str,
        /// What differs.
        detail: String,
    },
    /// A program is missing, failed the verifier, or could not be attached.
    #[error("program {name}")]
    Program {
        /// Program name.
        name: &'static str,
        /// The aya error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A program is missing from the object.
    #[error("program {name} is not in the BPF object")]
    MissingProgram {
        /// Program name.
        name: &'static str,
    },
    /// The cgroup directory could not be opened.
    #[error("cgroup {path}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A link could not be pinned, opened or removed.
    #[error("link pin {path}: {detail}")]
    LinkPin {
        /// The pin path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A value handed to the map API is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::sys::SyscallError;
    use switchyard_error::assert_source_not_repeated;

    fn os() -> io::Error {
        io::Error::from_raw_os_error(28) // ENOSPC
    }

    fn syscall() -> SyscallError {
        SyscallError { call: "bpf_map_update_elem", io_error: os() }
    }

    /// Every variant with a source: its message names what was being done, the cause follows.
    #[test]
    fn no_message_repeats_its_source() {
        let errors = [
            Error::BpfDir { path: "/sys/fs/bpf/sy".into(), reason: "creating", source: os() },
            Error::NoBpffs {
                path: "/sys/fs/bpf/sy".into(),
                source: Box::new(Error::BpfDir {
                    path: "/sys/fs/bpf/sy".into(),
                    reason: "creating",
                    source: os(),
                }),
            },
            Error::Load(aya::EbpfError::FileError { path: "sy.o".into(), error: os() }),
            Error::Map { name: "sy_ct", source: aya::maps::MapError::SyscallError(syscall()) },
            Error::Program {
                name: "sy_connect4",
                source: aya::programs::ProgramError::SyscallError(syscall()),
            },
            Error::Cgroup { path: "/sys/fs/cgroup/sy".into(), source: os() },
        ];
        for error in &errors {
            assert_source_not_repeated(error);
            let chain = switchyard_error::ErrorChain(error).to_string();
            assert!(chain.ends_with(&os().to_string()), "{chain}");
        }
    }
}
