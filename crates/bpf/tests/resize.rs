//! Privileged: a load asking for larger maps than the pinned ones migrates them (every entry
//! copied, ids unchanged) while a client keeps connecting through the old programs, and the
//! new generation takes over without a failed or doubly translated connection.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use aya::maps::MapInfo;
use switchyard_bpf::{Datapath, LoadOptions, MapSizes, abi::*, maps::names};
use switchyard_testing::socket_probe::*;

/// The probe binary of this crate.
const PROBE: &str = env!("CARGO_BIN_EXE_sy-sockprobe");

fn revnat_key(cookie: u64) -> SockRevnatKey {
    let (addr, family) = Addr::from_ip("127.0.0.2".parse().unwrap());
    SockRevnatKey { cookie, addr, port: 8080u16.to_be(), family, pad: [0; 5] }
}

#[test]
fn larger_sizes_migrate_the_pinned_maps_while_a_client_keeps_connecting() {
    if !switchyard_lab::require_root("larger_sizes_migrate_the_pinned_maps") {
        return;
    }
    let mut f = Fixture::new("resize", PROBE);
    f.frontend(7, "10.96.0.10", 80, PROTO_TCP, 0, &V4_BACKENDS);
    let table: Vec<u32> = (0..251).map(|i| 1 + i % 2).collect();
    f.maps().set_maglev_table(9, &table).unwrap();
    let revnat =
        SockRevnat { addr: Addr::from_ip("10.96.0.10".parse().unwrap()).0, ..Default::default() };
    f.maps().sock_revnat.insert(revnat_key(1), revnat, 0).unwrap();
    let small = f.datapath.sizes();

    let Fixture { datapath: old, cgroup, bpf, .. } = f;
    let traffic = connect_loop(PROBE, cgroup.path(), "10.96.0.10:80", 300);
    std::thread::sleep(std::time::Duration::from_millis(150));

    // Migrate: the old programs stay attached (and keep the old maps) until the new ones are.
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = MapSizes {
        frontends: small.frontends * 4,
        slots: small.slots * 4,
        backends: small.backends * 4,
        maglev_tables: small.maglev_tables * 4,
        sock_revnat: small.sock_revnat * 4,
        ..small
    };
    options.maglev_table_size = 251;
    let mut grown = Datapath::load(&options).unwrap();
    assert_eq!(grown.sizes(), options.sizes);
    for (name, size) in [
        (names::FRONTENDS, options.sizes.frontends),
        (names::FE_COUNTERS, options.sizes.frontends),
        (names::SLOTS, options.sizes.slots),
        (names::BACKENDS, options.sizes.backends),
        (names::MAGLEV, options.sizes.maglev_tables),
        (names::SOCK_REVNAT, options.sizes.sock_revnat),
        (names::AFFINITY, small.affinity),
    ] {
        let info = MapInfo::from_pin(bpf.path().join(name)).unwrap();
        assert_eq!(info.max_entries(), size, "{name}");
        assert!(!bpf.path().join(format!("{name}_old")).exists(), "{name}_old left behind");
    }
    let maps = grown.maps();
    let key = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, PROTO_TCP, SCOPE_DEFAULT);
    assert_eq!(maps.frontends.get(&key, 0).unwrap().id, 7, "frontend copied with its id");
    assert_eq!(maps.slots.get(&SlotKey { frontend_id: 7, slot: 1 }, 0).unwrap(), 2);
    assert_eq!(maps.backends.get(&2, 0).unwrap(), old.maps().backends.get(&2, 0).unwrap());
    assert_eq!(maps.maglev_table(9).unwrap(), Some(table), "Maglev table carried over");
    assert!(maps.sock_revnat.get(&revnat_key(1), 0).is_ok(), "reverse entry copied");

    // An entry the old programs write after the copy reaches the new map once they are gone.
    let mut old = old;
    old.maps_mut().sock_revnat.insert(revnat_key(2), revnat, 0).unwrap();
    assert!(grown.maps().sock_revnat.get(&revnat_key(2), 0).is_err());
    grown.attach(cgroup.path()).unwrap();
    assert!(grown.maps().sock_revnat.get(&revnat_key(2), 0).is_ok(), "caught up after attach");
    drop(old);

    assert!(!traffic.is_finished(), "the migration must happen while the client is running");
    let lines = traffic.join().unwrap();
    assert_eq!(lines.len(), 300, "{lines:?}");
    let failed: Vec<_> =
        lines.iter().filter(|l| field(l, "peer") != Some("10.96.0.10:80")).collect();
    assert!(failed.is_empty(), "connections during the migration failed: {failed:?}");
    // Translated exactly once each, by the old or the new generation (counters are shared).
    let translated = grown.maps().counters().unwrap()[&Reason::TranslatedRandom].packets;
    assert_eq!(translated, 300);
}
