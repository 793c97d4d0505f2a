//! `switchyard director --cleanup` (issue 21), as root in a network namespace of the test's own:
//! it unmounts a bpffs the director mounted (it stayed mounted before), leaves one the director
//! did not mount, and refuses a directory that holds none of the director's pins.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use switchyard_lab::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn is_mount_point(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    mountinfo.lines().any(|line| line.split(' ').nth(4) == Some(&*path))
}

/// Unmounts what the test (or a director) mounted if the test failed before `--cleanup` did.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_mount_point(&self.0) {
            let status = Command::new("umount").arg("-l").arg(&self.0).status();
            if !status.is_ok_and(|s| s.success()) {
                break;
            }
        }
    }
}

fn ip(args: &str) {
    let status = Command::new("ip").args(args.split_whitespace()).status().unwrap();
    assert!(status.success(), "ip {args}: {status}");
}

/// Runs a director on `up0` with `bpf_dir` until it attached its program, stops it with
/// SIGTERM, and runs `director --cleanup` on `bpf_dir`. Called from the namespace's thread, so
/// both processes start in that namespace.
fn run_and_clean_up(scratch: &Path, bpf_dir: &Path) -> Output {
    let manifests = scratch.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut director = Command::new(BIN)
        .args(["director", "--manifests"])
        .arg(&manifests)
        .args(["--devices", "up0", "--address", "10.0.0.100", "--xdp-mode", "generic"])
        .args(["--shutdown-grace-seconds", "0", "--bpf-dir"])
        .arg(bpf_dir)
        .arg("--api-socket")
        .arg(scratch.join("director.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let attached = wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(bpf_dir.join("links")).is_ok_and(|mut links| links.next().is_some())
    });
    let term = Command::new("kill").args(["-TERM", &director.id().to_string()]).status().unwrap();
    assert!(term.success());
    director.wait().unwrap();
    assert!(attached, "the director never attached its program under {}", bpf_dir.display());
    assert!(is_mount_point(bpf_dir), "no bpffs on {}", bpf_dir.display());
    Command::new(BIN).args(["director", "--cleanup", "--bpf-dir"]).arg(bpf_dir).output().unwrap()
}

#[test]
fn cleanup_unmounts_the_bpffs_the_director_mounted_and_only_that() {
    if !switchyard_lab::require_root("cleanup_unmounts_the_bpffs_the_director_mounted") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Only this thread (and the processes it starts) changes namespace.
                switchyard_testing::nodeport_fixture::enter_private_netns();
                ip("link set lo up");
                ip("link add up0 type veth peer name up1");
                ip("link set up0 up");
                ip("link set up1 up");
                ip("addr add 10.0.0.100/24 dev up0");

                let directors = scratch.join("mounted-by-director");
                let _unmount = Unmount(directors.clone());
                let output = run_and_clean_up(scratch, &directors);
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(output.status.success(), "{stderr}");
                assert!(!is_mount_point(&directors), "still mounted after --cleanup: {stderr}");
                let left: Vec<_> = std::fs::read_dir(&directors).unwrap().collect();
                assert!(left.is_empty(), "left behind: {left:?} {stderr}");

                let hosts = scratch.join("mounted-by-host");
                std::fs::create_dir(&hosts).unwrap();
                let _unmount_hosts = Unmount(hosts.clone());
                let mut mount = Command::new("mount");
                mount.args(["-t", "bpf", "bpffs"]).arg(&hosts);
                assert!(mount.status().unwrap().success());
                let output = run_and_clean_up(scratch, &hosts);
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(output.status.success(), "{stderr}");
                assert!(
                    is_mount_point(&hosts),
                    "a bpffs the director did not mount went: {stderr}"
                );
                assert!(!hosts.join("sy_dir_vips").exists(), "pins left behind: {stderr}");
            })
            .join()
            .unwrap();
    });
}

/// A wrong `--bpf-dir` (nothing of the director's there) is an error, not a clean-up.
#[test]
fn cleanup_of_a_directory_without_director_pins_fails() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["director", "--cleanup", "--bpf-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing to clean up in"), "{stderr}");
}
