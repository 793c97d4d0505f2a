//! Shared by the privileged tests: a private bpffs directory that is always cleaned up.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_bpf::{Datapath, LoadOptions};

/// A bpffs mounted on a fresh directory under /tmp; unmounted and removed on drop.
pub struct BpfDir {
    path: PathBuf,
}

impl BpfDir {
    pub fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sy-dataplane-{test}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load options with a small Maglev table so tests stay quick.
    pub fn options(&self) -> LoadOptions {
        LoadOptions { maglev_table_size: 251, ..LoadOptions::new(&self.path) }
    }

    pub fn load(&self) -> Datapath {
        Datapath::load(&self.options()).unwrap()
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        let _ = switchyard_bpf::loader::cleanup(&self.path);
        let c_path = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.path);
    }
}
