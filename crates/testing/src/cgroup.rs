//! cgroup v2 directories of a test's own: programs attach there, never to the root cgroup.

use std::path::{Path, PathBuf};

/// A fresh cgroup under [`switchyard_lab::DEFAULT_CGROUP_ROOT`] named after the test; on drop,
/// whatever still runs in it is killed and the directory removed.
#[derive(Debug)]
pub struct Cgroup(PathBuf);

impl Cgroup {
    /// Creates the directory (needs root: call `switchyard_lab::require_root` first).
    pub fn new(test: &str) -> Self {
        let path = Path::new(switchyard_lab::DEFAULT_CGROUP_ROOT).join(crate::unique(test));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("cgroup {}: {e}", path.display()));
        Self(path)
    }

    /// The directory: what `--cgroup` and `Datapath::attach` take.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(error) = switchyard_lab::kill_and_remove_cgroup(&self.0) {
            eprintln!("removing test cgroup {}: {error}", self.0.display());
        }
    }
}
