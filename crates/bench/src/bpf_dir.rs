//! A bpffs of our own for Switchyard's maps: a fresh directory under the temp dir with a bpffs
//! mounted on it; pins removed, unmounted and deleted on drop, also when a measurement fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::BenchError;

/// A private bpffs directory; see the module docs.
#[derive(Debug)]
pub struct BpfDir {
    path: PathBuf,
}

impl BpfDir {
    /// Creates `<tmp>/<prefix>-<pid>-<n>` and mounts a bpffs on it.
    pub fn create(prefix: &str) -> Result<Self, BenchError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|source| BenchError::Write { path: path.display().to_string(), source })?;
        let dir = Self { path };
        switchyard_bpf::loader::mount_bpffs(&dir.path)
            .map_err(|e| BenchError::Switchyard(format!("{}: {e}", dir.path.display())))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        // Links (socket and TC) and the shared maps, then the per-packet maps.
        let _ = switchyard_bpf::loader::cleanup(&self.path);
        let _ = switchyard_bpf::tc::cleanup(&self.path);
        if let Ok(c_path) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
            // SAFETY: c_path is a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
