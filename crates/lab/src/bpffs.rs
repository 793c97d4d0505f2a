//! The lab's own bpffs mount: pins of every node live below it and vanish when it is unmounted.

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount as nix_mount, umount2};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

/// Whether `path` is the root of a bpffs.
pub(crate) fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|stat| stat.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts a fresh bpffs at `path` (created if needed).
pub(crate) fn mount(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    nix_mount(Some("bpf"), path, Some("bpf"), MsFlags::empty(), None::<&str>)?;
    Ok(())
}

/// Unmounts the bpffs at `path` (lazily, so open pins cannot block it) and removes the directory.
pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    while is_bpffs(path) {
        // MNT_DETACH only affects this mount point; stacked mounts are taken off one by one.
        umount2(path, MntFlags::MNT_DETACH)?;
    }
    std::fs::remove_dir(path)
}
