//! A directory of Kubernetes manifests as a source of model input, read once or watched.
//!
//! Reads every `*.yaml` / `*.yml` / `*.json` under a directory: multi-document YAML, JSON objects
//! and `kind: List`s. Services (v1), EndpointSlices (discovery.k8s.io/v1), Nodes (v1) and our
//! own IPPools, BGPPeers and BGPAdvertisements (switchyard.io/v1alpha1) become model input; other
//! kinds are listed as ignored. A broken document is reported with file, document, object and
//! reason while every valid object still applies, and an object whose new version is broken keeps
//! its last good version. The standalone controller's status file ([`STATUS_FILE`]) is merged
//! into the Services and IPPools it names.

mod directory;
mod error;
pub mod fuzz;
mod limits;
mod locate;
mod object;
mod parse;
mod semantic;
mod status;
mod watch;

pub use directory::{Applied, ManifestDirectory};
pub use error::{Identity, IgnoredDocument, Location, ManifestError, ManifestWarning};
pub use limits::{MAX_DOCUMENT_BYTES, MAX_FILE_BYTES, MAX_FLOW_NESTING};
pub use locate::{FieldLines, field_line};
pub use object::{Object, ObjectId};
pub use parse::DEFAULT_NAMESPACE;
pub use status::{STATUS_FILE, StatusFile, StatusFileError, service_key};
pub use watch::{ManifestUpdate, ManifestWatcher, WatchError, WatchOptions};
