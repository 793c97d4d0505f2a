//! Errors of the lab: each names the object (namespace, file, link) and the reason.

use std::io;

/// Everything that can go wrong building, using or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The topology file or value is invalid.
    #[error("topology {origin}: {reason}")]
    Topology { origin: String, reason: String },
    // The cause is part of the message (and deliberately not a `source`, which would make
    // error-chain printers such as anyhow's repeat it).
    /// A file, process or namespace operation failed.
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    /// A netlink request (links, addresses, routes) failed in a namespace.
    #[error("netlink in {netns}: {what}: {cause}")]
    Netlink { netns: String, what: String, cause: rtnetlink::Error },
    /// The lab prefix has characters or a length namespaces cannot carry.
    #[error("invalid lab prefix {0:?}: use 1 to 16 characters from a-z, 0-9 and '-'")]
    BadPrefix(String),
    /// A lab with this prefix is up already.
    #[error(
        "lab {0:?} already exists (remove it with `switchyard lab down` or Lab::down_by_prefix)"
    )]
    AlreadyExists(String),
    /// No lab with this prefix is recorded.
    #[error("no lab {prefix:?} under {run_dir}")]
    NotFound { prefix: String, run_dir: String },
    /// The lab has no node, pod or client of that name.
    #[error("lab {prefix}: no node, pod or client named {name:?}")]
    UnknownMember { prefix: String, name: String },
    /// The lab's state file could not be read or written.
    #[error("lab state {path}: {reason}")]
    State { path: String, reason: String },
    /// Removing the lab left some of its parts behind.
    #[error("teardown of lab {prefix} left things behind: {}", problems.join("; "))]
    Teardown { prefix: String, problems: Vec<String> },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let what = what.into();
        move |cause| LabError::Io { what, cause }
    }
}
