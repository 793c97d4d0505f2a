//! The privileges deploy/daemonset.yaml declares for the stale-socket sweep, shown necessary and
//! sufficient: a "pod" (a root process with all capabilities, in a network namespace of its
//! own, in a cgroup of the test's) holds a TCP connection to a "backend"; a thread limited to
//! the DaemonSet's capabilities sweeps the cgroup and destroys it, and a thread lacking
//! CAP_SYS_ADMIN (setns) or CAP_SYS_PTRACE (opening another process's /proc/PID/ns/net) cannot.
//! The test runs in the host's PID namespace, as the DaemonSet's hostPID gives the agent.
//! Root: a namespace and a cgroup of its own.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use switchyard_dataplane::sockdiag::{SweepReport, sweep_cgroup};
use switchyard_testing::{Cgroup, KillOnDrop};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;
const CHILD: &str = "SWITCHYARD_SWEEP_CHILD";

/// Limits the calling thread (and threads it starts) to `caps`: effective and permitted.
fn limit_thread_capabilities(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut data = [Data::default(); 2];
    for &cap in caps {
        let word = &mut data[(cap / 32) as usize];
        word.effective |= 1 << (cap % 32);
        word.permitted |= 1 << (cap % 32);
    }
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    // SAFETY: capset with a version 3 header and two data words; pid 0 is this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// The sweep of `cgroup` for connections to `backend`, by a thread with only `caps`.
fn sweep_with(caps: &[u32], cgroup: &std::path::Path, backend: (IpAddr, u16)) -> SweepReport {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                limit_thread_capabilities(caps);
                sweep_cgroup(cgroup, &HashSet::from([backend]), &|_| false)
            })
            .join()
            .unwrap()
    })
}

/// The "pod": in its own network namespace, a listener and a client connected to it; prints
/// the port, then waits for its standard input to close.
fn child() {
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _accepted = listener.accept().unwrap();
    println!("ready {port}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn the_sweep_needs_sys_admin_and_sys_ptrace_and_the_daemonsets_capabilities_suffice() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    if !switchyard_lab::require_root("the_sweep_needs_sys_admin_and_sys_ptrace") {
        return;
    }
    let cgroup = Cgroup::new("sweep-privileges");
    let mut pod = KillOnDrop(
        Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_sweep_needs_sys_admin_and_sys_ptrace_and_the_daemonsets_capabilities_suffice",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::fs::write(cgroup.path().join("cgroup.procs"), pod.0.id().to_string()).unwrap();
    let mut lines = BufReader::new(pod.0.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("the pod's ready line").unwrap();
        // libtest prints the test's name first, on the same line.
        if let Some((_, port)) = line.split_once("ready ") {
            break port.trim().parse().unwrap();
        }
    };
    let backend = (IpAddr::V4(Ipv4Addr::LOCALHOST), port);

    let daemonset = [CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE];
    let without = |cap: u32| daemonset.iter().copied().filter(|c| *c != cap).collect::<Vec<_>>();
    for (missing, name) in [(CAP_SYS_PTRACE, "SYS_PTRACE"), (CAP_SYS_ADMIN, "SYS_ADMIN")] {
        let report = sweep_with(&without(missing), cgroup.path(), backend);
        // Without SYS_PTRACE the namespace cannot be read; without SYS_ADMIN setns fails.
        // Either way the sweep says so instead of reporting a clean pass.
        assert_eq!(report.destroyed, 0, "without {name}: {report:?}");
        assert!(!report.errors.is_empty(), "without {name} the sweep reports why: {report:?}");
        if missing == CAP_SYS_PTRACE {
            assert!(report.errors[0].contains("CAP_SYS_PTRACE"), "{report:?}");
        }
    }
    let report = sweep_with(&[CAP_BPF, CAP_NET_ADMIN], cgroup.path(), backend);
    assert_eq!(report.destroyed, 0, "BPF and NET_ADMIN alone: {report:?}");

    let report = sweep_with(&daemonset, cgroup.path(), backend);
    assert_eq!(report.destroyed, 1, "the DaemonSet's capabilities: {report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.namespaces, 1, "{report:?}");
}
