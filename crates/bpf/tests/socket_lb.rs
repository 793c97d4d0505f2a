//! Privileged end-to-end tests of the socket-level programs: load the object into a bpffs of
//! the test's own, fill the maps by hand, attach to a cgroup of the test's own, and run
//! `sy-sockprobe` in that cgroup inside a fresh network namespace with servers on loopback
//! backend addresses.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use switchyard_bpf::{
    Datapath, Error, LoadOptions,
    abi::*,
    loader::{self, ALL_PROGRAMS},
    maps::names,
};

use switchyard_testing::socket_probe::*;

/// The probe binary of this crate.
const PROBE: &str = env!("CARGO_BIN_EXE_sy-sockprobe");

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
        let mut f = Fixture::new("tcp", PROBE);
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
        // The probe exited: every connection closed and took its reverse entry with it.
        assert_eq!(f.counter(Reason::SockReleased), 40, "{case}");
        assert_eq!(f.datapath.maps().sock_revnat.keys().count(), 0, "{case}: reverse entries left");
        let per_frontend = f.datapath.maps().frontend_counters().unwrap();
        assert_eq!(per_frontend[&7].connections, 40, "{case}: one new connection per connect()");
        f.datapath.maps_mut().remove_frontend_counters(7).unwrap();
        assert!(f.datapath.maps().frontend_counters().unwrap().is_empty(), "{case}");
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
        let mut f = Fixture::new("udp", PROBE);
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
    let mut f = Fixture::new("sticky", PROBE);
    f.frontend(9, "10.96.0.53", 53, PROTO_UDP, 0, &V4_BACKENDS);
    for _ in 0..3 {
        let lines = run_ops(&f, &ops(&V4_SERVERS, "udp-sendto=10.96.0.53:53*20", 1));
        assert_eq!(lines.len(), 20, "{lines:?}");
        assert_eq!(replies(&lines).len(), 1, "one socket, one backend: {lines:?}");
    }
    assert_eq!(f.counter(Reason::TranslatedSticky), 3 * 19);
    // Three sockets, three flows: the sticky datagrams are not new connections.
    assert_eq!(f.datapath.maps().frontend_counters().unwrap()[&9].connections, 3);
}

#[test]
fn a_frontend_without_backends_refuses_at_once_with_econnrefused() {
    if !switchyard_lab::require_root(
        "a_frontend_without_backends_refuses_at_once_with_econnrefused",
    ) {
        return;
    }
    let mut f = Fixture::new("empty", PROBE);
    f.frontend(3, "10.96.0.99", 80, PROTO_TCP, FE_REJECT_EMPTY, &[]);
    f.frontend(4, "10.96.0.99", 53, PROTO_UDP, FE_REJECT_EMPTY, &[]);
    f.frontend(5, "fd00:96::99", 80, PROTO_TCP, FE_REJECT_EMPTY, &[]);
    f.frontend(6, "fd00:96::99", 53, PROTO_UDP, FE_REJECT_EMPTY, &[]);
    let lines = f.probe(&[
        "tcp=10.96.0.99:80",
        "udp-connected=10.96.0.99:53",
        "udp-sendto=10.96.0.99:53",
        "tcp=[fd00:96::99]:80",
        "udp-connected=[fd00:96::99]:53",
        "udp-sendto=[fd00:96::99]:53",
        "tcp=[::ffff:10.96.0.99]:80",
    ]);
    assert_eq!(lines.len(), 7, "{lines:?}");
    for line in &lines {
        assert!(refused_at_once(line), "must fail at once with ECONNREFUSED: {line}");
    }
    assert_eq!(f.counter(Reason::RejectNoBackend), 7);
    assert!(
        f.datapath.maps().frontend_counters().unwrap().is_empty(),
        "refused calls are drops, not connections"
    );
}

#[test]
fn client_ip_affinity_holds_and_expires() {
    if !switchyard_lab::require_root("client_ip_affinity_holds_and_expires") {
        return;
    }
    let mut f = Fixture::new("affinity", PROBE);
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

/// A client's choice that another CPU stored after this connect read the clock (the client's
/// connections start at once) still holds. Simulated by moving the stored time 10 s ahead
/// while the client sleeps between two connections: before the fix its age wrapped around and
/// the second connection picked again.
#[test]
fn a_client_ip_choice_stored_ahead_of_the_clock_still_holds() {
    if !switchyard_lab::require_root("a_client_ip_choice_stored_ahead_of_the_clock_still_holds") {
        return;
    }
    let mut f = Fixture::new("affinity-ahead", PROBE);
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, FE_AFFINITY, &V4_BACKENDS);
    let key = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, PROTO_TCP, SCOPE_DEFAULT);
    let mut frontend = f.maps().frontends.get(&key, 0).unwrap();
    frontend.affinity_timeout_s = 1;
    f.maps().frontends.insert(key, frontend, 0).unwrap();
    let pin = f.bpf.path().join(names::AFFINITY);
    let mut ops: Vec<String> = ops(&V4_SERVERS, "tcp=10.96.0.10:80", 1);
    ops.push("sleep=1500".into());
    ops.push("tcp=10.96.0.10:80".into());
    let lines = std::thread::scope(|scope| {
        let client = scope.spawn(|| run_ops(&f, &ops));
        let data = aya::maps::MapData::from_pin(&pin).unwrap();
        let mut choices: aya::maps::HashMap<_, AffinityKey, Affinity> =
            aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (client_key, mut choice) = loop {
            if let Some(Ok(entry)) = choices.iter().next() {
                break entry;
            }
            assert!(std::time::Instant::now() < deadline, "no choice stored");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        choice.last_used_ns += 10_000_000_000;
        choices.insert(client_key, choice, 0).unwrap();
        client.join().unwrap()
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(replies(&lines).len(), 1, "one backend: {lines:?}");
    assert_eq!(
        (f.counter(Reason::TranslatedRandom), f.counter(Reason::TranslatedAffinity)),
        (1, 1),
        "the second connection took the stored choice"
    );
}

#[test]
fn a_maglev_frontend_selects_through_its_table() {
    if !switchyard_lab::require_root("a_maglev_frontend_selects_through_its_table") {
        return;
    }
    let mut f = Fixture::new("maglev", PROBE);
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, FE_MAGLEV, &V4_BACKENDS);
    let size = f.maps().maglev_table_size().unwrap();
    assert_eq!(size, 251);

    // No table yet: refused, and counted as a broken invariant.
    let lines = f.probe(&["tcp=10.96.0.10:80"]);
    assert!(lines.len() == 1 && refused_at_once(&lines[0]), "{lines:?}");
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
    let mut f = Fixture::new("nodeport", PROBE);
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

    // The node itself (the probe's namespace made the node's): node addresses are NodePorts,
    // loopback is not (never by default, CVE-2020-8558): the namespace's own server answers.
    let bpf_dir = f.bpf.path().display().to_string();
    let as_node = format!("as-node={bpf_dir}");
    let own = "tcp-server=127.0.0.1:30080=own".to_owned();
    let run = |f: &Fixture, node: bool, targets: &[&str]| {
        let mut all: Vec<String> = if node { vec![as_node.clone()] } else { vec![] };
        all.extend(V4_SERVERS.map(str::to_owned));
        all.push(own.clone());
        all.extend(targets.iter().map(|t| format!("tcp={t}")));
        run_ops(f, &all)
    };
    let lines = run(&f, true, &["127.0.0.1:30080", "192.0.2.10:30080", "192.0.2.99:30080"]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(field(&lines[0], "reply"), Some("own"), "loopback is no NodePort by default");
    assert!(field(&lines[1], "reply").is_some(), "node-address NodePort translated: {}", lines[1]);
    assert!(lines[2].contains("err="), "a foreign address is not a NodePort: {}", lines[2]);
    assert_eq!(f.counter(Reason::TranslatedRandom), 1);
    let resolve = |f: &Fixture, destination: &str| {
        let found = f.datapath.maps().resolve(destination.parse().unwrap(), PROTO_TCP).unwrap();
        found.map(|(_, fe)| fe.id)
    };
    // The Rust mirror of the lookup (for `explain`) agrees with what the kernel did.
    assert_eq!(resolve(&f, "127.0.0.1:30080"), None);
    assert_eq!(resolve(&f, "192.0.2.10:30080"), Some(20));
    assert_eq!(resolve(&f, "192.0.2.99:30080"), None);

    // Loopback configured as a NodePort address: translated for the node's own sockets...
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    f.maps().node_addrs.insert(NodeAddrKey::new(loopback), 0, 0).unwrap();
    let lines = run(&f, true, &["127.0.0.1:30080"]);
    let reply = field(&lines[0], "reply");
    assert!(reply.is_some_and(|r| r != "own"), "configured loopback NodePort: {lines:?}");
    assert_eq!(f.counter(Reason::TranslatedRandom), 2);
    assert_eq!(resolve(&f, "127.0.0.1:30080"), Some(20));
    // ...but never for a pod's (any other namespace): its 127.0.0.1 stays its own, as with
    // kube-proxy, whose rules never see a pod's loopback.
    let lines = run(&f, false, &["127.0.0.1:30080", "192.0.2.10:30080"]);
    assert_eq!(field(&lines[0], "reply"), Some("own"), "a pod's loopback stays its own");
    assert!(field(&lines[1], "reply").is_some(), "node-address NodePort translated: {}", lines[1]);
    assert_eq!(f.counter(Reason::TranslatedRandom), 3);
    let maps = f.datapath.maps();
    assert_eq!(
        maps.resolve("127.0.0.1:30080".parse().unwrap(), PROTO_UDP).unwrap(),
        None,
        "other protocol"
    );
}

#[test]
fn a_restarted_loader_adopts_the_pins_and_cleanup_removes_everything() {
    if !switchyard_lab::require_root(
        "a_restarted_loader_adopts_the_pins_and_cleanup_removes_everything",
    ) {
        return;
    }
    let mut f = Fixture::new("restart", PROBE);
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, 0, &V4_BACKENDS);
    let links_before = pinned_links(f.bpf.path());
    assert_eq!(links_before.len(), ALL_PROGRAMS.len());

    // Traffic keeps flowing through the restart: a client connects every few milliseconds
    // while the old loader goes away and a new one adopts the pins and re-attaches.
    let Fixture { datapath, cgroup, bpf, .. } = f;
    let traffic = connect_loop(PROBE, cgroup.path(), "10.96.0.10:80", 300);
    std::thread::sleep(std::time::Duration::from_millis(150));

    // "Restart": drop the old loader, load again from the same directory and attach again.
    drop(datapath);
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = small_sizes();
    options.maglev_table_size = 251;
    let mut datapath = Datapath::load(&options).unwrap();
    let key = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, PROTO_TCP, SCOPE_DEFAULT);
    assert_eq!(datapath.maps().frontends.get(&key, 0).unwrap().id, 7, "map entries survive");
    datapath.attach(cgroup.path()).unwrap();
    let links_after = pinned_links(bpf.path());
    assert_eq!(links_after.len(), ALL_PROGRAMS.len(), "old generation removed: {links_after:?}");
    assert!(links_after.iter().all(|l| !links_before.contains(l)), "new generation pinned");

    assert!(!traffic.is_finished(), "the restart must happen while the client is still running");
    let lines = traffic.join().unwrap();
    assert_eq!(lines.len(), 300, "{lines:?}");
    let failed: Vec<_> =
        lines.iter().filter(|l| field(l, "peer") != Some("10.96.0.10:80")).collect();
    assert!(failed.is_empty(), "connections during the restart failed: {failed:?}");
    // Each connection was translated exactly once, by the old or the new generation.
    let translated = datapath.maps().counters().unwrap()[&Reason::TranslatedRandom].packets;
    assert_eq!(translated, 300);

    // A load asking for smaller state maps adopts the larger pins (tests/resize.rs grows them);
    // a fixed-size map of another size is refused instead of misread.
    let mut other = options.clone();
    other.sizes.frontends = 512;
    assert_eq!(Datapath::load(&other).unwrap().sizes().frontends, options.sizes.frontends);
    other.sizes.node_addrs = 32;
    assert!(matches!(
        Datapath::load(&other),
        Err(Error::IncompatiblePin { name: "sy_node_addrs", .. })
    ));

    // Cleanup: no link, no map pin; the cgroup no longer translates.
    drop(datapath);
    loader::cleanup(bpf.path()).unwrap();
    assert!(pinned_links(bpf.path()).is_empty());
    for name in names::ALL {
        assert!(!bpf.path().join(name).exists(), "{name} still pinned");
    }
    let lines = probe_in(PROBE, cgroup.path(), &["tcp=10.96.0.10:80"]);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("err="), "no translation after cleanup: {}", lines[0]);
    assert!(field(&lines[0], "reply").is_none(), "{}", lines[0]);
}

fn pinned_links(bpf_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(bpf_dir.join(loader::LINKS_DIR)) {
        Ok(entries) => {
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_socket_path_prefers_the_internal_scope_of_a_split_frontend() {
    if !switchyard_lab::require_root(
        "the_socket_path_prefers_the_internal_scope_of_a_split_frontend",
    ) {
        return;
    }
    let mut f = Fixture::new("scope", PROBE);
    // Default (external view): backend 1 only, and a flag saying an internal entry exists.
    f.frontend(30, "10.96.0.30", 80, PROTO_TCP, FE_SPLIT_SCOPE, &V4_BACKENDS[..1]);
    // Internal view (e.g. internalTrafficPolicy Local): backend 2 only.
    let maps = f.maps();
    maps.backends.insert(2, Backend::new("127.0.0.3".parse().unwrap(), 8080, BE_LOCAL), 0).unwrap();
    maps.slots.insert(SlotKey { frontend_id: 31, slot: 0 }, 2, 0).unwrap();
    let internal = FrontendKey::new("10.96.0.30".parse().unwrap(), 80, PROTO_TCP, SCOPE_INTERNAL);
    let value = Frontend { id: 31, flags: FE_LOCAL_ONLY, backend_count: 1, affinity_timeout_s: 0 };
    maps.frontends.insert(internal, value, 0).unwrap();

    let lines = run_ops(&f, &ops(&V4_SERVERS, "tcp=10.96.0.30:80", 10));
    assert_eq!(replies(&lines), BTreeMap::from([("b2".to_owned(), 10)]), "{lines:?}");
    let resolved = f.datapath.maps().resolve("10.96.0.30:80".parse().unwrap(), PROTO_TCP).unwrap();
    assert_eq!(resolved.map(|(key, fe)| (key.scope, fe.id)), Some((SCOPE_INTERNAL, 31)));

    // No local endpoint in the internal view: refused, not sent to the external view's backends.
    let value = Frontend { backend_count: 0, ..value };
    f.maps().frontends.insert(internal, value, 0).unwrap();
    let lines = f.probe(&["tcp=10.96.0.30:80"]);
    assert!(lines.len() == 1 && refused_at_once(&lines[0]), "{lines:?}");
}

#[test]
fn a_slot_naming_a_missing_backend_is_refused_and_counted() {
    if !switchyard_lab::require_root("a_slot_naming_a_missing_backend_is_refused_and_counted") {
        return;
    }
    let mut f = Fixture::new("broken", PROBE);
    f.frontend(40, "10.96.0.40", 80, PROTO_TCP, 0, &V4_BACKENDS[..1]);
    f.maps().backends.remove(&1).unwrap();
    let lines = f.probe(&["tcp=10.96.0.40:80"]);
    assert!(lines.len() == 1 && refused_at_once(&lines[0]), "{lines:?}");
    assert_eq!(f.counter(Reason::ErrBackendMissing), 1);
}

#[test]
fn attaching_to_a_missing_cgroup_fails_naming_it_and_keeps_the_running_links() {
    if !switchyard_lab::require_root("attaching_to_a_missing_cgroup_fails_naming_it") {
        return;
    }
    let mut f = Fixture::new("badcg", PROBE);
    let before = pinned_links(f.bpf.path());
    let missing = f.cgroup.path().join("does-not-exist");
    let error = f.datapath.attach(&missing).unwrap_err();
    assert!(matches!(&error, Error::Cgroup { path, .. } if *path == missing), "{error:?}");
    assert!(error.to_string().contains("does-not-exist"), "{error}");
    assert_eq!(pinned_links(f.bpf.path()), before, "the running generation is untouched");
}

#[test]
fn an_unconnected_udp_socket_moves_when_its_backend_leaves_the_frontend() {
    if !switchyard_lab::require_root("an_unconnected_udp_socket_moves_when_its_backend_leaves") {
        return;
    }
    let mut f = Fixture::new("moves", PROBE);
    f.frontend(9, "10.96.0.53", 53, PROTO_UDP, 0, &V4_BACKENDS);
    // The probe marks when its first five datagrams are answered and waits for the test to
    // change the frontend before sending five more: no race with a loaded machine.
    let sync = tempfile::tempdir().unwrap();
    let sent = sync.path().join("sent");
    let moved = sync.path().join("moved");
    let cgroup = f.cgroup.path().to_owned();
    let steps = format!(
        "udp-sendto=10.96.0.53:53*5,mark={},await={},10.96.0.53:53*5",
        sent.display(),
        moved.display()
    );
    let client = std::thread::spawn(move || {
        let mut ops: Vec<String> = V4_SERVERS.map(str::to_owned).to_vec();
        ops.push(steps);
        probe_in(PROBE, &cgroup, &ops.iter().map(String::as_str).collect::<Vec<_>>())
    });

    // Wait until the first five are answered, then take the socket's sticky backend out of the
    // frontend the way the reconciler does (lower the count, move the last slot into the hole).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !sent.exists() {
        assert!(std::time::Instant::now() < deadline, "the probe never finished its first sends");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let entries: Vec<_> = f.maps().sock_sticky.iter().filter_map(Result::ok).collect();
    let chosen = entries.first().expect("no sticky entry after the first sends").1.backend_id;
    let remaining = if chosen == 1 { 2 } else { 1 };
    let key = FrontendKey::new("10.96.0.53".parse().unwrap(), 53, PROTO_UDP, SCOPE_DEFAULT);
    let maps = f.maps();
    let mut frontend = maps.frontends.get(&key, 0).unwrap();
    frontend.backend_count = 1;
    maps.frontends.insert(key, frontend, 0).unwrap();
    maps.slots.insert(SlotKey { frontend_id: 9, slot: 0 }, remaining, 0).unwrap();
    maps.slots.remove(&SlotKey { frontend_id: 9, slot: 1 }).unwrap();
    std::fs::write(&moved, b"").unwrap();

    let lines = client.join().unwrap();
    assert_eq!(lines.len(), 10, "{lines:?}");
    let name = |id: u32| format!("b{id}");
    let (before, after) = lines.split_at(5);
    assert!(before.iter().all(|l| field(l, "reply") == Some(&name(chosen))), "{before:?}");
    assert!(after.iter().all(|l| field(l, "reply") == Some(&name(remaining))), "moved: {after:?}");
    assert!(lines.iter().all(|l| field(l, "from") == Some("10.96.0.53:53")), "{lines:?}");
}

/// loadBalancerSourceRanges on the socket path: the routed source of a translated socket's
/// first packet is checked (`cgroup_skb/egress`); outside the ranges nothing reaches a backend
/// (TCP never connects, a UDP send fails with EPERM), inside them everything works, and an
/// unconnected UDP socket refused for one frontend still reaches another. A socket bound to its
/// source before connect()/sendto() is refused by the call itself with ECONNREFUSED.
#[test]
fn source_ranges_are_checked_on_the_socket_path() {
    if !switchyard_lab::require_root("source_ranges_are_checked_on_the_socket_path") {
        return;
    }
    use switchyard_bpf::nodeport::SourceRangeMap as _;
    use switchyard_bpf::nodeport_abi::SrcRangeKey;
    // (case, frontend, tcp target, allowed prefix, other prefix, bound source, backends, servers)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        (&'a str, u8),
        (&'a str, u8),
        &'a str,
        &'a [(u32, &'a str, u16)],
        &'a [&'a str],
    );
    let cases: [Case<'_>; 2] = [
        (
            "ipv4",
            "192.0.2.10",
            "192.0.2.10:80",
            ("127.0.0.0", 8),
            ("10.0.0.0", 8),
            "127.0.0.1",
            &V4_BACKENDS,
            &V4_SERVERS,
        ),
        (
            "ipv6",
            "2001:db8::10",
            "[2001:db8::10]:80",
            ("fd00::", 64),
            ("2001:db8:1::", 48),
            "fd00::2",
            &V6_BACKENDS,
            &V6_SERVERS,
        ),
    ];
    for (case, vip, target, allowed, other, source, backends, servers) in cases {
        for inside in [true, false] {
            let mut f = Fixture::new("src-ranges", PROBE);
            f.frontend(7, vip, 80, PROTO_TCP, FE_SOURCE_RANGES, backends);
            f.frontend(8, vip, 80, PROTO_UDP, FE_SOURCE_RANGES, backends);
            // An unrestricted frontend on the same backends.
            f.frontend(9, vip, 81, PROTO_UDP, 0, backends);
            let prefix = if inside { allowed } else { other };
            for id in [7, 8] {
                let key = SrcRangeKey::new(id, prefix.0.parse().unwrap(), prefix.1).unwrap();
                f.maps().add_source_range(id, key).unwrap();
            }
            let udp_other = target.replace(":80", ":81");
            let mut ops: Vec<String> = servers.iter().map(|s| (*s).to_owned()).collect();
            ops.push(format!("tcp={target}"));
            ops.push(format!("udp-connected={target}"));
            ops.push(format!("udp-sendto={target}*1,{udp_other}*1,{target}*1"));
            ops.push(format!("tcp-from={source}@{target}"));
            ops.push(format!("udp-from={source}@{target}"));
            let lines = run_ops(&f, &ops);
            assert_eq!(lines.len(), 7, "{case} inside={inside}: {lines:?}");
            let refused = f.counter(Reason::DropSourceRangeSock);
            let rejected = f.counter(Reason::RejectSourceRange);
            if inside {
                for line in &lines {
                    assert!(field(line, "reply").is_some(), "{case}: allowed source: {line}");
                }
                assert_eq!((refused, rejected), (0, 0), "{case}");
            } else {
                // Bound first: the source is known, so connect() and sendto() are refused at
                // once with ECONNREFUSED (111), before any packet.
                for line in &lines[5..] {
                    assert_eq!(field(line, "err"), Some("111"), "{case}: bound: {line}");
                    let after: u64 = field(line, "after_us").unwrap().parse().unwrap();
                    assert!(after < 500_000, "{case}: refused at once, not timed out: {line}");
                }
                // TCP: the namespace's first connection; its SYN (and its retransmissions)
                // dropped until the probe gives up.
                assert!(field(&lines[0], "err").is_some(), "{case}: tcp: {}", lines[0]);
                assert!(!refused_at_once(&lines[0]), "{case}: nothing learned yet: {}", lines[0]);
                // No forecast of the source: the IPv4 backends are on 127/8 (never learned: it
                // cannot reach an LB IP), and the IPv6 namespace has shown two sources (fd00::2
                // and fd00::3, each checked by a datagram to itself). Each UDP send fails at once
                // with EPERM, dropped at egress.
                for line in [&lines[1], &lines[2], &lines[4]] {
                    assert_eq!(field(line, "err"), Some("1"), "{case}: {line}");
                }
                assert_eq!(rejected, 2, "{case}");
                // One SYN and at least one retransmission, three datagrams.
                assert!(refused >= 5, "{case}: {refused} packets counted");
                assert!(
                    field(&lines[3], "reply").is_some(),
                    "{case}: same socket, unrestricted frontend: {}",
                    lines[3]
                );
            }
        }
    }
}

/// loadBalancerSourceRanges for unbound sockets, refused at the call: once a namespace has shown
/// its one source address (here: a TCP connection or a UDP datagram to a server in it), connect() and sendmsg()
/// to a frontend whose ranges exclude it fail at once with ECONNREFUSED, before any packet; with
/// ranges that include it everything connects. A namespace that has shown two sources of the
/// family is never refused on a guess: its SYN is dropped at egress as before.
#[test]
fn unbound_sockets_of_a_namespace_with_one_source_are_refused_at_connect() {
    if !switchyard_lab::require_root(
        "unbound_sockets_of_a_namespace_with_one_source_are_refused_at_connect",
    ) {
        return;
    }
    use switchyard_bpf::nodeport::SourceRangeMap as _;
    use switchyard_bpf::nodeport_abi::SrcRangeKey;
    // (case, frontend, target, backend, second address, inside prefix, outside prefix)
    let cases = [
        (
            "ipv4",
            "192.0.2.10",
            "192.0.2.10:80",
            "10.1.0.2",
            "10.1.0.3",
            ("10.1.0.0", 24),
            ("10.2.0.0", 16),
        ),
        (
            "ipv6",
            "2001:db8::10",
            "[2001:db8::10]:80",
            "fd00:1::2",
            "fd00:1::3",
            ("fd00:1::", 64),
            ("fd00:2::", 64),
        ),
    ];
    for (case, vip, target, backend, second, inside_prefix, outside_prefix) in cases {
        let bracket = |a: &str| if a.contains(':') { format!("[{a}]") } else { a.to_owned() };
        let (b, s) = (bracket(backend), bracket(second));
        // (inside the ranges, two sources shown, how the namespace shows its source)
        let variants = [
            (true, false, "tcp"),
            (false, false, "tcp"),
            (false, false, "udp-connected"),
            (false, true, "tcp"),
        ];
        for (inside, several, shown_by) in variants {
            let mut f = Fixture::new("src-learned", PROBE);
            let backends = [(1, backend, 8080)];
            f.frontend(7, vip, 80, PROTO_TCP, FE_SOURCE_RANGES, &backends);
            f.frontend(8, vip, 80, PROTO_UDP, FE_SOURCE_RANGES, &backends);
            let prefix = if inside { inside_prefix } else { outside_prefix };
            for id in [7, 8] {
                let key = SrcRangeKey::new(id, prefix.0.parse().unwrap(), prefix.1).unwrap();
                f.maps().add_source_range(id, key).unwrap();
            }
            let mut ops = vec![
                format!("addr-quiet={backend}"),
                format!("addr-quiet={second}"),
                format!("tcp-server={b}:8080=b1"),
                format!("udp-server={b}:8080=b1"),
                format!("tcp-server={s}:8080=b2"),
                // The namespace shows its source: a TCP connection (sockops) or its first
                // datagram (egress) to its own address.
                format!("{shown_by}={b}:8080"),
            ];
            if several {
                // ... and a second one (a namespace with two interfaces).
                ops.push(format!("tcp={s}:8080"));
            }
            ops.push(format!("tcp={target}"));
            ops.push(format!("udp-connected={target}"));
            let lines = run_ops(&f, &ops);
            let first_direct = if several { 2 } else { 1 };
            assert_eq!(lines.len(), first_direct + 2, "{case}: {lines:?}");
            for line in &lines[..first_direct] {
                assert!(field(line, "reply").is_some(), "{case}: direct: {line}");
            }
            let (tcp, udp) = (&lines[first_direct], &lines[first_direct + 1]);
            let rejected = f.counter(Reason::RejectSourceRange);
            let dropped = f.counter(Reason::DropSourceRangeSock);
            let label = format!("{case} inside={inside} several={several} shown by {shown_by}");
            if inside {
                assert_eq!(field(tcp, "reply"), Some("b1"), "{label}: {tcp}");
                assert_eq!(field(udp, "reply"), Some("b1"), "{label}: {udp}");
                assert_eq!((rejected, dropped), (0, 0), "{label}");
            } else if !several {
                assert!(refused_at_once(tcp), "{label}: {tcp}");
                assert!(refused_at_once(udp), "{label}: {udp}");
                assert_eq!((rejected, dropped), (2, 0), "{label}: refused before any packet");
            } else {
                // No guess: the SYN is dropped at egress (the connect times out), the datagram
                // too (EPERM).
                assert!(field(tcp, "err").is_some() && !refused_at_once(tcp), "{label}: {tcp}");
                assert_eq!(field(udp, "err"), Some("1"), "{label}: {udp}");
                assert_eq!(rejected, 0, "{label}");
                assert!(dropped >= 2, "{label}: {dropped} packets dropped");
            }
        }
    }
}
