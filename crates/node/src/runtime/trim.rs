//! Hands the allocator's free memory back to the kernel after a large update.
//!
//! Reading a manifest directory or an API server's first list parses every object (JSON trees,
//! typed objects, the changes) and the first plan holds every map operation: hundreds of MB at
//! 10,000 Services that are freed once the maps are written, but an allocator keeps freed
//! memory for reuse, so the agent's resident set stayed at its start-up peak.
//!
//! The `switchyard` binary allocates with jemalloc (feature `jemalloc`): glibc could return only
//! whole free pages at the top or inside its heap (`malloc_trim`) and kept ≈ 55 MB of free
//! chunks among live ones at 10,000 Services × 25 endpoints (docs/benchmarks.md); jemalloc's
//! options are set in the binary (`malloc_conf`), and here its free pages are purged at once.
//! Without the feature (this crate's tests, other binaries) glibc's `malloc_trim` does it.

use std::time::Instant;

use tracing::debug;

/// Updates with at least this many changes are followed by a trim; smaller ones free little,
/// and a trim walks every arena (a few ms at 10,000 Services).
pub(super) const TRIM_AFTER_CHANGES: usize = 1000;

/// At most this many glibc arenas. glibc gives each thread that meets contention an arena of its
/// own (up to 8 per CPU), and memory freed in one is never reused by another: the manifest
/// watcher's parsing and the agent loop's changes then fragment apart. The agent's allocating
/// threads are few (its loop, the manifest watcher, the health thread), so two arenas cost no
/// measurable contention; at 10,000 Services × 25 endpoints the resident set is 9 % smaller.
/// (jemalloc runs with one arena, set in the binary's `malloc_conf`.)
#[cfg(not(feature = "jemalloc"))]
const MAX_ARENAS: libc::c_int = 2;

/// Limits glibc's arenas to [`MAX_ARENAS`]; called before the agent starts its threads (an
/// arena made before stays). Elsewhere than glibc nothing to do. With jemalloc, logs the
/// options it runs with.
pub(super) fn limit_arenas() {
    #[cfg(feature = "jemalloc")]
    {
        let arenas = jemalloc::read::<libc::c_uint>(c"opt.narenas");
        let dirty_decay_ms = jemalloc::read::<isize>(c"opt.dirty_decay_ms");
        debug!(?arenas, ?dirty_decay_ms, "allocator: jemalloc");
    }
    #[cfg(all(not(feature = "jemalloc"), target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter.
        let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS) } == 1;
        debug!(set, max = MAX_ARENAS, "glibc arenas limited");
    }
}

/// Returns free heap memory to the kernel (jemalloc: purges every arena; glibc: `malloc_trim`;
/// elsewhere nothing to do).
pub(super) fn release_free_memory() {
    let started = Instant::now();
    #[cfg(feature = "jemalloc")]
    let released = jemalloc::purge_all();
    #[cfg(all(not(feature = "jemalloc"), target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    #[cfg(all(not(feature = "jemalloc"), not(target_env = "gnu")))]
    let released = false;
    debug!(released, micros = started.elapsed().as_micros() as u64, "returned free heap memory");
}

/// jemalloc's control interface (`mallctl`), for the two uses above.
#[cfg(feature = "jemalloc")]
mod jemalloc {
    use std::ffi::CStr;

    /// `MALLCTL_ARENAS_ALL` in `arena.<i>.purge`: every arena.
    const PURGE_ALL: &CStr = c"arena.4096.purge";

    /// The calling thread's cache of freed objects.
    const FLUSH_TCACHE: &CStr = c"thread.tcache.flush";

    /// Hands the calling thread's cached free objects back to their slabs, then purges the
    /// unused dirty pages of every arena; true when jemalloc accepted the purge. The thread
    /// that applied the update freed most of what it allocated; objects left in its cache keep
    /// their slabs (and pages) from being emptied.
    pub(super) fn purge_all() -> bool {
        // Nothing to flush when the thread has no cache: the result does not matter.
        let _ = control(FLUSH_TCACHE);
        control(PURGE_ALL)
    }

    /// A control that reads and writes nothing; true when jemalloc accepted it.
    fn control(name: &CStr) -> bool {
        // SAFETY: `thread.tcache.flush` and `arena.<i>.purge` read and write nothing (all
        // pointers null, length 0).
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        rc == 0
    }

    /// A read-only option; `None` if jemalloc does not know it.
    pub(super) fn read<T: Copy + Default>(name: &CStr) -> Option<T> {
        let mut value = T::default();
        let mut len = size_of::<T>();
        // SAFETY: `value` is a `T` of `len` bytes, the type jemalloc documents for `name`.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast(),
                &raw mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && len == size_of::<T>()).then_some(value)
    }
}
