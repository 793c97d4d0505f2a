//! bpffs directories of a test's own, so no test ever sees the host's or another test's pins.

use std::path::Path;

use switchyard_bpf::{Datapath, LoadOptions, PrivateBpffs};

/// A bpffs on a fresh directory named after the test; on drop: links detached, pins removed,
/// unmounted and the directory removed (also when the test panics).
#[derive(Debug)]
pub struct BpfDir(PrivateBpffs);

impl BpfDir {
    /// Mounts a fresh bpffs (needs root: call `switchyard_lab::require_root` first).
    pub fn new(test: &str) -> Self {
        let prefix = format!("sy-test-{test}");
        Self(PrivateBpffs::create(&prefix).unwrap_or_else(|e| panic!("bpffs for {test}: {e:?}")))
    }

    /// The directory (the bpffs root): what `--bpf-dir` and `LoadOptions::new` take.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Load options for this directory with a small Maglev table (M = 251), so tests stay quick.
    pub fn options(&self) -> LoadOptions {
        LoadOptions { maglev_table_size: 251, ..LoadOptions::new(self.path()) }
    }

    /// The socket datapath loaded with [`BpfDir::options`] (not attached).
    pub fn load(&self) -> Datapath {
        Datapath::load(&self.options()).unwrap_or_else(|e| panic!("loading the datapath: {e:?}"))
    }
}
