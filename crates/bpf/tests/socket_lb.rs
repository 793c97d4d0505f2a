//! Privileged end-to-end tests of the socket-level programs: load the object into a bpffs of
//! the test's own, fill the maps by hand, attach to a cgroup of the test's own, and run
//! `sy-sockprobe` in that cgroup inside a fresh network namespace with servers on loopback
//! backend addresses.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use switchyard_bpf::{
    Datapath, Error, LoadOptions, MapSizes,
    abi::*,
    loader::{self, SOCK_PROGRAMS},
    maps::names,
};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const ECONNREFUSED: &str = "err=111";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique name per test and process, so concurrent tests never share a cgroup or bpffs.
fn unique(test: &str) -> String {
    format!("sy-bpf-{}-{}-{test}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A bpffs of the test's own; on drop: detach, remove pins, unmount, remove the directory.
struct BpfDir(PathBuf);

impl BpfDir {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(unique(test));
        std::fs::create_dir_all(&path).unwrap();
        loader::mount_bpffs(&path).unwrap();
        BpfDir(path)
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        let _ = loader::cleanup(&self.0);
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A cgroup of the test's own; on drop: kill what is left in it and remove it.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(test: &str) -> Self {
        let path = Path::new(CGROUP_ROOT).join(unique(test));
        std::fs::create_dir(&path).unwrap();
        Cgroup(path)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.0).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A loaded and attached datapath with its own bpffs and cgroup.
struct Fixture {
    datapath: Datapath,
    cgroup: Cgroup,
    bpf: BpfDir,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let bpf = BpfDir::new(test);
        let cgroup = Cgroup::new(test);
        let mut options = LoadOptions::new(&bpf.0);
        options.sizes = small_sizes();
        options.maglev_table_size = 251;
        let mut datapath = Datapath::load(&options).unwrap();
        datapath.attach(&cgroup.0).unwrap();
        Fixture { datapath, cgroup, bpf }
    }

    fn maps(&mut self) -> &mut switchyard_bpf::Maps {
        self.datapath.maps_mut()
    }

    /// Frontend `ip:port/proto` with the given backends (ids from `first_backend_id`).
    fn frontend(
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

    fn counter(&self, reason: Reason) -> u64 {
        self.datapath.maps().counters().unwrap()[&reason].packets
    }

    /// Runs the probe in the cgroup; returns its output lines.
    fn probe(&self, ops: &[&str]) -> Vec<String> {
        probe_in(&self.cgroup.0, ops)
    }
}

fn small_sizes() -> MapSizes {
    MapSizes {
        frontends: 1024,
        slots: 4096,
        backends: 1024,
        maglev_tables: 16,
        sock_revnat: 1024,
        affinity: 1024,
        sock_sticky: 1024,
        node_addrs: 16,
    }
}

fn probe_in(cgroup: &Path, ops: &[&str]) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sy-sockprobe"))
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
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn replies(lines: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lines {
        if let Some(reply) = field(line, "reply") {
            *out.entry(reply.to_owned()).or_default() += 1;
        }
    }
    out
}

const V4_BACKENDS: [(u32, &str, u16); 2] = [(1, "127.0.0.2", 8080), (2, "127.0.0.3", 8080)];
const V6_BACKENDS: [(u32, &str, u16); 2] = [(11, "fd00::2", 8080), (12, "fd00::3", 8080)];
const V4_SERVERS: [&str; 4] = [
    "tcp-server=127.0.0.2:8080=b1",
    "tcp-server=127.0.0.3:8080=b2",
    "udp-server=127.0.0.2:8080=b1",
    "udp-server=127.0.0.3:8080=b2",
];
const V6_SERVERS: [&str; 6] = [
    "addr=fd00::2",
    "addr=fd00::3",
    "tcp-server=[fd00::2]:8080=b1",
    "tcp-server=[fd00::3]:8080=b2",
    "udp-server=[fd00::2]:8080=b1",
    "udp-server=[fd00::3]:8080=b2",
];

fn ops(servers: &[&str], op: &str, times: usize) -> Vec<String> {
    servers
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::repeat_n(op.to_owned(), times))
        .collect()
}

fn run_ops(f: &Fixture, ops: &[String]) -> Vec<String> {
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    f.probe(&ops)
}

#[test]
fn tcp_connect_to_a_frontend_reaches_every_backend_and_getpeername_shows_the_frontend() {
    if !switchyard_lab::require_root("tcp_connect_to_a_frontend_reaches_every_backend") {
        return;
    }
    let cases = [
        ("ipv4", "10.96.0.10", "10.96.0.10:80", &V4_BACKENDS, &V4_SERVERS[..]),
        ("ipv6", "fd00:96::10", "[fd00:96::10]:80", &V6_BACKENDS, &V6_SERVERS[..]),
        (
            "ipv4 on a dual-stack socket",
            "10.96.0.10",
            "[::ffff:10.96.0.10]:80",
            &V4_BACKENDS,
            &V4_SERVERS[..],
        ),
    ];
    for (case, vip, target, backends, servers) in cases {
        let mut f = Fixture::new("tcp");
        f.frontend(7, vip, 80, PROTO_TCP, 0, backends);
        let lines = run_ops(&f, &ops(servers, &format!("tcp={target}"), 40));
        assert_eq!(lines.len(), 40, "{case}: {lines:?}");
        for line in &lines {
            assert_eq!(
                field(line, "peer"),
                Some(target),
                "{case}: getpeername must show the frontend: {line}"
            );
        }
        let spread = replies(&lines);
        assert_eq!(
            spread.keys().collect::<Vec<_>>(),
            ["b1", "b2"],
            "{case}: every backend answers: {spread:?}"
        );
        assert_eq!(f.counter(Reason::TranslatedRandom), 40, "{case}");
        assert_eq!(f.counter(Reason::RevnatGetpeername), 40, "{case}");
    }
}

#[test]
fn udp_replies_show_the_frontend_as_source() {
    if !switchyard_lab::require_root("udp_replies_show_the_frontend_as_source") {
        return;
    }
    let cases = [
        (
            "ipv4 connected",
            "10.96.0.53",
            "udp-connected=10.96.0.53:53",
            "10.96.0.53:53",
            &V4_BACKENDS,
            &V4_SERVERS[..],
        ),
        (
            "ipv4 sendto",
            "10.96.0.53",
            "udp-sendto=10.96.0.53:53",
            "10.96.0.53:53",
            &V4_BACKENDS,
            &V4_SERVERS[..],
        ),
        (
            "ipv6 connected",
            "fd00:96::53",
            "udp-connected=[fd00:96::53]:53",
            "[fd00:96::53]:53",
            &V6_BACKENDS,
            &V6_SERVERS[..],
        ),
        (
            "ipv6 sendto",
            "fd00:96::53",
            "udp-sendto=[fd00:96::53]:53",
            "[fd00:96::53]:53",
            &V6_BACKENDS,
            &V6_SERVERS[..],
        ),
    ];
    for (case, vip, op, shown, backends, servers) in cases {
        let mut f = Fixture::new("udp");
        f.frontend(9, vip, 53, PROTO_UDP, 0, backends);
        let lines = run_ops(&f, &ops(servers, op, 30));
        assert_eq!(lines.len(), 30, "{case}: {lines:?}");
        for line in &lines {
            assert_eq!(
                field(line, "from"),
                Some(shown),
                "{case}: recvmsg must show the frontend: {line}"
            );
        }
        assert_eq!(
            replies(&lines).len(),
            2,
            "{case}: both backends answer over 30 sockets: {lines:?}"
        );
        assert!(f.counter(Reason::RevnatRecvmsg) >= 30, "{case}");
    }
}

#[test]
fn an_unconnected_udp_socket_sticks_to_one_backend() {
    if !switchyard_lab::require_root("an_unconnected_udp_socket_sticks_to_one_backend") {
        return;
    }
    let mut f = Fixture::new("sticky");
    f.frontend(9, "10.96.0.53", 53, PROTO_UDP, 0, &V4_BACKENDS);
    for _ in 0..3 {
        let lines = run_ops(&f, &ops(&V4_SERVERS, "udp-sendto=10.96.0.53:53*20", 1));
        assert_eq!(lines.len(), 20, "{lines:?}");
        assert_eq!(replies(&lines).len(), 1, "one socket, one backend: {lines:?}");
    }
    assert_eq!(f.counter(Reason::TranslatedSticky), 3 * 19);
}

#[test]
fn a_frontend_without_backends_refuses_at_once_with_econnrefused() {
    if !switchyard_lab::require_root(
        "a_frontend_without_backends_refuses_at_once_with_econnrefused",
    ) {
        return;
    }
    let mut f = Fixture::new("empty");
    f.frontend(3, "10.96.0.99", 80, PROTO_TCP, FE_REJECT_EMPTY, &[]);
    f.frontend(4, "10.96.0.99", 53, PROTO_UDP, FE_REJECT_EMPTY, &[]);
    f.frontend(5, "fd00:96::99", 80, PROTO_TCP, FE_REJECT_EMPTY, &[]);
    f.frontend(6, "fd00:96::99", 53, PROTO_UDP, FE_REJECT_EMPTY, &[]);
    let started = Instant::now();
    let lines = f.probe(&[
        "tcp=10.96.0.99:80",
        "udp-connected=10.96.0.99:53",
        "udp-sendto=10.96.0.99:53",
        "tcp=[fd00:96::99]:80",
        "udp-connected=[fd00:96::99]:53",
        "udp-sendto=[fd00:96::99]:53",
        "tcp=[::ffff:10.96.0.99]:80",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(lines.len(), 7, "{lines:?}");
    for line in &lines {
        assert!(line.ends_with(ECONNREFUSED), "must fail with ECONNREFUSED: {line}");
    }
    assert!(elapsed < Duration::from_secs(2), "refusal must be immediate, took {elapsed:?}");
    assert_eq!(f.counter(Reason::RejectNoBackend), 7);
}

#[test]
fn client_ip_affinity_holds_and_expires() {
    if !switchyard_lab::require_root("client_ip_affinity_holds_and_expires") {
        return;
    }
    let mut f = Fixture::new("affinity");
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, FE_AFFINITY, &V4_BACKENDS);
    let key = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, PROTO_TCP, SCOPE_DEFAULT);
    let mut frontend = f.maps().frontends.get(&key, 0).unwrap();
    frontend.affinity_timeout_s = 1;
    f.maps().frontends.insert(key, frontend, 0).unwrap();

    // One netns (one probe process) is one client: 20 connections, one backend.
    let lines = run_ops(&f, &ops(&V4_SERVERS, "tcp=10.96.0.10:80", 20));
    assert_eq!(replies(&lines).len(), 1, "affinity holds: {lines:?}");
    assert_eq!(
        (f.counter(Reason::TranslatedRandom), f.counter(Reason::TranslatedAffinity)),
        (1, 19)
    );

    // Expired: the next connection from the same netns chooses again (a fresh random pick).
    let mut with_pause: Vec<String> = ops(&V4_SERVERS, "tcp=10.96.0.10:80", 1);
    with_pause.push("sleep=1500".into());
    with_pause.push("tcp=10.96.0.10:80".into());
    let lines = run_ops(&f, &with_pause);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        f.counter(Reason::TranslatedRandom),
        3,
        "each new netns picks once, the expired entry once more"
    );
    assert_eq!(f.counter(Reason::TranslatedAffinity), 19);
}

#[test]
fn a_maglev_frontend_selects_through_its_table() {
    if !switchyard_lab::require_root("a_maglev_frontend_selects_through_its_table") {
        return;
    }
    let mut f = Fixture::new("maglev");
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, FE_MAGLEV, &V4_BACKENDS);
    let size = f.maps().maglev_table_size().unwrap();
    assert_eq!(size, 251);

    // No table yet: refused, and counted as a broken invariant.
    let lines = f.probe(&["tcp=10.96.0.10:80"]);
    assert_eq!(lines, ["tcp=10.96.0.10:80 err=111"]);
    assert_eq!(f.counter(Reason::ErrMaglevMissing), 1);

    // Table pointing only at backend 2: every connection goes there.
    f.maps().set_maglev_table(7, &vec![2; size as usize]).unwrap();
    let lines = run_ops(&f, &ops(&V4_SERVERS, "tcp=10.96.0.10:80", 10));
    assert_eq!(replies(&lines), BTreeMap::from([("b2".to_owned(), 10)]));

    // Swapped in one update for a half/half table: both backends are used.
    let table: Vec<u32> = (0..size).map(|i| 1 + i % 2).collect();
    f.maps().set_maglev_table(7, &table).unwrap();
    assert_eq!(f.maps().maglev_table(7).unwrap(), Some(table));
    let lines = run_ops(&f, &ops(&V4_SERVERS, "tcp=10.96.0.10:80", 40));
    assert_eq!(replies(&lines).len(), 2, "{lines:?}");
    assert_eq!(f.counter(Reason::TranslatedMaglev), 50);

    // A table of the wrong size is refused before it reaches the kernel.
    assert!(matches!(f.maps().set_maglev_table(7, &[1, 2, 3]), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_node_port_on_a_node_address_is_translated() {
    if !switchyard_lab::require_root("a_node_port_on_a_node_address_is_translated") {
        return;
    }
    let mut f = Fixture::new("nodeport");
    let maps = f.maps();
    for (slot, &(id, addr, port)) in (0u32..).zip(&V4_BACKENDS) {
        maps.backends.insert(id, Backend::new(addr.parse().unwrap(), port, 0), 0).unwrap();
        maps.slots.insert(SlotKey { frontend_id: 20, slot }, id, 0).unwrap();
    }
    let key = FrontendKey::node_port(AF_INET, 30080, PROTO_TCP, SCOPE_DEFAULT);
    let frontend = Frontend { id: 20, flags: FE_NODEPORT, backend_count: 2, affinity_timeout_s: 0 };
    maps.frontends.insert(key, frontend, 0).unwrap();
    let node_ip: IpAddr = "192.0.2.10".parse().unwrap();
    maps.node_addrs.insert(NodeAddrKey::new(node_ip), 0, 0).unwrap();

    let mut all = V4_SERVERS.map(str::to_owned).to_vec();
    all.extend(
        ["tcp=127.0.0.1:30080", "tcp=192.0.2.10:30080", "tcp=192.0.2.99:30080"].map(str::to_owned),
    );
    let lines = run_ops(&f, &all);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(field(&lines[0], "reply").is_some(), "loopback NodePort translated: {}", lines[0]);
    assert!(field(&lines[1], "reply").is_some(), "node-address NodePort translated: {}", lines[1]);
    assert!(lines[2].contains("err="), "a foreign address is not a NodePort: {}", lines[2]);
    assert_eq!(f.counter(Reason::TranslatedRandom), 2);
}

#[test]
fn a_restarted_loader_adopts_the_pins_and_cleanup_removes_everything() {
    if !switchyard_lab::require_root(
        "a_restarted_loader_adopts_the_pins_and_cleanup_removes_everything",
    ) {
        return;
    }
    let mut f = Fixture::new("restart");
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, 0, &V4_BACKENDS);
    let links_before = pinned_links(&f.bpf.0);
    assert_eq!(links_before.len(), SOCK_PROGRAMS.len());

    // "Restart": drop the old loader, load again from the same directory and attach again.
    let Fixture { datapath, cgroup, bpf } = f;
    drop(datapath);
    let mut options = LoadOptions::new(&bpf.0);
    options.sizes = small_sizes();
    options.maglev_table_size = 251;
    let mut datapath = Datapath::load(&options).unwrap();
    let key = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, PROTO_TCP, SCOPE_DEFAULT);
    assert_eq!(datapath.maps().frontends.get(&key, 0).unwrap().id, 7, "map entries survive");
    datapath.attach(&cgroup.0).unwrap();
    let links_after = pinned_links(&bpf.0);
    assert_eq!(links_after.len(), SOCK_PROGRAMS.len(), "old generation removed: {links_after:?}");
    assert!(links_after.iter().all(|l| !links_before.contains(l)), "new generation pinned");
    let lines = probe_in(
        &cgroup.0,
        &ops(&V4_SERVERS, "tcp=10.96.0.10:80", 5).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        lines.iter().filter(|l| field(l, "peer") == Some("10.96.0.10:80")).count(),
        5,
        "{lines:?}"
    );

    // Another build wanting other sizes refuses the pins instead of misreading them.
    let mut other = options.clone();
    other.sizes.frontends = 2048;
    assert!(matches!(
        Datapath::load(&other),
        Err(Error::IncompatiblePin { name: "sy_frontends", .. })
    ));

    // Cleanup: no link, no map pin; the cgroup no longer translates.
    drop(datapath);
    loader::cleanup(&bpf.0).unwrap();
    assert!(pinned_links(&bpf.0).is_empty());
    for name in names::ALL {
        assert!(!bpf.0.join(name).exists(), "{name} still pinned");
    }
    let lines = probe_in(&cgroup.0, &["tcp=10.96.0.10:80"]);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("err="), "no translation after cleanup: {}", lines[0]);
    assert!(!lines[0].ends_with(ECONNREFUSED) || field(&lines[0], "reply").is_none());
}

fn pinned_links(bpf_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(bpf_dir.join(loader::LINKS_DIR)) {
        Ok(entries) => {
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
        }
        Err(_) => Vec::new(),
    }
}
