//! Named network namespaces, following the `ip netns` convention (`/run/netns/<name>`) so that
//! `ip netns exec <name> ...` works for debugging.
//!
//! A namespace is created by a short-lived thread that unshares its network namespace and
//! bind-mounts it to its name; work inside a namespace runs on a thread that entered it with
//! setns. The calling thread never changes namespace.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::LabError;

/// Where named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of the named namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Sysctls every lab namespace gets: forwarding (nodes and the router route), no reverse-path
/// filter (the host's setting is inherited otherwise), and no IPv6 duplicate address detection
/// (addresses would stay unusable for a second or two).
const SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv6/conf/default/forwarding", "1"),
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
    ("net/ipv6/conf/all/keep_addr_on_down", "1"),
    // ECMP routes (several nodes announcing one LoadBalancer IP) spread flows by 5-tuple.
    ("net/ipv4/fib_multipath_hash_policy", "1"),
    ("net/ipv6/fib_multipath_hash_policy", "1"),
];

/// Creates the named namespace and runs `init` on a thread inside it (e.g. to open a netlink
/// socket bound to it). Fails if the name is taken.
pub(crate) fn create<T: Send>(
    name: &str,
    init: impl FnOnce() -> io::Result<T> + Send,
) -> Result<T, LabError> {
    let path = netns_path(name);
    std::fs::create_dir_all(NETNS_DIR).map_err(LabError::io(format!("creating {NETNS_DIR}")))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(LabError::io(format!("creating netns file {}", path.display())))?;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<T> {
                // Only this thread changes namespace; it exits when the closure ends.
                unshare(CloneFlags::CLONE_NEWNET)?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
                for (key, value) in SYSCTLS {
                    std::fs::write(Path::new("/proc/sys").join(key), value)?;
                }
                init()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    });
    result.map_err(|cause| {
        let _ = remove(name);
        LabError::Io { what: format!("creating netns {name}"), cause }
    })
}

/// Removes the named namespace: unmounts and deletes its file. The kernel frees the namespace
/// (and every device in it) once no process is left inside.
pub(crate) fn remove(name: &str) -> io::Result<()> {
    let path = netns_path(name);
    // MNT_DETACH cannot disturb other mounts.
    let unmounted = umount2(&path, MntFlags::MNT_DETACH).map_err(io::Error::from);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => unmounted,
        Err(err) => Err(err),
    }
}

/// Names of existing namespaces that start with `prefix`.
pub(crate) fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Opens a namespace file for setns (before a fork, so the child only needs the descriptor).
pub(crate) fn open(name: &str) -> Result<File, LabError> {
    let path = netns_path(name);
    File::open(&path).map_err(LabError::io(format!("opening netns {}", path.display())))
}

/// Moves the calling thread into the namespace behind `file`.
pub(crate) fn enter(file: &File) -> io::Result<()> {
    // setns on a namespace descriptor only changes this thread's namespace.
    setns(file, CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Runs `f` on a fresh thread inside the named namespace and returns its result.
///
/// Sockets created by `f` stay in that namespace; threads `f` starts inherit it.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    let file = open(name)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&file).map_err(LabError::io(format!("entering netns {name}")))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
