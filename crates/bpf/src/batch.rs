//! `BPF_MAP_UPDATE_BATCH` / `BPF_MAP_DELETE_BATCH` (Linux 5.6+): one syscall for thousands of
//! entries. aya 0.14 has no wrapper; programming 250,000 entries one syscall each costs most of
//! the one-second budget, in batches a fraction of it. Used by the node's reconciler
//! (`switchyard-dataplane`) and the director's table writes ([`crate::director`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `enum bpf_cmd` values from linux/bpf.h.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries per syscall by default: large enough to amortise the call, small enough to stay
/// responsive.
pub const DEFAULT_CHUNK: usize = 16 * 1024;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads every entry of a hash map, `chunk` entries per syscall.
pub fn lookup_all<K: Copy + Default, V: Copy + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
) -> io::Result<Vec<(K, V)>> {
    let chunk = chunk.max(1);
    let mut out = Vec::new();
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // Hash maps use a bucket index (u32) as the resume token.
    let mut token: u64 = 0;
    let mut first = true;
    loop {
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &mut token as *mut u64 as u64 },
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: keys and values have room for `chunk` elements of the map's key and value
        // types, the tokens outlive the call, attr is a valid bpf_attr prefix.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let filled = (attr.count as usize).min(chunk);
        out.extend(keys[..filled].iter().copied().zip(values[..filled].iter().copied()));
        match err {
            None => {}
            Some(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(err) => return Err(err),
        }
        token = next;
        first = false;
    }
}

/// Runs one batch command; returns how many entries the kernel processed and the error, if any.
///
/// # Safety
/// `keys` (and `values`, if not null) must point at `count` elements of the map's key (value)
/// size that stay valid for the call.
unsafe fn batch_call(
    cmd: libc::c_long,
    fd: BorrowedFd<'_>,
    keys: *const u8,
    values: *const u8,
    count: usize,
) -> (usize, Option<io::Error>) {
    let mut attr = BatchAttr {
        keys: keys as u64,
        values: values as u64,
        count: count as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix that outlives the call; the pointers inside are
    // valid per this function's contract.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &mut attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 { (attr.count as usize, Some(io::Error::last_os_error())) } else { (count, None) }
}

/// Writes `keys[i] -> values[i]` for all `i`. `K` and `V` must be the map's `#[repr(C)]` key and
/// value types without implicit padding.
pub fn update<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    chunk: usize,
) -> io::Result<()> {
    debug_assert_eq!(keys.len(), values.len());
    let chunk = chunk.max(1);
    for (keys, values) in keys.chunks(chunk).zip(values.chunks(chunk)) {
        // SAFETY: both slices hold keys.len() elements of the map's key and value types.
        let (_, err) = unsafe {
            batch_call(
                BPF_MAP_UPDATE_BATCH,
                fd,
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                keys.len(),
            )
        };
        if let Some(err) = err {
            return Err(err);
        }
    }
    Ok(())
}

/// Below this many entries a second thread costs more than it saves.
const PARALLEL_MIN: usize = 32 * 1024;

/// Like [`update`], with large batches split over two threads when `threads` > 1: the kernel
/// locks hash maps per bucket, so two writers into one map scale, and from-scratch programming
/// (hundreds of thousands of slots) is bound by the kernel's per-entry work. Entries within one
/// call are independent (one phase), so their order does not matter.
pub fn update_parallel<K: Copy + Sync, V: Copy + Sync>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    chunk: usize,
    threads: usize,
) -> io::Result<()> {
    if threads < 2 || keys.len() < PARALLEL_MIN {
        return update(fd, keys, values, chunk);
    }
    let half = keys.len() / 2;
    let (first_keys, second_keys) = keys.split_at(half);
    let (first_values, second_values) = values.split_at(half);
    std::thread::scope(|scope| {
        let second = scope.spawn(|| update(fd, second_keys, second_values, chunk));
        let first = update(fd, first_keys, first_values, chunk);
        let second =
            second.join().unwrap_or_else(|_| Err(io::Error::other("batch thread panicked")));
        first.and(second)
    })
}

/// Deletes `keys`; keys that are not in the map are skipped. Returns how many were missing.
pub fn delete<K: Copy>(fd: BorrowedFd<'_>, keys: &[K], chunk: usize) -> io::Result<usize> {
    let chunk_len = chunk.max(1);
    let mut missing = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(chunk_len)];
        // SAFETY: chunk holds chunk.len() elements of the map's key type; no values.
        let (done, err) = unsafe {
            batch_call(
                BPF_MAP_DELETE_BATCH,
                fd,
                chunk.as_ptr().cast(),
                std::ptr::null(),
                chunk.len(),
            )
        };
        match err {
            None => rest = &rest[chunk.len()..],
            // The key at `done` is not there: skip it and go on after it.
            Some(err) if err.raw_os_error() == Some(libc::ENOENT) && done < chunk.len() => {
                missing += 1;
                rest = &rest[done + 1..];
            }
            Some(err) => return Err(err),
        }
    }
    Ok(missing)
}
