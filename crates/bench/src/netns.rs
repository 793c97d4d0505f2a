//! Network namespaces of our own, deleted on drop, and running tools inside them.
//!
//! Tools enter the namespace with `setns(2)` in the child before `exec`, which is what
//! `ip netns exec` does minus its private mount namespace and /sys remount: those cost a few
//! milliseconds per run that kube-proxy (already inside the node's namespace) never pays.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::BenchError;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace: one created by us (`ip netns add`, deleted when dropped), or one owned
/// by someone else (a lab's node) that we only run tools in.
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
    /// A cgroup (its `cgroup.procs`) every tool run here joins, for memory accounting.
    cgroup_procs: Option<std::path::PathBuf>,
}

/// How a tool run inside a namespace went.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// From spawn to exit, including writing the input to the tool's standard input.
    pub elapsed: Duration,
    /// User plus system CPU time of the tool (kernel work done on its behalf in netlink calls
    /// counts as its system time). Less disturbed than `elapsed` by other load on the machine.
    pub cpu: Duration,
}

/// User plus system CPU time of all children this process has reaped so far.
fn children_cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass, which is zero-initialised POD.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

impl Netns {
    /// Creates `<prefix>-<pid>-<n>`; names are unique per process and call, so concurrent
    /// benchmarks and tests never collide.
    pub fn create(prefix: &str) -> Result<Self, BenchError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{id}", std::process::id());
        let output = Command::new("ip").args(["netns", "add", &name]).output().map_err(|e| {
            BenchError::Netns { name: name.clone(), action: "ip netns add", detail: e.to_string() }
        })?;
        if !output.status.success() {
            return Err(BenchError::Netns {
                name,
                action: "ip netns add",
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(Self { name, owned: true, cgroup_procs: None })
    }

    /// A namespace someone else created and will delete (e.g. a lab node's).
    pub fn existing(name: impl Into<String>) -> Self {
        Self { name: name.into(), owned: false, cgroup_procs: None }
    }

    /// Deletes namespaces named `<prefix>-<pid>-<n>` whose creating process is gone (a run that
    /// was killed before its guards could drop). Returns the names deleted.
    pub fn sweep_stale(prefix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        let mut deleted = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            // `rest` is `<tag>-<pid>-<n>` or `<pid>-<n>`: the pid is the second-to-last field.
            let fields: Vec<&str> = rest.rsplitn(3, '-').collect();
            let Some(pid) = fields.get(1).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let status = Command::new("ip")
                .args(["netns", "del", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) {
                deleted.push(name);
            }
        }
        deleted
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes every later tool run join the cgroup at `dir` (between fork and exec), so what
    /// the kernel allocates on its behalf is charged there.
    pub fn charge_to(&mut self, dir: &Path) {
        self.cgroup_procs = Some(dir.join("cgroup.procs"));
    }

    /// Runs `program args` inside the namespace with `input` on standard input, and fails if it
    /// exits non-zero or runs longer than `limit` (then it is killed).
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> Result<Run, BenchError> {
        let namespace_file = File::open(format!("/run/netns/{}", self.name)).map_err(|e| {
            BenchError::Netns { name: self.name.clone(), action: "open", detail: e.to_string() }
        })?;
        let fd = namespace_file.as_raw_fd();
        let procs = match &self.cgroup_procs {
            Some(path) => {
                Some(std::fs::OpenOptions::new().write(true).open(path).map_err(|e| {
                    BenchError::Netns {
                        name: self.name.clone(),
                        action: "opening the cgroup to charge",
                        detail: format!("{}: {e}", path.display()),
                    }
                })?)
            }
            None => None,
        };
        let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
        let spawn_error = |source| BenchError::Spawn {
            program: program.to_owned(),
            namespace: self.name.clone(),
            cause: source,
        };
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        // SAFETY: between fork and exec we only call write(2) and setns(2), async-signal-safe, on
        // descriptors the parent keeps open until the child has been spawned.
        unsafe {
            command.pre_exec(move || {
                // Writing "0" to cgroup.procs moves the writing process itself.
                if let Some(procs_fd) = procs_fd {
                    nix::unistd::write(BorrowedFd::borrow_raw(procs_fd), b"0")?;
                }
                nix::sched::setns(
                    BorrowedFd::borrow_raw(fd),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )?;
                Ok(())
            });
        }
        let cpu_before = children_cpu_time();
        let started = Instant::now();
        let mut child = command.spawn().map_err(spawn_error)?;
        drop(namespace_file);
        drop(procs);
        let stdin = child.stdin.take();
        // The input is written from a second thread: tools that parse as they read (like
        // iptables-restore --noflush) would otherwise keep this thread from ever checking the
        // limit. Killing the child makes the writer fail with EPIPE and end.
        let status = std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    // A tool that rejects its input may close stdin early; its exit status says why.
                    let _ = stdin.write_all(input);
                });
            }
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return Ok(status),
                    Ok(None) => {}
                    Err(error) => return Err(spawn_error(error)),
                }
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(BenchError::TimedOut {
                        program: program.to_owned(),
                        namespace: self.name.clone(),
                        limit,
                    });
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })?;
        let elapsed = started.elapsed();
        let cpu = children_cpu_time().saturating_sub(cpu_before);
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            stderr.truncate(2000);
            return Err(BenchError::Failed {
                program: program.to_owned(),
                namespace: self.name.clone(),
                status: status.to_string(),
                stderr: stderr.trim().to_owned(),
            });
        }
        Ok(Run { elapsed, cpu })
    }

    /// Runs a tool and returns its standard output (for reading rules back in tests).
    pub fn output(&self, program: &str, args: &[&str]) -> Result<String, BenchError> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .map_err(|source| BenchError::Spawn {
                program: program.to_owned(),
                namespace: self.name.clone(),
                cause: source,
            })?;
        if !output.status.success() {
            return Err(BenchError::Failed {
                program: program.to_owned(),
                namespace: self.name.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
