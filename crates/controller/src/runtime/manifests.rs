//! The controller on a manifest directory (`--manifests DIR`), for labs, demos and clusters
//! without an API server: the same allocator, with its status written to the directory's status
//! file ([`STATUS_FILE`]), which every reader of the directory merges into the objects.
//!
//! One controller per directory (there is no Lease to share); a restart reads the status file
//! through the directory, so held addresses are adopted exactly as after an API server restart.
//! Events have nowhere to go and are logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use switchyard_k8s::manifest::{
    ManifestWatcher, STATUS_FILE, StatusFile, StatusFileError, WatchError, WatchOptions,
    service_key,
};
use switchyard_model::crd::IPPool;
use switchyard_model::{Change, ObjectKey};
use tokio::sync::watch;

use super::status::{apply_service_status, pool_status};
use crate::allocator::{Allocator, Effects, Subject};

/// Why the standalone controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The directory could not be watched.
    #[error("watching {0}")]
    Watch(PathBuf, #[source] WatchError),
    /// The status file could not be written.
    #[error("recording allocations")]
    Status(#[from] StatusFileError),
    /// The watch ended.
    #[error("the watch of {0} ended")]
    WatchEnded(PathBuf),
}

/// The controller's state between updates of the directory.
#[derive(Debug)]
pub struct Standalone {
    allocator: Allocator,
    status_path: PathBuf,
    /// What the status file says (as last written or read).
    file: StatusFile,
    services: BTreeMap<ObjectKey, Service>,
    pools: BTreeMap<String, IPPool>,
}

impl Standalone {
    /// A controller for `dir` and loadBalancerClass `class`.
    pub fn new(dir: &Path, class: Option<String>) -> Result<Self, StandaloneError> {
        let status_path = dir.join(STATUS_FILE);
        Ok(Self {
            allocator: Allocator::new(class),
            file: StatusFile::read(&status_path)?,
            status_path,
            services: BTreeMap::new(),
            pools: BTreeMap::new(),
        })
    }

    /// Takes in changes of the directory, allocates, and writes the status file if it changed.
    pub fn update(&mut self, changes: &[Change]) -> Result<Effects, StandaloneError> {
        let mut file = self.file.clone();
        for change in changes {
            match change {
                Change::Service(key, Some(service)) => {
                    self.services.insert(key.clone(), (**service).clone());
                }
                Change::Service(key, None) => {
                    self.services.remove(key);
                    file.services.remove(&service_key(key));
                }
                Change::IPPool(key, Some(pool)) => {
                    self.pools.insert(key.name.to_string(), (**pool).clone());
                }
                Change::IPPool(key, None) => {
                    self.pools.remove(key.name.as_str());
                    file.ip_pools.remove(key.name.as_str());
                }
                Change::Namespace(..) => {}
                _ => continue,
            }
            self.allocator.apply(change);
        }
        let effects = self.allocator.reconcile();
        let now = Time(Timestamp::now());
        for status in &effects.services {
            let key = service_key(&status.service);
            match (&status.condition, self.services.get(&status.service)) {
                (Some(_), Some(service)) => {
                    let mut service = service.clone();
                    apply_service_status(&mut service, status, &now);
                    file.services.insert(key, service.status.unwrap_or_default());
                }
                _ => {
                    file.services.remove(&key);
                }
            }
        }
        for (name, report) in &effects.pools {
            let previous = self.pools.get(name).and_then(|p| p.status.as_ref());
            file.ip_pools.insert(name.clone(), pool_status(report, previous, &now));
        }
        // Entries of objects deleted while no controller ran.
        let known: std::collections::BTreeSet<String> =
            self.services.keys().map(service_key).collect();
        file.services.retain(|key, _| known.contains(key));
        file.ip_pools.retain(|name, _| self.pools.contains_key(name));
        for event in &effects.events {
            let subject = match &event.subject {
                Subject::Service(key) => format!("Service {key}"),
                Subject::IPPool(name) => format!("IPPool {name}"),
            };
            if event.warning {
                tracing::warn!(object = %subject, reason = %event.reason, "{}", event.message);
            } else {
                tracing::info!(object = %subject, reason = %event.reason, "{}", event.message);
            }
        }
        if file != self.file {
            file.write(&self.status_path)?;
            self.file = file;
        }
        Ok(effects)
    }

    /// The allocator, for reports (`switchyard ipam`).
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }
}

/// Runs the controller on `dir` until `stop` fires.
pub async fn run(
    dir: PathBuf,
    class: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StandaloneError> {
    let options = WatchOptions {
        debounce: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        ..WatchOptions::default()
    };
    let mut watcher = ManifestWatcher::start(&dir, options)
        .map_err(|err| StandaloneError::Watch(dir.clone(), err))?;
    let mut controller = Standalone::new(&dir, class)?;
    loop {
        tokio::select! {
            update = watcher.next() => {
                let Some(update) = update else { return Err(StandaloneError::WatchEnded(dir)) };
                controller.update(&update.changes)?;
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}
