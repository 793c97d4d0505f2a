//! The socket-level programs under test (crates/bpf's socket-LB tests and connect benchmark):
//! the loaded datapath on a bpffs and cgroup of the caller's own (removed on drop, also on
//! panic), and `sy-sockprobe` running in that cgroup inside a fresh network namespace.
//!
//! The probe binary belongs to crates/bpf: its callers pass `env!("CARGO_BIN_EXE_sy-sockprobe")`.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use switchyard_bpf::{Datapath, LoadOptions, MapSizes, abi::*};

use crate::{BpfDir, Cgroup};

/// Whether a probe line reports ECONNREFUSED within a second of the op starting (a silent
/// drop would instead time out after seconds, with ETIMEDOUT or EAGAIN).
pub fn refused_at_once(line: &str) -> bool {
    let fast = field(line, "after_us")
        .and_then(|us| us.parse::<u64>().ok())
        .is_some_and(|us| us < 1_000_000);
    field(line, "err") == Some("111") && fast
}

/// A loaded and attached datapath with its own bpffs and cgroup.
#[derive(Debug)]
pub struct Fixture {
    /// The socket-level programs, attached to `cgroup`.
    pub datapath: Datapath,
    /// Where the programs are attached and the probe runs.
    pub cgroup: Cgroup,
    /// Where the maps and links are pinned.
    pub bpf: BpfDir,
    /// Path of the `sy-sockprobe` binary.
    pub probe: &'static str,
}

impl Fixture {
    /// Loads and attaches the programs for `test`; `probe` is the `sy-sockprobe` binary.
    pub fn new(test: &str, probe: &'static str) -> Self {
        let bpf = BpfDir::new(test);
        let cgroup = Cgroup::new(test);
        let mut options = LoadOptions::new(bpf.path());
        options.sizes = small_sizes();
        options.maglev_table_size = 251;
        let mut datapath = Datapath::load(&options).unwrap();
        datapath.attach(cgroup.path()).unwrap();
        Fixture { datapath, cgroup, bpf, probe }
    }

    pub fn maps(&mut self) -> &mut switchyard_bpf::Maps {
        self.datapath.maps_mut()
    }

    /// Frontend `ip:port/proto` with the given backends (ids from `first_backend_id`).
    pub fn frontend(
        &mut self,
        id: u32,
        ip: &str,
        port: u16,
        proto: u8,
        flags: u32,
        backends: &[(u32, &str, u16)],
    ) {
        let maps = self.maps();
        for (slot, &(backend_id, addr, backend_port)) in (0u32..).zip(backends) {
            let backend = Backend::new(addr.parse().unwrap(), backend_port, 0);
            maps.backends.insert(backend_id, backend, 0).unwrap();
            maps.slots.insert(SlotKey { frontend_id: id, slot }, backend_id, 0).unwrap();
        }
        let key = FrontendKey::new(ip.parse().unwrap(), port, proto, SCOPE_DEFAULT);
        let frontend =
            Frontend { id, flags, backend_count: backends.len() as u32, affinity_timeout_s: 0 };
        maps.frontends.insert(key, frontend, 0).unwrap();
    }

    pub fn counter(&self, reason: Reason) -> u64 {
        self.datapath.maps().counters().unwrap()[&reason].packets
    }

    /// Runs the probe in the cgroup; returns its output lines.
    pub fn probe(&self, ops: &[&str]) -> Vec<String> {
        probe_in(self.probe, self.cgroup.path(), ops)
    }
}

/// Map sizes small enough that many tests can load at once.
pub fn small_sizes() -> MapSizes {
    MapSizes {
        frontends: 1024,
        slots: 4096,
        backends: 1024,
        maglev_tables: 16,
        sock_revnat: 1024,
        affinity: 1024,
        sock_sticky: 1024,
        node_addrs: 16,
        src_ranges: 1024,
    }
}

/// Starts a client in `cgroup` (inside a fresh namespace, the [`V4_SERVERS`] running) that
/// connects to `target` (TCP) `count` times, 4 ms apart, and returns its lines when done: the
/// traffic a restart or a map migration must not disturb.
pub fn connect_loop(
    probe: &'static str,
    cgroup: &Path,
    target: &str,
    count: usize,
) -> std::thread::JoinHandle<Vec<String>> {
    let cgroup = cgroup.to_owned();
    let mut ops: Vec<String> = V4_SERVERS.map(str::to_owned).to_vec();
    for _ in 0..count {
        ops.push(format!("tcp={target}"));
        ops.push("sleep=4".to_owned());
    }
    std::thread::spawn(move || {
        probe_in(probe, &cgroup, &ops.iter().map(String::as_str).collect::<Vec<_>>())
    })
}

/// Runs `probe` (the `sy-sockprobe` binary) with `ops` in `cgroup`; returns its output lines.
pub fn probe_in(probe: &str, cgroup: &Path, ops: &[&str]) -> Vec<String> {
    let mut child = Command::new(probe)
        .arg(cgroup)
        .args(ops)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sy-sockprobe {ops:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "sy-sockprobe {ops:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// `key=value` fields of a probe line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

pub fn replies(lines: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lines {
        if let Some(reply) = field(line, "reply") {
            *out.entry(reply.to_owned()).or_default() += 1;
        }
    }
    out
}

pub const V4_BACKENDS: [(u32, &str, u16); 2] = [(1, "127.0.0.2", 8080), (2, "127.0.0.3", 8080)];
pub const V6_BACKENDS: [(u32, &str, u16); 2] = [(11, "fd00::2", 8080), (12, "fd00::3", 8080)];
pub const V4_SERVERS: [&str; 4] = [
    "tcp-server=127.0.0.2:8080=b1",
    "tcp-server=127.0.0.3:8080=b2",
    "udp-server=127.0.0.2:8080=b1",
    "udp-server=127.0.0.3:8080=b2",
];
pub const V6_SERVERS: [&str; 6] = [
    "addr=fd00::2",
    "addr=fd00::3",
    "tcp-server=[fd00::2]:8080=b1",
    "tcp-server=[fd00::3]:8080=b2",
    "udp-server=[fd00::2]:8080=b1",
    "udp-server=[fd00::3]:8080=b2",
];

pub fn ops(servers: &[&str], op: &str, times: usize) -> Vec<String> {
    servers
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::repeat_n(op.to_owned(), times))
        .collect()
}

pub fn run_ops(f: &Fixture, ops: &[String]) -> Vec<String> {
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    f.probe(&ops)
}
