//! The eBPF programs (C), their shared structs, and the loader.
//!
//! - [`abi`]: `#[repr(C)]` mirrors of `include/switchyard.h`, the one definition of every
//!   struct shared with the BPF programs.
//! - [`maps`]: typed handles on the pinned maps, for the reconciler and for inspection.
//! - [`loader`]: load the object, create or adopt pinned maps, attach to a cgroup, detach.
//! - [`mirror`]: the programs' lookups and decisions in Rust, for `switchyard explain`.
//! - [`private_bpffs`]: a bpffs of one's own, removed with all its pins on drop (tests, benches).
//! - [`nodeport_abi`], [`nodeport`]: the per-packet (TC) programs of `c/nodeport.bpf.c`: their
//!   mirrors; loader, attach to devices. [`nodeport_xdp`]: the same path at XDP
//!   (`c/nodeport_xdp.bpf.c`), in front of TC.
//! - [`director`]: the director's XDP program; [`decap`]: decapsulation of its packets on nodes.

pub mod abi;
pub mod batch;
pub mod decap;
pub mod director;
pub mod director_ids;
pub mod director_probe;
mod director_reason;
pub mod director_vips;
pub mod error;
pub mod loader;
pub mod maps;
pub mod mirror;
pub mod monitor;
pub mod nodeport;
pub mod nodeport_abi;
pub mod nodeport_xdp;
pub mod private_bpffs;
mod resize;

pub use error::Error;
pub use loader::{Datapath, LoadOptions, MapSizes};
pub use maps::Maps;
pub use private_bpffs::PrivateBpffs;

/// The compiled socket-level programs (`c/sock.bpf.c`), aligned for the ELF parser.
pub fn sock_object() -> &'static [u8] {
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static OBJECT: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/sock.bpf.o")));
    &OBJECT.0
}

/// Build id of the embedded BPF objects: the first 16 hex digits of a SHA-256 over all of them
/// (computed by build.rs); two binaries with the same id carry the same programs.
pub const BUILD_ID: &str = env!("SWITCHYARD_BPF_BUILD_ID");

/// Path of `include/switchyard.h`, for other crates that compile BPF objects against it.
pub const HEADER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");

/// The compiled per-packet programs (`c/nodeport.bpf.c`), aligned for the ELF parser.
pub fn nodeport_object() -> &'static [u8] {
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static OBJECT: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nodeport.bpf.o")));
    &OBJECT.0
}

/// The compiled per-packet XDP program (`c/nodeport_xdp.bpf.c`), aligned for the ELF parser.
pub fn nodeport_xdp_object() -> &'static [u8] {
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static OBJECT: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nodeport_xdp.bpf.o")));
    &OBJECT.0
}

/// The compiled director program (`c/director.bpf.c`), aligned for the ELF parser.
pub fn director_object() -> &'static [u8] {
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static OBJECT: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/director.bpf.o")));
    &OBJECT.0
}

/// The compiled decapsulation program (`c/decap.bpf.c`), aligned for the ELF parser.
pub fn decap_object() -> &'static [u8] {
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static OBJECT: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/decap.bpf.o")));
    &OBJECT.0
}
