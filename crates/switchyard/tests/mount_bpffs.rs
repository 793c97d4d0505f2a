//! `switchyard agent --mount-bpffs PATH`, the DaemonSet's init container: mounts a bpffs where
//! there is none (creating the directory), leaves one that is there alone, and marks nothing,
//! so `--cleanup` never unmounts what it mounted. Root: mounts under a directory of its own.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::process::Command;

use switchyard_bpf::loader::{MOUNTED_MARK, is_bpffs, unmount_bpffs};

/// Unmounts on drop, also when an assertion fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_bpffs(&self.0).unwrap_or(false) {
            if unmount_bpffs(&self.0).is_err() {
                break;
            }
        }
    }
}

fn mount_bpffs(path: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["agent", "--mount-bpffs"])
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    log
}

#[test]
fn mount_bpffs_mounts_once_and_leaves_no_mark() {
    if !switchyard_lab::require_root("mount_bpffs_mounts_once_and_leaves_no_mark") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("sys-fs-bpf");
    let _unmount = Unmount(path.clone());
    let log = mount_bpffs(&path);
    assert!(log.contains("mounted a bpffs"), "{log}");
    assert!(is_bpffs(&path).unwrap());
    assert!(!path.join(MOUNTED_MARK).exists(), "no mark: --cleanup must not unmount it");
    // Again: already there, nothing stacked on top.
    let log = mount_bpffs(&path);
    assert!(log.contains("a bpffs is mounted already"), "{log}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let shown = path.display().to_string();
    assert_eq!(mounts.lines().filter(|l| l.split(' ').nth(4) == Some(&shown)).count(), 1);
}
