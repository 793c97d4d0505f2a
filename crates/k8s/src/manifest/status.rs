//! Status kept next to the manifests: `DIR/.switchyard-status.json`, where the standalone
//! controller (`switchyard controller --manifests DIR`) records the LoadBalancer addresses it
//! allocated and its pools' status. A manifest directory merges it into the objects it applies,
//! so every reader of the directory — node agents, directors, `services`, the controller itself
//! after a restart — sees `status.loadBalancer.ingress` as if an API server held it.
//!
//! A hidden file, so it is never read as a manifest; written atomically (temporary file, then
//! rename), so readers see the old or the new version, never half of one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ServiceStatus;
use serde::{Deserialize, Serialize};
use switchyard_model::crd::IPPoolStatus;
use switchyard_model::{Change, ObjectKey};

/// Name of the status file in a manifest directory.
pub const STATUS_FILE: &str = ".switchyard-status.json";

/// What the status file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    /// `namespace/name` → the Service's whole `status` (it replaces the manifest's).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStatus>,
    /// Pool name → the IPPool's `status`.
    #[serde(default, rename = "ipPools")]
    pub ip_pools: BTreeMap<String, IPPoolStatus>,
}

/// The status file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    /// Reading or writing failed.
    #[error("{path}: {action} failed")]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    /// The file is not what the controller writes.
    #[error("{path}: not a status file")]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// The key a Service has in the status file.
pub fn service_key(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

impl StatusFile {
    /// Reads `path`; a missing file is an empty status.
    pub fn read(path: &Path) -> Result<Self, StatusFileError> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StatusFileError::Io {
                    path: path.to_owned(),
                    action: "reading",
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map_err(|source| StatusFileError::Parse { path: path.to_owned(), source })
    }

    /// Writes `path` atomically (a hidden temporary file next to it, then a rename).
    pub fn write(&self, path: &Path) -> Result<(), StatusFileError> {
        let io =
            |action| move |source| StatusFileError::Io { path: path.to_owned(), action, source };
        let temporary = path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .map_err(io("encoding"))?;
        text.push(b'\n');
        let mut file = fs::File::create(&temporary).map_err(io("writing"))?;
        file.write_all(&text).map_err(io("writing"))?;
        file.sync_all().map_err(io("writing"))?;
        fs::rename(&temporary, path).map_err(io("renaming into place"))
    }

    /// `change` with the recorded status of its Service or IPPool, if there is one.
    pub fn overlay(&self, change: Change) -> Change {
        match change {
            Change::Service(key, Some(mut service)) => {
                if let Some(status) = self.services.get(&service_key(&key)) {
                    service.status = Some(status.clone());
                }
                Change::Service(key, Some(service))
            }
            Change::IPPool(key, Some(mut pool)) => {
                if let Some(status) = self.ip_pools.get(key.name.as_str()) {
                    pool.status = Some(status.clone());
                }
                Change::IPPool(key, Some(pool))
            }
            other => other,
        }
    }

    /// Services and pools whose recorded status differs between `self` and `other`.
    pub(crate) fn differences(&self, other: &Self) -> (Vec<ObjectKey>, Vec<String>) {
        let services = differing(&self.services, &other.services)
            .into_iter()
            .map(|k| match k.split_once('/') {
                Some((namespace, name)) => ObjectKey::new(namespace, name),
                None => ObjectKey::cluster(k),
            })
            .collect();
        (services, differing(&self.ip_pools, &other.ip_pools))
    }
}

fn differing<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let mut keys: Vec<String> =
        a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}
