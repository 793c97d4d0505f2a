//! `switchyard`: one binary, three roles (node, director, controller) and the tools around them.
//!
//! This is the edge of the program: argument parsing, logging set-up and `anyhow` errors live here;
//! every decision is made in the library crates.

mod cli;

use clap::Parser;

/// jemalloc rather than glibc's malloc: after the first reading at 10,000 Services × 25
/// endpoints glibc kept ≈ 55 MB of free chunks among the live ones that it cannot return
/// (docs/benchmarks.md, "Where the agent's memory goes"); the agent purges jemalloc's free
/// pages after large updates (`switchyard-node`'s `jemalloc` feature).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (a C `const char *`, hence a pointer to the first
/// byte): freed pages go back to the kernel within half a second instead of ten, pages it
/// would only mark as reusable are returned at once, and one arena serves the few threads
/// that allocate: objects the manifest watcher and the agent's loop keep then share slabs
/// instead of each arena keeping its own part-used ones (issue 20: two arenas before).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&u8> = Some(&b"dirty_decay_ms:500,muzzy_decay_ms:0,narenas:1\0"[0]);

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    /// Reads one of jemalloc's options, of the type its manual gives.
    fn read<T: Copy + Default>(name: &CStr) -> T {
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
        assert_eq!(rc, 0, "mallctl {name:?}");
        value
    }

    /// Issue 20: the binary allocates with jemalloc, and jemalloc runs with the options of
    /// `MALLOC_CONF` (without the exported symbol it would keep its defaults: 10 s decay, 4
    /// arenas per CPU), so what the benchmark measured is what ships. (jemalloc's statistics,
    /// which would show the allocations themselves, are not built in.)
    #[test]
    fn the_binary_allocates_with_jemalloc_and_its_options() {
        assert_eq!(read::<libc::c_uint>(c"opt.narenas"), 1);
        assert_eq!(read::<isize>(c"opt.dirty_decay_ms"), 500);
        assert_eq!(read::<isize>(c"opt.muzzy_decay_ms"), 0);
    }
}
