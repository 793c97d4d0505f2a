//! Decapsulation of director traffic on nodes (`c/decap.bpf.c`): mirrors, loader, the
//! directors' addresses, attach at TC ingress *first* (before the per-packet programs, so they
//! only ever see the inner packet), counters.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::FdLink,
        tc::{self, TcAttachOptions},
    },
};
use tracing::{debug, info};

use crate::{
    Error,
    abi::{Counter, NodeAddrKey},
    loader::{LINKS_DIR, error_chain, generation},
    maps::typed,
};

/// The TC program's function name.
pub const PROGRAM: &str = "sy_decap";

/// Link pins of the decapsulation program start with this (`decap-<device>-<generation>`).
pub const LINK_PREFIX: &str = "decap-";

/// Map names (pin file names beside the node's maps).
pub mod names {
    /// `sy_decap_directors`: accepted outer source -> `SRC_*` bits (directors, and the nodes
    /// that send DSR).
    pub const DIRECTORS: &str = "sy_decap_directors";
    /// `sy_decap_config`: 0 -> settings.
    pub const CONFIG: &str = "sy_decap_config";
    /// `sy_decap_counters`: reason -> per-CPU counter.
    pub const COUNTERS: &str = "sy_decap_counters";
    /// Every map.
    pub const ALL: [&str; 3] = [DIRECTORS, CONFIG, COUNTERS];
}

/// `struct sy_decap_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DecapConfig {
    /// GUE / FOU port, network order; 0: UDP is not decapsulated.
    pub gue_port: u16,
    /// Zero.
    pub pad: u16,
    /// Zero.
    pub flags: u32,
}

// SAFETY: plain `#[repr(C)]` data without padding holes (tests/layout_director.rs).
unsafe impl aya::Pod for DecapConfig {}

/// `enum sy_decap_reason`: what decapsulation did (index of `sy_decap_counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum DecapReason {
    /// GUE variant 0 removed.
    Gue = 0,
    /// FOU (GUE variant 1) removed.
    Fou = 1,
    /// IPIP removed.
    Ipip = 2,
    /// Encapsulated from an address that is no director: dropped.
    DropNotDirector = 3,
    /// Unreadable encapsulation from a director: dropped.
    DropMalformed = 4,
    /// Stripping failed: dropped.
    DropAdjust = 5,
    /// Second chance: kept here (a TCP SYN, a flow held here, or TCP re-sent once already).
    ScKept = 6,
    /// Second chance: not held here, re-sent to the previous node.
    ScForwarded = 7,
    /// Second chance: not held here, but no route to the previous node: kept.
    ScNoRoute = 8,
    /// Of the decapsulated: GRO-merged (`gso_segs` > 1), stripped once for all its segments.
    GroMerged = 9,
    /// Second chance, UDP, on the previous node: not held here either, returned to the node
    /// the director chose (hops 2).
    ScReturned = 10,
    /// Second chance, UDP: returned by the previous node, so a new flow: accepted here.
    ScNewFlow = 11,
    /// DSR: a node's GUE packet with the DSR option: conntrack written, decapsulated.
    Dsr = 12,
    /// DSR option from a source that is no node (or no option from one that is no director):
    /// dropped.
    DropNotNode = 13,
    /// DSR option unreadable, or the inner packet not TCP/UDP/SCTP: dropped.
    DropDsrMalformed = 14,
    /// DSR: the conntrack or reverse-NAT entry could not be written: dropped.
    DropDsrCt = 15,
}

/// `SY_DECAP_SRC_DIRECTOR`: the source may send director traffic (no DSR option).
pub const SRC_DIRECTOR: u32 = 1 << 0;
/// `SY_DECAP_SRC_NODE`: the source (another node) may send DSR packets.
pub const SRC_NODE: u32 = 1 << 1;

impl DecapReason {
    /// Every reason, in counter order.
    pub const ALL: [DecapReason; 16] = [
        DecapReason::Gue,
        DecapReason::Fou,
        DecapReason::Ipip,
        DecapReason::DropNotDirector,
        DecapReason::DropMalformed,
        DecapReason::DropAdjust,
        DecapReason::ScKept,
        DecapReason::ScForwarded,
        DecapReason::ScNoRoute,
        DecapReason::GroMerged,
        DecapReason::ScReturned,
        DecapReason::ScNewFlow,
        DecapReason::Dsr,
        DecapReason::DropNotNode,
        DecapReason::DropDsrMalformed,
        DecapReason::DropDsrCt,
    ];
    /// `SY_DECAP_REASON_MAX`.
    pub const MAX: u32 = 16;

    /// The name used in metrics and `status`.
    pub fn name(self) -> &'static str {
        match self {
            DecapReason::Gue => "decap_gue",
            DecapReason::Fou => "decap_fou",
            DecapReason::Ipip => "decap_ipip",
            DecapReason::DropNotDirector => "drop_not_director",
            DecapReason::DropMalformed => "drop_malformed",
            DecapReason::DropAdjust => "drop_adjust",
            DecapReason::ScKept => "second_chance_kept",
            DecapReason::ScForwarded => "second_chance_forwarded",
            DecapReason::ScNoRoute => "second_chance_no_route",
            DecapReason::GroMerged => "decap_gro_merged",
            DecapReason::ScReturned => "second_chance_returned",
            DecapReason::ScNewFlow => "second_chance_new_flow",
            DecapReason::Dsr => "decap_dsr",
            DecapReason::DropNotNode => "drop_not_node",
            DecapReason::DropDsrMalformed => "drop_dsr_malformed",
            DecapReason::DropDsrCt => "drop_dsr_ct",
        }
    }
}

/// Typed handles on the decapsulation maps.
pub struct DecapMaps {
    /// Director addresses.
    pub directors: HashMap<MapData, NodeAddrKey, u32>,
    /// Settings.
    pub config: Array<MapData, DecapConfig>,
    /// Reason -> per-CPU counter.
    pub counters: PerCpuArray<MapData, Counter>,
}

impl std::fmt::Debug for DecapMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecapMaps").finish_non_exhaustive()
    }
}

impl DecapMaps {
    fn from_map_source(
        mut take: impl FnMut(&'static str) -> Result<Map, Error>,
    ) -> Result<Self, Error> {
        Ok(DecapMaps {
            directors: typed(names::DIRECTORS, take(names::DIRECTORS)?)?,
            config: typed(names::CONFIG, take(names::CONFIG)?)?,
            counters: typed(names::COUNTERS, take(names::COUNTERS)?)?,
        })
    }

    /// Opens the maps pinned in the node's `bpf_dir` (inspection, tests).
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        Self::from_map_source(|name| {
            let data = MapData::from_pin(bpf_dir.join(name))
                .map_err(|source| Error::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| Error::Map { name, source })
        })
    }

    /// Makes `directors` the only accepted sources (see [`Self::set_sources`]).
    pub fn set_directors(&mut self, directors: &BTreeSet<IpAddr>) -> Result<(), Error> {
        self.set_sources(directors, &BTreeSet::new())
    }

    /// Makes `directors` (director traffic) and `nodes` (DSR from the cluster's other nodes)
    /// the only accepted sources: adds and updates first, then removes the others (a source
    /// in both old and new sets is never refused meanwhile).
    pub fn set_sources(
        &mut self,
        directors: &BTreeSet<IpAddr>,
        nodes: &BTreeSet<IpAddr>,
    ) -> Result<(), Error> {
        let map_err = |source| Error::Map { name: names::DIRECTORS, source };
        let mut wanted: BTreeMap<NodeAddrKey, u32> = BTreeMap::new();
        for ip in directors {
            *wanted.entry(NodeAddrKey::new(*ip)).or_default() |= SRC_DIRECTOR;
        }
        for ip in nodes {
            *wanted.entry(NodeAddrKey::new(*ip)).or_default() |= SRC_NODE;
        }
        for (key, kinds) in &wanted {
            self.directors.insert(key, kinds, 0).map_err(map_err)?;
        }
        let present: Vec<NodeAddrKey> =
            self.directors.keys().collect::<Result<_, _>>().map_err(map_err)?;
        for key in present.into_iter().filter(|k| !wanted.contains_key(k)) {
            match self.directors.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(map_err(source)),
            }
        }
        Ok(())
    }

    /// Sets the GUE / FOU port (0: UDP is not decapsulated).
    pub fn set_port(&mut self, gue_port: u16) -> Result<(), Error> {
        let config = DecapConfig { gue_port: gue_port.to_be(), pad: 0, flags: 0 };
        self.config.set(0, config, 0).map_err(|source| Error::Map { name: names::CONFIG, source })
    }

    /// Every counter summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<DecapReason, Counter>, Error> {
        crate::maps::sum_reason_counters(
            &self.counters,
            names::COUNTERS,
            DecapReason::ALL.iter().map(|&reason| (reason, reason as u32)),
        )
    }
}

/// The loaded decapsulation program and its maps.
#[derive(Debug)]
pub struct DecapDatapath {
    ebpf: Ebpf,
    maps: DecapMaps,
    bpf_dir: PathBuf,
}

impl DecapDatapath {
    /// Loads `c/decap.bpf.c` with its maps pinned in the node's `bpf_dir` (which must be a
    /// bpffs directory already: the node's datapath is loaded first), accepting encapsulated
    /// packets from `directors` on UDP port `gue_port` (GUE and FOU) and as IPIP.
    pub fn load(
        bpf_dir: &Path,
        directors: &BTreeSet<IpAddr>,
        gue_port: u16,
    ) -> Result<Self, Error> {
        crate::loader::prepare_bpf_dir(bpf_dir, false)?;
        let mut ebpf =
            EbpfLoader::new().default_map_pin_directory(bpf_dir).load(crate::decap_object())?;
        let mut maps = DecapMaps::from_map_source(|name| {
            ebpf.take_map(name).ok_or(Error::MissingMap { name })
        })?;
        maps.set_port(gue_port)?;
        maps.set_directors(directors)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        crate::loader::load_retrying(PROGRAM, || program.load())?;
        info!(bpf_dir = %bpf_dir.display(), directors = directors.len(), "decapsulation loaded");
        Ok(DecapDatapath { ebpf, maps, bpf_dir: bpf_dir.to_owned() })
    }

    /// The maps.
    pub fn maps(&self) -> &DecapMaps {
        &self.maps
    }

    /// The maps, for the agent.
    pub fn maps_mut(&mut self) -> &mut DecapMaps {
        &mut self.maps
    }

    /// The loaded program (e.g. for `TestRun`).
    pub fn program(&self) -> Result<&SchedClassifier, Error> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })
    }

    /// Attaches at TC ingress of `device`, first in the chain (TCX), and pins the link; then
    /// removes this device's decapsulation links of earlier runs.
    pub fn attach(&mut self, device: &str) -> Result<(), Error> {
        crate::nodeport::check_device(device)?;
        let links_dir = self.bpf_dir.join(LINKS_DIR);
        std::fs::create_dir_all(&links_dir).map_err(|source| Error::BpfDir {
            path: links_dir.clone(),
            reason: "creating the links directory",
            source,
        })?;
        if let Err(e) = tc::qdisc_add_clsact(device) {
            debug!(device, error = %error_chain(&e), "clsact qdisc not added");
        }
        let generation = generation();
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        let link_id = program
            .attach_with_options(
                device,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        let link = program
            .take_link(link_id)
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        let path = links_dir.join(format!("{LINK_PREFIX}{device}-{generation}"));
        let fd_link = FdLink::try_from(link).map_err(|e| Error::LinkPin {
            path: path.clone(),
            detail: format!("not a bpf_link (kernel without TCX, < 6.6?): {e}"),
        })?;
        fd_link
            .pin(&path)
            .map_err(|e| Error::LinkPin { path: path.clone(), detail: error_chain(&e) })?;
        crate::loader::unpin_older_links(
            &links_dir,
            &format!("{LINK_PREFIX}{device}-"),
            &generation,
        )?;
        info!(device, "decapsulation attached (first at TC ingress)");
        Ok(())
    }
}

/// Devices the decapsulation program is attached to (by its link pins
/// `decap-<device>-<generation>`), sorted: an agent detaches it from devices no longer listed.
pub fn attached_devices(bpf_dir: &Path) -> Result<Vec<String>, Error> {
    let mut devices = BTreeSet::new();
    for path in crate::loader::link_pins(bpf_dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        // The device name may itself contain '-'; the generation is digits only.
        if let Some((device, generation)) =
            name.strip_prefix(LINK_PREFIX).and_then(|rest| rest.rsplit_once('-'))
            && !device.is_empty()
            && !generation.is_empty()
            && generation.bytes().all(|b| b.is_ascii_digit())
        {
            devices.insert(device.to_owned());
        }
    }
    Ok(devices.into_iter().collect())
}

/// Detaches the decapsulation program from `device` (removes its link pins; the link goes with
/// the last pin). Returns how many pins were removed.
pub fn detach_device(bpf_dir: &Path, device: &str) -> Result<usize, Error> {
    crate::nodeport::check_device_name(device)?;
    let prefix = format!("{LINK_PREFIX}{device}-");
    let mut removed = 0;
    for path in crate::loader::link_pins(bpf_dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        // "decap-eth0-" must not match "decap-eth0-x-<generation>" of device "eth0-x".
        if name
            .strip_prefix(&prefix)
            .is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
        {
            crate::loader::unpin_link(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the decapsulation map pins (links go with [`crate::loader::cleanup`]).
pub fn cleanup(bpf_dir: &Path) -> Result<(), Error> {
    crate::loader::remove_map_pins(bpf_dir, &names::ALL)
}
