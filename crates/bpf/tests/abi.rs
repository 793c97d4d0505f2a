//! Address and key constructors: one representation for IPv4 and IPv6.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::IpAddr;

use switchyard_bpf::abi::*;

#[test]
fn addresses_map_to_the_shared_representation() {
    let cases: [(&str, [u8; 16], u8); 4] = [
        ("10.96.0.10", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10], AF_INET),
        ("::ffff:10.96.0.10", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10], AF_INET),
        ("fd00::1", [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], AF_INET6),
        ("::1", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], AF_INET6),
    ];
    for (text, bytes, family) in cases {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(Addr::from_ip(ip), (Addr(bytes), family), "{text}");
    }
}

#[test]
fn addresses_round_trip_through_the_shared_representation() {
    for text in ["10.96.0.10", "127.0.0.1", "fd00::1", "::1", "2001:db8::ffff:1"] {
        let ip: IpAddr = text.parse().unwrap();
        let (addr, family) = Addr::from_ip(ip);
        assert_eq!(addr.to_ip(family), ip, "{text}");
    }
}

#[test]
fn ports_are_stored_in_network_byte_order() {
    let key = FrontendKey::new("10.0.0.1".parse().unwrap(), 0x1234, PROTO_TCP, SCOPE_DEFAULT);
    assert_eq!(key.port.to_ne_bytes(), [0x12, 0x34]);
    assert_eq!(key.port(), 0x1234);
    let backend = Backend::new("10.0.0.2".parse().unwrap(), 8080, 0);
    assert_eq!(backend.port.to_ne_bytes(), 8080u16.to_be_bytes());
    assert_eq!(backend.port(), 8080);
}

#[test]
fn node_port_keys_use_the_unspecified_address() {
    let key = FrontendKey::node_port(AF_INET6, 30080, PROTO_UDP, SCOPE_DEFAULT);
    assert_eq!(key.addr, Addr::UNSPECIFIED);
    assert_eq!((key.family, key.proto, key.port()), (AF_INET6, PROTO_UDP, 30080));
}
