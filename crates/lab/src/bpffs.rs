//! The lab's own bpffs mount: pins of every node live below it and vanish when it is unmounted.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Whether `path` is the root of a bpffs.
pub(crate) fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = cstring(path) else { return false };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type == BPF_FS_MAGIC
    }
}

/// Mounts a fresh bpffs at `path` (created if needed).
pub(crate) fn mount(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    let target = cstring(path)?;
    let fstype = c"bpf";
    // SAFETY: valid NUL-terminated strings; bpffs takes no mount data we pass.
    let ret = unsafe {
        libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Unmounts the bpffs at `path` (lazily, so open pins cannot block it) and removes the directory.
pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let target = cstring(path)?;
    while is_bpffs(path) {
        // SAFETY: a valid path; MNT_DETACH only affects this mount point.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    std::fs::remove_dir(path)
}
