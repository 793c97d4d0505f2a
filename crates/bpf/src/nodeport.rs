//! The per-packet programs (`c/nodeport.bpf.c`): load them next to the socket programs
//! (same pinned maps, so one reconciler programs both paths), attach them to devices at TC
//! ingress and egress, pin, detach; typed handles on the conntrack, NAT, source-range and
//! settings maps.
//!
//! Links are pinned as `<bpf_dir>/links/tc-<device>-<ingress|egress>-<generation>` (pod
//! interfaces of `--pod-devices`: `pod-<device>-...`, [`POD_PROGRAMS`]); a restarted
//! agent attaches the new generation before removing the old one, like the cgroup links
//! (a packet meanwhile runs through both programs; the second finds nothing left to translate
//! because the first already rewrote the destination to a backend).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::RangeInclusive,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, lpm_trie::LpmTrie},
    programs::{SchedClassifier, TcAttachType, links::FdLink, tc},
};
use tracing::{debug, info};

use crate::{
    Error, LoadOptions,
    abi::{Addr, Counter, NodeAddrKey},
    loader::{LINKS_DIR, error_chain, generation, unpin_link},
    maps::names as shared_names,
    nodeport_abi::{
        CtEntry, CtKey, NatEntry, PKT_F_DSR, PacketReason, PktConfig, SNAT_CLAIMS, SrcRangeData,
        SrcRangeKey,
    },
};

/// The TC programs, by function name in `c/nodeport.bpf.c`, and where they attach.
pub const TC_PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    ("sy_nodeport_ingress", TcAttachType::Ingress, "ingress"),
    ("sy_nodeport_egress", TcAttachType::Egress, "egress"),
];

/// Link pins of the TC programs start with this (`tc-<device>-<direction>-<generation>`).
pub const LINK_PREFIX: &str = "tc-";

/// The TC programs of pod interfaces (`--pod-devices`): the pod entry point at ingress (cluster
/// IPs and every other frontend for traffic the socket hooks did not translate), the same
/// reverse translation as the devices at egress.
pub const POD_PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    ("sy_pod_ingress", TcAttachType::Ingress, "ingress"),
    ("sy_nodeport_egress", TcAttachType::Egress, "egress"),
];

/// Link pins of the pod interfaces' programs (`pod-<device>-<direction>-<generation>`), apart
/// from the devices' so each list is kept or detached on its own.
pub const POD_LINK_PREFIX: &str = "pod-";

/// Names of the per-packet maps (pin file names).
pub mod names {
    /// `sy_ct`: original tuple -> conntrack entry.
    pub const CT: &str = "sy_ct";
    /// `sy_nat`: reply tuple -> original tuple.
    pub const NAT: &str = "sy_nat";
    /// `sy_src_ranges`: (frontend id, source prefix) LPM trie.
    pub const SRC_RANGES: &str = "sy_src_ranges";
    /// `sy_pkt_config`: 0 -> per-packet settings.
    pub const PKT_CONFIG: &str = "sy_pkt_config";
    /// `sy_dsr_nodes`: remote backend address -> its node's address (DSR).
    pub const DSR_NODES: &str = "sy_dsr_nodes";
    /// `sy_snat_claims`: reply tuple -> claim word of its SNAT port (written by the programs).
    pub const SNAT_CLAIMS: &str = "sy_snat_claims";
    /// Every per-packet map.
    pub const ALL: [&str; 6] = [CT, NAT, SRC_RANGES, PKT_CONFIG, DSR_NODES, SNAT_CLAIMS];
}

/// max_entries of the per-packet maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMapSizes {
    /// `sy_ct` (LRU): tracked flows.
    pub ct: u32,
    /// `sy_nat` (LRU): reverse entries, one per tracked flow.
    pub nat: u32,
}

impl Default for PacketMapSizes {
    /// The header's `SY_DEFAULT_CT`, `SY_DEFAULT_NAT` (`sy_src_ranges` is a shared map sized
    /// by [`crate::MapSizes`]).
    fn default() -> Self {
        PacketMapSizes { ct: 262_144, nat: 262_144 }
    }
}

/// Conntrack timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP until the backend answers.
    pub tcp_syn: u32,
    /// TCP established.
    pub tcp_established: u32,
    /// TCP after FIN or RST.
    pub tcp_closing: u32,
    /// UDP since the last packet.
    pub udp: u32,
    /// Other protocols.
    pub other: u32,
    /// Any flow until the backend's first reply (caps the others; the kernel's unreplied
    /// timeouts): a flood nobody answers frees its entries and SNAT ports this soon.
    pub unreplied: u32,
}

impl Default for Timeouts {
    /// The header's `SY_CT_TIMEOUT_*_S` (tests/layout_nodeport.rs checks): close to the kernel's
    /// nf_conntrack defaults (established 6 h instead of 5 days).
    fn default() -> Self {
        Timeouts {
            tcp_syn: 60,
            tcp_established: 21_600,
            tcp_closing: 10,
            udp: 60,
            other: 30,
            unreplied: 30,
        }
    }
}

/// Per-packet settings the agent writes into `sy_pkt_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSettings {
    /// This node's IPv4 address used as SNAT source for remote backends.
    pub snat_ipv4: Option<Ipv4Addr>,
    /// This node's IPv6 address used as SNAT source for remote backends.
    pub snat_ipv6: Option<Ipv6Addr>,
    /// SNAT source ports.
    pub snat_ports: RangeInclusive<u16>,
    /// The cluster's NodePort range, which `snat_ports` must not overlap (a SNATed flow on a
    /// NodePort number would catch the replies of another Service's clients).
    pub node_port_range: RangeInclusive<u16>,
    /// Conntrack timeouts.
    pub timeouts: Timeouts,
    /// DSR (`--nodeport-mode dsr`): the GUE destination port the backends' nodes decapsulate
    /// on; None: flows to remote backends are SNATed.
    pub dsr_port: Option<u16>,
}

impl Default for PacketSettings {
    /// No SNAT address, ports 1024–29999: what the agent chooses with the default NodePort
    /// range (30000–32767) and Linux's default ephemeral range (32768–60999), the widest gap
    /// outside both (`switchyard_model::choose_snat_ports`), so neither a Service nor the
    /// node's own outgoing connections share a (node address, port) with a SNATed flow.
    fn default() -> Self {
        PacketSettings {
            snat_ipv4: None,
            snat_ipv6: None,
            snat_ports: 1024..=29_999,
            node_port_range: 30_000..=32_767,
            timeouts: Timeouts::default(),
            dsr_port: None,
        }
    }
}

impl PacketSettings {
    /// The map value, after checking the ranges.
    pub fn to_config(&self) -> Result<PktConfig, Error> {
        let (min, max) = (*self.snat_ports.start(), *self.snat_ports.end());
        if min == 0 || min > max {
            return Err(Error::InvalidArgument(format!(
                "SNAT port range {min}-{max}: must be non-empty and start above 0"
            )));
        }
        let (np_min, np_max) = (*self.node_port_range.start(), *self.node_port_range.end());
        if min <= np_max && np_min <= max {
            return Err(Error::InvalidArgument(format!(
                "SNAT port range {min}-{max} overlaps the NodePort range {np_min}-{np_max}"
            )));
        }
        let t = &self.timeouts;
        if [t.tcp_syn, t.tcp_established, t.tcp_closing, t.udp, t.other, t.unreplied].contains(&0) {
            return Err(Error::InvalidArgument(
                "conntrack timeouts must be at least 1 second".to_owned(),
            ));
        }
        Ok(PktConfig {
            snat_addr4: self.snat_ipv4.map(|a| Addr::from_ip(a.into()).0).unwrap_or_default(),
            snat_addr6: self.snat_ipv6.map(|a| Addr::from_ip(a.into()).0).unwrap_or_default(),
            snat_port_min: min,
            snat_port_max: max,
            flags: if self.dsr_port.is_some() { PKT_F_DSR } else { 0 },
            timeout_tcp_syn_s: t.tcp_syn,
            timeout_tcp_established_s: t.tcp_established,
            timeout_tcp_closing_s: t.tcp_closing,
            timeout_udp_s: t.udp,
            timeout_other_s: t.other,
            timeout_unreplied_s: t.unreplied,
            dsr_port: self.dsr_port.unwrap_or(0).to_be(),
            pad: 0,
        })
    }
}

/// Where loadBalancerSourceRanges are written: the one pinned `sy_src_ranges`, reached
/// through the socket object's maps (always loaded) or the per-packet object's.
pub trait SourceRangeMap {
    /// Allows `range` as a source for `frontend_id`.
    fn add_source_range(&mut self, frontend_id: u32, range: SrcRangeKey) -> Result<(), Error>;
    /// Removes one allowed prefix (missing is fine).
    fn remove_source_range(&mut self, range: SrcRangeKey) -> Result<(), Error>;
}

impl SourceRangeMap for PacketMaps {
    fn add_source_range(&mut self, frontend_id: u32, range: SrcRangeKey) -> Result<(), Error> {
        add_source_range(&mut self.src_ranges, frontend_id, range)
    }
    fn remove_source_range(&mut self, range: SrcRangeKey) -> Result<(), Error> {
        remove_source_range(&mut self.src_ranges, range)
    }
}

impl SourceRangeMap for crate::Maps {
    fn add_source_range(&mut self, frontend_id: u32, range: SrcRangeKey) -> Result<(), Error> {
        add_source_range(&mut self.src_ranges, frontend_id, range)
    }
    fn remove_source_range(&mut self, range: SrcRangeKey) -> Result<(), Error> {
        remove_source_range(&mut self.src_ranges, range)
    }
}

fn add_source_range(
    map: &mut LpmTrie<MapData, SrcRangeData, u32>,
    frontend_id: u32,
    range: SrcRangeKey,
) -> Result<(), Error> {
    let key = SrcRangeKey { frontend_id, ..range }.to_trie_key();
    map.insert(&key, 0, 0).map_err(|source| Error::Map { name: names::SRC_RANGES, source })
}

fn remove_source_range(
    map: &mut LpmTrie<MapData, SrcRangeData, u32>,
    range: SrcRangeKey,
) -> Result<(), Error> {
    match map.remove(&range.to_trie_key()) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(source) => Err(Error::Map { name: names::SRC_RANGES, source }),
    }
}

/// Typed handles on the per-packet maps.
pub struct PacketMaps {
    /// Original tuple -> conntrack entry (written by the programs).
    pub ct: HashMap<MapData, CtKey, CtEntry>,
    /// Reply tuple -> original tuple (written by the programs).
    pub nat: HashMap<MapData, CtKey, NatEntry>,
    /// loadBalancerSourceRanges (written by the reconciler).
    pub src_ranges: LpmTrie<MapData, SrcRangeData, u32>,
    /// Per-packet settings (written by the agent).
    pub config: Array<MapData, PktConfig>,
    /// Counters (shared with the socket path).
    pub counters: aya::maps::PerCpuArray<MapData, Counter>,
    /// DSR: remote backend address -> its node's address (written by the agent).
    pub dsr_nodes: HashMap<MapData, NodeAddrKey, Addr>,
}

impl std::fmt::Debug for PacketMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketMaps").finish_non_exhaustive()
    }
}

fn typed<T>(name: &'static str, map: Map) -> Result<T, Error>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|source| Error::Map { name, source })
}

impl PacketMaps {
    /// Opens the per-packet maps pinned in `bpf_dir` (for inspection and tests).
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        let open = |name: &'static str| -> Result<Map, Error> {
            let data = MapData::from_pin(bpf_dir.join(name))
                .map_err(|source| Error::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| Error::Map { name, source })
        };
        Ok(PacketMaps {
            ct: typed(names::CT, open(names::CT)?)?,
            nat: typed(names::NAT, open(names::NAT)?)?,
            src_ranges: typed(names::SRC_RANGES, open(names::SRC_RANGES)?)?,
            config: typed(names::PKT_CONFIG, open(names::PKT_CONFIG)?)?,
            counters: typed(shared_names::COUNTERS, open(shared_names::COUNTERS)?)?,
            dsr_nodes: typed(names::DSR_NODES, open(names::DSR_NODES)?)?,
        })
    }

    /// Writes the per-packet settings (SNAT address and ports, timeouts).
    pub fn set_settings(&mut self, settings: &PacketSettings) -> Result<(), Error> {
        let config = settings.to_config()?;
        self.config
            .set(0, config, 0)
            .map_err(|source| Error::Map { name: names::PKT_CONFIG, source })
    }

    /// The per-packet settings as stored.
    pub fn settings(&self) -> Result<PktConfig, Error> {
        self.config.get(&0, 0).map_err(|source| Error::Map { name: names::PKT_CONFIG, source })
    }

    /// Allows `range` as a source for `frontend_id` (the frontend must carry
    /// `FE_SOURCE_RANGES`, set only on LoadBalancer frontends).
    pub fn add_source_range(&mut self, frontend_id: u32, range: SrcRangeKey) -> Result<(), Error> {
        add_source_range(&mut self.src_ranges, frontend_id, range)
    }

    /// Removes one allowed prefix (missing is fine).
    pub fn remove_source_range(&mut self, range: SrcRangeKey) -> Result<(), Error> {
        remove_source_range(&mut self.src_ranges, range)
    }

    /// Makes `nodes` (remote backend address -> the address of its node, same family) the
    /// only DSR destinations: writes the new and changed ones first, then removes the others
    /// (a backend in both is never without its node meanwhile). Pairs of mixed families are
    /// skipped (the outer header has the inner packet's family).
    pub fn set_dsr_nodes(&mut self, nodes: &BTreeMap<IpAddr, IpAddr>) -> Result<(), Error> {
        let map_err = |source| Error::Map { name: names::DSR_NODES, source };
        let wanted: BTreeMap<NodeAddrKey, Addr> = nodes
            .iter()
            .filter(|(backend, node)| backend.is_ipv4() == node.is_ipv4())
            .map(|(backend, node)| (NodeAddrKey::new(*backend), Addr::from_ip(*node).0))
            .collect();
        let present: BTreeMap<NodeAddrKey, Addr> =
            self.dsr_nodes.iter().collect::<Result<_, _>>().map_err(map_err)?;
        for (key, node) in &wanted {
            if present.get(key) != Some(node) {
                self.dsr_nodes.insert(key, node, 0).map_err(map_err)?;
            }
        }
        for key in present.keys().filter(|k| !wanted.contains_key(k)) {
            match self.dsr_nodes.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(map_err(source)),
            }
        }
        Ok(())
    }

    /// The conntrack entry of a client's original tuple, if tracked.
    pub fn conntrack(&self, orig: &CtKey) -> Result<Option<CtEntry>, Error> {
        match self.ct.get(orig, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(Error::Map { name: names::CT, source }),
        }
    }

    /// Every per-packet counter summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<PacketReason, Counter>, Error> {
        crate::maps::sum_reason_counters(
            &self.counters,
            shared_names::COUNTERS,
            PacketReason::ALL.iter().map(|&reason| (reason, reason as u32)),
        )
    }
}

/// The loaded TC programs and their maps.
#[derive(Debug)]
pub struct PacketDatapath {
    ebpf: Ebpf,
    maps: PacketMaps,
    bpf_dir: PathBuf,
    programs_loaded: bool,
}

/// A loader for an object of the per-packet path (TC or XDP): every shared map pinned in
/// `opts.bpf_dir` with the configured sizes, so both objects adopt the same maps.
pub(crate) fn packet_loader(opts: &LoadOptions, sizes: PacketMapSizes) -> EbpfLoader<'_> {
    let s = &opts.sizes;
    let mut loader = EbpfLoader::new();
    loader
        .default_map_pin_directory(&opts.bpf_dir)
        .map_max_entries(shared_names::FRONTENDS, s.frontends)
        .map_max_entries(shared_names::SLOTS, s.slots)
        .map_max_entries(shared_names::BACKENDS, s.backends)
        .map_max_entries(shared_names::MAGLEV, s.maglev_tables)
        .map_max_entries(shared_names::SOCK_REVNAT, s.sock_revnat)
        .map_max_entries(shared_names::AFFINITY, s.affinity)
        .map_max_entries(shared_names::SOCK_STICKY, s.sock_sticky)
        .map_max_entries(shared_names::NODE_ADDRS, s.node_addrs)
        .map_max_entries(shared_names::FE_COUNTERS, s.frontends)
        .map_max_entries(names::CT, sizes.ct)
        .map_max_entries(names::NAT, sizes.nat)
        .map_max_entries(names::SRC_RANGES, s.src_ranges)
        .map_max_entries(names::DSR_NODES, s.backends);
    loader
}

impl PacketDatapath {
    /// Loads `c/nodeport.bpf.c` against the maps pinned in `opts.bpf_dir`. Load the socket
    /// datapath ([`crate::Datapath::load`]) with the same options first: it checks and
    /// creates the shared maps and writes `sy_config`.
    pub fn load(
        opts: &LoadOptions,
        sizes: PacketMapSizes,
        settings: &PacketSettings,
    ) -> Result<Self, Error> {
        Self::load_object(opts, sizes, settings, crate::nodeport_object())
    }

    /// [`PacketDatapath::load`] with the object's bytes given: the per-packet bench compares
    /// another build of `c/nodeport.bpf.c` (`scripts/nodeport-ab`) on the same pinned maps.
    pub fn load_object(
        opts: &LoadOptions,
        sizes: PacketMapSizes,
        settings: &PacketSettings,
        object: &[u8],
    ) -> Result<Self, Error> {
        let config = settings.to_config()?;
        if !opts.bpf_dir.join(shared_names::CONFIG).exists() {
            return Err(Error::InvalidArgument(format!(
                "{}: no pinned {}; load the socket datapath first",
                opts.bpf_dir.display(),
                shared_names::CONFIG
            )));
        }
        check_pins(&opts.bpf_dir, sizes, &opts.sizes)?;
        let mut ebpf = packet_loader(opts, sizes).load(object)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap { name });
        let mut maps = PacketMaps {
            ct: typed(names::CT, take(names::CT)?)?,
            nat: typed(names::NAT, take(names::NAT)?)?,
            src_ranges: typed(names::SRC_RANGES, take(names::SRC_RANGES)?)?,
            config: typed(names::PKT_CONFIG, take(names::PKT_CONFIG)?)?,
            counters: typed(shared_names::COUNTERS, take(shared_names::COUNTERS)?)?,
            dsr_nodes: typed(names::DSR_NODES, take(names::DSR_NODES)?)?,
        };
        maps.config
            .set(0, config, 0)
            .map_err(|source| Error::Map { name: names::PKT_CONFIG, source })?;
        let mut datapath =
            PacketDatapath { ebpf, maps, bpf_dir: opts.bpf_dir.clone(), programs_loaded: false };
        datapath.load_programs()?;
        info!(bpf_dir = %opts.bpf_dir.display(), "per-packet programs loaded");
        Ok(datapath)
    }

    fn load_programs(&mut self) -> Result<(), Error> {
        if self.programs_loaded {
            return Ok(());
        }
        for (name, _, _) in TC_PROGRAMS {
            self.load_program(name)?;
        }
        self.programs_loaded = true;
        Ok(())
    }

    fn classifier_mut(&mut self, name: &'static str) -> Result<&mut SchedClassifier, Error> {
        self.ebpf
            .program_mut(name)
            .ok_or(Error::MissingProgram { name })?
            .try_into()
            .map_err(|source| Error::Program { name, source })
    }

    /// Verifies and loads one program unless it is loaded already.
    fn load_program(&mut self, name: &'static str) -> Result<(), Error> {
        let program = self.classifier_mut(name)?;
        if program.fd().is_err() {
            crate::loader::load_retrying(name, || program.load())?;
        }
        Ok(())
    }

    /// Loads the pod entry point (`sy_pod_ingress`): only agents with `--pod-devices` pay its
    /// verification. [`PacketDatapath::attach_pod`] calls it; tests call it for `TestRun`.
    pub fn load_pod_programs(&mut self) -> Result<(), Error> {
        for (name, _, _) in POD_PROGRAMS {
            self.load_program(name)?;
        }
        Ok(())
    }

    /// The maps.
    pub fn maps(&self) -> &PacketMaps {
        &self.maps
    }

    /// The maps, for the reconciler and the agent.
    pub fn maps_mut(&mut self) -> &mut PacketMaps {
        &mut self.maps
    }

    /// A loaded program by name (one of [`TC_PROGRAMS`]), e.g. for `TestRun`.
    pub fn program(&self, name: &'static str) -> Result<&SchedClassifier, Error> {
        self.ebpf
            .program(name)
            .ok_or(Error::MissingProgram { name })?
            .try_into()
            .map_err(|source| Error::Program { name, source })
    }

    /// Attaches ingress and egress programs to `device` (in the caller's network namespace)
    /// and pins the links; then removes this device's links of earlier generations.
    /// On kernels with TCX (6.6+) the links are bpf_links; a clsact qdisc is added first for
    /// older kernels, where the netlink attachment cannot be pinned and this fails.
    pub fn attach(&mut self, device: &str) -> Result<(), Error> {
        self.attach_set(device, &TC_PROGRAMS, LINK_PREFIX)?;
        info!(device, "per-packet programs attached");
        Ok(())
    }

    /// Attaches the pod programs ([`POD_PROGRAMS`]) to the host side of a pod interface and
    /// pins the links (`pod-<device>-...`); then removes this interface's older generations.
    pub fn attach_pod(&mut self, device: &str) -> Result<(), Error> {
        self.load_pod_programs()?;
        self.attach_set(device, &POD_PROGRAMS, POD_LINK_PREFIX)?;
        debug!(device, "pod programs attached");
        Ok(())
    }

    fn attach_set(
        &mut self,
        device: &str,
        programs: &[(&'static str, TcAttachType, &str)],
        prefix: &str,
    ) -> Result<(), Error> {
        check_device_name(device)?;
        let links_dir = self.bpf_dir.join(LINKS_DIR);
        std::fs::create_dir_all(&links_dir).map_err(|source| Error::BpfDir {
            path: links_dir.clone(),
            reason: "creating the links directory",
            source,
        })?;
        if let Err(e) = tc::qdisc_add_clsact(device) {
            // EEXIST (already there) is fine; TCX does not need it at all.
            debug!(device, error = %error_chain(&e), "clsact qdisc not added");
        }
        let generation = generation();
        for &(name, attach_type, direction) in programs {
            let program = self.classifier_mut(name)?;
            let link_id = program
                .attach(device, attach_type)
                .map_err(|source| Error::Program { name, source })?;
            let link =
                program.take_link(link_id).map_err(|source| Error::Program { name, source })?;
            let path = links_dir.join(format!("{prefix}{device}-{direction}-{generation}"));
            let fd_link = FdLink::try_from(link).map_err(|e| Error::LinkPin {
                path: path.clone(),
                detail: format!("not a bpf_link (kernel without TCX, < 6.6?): {e}"),
            })?;
            fd_link
                .pin(&path)
                .map_err(|e| Error::LinkPin { path: path.clone(), detail: error_chain(&e) })?;
            debug!(program = name, device, link = %path.display(), "attached");
        }
        for path in device_links(&self.bpf_dir, prefix, device)? {
            let current =
                path.file_name().is_some_and(|n| n.as_bytes().ends_with(generation.as_bytes()));
            if !current {
                unpin_link(&path)?;
            }
        }
        Ok(())
    }
}

/// Checks that `device` names a network device of the caller's network namespace, so a
/// typo is refused before anything is loaded or attached.
pub fn check_device(device: &str) -> Result<(), Error> {
    check_device_name(device)?;
    if nix::net::if_::if_nametoindex(device).is_err() {
        return Err(Error::InvalidArgument(format!(
            "device {device}: no such network device in this network namespace"
        )));
    }
    Ok(())
}

/// The network devices of the caller's network namespace: (ifindex, name), from netlink (not
/// /sys, which shows the namespace it was mounted in).
pub fn interfaces() -> Result<Vec<(u32, String)>, Error> {
    let list = nix::net::if_::if_nameindex()
        .map_err(|e| Error::InvalidArgument(format!("listing network devices: {e}")))?;
    Ok(list.iter().map(|i| (i.index(), i.name().to_string_lossy().into_owned())).collect())
}

pub(crate) fn check_device_name(device: &str) -> Result<(), Error> {
    let ok = !device.is_empty()
        && device.len() < 16
        && device.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "device name {device:?}: 1-15 characters of [A-Za-z0-9_-] expected"
        )))
    }
}

/// Link pins of `device` under `<bpf_dir>/links` whose names start with `kind` ([`LINK_PREFIX`]
/// or [`POD_LINK_PREFIX`]).
fn device_links(bpf_dir: &Path, kind: &str, device: &str) -> Result<Vec<PathBuf>, Error> {
    let prefix = format!("{kind}{device}-");
    let mut out = crate::loader::link_pins(bpf_dir)?;
    out.retain(|path| {
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let rest = name.strip_prefix(prefix.as_bytes());
        // "tc-eth0-" must not match "tc-eth0-x-ingress-..." of device "eth0-x".
        rest.is_some_and(|r| r.starts_with(b"ingress-") || r.starts_with(b"egress-"))
    });
    Ok(out)
}

/// Devices the per-packet programs are attached to (by their link pins), sorted.
pub fn attached_devices(bpf_dir: &Path) -> Result<Vec<String>, Error> {
    attached(bpf_dir, LINK_PREFIX)
}

/// Pod interfaces the pod programs are attached to (by their link pins), sorted.
pub fn attached_pod_devices(bpf_dir: &Path) -> Result<Vec<String>, Error> {
    attached(bpf_dir, POD_LINK_PREFIX)
}

fn attached(bpf_dir: &Path, kind: &str) -> Result<Vec<String>, Error> {
    let mut devices = std::collections::BTreeSet::new();
    for path in crate::loader::link_pins(bpf_dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        // tc-<device>-<ingress|egress>-<generation>; the device may itself contain '-'.
        let Some(rest) = name.strip_prefix(kind) else { continue };
        let mut parts = rest.rsplitn(3, '-');
        let (Some(_generation), Some(direction), Some(device)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if matches!(direction, "ingress" | "egress") {
            devices.insert(device.to_owned());
        }
    }
    Ok(devices.into_iter().collect())
}

/// Detaches the per-packet programs from `device` (removes its link pins). Returns how many
/// links were removed.
pub fn detach_device(bpf_dir: &Path, device: &str) -> Result<usize, Error> {
    detach(bpf_dir, LINK_PREFIX, device)
}

/// Detaches the pod programs from pod interface `device` (removes its link pins; the links of
/// an interface that is gone are detached already). Returns how many pins were removed.
pub fn detach_pod_device(bpf_dir: &Path, device: &str) -> Result<usize, Error> {
    detach(bpf_dir, POD_LINK_PREFIX, device)
}

fn detach(bpf_dir: &Path, kind: &str, device: &str) -> Result<usize, Error> {
    check_device_name(device)?;
    let pins = device_links(bpf_dir, kind, device)?;
    for path in &pins {
        unpin_link(path)?;
    }
    Ok(pins.len())
}

/// Removes the per-packet map pins (after [`crate::loader::cleanup`] removed links and the
/// shared maps).
pub fn cleanup(bpf_dir: &Path) -> Result<(), Error> {
    crate::loader::remove_map_pins(bpf_dir, &names::ALL)
}

/// Refuses per-packet pins of another layout or size.
pub(crate) fn check_pins(
    bpf_dir: &Path,
    sizes: PacketMapSizes,
    shared: &crate::MapSizes,
) -> Result<(), Error> {
    let expected = [
        (names::CT, size_of::<CtKey>(), size_of::<CtEntry>(), Some(sizes.ct)),
        (names::NAT, size_of::<CtKey>(), size_of::<NatEntry>(), Some(sizes.nat)),
        (names::SRC_RANGES, size_of::<SrcRangeKey>(), size_of::<u32>(), Some(shared.src_ranges)),
        (names::PKT_CONFIG, size_of::<u32>(), size_of::<PktConfig>(), Some(1)),
        // One entry per remote backend address at most: sized like the backends.
        (names::DSR_NODES, size_of::<NodeAddrKey>(), size_of::<Addr>(), Some(shared.backends)),
        (names::SNAT_CLAIMS, size_of::<CtKey>(), size_of::<u64>(), Some(SNAT_CLAIMS)),
    ];
    crate::loader::check_pinned_layouts(bpf_dir, expected)
}
