//! The reconciler's errors name what was being done and leave the cause to `source()`.

use std::io;

use switchyard_dataplane::kernel::KernelError;
use switchyard_dataplane::packet_settings::PacketError;
use switchyard_error::{ErrorChain, assert_source_not_repeated};
use switchyard_model::{FrontendKey, Protocol};

fn os() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

fn bpf() -> Box<switchyard_bpf::Error> {
    Box::new(switchyard_bpf::Error::Cgroup { path: "/sys/fs/cgroup/sy".into(), source: os() })
}

#[test]
fn no_message_repeats_its_source() {
    let frontend = FrontendKey::new([10, 96, 0, 10].into(), 80, Protocol::Tcp);
    let errors: [Box<dyn std::error::Error>; 4] = [
        Box::new(KernelError::Io { map: "sy_backends", source: os() }),
        Box::new(KernelError::Map {
            map: "sy_frontends",
            source: aya::maps::MapError::KeyNotFound,
        }),
        Box::new(PacketError::SourceRange { frontend, service: "shop/web".into(), source: bpf() }),
        Box::new(PacketError::Map { what: "node addresses", source: bpf() }),
    ];
    for error in &errors {
        assert_source_not_repeated(error.as_ref());
        let chain = ErrorChain(error.as_ref()).to_string();
        assert!(chain.contains(": "), "the chain shows no cause: {chain}");
    }
}
