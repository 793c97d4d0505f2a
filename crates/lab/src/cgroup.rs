//! cgroup v2 directories of a lab: created empty, emptied (killed) and removed at teardown.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The default cgroup v2 mount on these machines (a hybrid hierarchy).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";

/// How long teardown waits for killed processes to leave a cgroup.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn create(path: &Path) -> io::Result<()> {
    match std::fs::create_dir(path) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn pids(path: &Path) -> io::Result<Vec<i32>> {
    let text = std::fs::read_to_string(path.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|line| line.trim().parse().ok()).collect())
}

/// Kills every process in `path` and its descendants (all of them were started by the lab) and
/// removes the directories, deepest first. A missing directory is not an error.
pub fn kill_and_remove(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut dirs = vec![path.to_path_buf()];
    collect_children(path, &mut dirs)?;
    // cgroup.kill (Linux 5.14+) kills the whole subtree at once; fall back to signalling pids.
    if std::fs::write(path.join("cgroup.kill"), "1").is_err() {
        for dir in &dirs {
            for pid in pids(dir)? {
                // The pid is in our cgroup; one that exited meanwhile is no error.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    for dir in dirs.iter().rev() {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound => break,
                Err(err)
                    if Instant::now() < deadline
                        && err.raw_os_error() == Some(Errno::EBUSY as i32) =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("removing cgroup {}: {err}", dir.display()),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn collect_children(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
            collect_children(&entry.path(), out)?;
        }
    }
    Ok(())
}
