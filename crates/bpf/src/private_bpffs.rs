//! A bpffs of one's own on a fresh directory, for benchmarks and tests that must never touch
//! the host's pins: everything pinned below it goes when it is dropped, also after a failure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_error::ErrorChain;

use crate::Error;

/// A bpffs mounted on `<tmp>/<prefix>-<pid>-<n>`. On drop: links detached, map pins removed
/// (socket and per-packet), the bpffs unmounted and the directory removed.
#[derive(Debug)]
pub struct PrivateBpffs {
    path: PathBuf,
}

impl PrivateBpffs {
    /// Creates a directory no other caller (in this or another process) uses and mounts a
    /// bpffs on it.
    pub fn create(prefix: &str) -> Result<Self, Error> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| Error::BpfDir {
            path: path.clone(),
            reason: "creating",
            source,
        })?;
        // From here on, drop removes the directory again.
        let dir = Self { path };
        crate::loader::mount_bpffs(&dir.path)?;
        Ok(dir)
    }

    /// The directory (the bpffs root).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        // Links (socket and TC) and the shared maps, then the per-packet maps.
        let _ = crate::loader::cleanup(&self.path);
        let _ = crate::nodeport::cleanup(&self.path);
        if let Err(error) = crate::loader::unmount_bpffs(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %ErrorChain(&error), "unmounting a private bpffs");
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
