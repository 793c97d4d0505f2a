//! The director's health probes through the encapsulated path (`sy_dir_probe` in
//! `c/director.bpf.c`): at TC egress of the uplinks, packets marked [`PROBE_MARK`] get the
//! same outer headers as VIP traffic to the node they are addressed to (docs/director.md).
//!
//! The links are not pinned: probes are sent by the running director only, so the program
//! leaves with the process that probes. What the probes found is kept in the pinned
//! `sy_dir_health` map ([`HealthMap`]) for `switchyard status`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use aya::maps::{HashMap, Map, MapData};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, tc, tc::TcAttachOptions};
use tracing::{debug, info};

use crate::Error;
use crate::abi::Addr;
use crate::director::{DirectorDatapath, NODE_NAME_LEN, names};
use crate::loader::error_chain;
use crate::maps::typed;

pub use crate::director::PROBE_MARK;

/// The TC program's function name.
pub const PROGRAM: &str = "sy_dir_probe";

impl DirectorDatapath {
    /// Loads the probe program (once) and attaches it last at TC egress of `device` (TCX).
    pub fn attach_probe(&mut self, device: &str) -> Result<(), Error> {
        crate::nodeport::check_device(device)?;
        if let Err(e) = tc::qdisc_add_clsact(device) {
            debug!(device, error = %error_chain(&e), "clsact qdisc not added");
        }
        let program = self.probe_program_mut()?;
        if program.fd().is_err() {
            crate::loader::load_retrying(PROGRAM, || program.load())?;
        }
        program
            .attach_with_options(
                device,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::last()),
            )
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        info!(device, "health probe encapsulation attached (TC egress)");
        Ok(())
    }

    /// The probe program, loaded or not (e.g. for `TestRun` after [`Self::load_probe`]).
    pub fn probe_program_mut(&mut self) -> Result<&mut SchedClassifier, Error> {
        self.ebpf_mut()
            .program_mut(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })
    }

    /// Loads the probe program without attaching it (tests run it with `BPF_PROG_TEST_RUN`).
    pub fn load_probe(&mut self) -> Result<&SchedClassifier, Error> {
        let program = self.probe_program_mut()?;
        if program.fd().is_err() {
            crate::loader::load_retrying(PROGRAM, || program.load())?;
        }
        Ok(program)
    }
}

/// `SY_DIR_HEALTH_UP`: in service.
pub const HEALTH_UP: u32 = 0;
/// `SY_DIR_HEALTH_DOWN`: out of service, its probes failed.
pub const HEALTH_DOWN: u32 = 1;
/// `SY_DIR_HEALTH_DRAINING`: out of service, it answered 503.
pub const HEALTH_DRAINING: u32 = 2;

/// `struct sy_dir_health_key`: a probed node address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C)]
pub struct HealthKey {
    /// The node's address.
    pub addr: Addr,
    /// The port, host order.
    pub port: u16,
    /// `AF_INET` / `AF_INET6`.
    pub family: u8,
    /// Zero.
    pub pad: u8,
}

impl HealthKey {
    /// The key of `address`, `port`.
    pub fn new(address: IpAddr, port: u16) -> Self {
        let (addr, family) = Addr::from_ip(address);
        HealthKey { addr, port, family, pad: 0 }
    }

    /// The address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.to_ip(self.family), self.port)
    }
}

/// `struct sy_dir_health`: what the director's health checker last knew of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct HealthEntry {
    /// [`HEALTH_UP`], [`HEALTH_DOWN`] or [`HEALTH_DRAINING`].
    pub state: u32,
    /// Probes failed in a row.
    pub failures: u32,
    /// Probes answered 200 in a row.
    pub successes: u32,
    /// The last outcome: 0 none yet, 1 200, 2 503, 3 failed.
    pub last: u32,
    /// Unix time (ms) the state began; 0: up since first probed.
    pub since_ms: u64,
    /// Node name, NUL-padded (cut at [`NODE_NAME_LEN`] bytes).
    pub name: [u8; NODE_NAME_LEN],
    /// Zero.
    pub pad: u32,
}

impl HealthEntry {
    /// The node's name as stored.
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NODE_NAME_LEN);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// The state's spelling: up, down, draining (unknown for another value).
    pub fn state_name(&self) -> &'static str {
        match self.state {
            HEALTH_UP => "up",
            HEALTH_DOWN => "down",
            HEALTH_DRAINING => "draining",
            _ => "unknown",
        }
    }

    /// The last outcome's spelling.
    pub fn last_name(&self) -> &'static str {
        match self.last {
            0 => "none",
            1 => "200",
            2 => "503",
            _ => "failed",
        }
    }
}

// SAFETY: plain `#[repr(C)]` data without padding holes (checked by tests/layout_director.rs).
unsafe impl aya::Pod for HealthKey {}
// SAFETY: as above.
unsafe impl aya::Pod for HealthEntry {}

/// The pinned `sy_dir_health` map.
pub struct HealthMap {
    map: HashMap<MapData, HealthKey, HealthEntry>,
}

impl std::fmt::Debug for HealthMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMap").finish_non_exhaustive()
    }
}

impl HealthMap {
    /// Opens the map a director pinned in `bpf_dir`.
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        let name = names::HEALTH;
        let data =
            MapData::from_pin(bpf_dir.join(name)).map_err(|source| Error::Map { name, source })?;
        let map = Map::from_map_data(data).map_err(|source| Error::Map { name, source })?;
        Ok(HealthMap { map: typed(name, map)? })
    }

    /// Writes one target's entry (`name` is cut at [`NODE_NAME_LEN`] bytes).
    pub fn put(&mut self, key: HealthKey, mut entry: HealthEntry, name: &str) -> Result<(), Error> {
        let mut end = name.len().min(NODE_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        entry.name = [0; NODE_NAME_LEN];
        entry.name[..end].copy_from_slice(&name.as_bytes()[..end]);
        self.map.insert(key, entry, 0).map_err(|source| Error::Map { name: names::HEALTH, source })
    }

    /// Makes `keep` the only targets present (the others are no longer probed).
    pub fn retain(&mut self, keep: &BTreeSet<HealthKey>) -> Result<(), Error> {
        let map_err = |source| Error::Map { name: names::HEALTH, source };
        let present: Vec<HealthKey> = self.map.keys().collect::<Result<_, _>>().map_err(map_err)?;
        for key in present.into_iter().filter(|k| !keep.contains(k)) {
            match self.map.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(map_err(source)),
            }
        }
        Ok(())
    }

    /// Every entry, sorted by key.
    pub fn entries(&self) -> Result<BTreeMap<HealthKey, HealthEntry>, Error> {
        self.map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Map { name: names::HEALTH, source })
    }
}
