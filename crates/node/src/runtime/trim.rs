//! Hands the allocator's free memory back to the kernel after a large update.
//!
//! Reading a manifest directory or an API server's first list parses every object (JSON trees,
//! typed objects, the changes) and the first plan holds every map operation: hundreds of MB at
//! 10,000 Services that are freed once the maps are written, but glibc keeps freed memory in
//! its arenas (one per thread that allocated: the tokio workers, the manifest watcher), so the
//! agent's resident set stayed at its start-up peak. `malloc_trim(0)` returns every free page
//! of every arena (glibc 2.8+ trims inside the heap too, not only its top).

use std::time::Instant;

use tracing::debug;

/// Updates with at least this many changes are followed by a trim; smaller ones free little,
/// and a trim walks every arena (a few ms at 10,000 Services).
pub(super) const TRIM_AFTER_CHANGES: usize = 1000;

/// Returns free heap memory to the kernel (glibc only; elsewhere nothing to do).
pub(super) fn release_free_memory() {
    let started = Instant::now();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    #[cfg(not(target_env = "gnu"))]
    let released = false;
    debug!(released, micros = started.elapsed().as_micros() as u64, "returned free heap memory");
}
