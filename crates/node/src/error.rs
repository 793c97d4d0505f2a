//! Why the node role could not start or stopped; each variant names the object or setting at fault.

use std::net::AddrParseError;
use std::path::PathBuf;

/// An error that stops the node agent (problems with single objects are logged, never this).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration lacks the node name or the cgroup (only `--cleanup` runs without them).
    #[error("--node-name and --cgroup are required")]
    MissingIdentity,
    /// No usable SNAT port range (`--snat-port-range` on the NodePort range, or none left).
    #[error(transparent)]
    SnatPorts(#[from] switchyard_model::SnatPortsError),
    /// A device of `--devices` cannot carry the per-packet programs.
    #[error("--devices")]
    Device(#[source] Box<switchyard_bpf::Error>),
    /// The Maglev table size is not usable (not a prime, too large).
    #[error("--maglev-table-size {size}")]
    MaglevTableSize {
        /// The size asked for.
        size: u32,
        /// Why it is refused.
        #[source]
        source: switchyard_maglev::TableSizeError,
    },
    /// A BPF operation of the node role failed (`what` says which).
    #[error("{what}")]
    Bpf {
        /// What was being done.
        what: String,
        /// The loader's error.
        #[source]
        source: Box<switchyard_bpf::Error>,
    },
    /// The pinned maps could not be read back or written.
    #[error("{what}")]
    Maps {
        /// What was being done.
        what: &'static str,
        /// The reconciler's error.
        #[source]
        source: Box<switchyard_dataplane::kernel::KernelError>,
    },
    /// The per-packet maps an earlier agent left could not be read.
    #[error("reading the per-packet maps")]
    PacketMaps(#[source] switchyard_dataplane::packet_settings::PacketError),
    /// The manifest directory cannot be watched.
    #[error("watching {}", dir.display())]
    WatchManifests {
        /// The directory.
        dir: PathBuf,
        /// The watcher's error.
        #[source]
        source: switchyard_k8s::manifest::WatchError,
    },
    /// Neither a manifest directory, a kubeconfig nor an in-cluster configuration was given.
    #[error(
        "no source: give --manifests DIR or --kubeconfig PATH, or run in a pod \
         (in-cluster configuration)"
    )]
    NoSource,
    /// The API server client could not be created.
    #[error("connecting to the API server")]
    ApiClient(#[source] switchyard_k8s::api::ClientError),
    /// The first reconciliation could not be written, not even after reading the maps back.
    #[error("programming the maps failed (see the log above)")]
    FirstSync,
    /// `--cleanup` found nothing an agent pins in the directory.
    #[error("nothing to clean up in {}: no Switchyard pins there (wrong --bpf-dir?)", bpf_dir.display())]
    NothingToCleanUp {
        /// The `--bpf-dir` given.
        bpf_dir: PathBuf,
    },
    /// Another agent runs on the same `--bpf-dir`.
    #[error(
        "another agent runs on {} (each agent needs its own --bpf-dir; stop it first)",
        bpf_dir.display()
    )]
    BpfDirBusy {
        /// The `--bpf-dir` given.
        bpf_dir: PathBuf,
    },
    /// `--bpf-dir` could not be opened to lock it.
    #[error("locking {}", bpf_dir.display())]
    BpfDirLock {
        /// The `--bpf-dir` given.
        bpf_dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The source ended (the manifest watcher or the API watch stopped).
    #[error("the source stopped")]
    SourceStopped,
    /// `--healthz-bind-address` is not an address.
    #[error("--healthz-bind-address {address:?}")]
    HealthzAddress {
        /// What was given.
        address: String,
        /// Why it does not parse.
        #[source]
        source: AddrParseError,
    },
    /// A local HTTP server (`/healthz`, metrics) could not be started.
    #[error("serving {what}")]
    Serve {
        /// Which server, and where.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics server on `--metrics-bind-address` could not be started.
    #[error("serving metrics")]
    Metrics(#[source] Box<switchyard_observe::Error>),
    /// A signal handler could not be installed.
    #[error("installing the SIGTERM handler")]
    Signal(#[source] std::io::Error),
}
