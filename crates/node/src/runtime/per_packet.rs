//! The per-packet half of the node role (`devices`): the TC programs on the node's devices,
//! and what they need besides frontends — node addresses, loadBalancerSourceRanges and the SNAT
//! settings. The model decides all of it; this only carries it out and logs what failed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use switchyard_bpf::decap::{self, DecapDatapath};
use switchyard_bpf::director::XdpMode;
use switchyard_bpf::nodeport::{self, PacketDatapath, PacketSettings};
use switchyard_bpf::nodeport_xdp::{self, XdpDatapath};
use switchyard_bpf::{LoadOptions, Maps};
use switchyard_dataplane::packet_settings::{FrontendRanges, PacketError, PacketState};

/// Writes loadBalancerSourceRanges (see [`crate::core::Effect::SourceRanges`]) into the shared
/// `sy_src_ranges`: the socket programs check them too, with or without `--devices`.
pub(crate) fn source_ranges(
    state: &mut PacketState,
    maps: &mut Maps,
    before: bool,
    full: bool,
    frontends: &[FrontendRanges],
) {
    let errors = match (before, full) {
        (true, _) => state.prepare_resolved(maps, frontends),
        (false, false) => state.finish_resolved(maps, frontends),
        (false, true) => state.finish_full_resolved(maps, frontends),
    };
    log_errors(&errors);
}
use switchyard_error::ErrorChain;
use switchyard_model::{NodeModel, PortRange, PrimaryAddresses};
use tracing::{error, info, warn};

use super::pod_devices::PodDevices;
use crate::config::NodeConfig;
use crate::error::NodeError;

/// The loaded TC programs, the devices they belong on, and what was written for them.
pub(crate) struct PerPacketPrograms {
    datapath: PacketDatapath,
    /// Decapsulation of director traffic (when directors are named) and of DSR packets from
    /// the other nodes (with DSR).
    decap: Option<DecapDatapath>,
    /// `--director-addresses` (the decapsulation's sources besides DSR's nodes).
    directors: BTreeSet<IpAddr>,
    /// `--nodeport-mode dsr`: the GUE port flows to remote backends are encapsulated to.
    dsr_port: Option<u16>,
    /// The XDP program in front of TC (`--xdp native|generic`), and its mode.
    xdp: Option<(XdpDatapath, XdpMode)>,
    state: PacketState,
    devices: Vec<String>,
    /// `--pod-devices`: the pod interfaces attached so far.
    pods: PodDevices,
    snat_ports: PortRange,
    node_port_range: PortRange,
}

impl PerPacketPrograms {
    /// Loads the TC programs against the maps pinned in `options.bpf_dir` (the socket
    /// datapath is loaded already) and writes this node's addresses and SNAT settings as
    /// `model` knows them, with `snat_ports` (checked against the NodePort range by
    /// `choose_snat_ports`). Nothing is attached yet.
    pub(crate) fn load(
        options: &LoadOptions,
        maps: &mut Maps,
        config: &NodeConfig,
        snat_ports: PortRange,
        model: &NodeModel,
    ) -> Result<Self, NodeError> {
        let (devices, directors) = (config.devices.clone(), &config.directors);
        let node_port_range = config.node_port_range;
        let dsr_port = (config.nodeport_mode == crate::config::NodePortMode::Dsr)
            .then_some(directors.gue_port);
        let settings = settings(model.primary_addresses(), snat_ports, node_port_range, dsr_port);
        // Loading writes the settings: they are computed from the model first, so a restarted
        // agent never has the programs SNAT to a stale or missing address.
        let datapath =
            PacketDatapath::load(options, config.packet_sizes, &settings).map_err(|source| {
                NodeError::Bpf {
                    what: "loading the per-packet programs".into(),
                    source: source.into(),
                }
            })?;
        let xdp = match config.xdp {
            Some(mode) => Some((
                XdpDatapath::load(options, config.packet_sizes).map_err(|source| {
                    NodeError::Bpf {
                        what: "loading the per-packet XDP program".into(),
                        source: source.into(),
                    }
                })?,
                mode,
            )),
            None => None,
        };
        let state = PacketState::adopt(maps).map_err(NodeError::PacketMaps)?;
        // DSR: every node decapsulates its peers' packets (sources written by dsr_changed).
        let decap = if config.decap_port().is_none() {
            None
        } else {
            Some(
                DecapDatapath::load(&options.bpf_dir, &directors.addresses, directors.gue_port)
                    .map_err(|source| NodeError::Bpf {
                        what: "loading the decapsulation of director and DSR traffic".into(),
                        source: source.into(),
                    })?,
            )
        };
        let pods = PodDevices::new(config.pod_devices.clone(), devices.clone());
        let mut programs = PerPacketPrograms {
            datapath,
            decap,
            directors: directors.addresses.clone(),
            dsr_port,
            xdp,
            state,
            devices,
            pods,
            snat_ports,
            node_port_range,
        };
        programs.node_changed(maps, model.node_port_addresses(), model.primary_addresses());
        Ok(programs)
    }

    /// The SNAT source ports chosen at start (a reload after the maps grew keeps them).
    pub(crate) fn snat_ports(&self) -> PortRange {
        self.snat_ports
    }

    /// This node's addresses or SNAT source may have changed (its Node object).
    pub(crate) fn node_changed(
        &mut self,
        maps: &mut Maps,
        node_port_addresses: &[IpAddr],
        primary: PrimaryAddresses,
    ) {
        match self.state.set_node_addresses(maps, node_port_addresses) {
            Ok(true) => info!(addresses = ?self.state.node_addresses(), "node addresses written"),
            Ok(false) => {}
            Err(err) => error!(err = %ErrorChain(&err), "node addresses not written"),
        }
        let settings = settings(primary, self.snat_ports, self.node_port_range, self.dsr_port);
        match self.state.set_settings(self.datapath.maps_mut(), &settings) {
            Ok(true) => {
                info!(
                    snat_ipv4 = ?settings.snat_ipv4,
                    snat_ipv6 = ?settings.snat_ipv6,
                    snat_ports = %self.snat_ports,
                    "per-packet settings written"
                );
                if settings.snat_ipv4.is_none() && settings.snat_ipv6.is_none() {
                    warn!(
                        "this node's Node object has no address: flows to pods on other nodes cannot be SNATed"
                    );
                }
            }
            Ok(false) => {}
            Err(err) => error!(err = %ErrorChain(&err), "per-packet settings not written"),
        }
    }

    /// DSR: `sources` (the other nodes' addresses) may send encapsulated DSR packets here, and
    /// flows to a remote backend go to its node's address in `backends`.
    pub(crate) fn dsr_changed(
        &mut self,
        sources: &BTreeSet<IpAddr>,
        backends: &BTreeMap<IpAddr, IpAddr>,
    ) {
        if let Some(decap) = &mut self.decap {
            match decap.maps_mut().set_sources(&self.directors, sources) {
                Ok(()) => info!(nodes = sources.len(), "DSR sources written"),
                Err(err) => error!(err = %ErrorChain(&err), "DSR sources not written"),
            }
        }
        match self.datapath.maps_mut().set_dsr_nodes(backends) {
            Ok(()) => info!(backends = backends.len(), "DSR backend nodes written"),
            Err(err) => error!(err = %ErrorChain(&err), "DSR backend nodes not written"),
        }
    }

    /// Attaches to every device (each new link before the old one goes; XDP after TC, so TC
    /// is in place for what XDP passes), then detaches devices an earlier agent attached that
    /// are no longer listed (XDP from every device without `--xdp`).
    pub(crate) fn attach(&mut self, bpf_dir: &Path) -> Result<(), NodeError> {
        for device in &self.devices {
            self.datapath.attach(device).map_err(|source| NodeError::Bpf {
                what: format!("attaching the per-packet programs to device {device}"),
                source: source.into(),
            })?;
            if let Some(decap) = &mut self.decap {
                decap.attach(device).map_err(|source| NodeError::Bpf {
                    what: format!(
                        "attaching the decapsulation of director traffic to device {device}"
                    ),
                    source: source.into(),
                })?;
            }
            if let Some((xdp, mode)) = &mut self.xdp {
                xdp.attach(device, *mode).map_err(|source| NodeError::Bpf {
                    what: format!(
                        "attaching the per-packet XDP program ({mode:?}) to device {device}"
                    ),
                    source: source.into(),
                })?;
            }
        }
        let xdp_devices = if self.xdp.is_some() { &self.devices[..] } else { &[] };
        let decap_devices = if self.decap.is_some() { &self.devices[..] } else { &[] };
        detach_others(bpf_dir, &self.devices, xdp_devices, decap_devices)?;
        self.pods.sync(&mut self.datapath, bpf_dir);
        Ok(())
    }

    /// Attaches the pod entry point to pod interfaces that appeared since the last scan (and
    /// forgets those that went).
    pub(crate) fn rescan_pods(&mut self, bpf_dir: &Path) {
        self.pods.sync(&mut self.datapath, bpf_dir);
    }
}

/// Detaches the per-packet programs from every device not in `keep`, the XDP program from
/// every device not in `keep_xdp` (first: XDP passes to TC, never the other way), and the
/// decapsulation from every device not in `keep_decap` (before the per-packet programs: it
/// hands them the inner packet).
pub(crate) fn detach_others(
    bpf_dir: &Path,
    keep: &[String],
    keep_xdp: &[String],
    keep_decap: &[String],
) -> Result<(), NodeError> {
    let attached = nodeport_xdp::attached_devices(bpf_dir).map_err(|source| NodeError::Bpf {
        what: "listing devices with the XDP program".into(),
        source: source.into(),
    })?;
    for device in attached {
        if !keep_xdp.contains(&device) {
            nodeport_xdp::detach_device(bpf_dir, &device).map_err(|source| NodeError::Bpf {
                what: format!("detaching the XDP program from device {device}"),
                source: source.into(),
            })?;
            info!(device, "per-packet XDP program detached (--xdp off or device not listed)");
        }
    }
    let attached = decap::attached_devices(bpf_dir).map_err(|source| NodeError::Bpf {
        what: "listing devices with the decapsulation program".into(),
        source: source.into(),
    })?;
    for device in attached.into_iter().filter(|d| !keep_decap.contains(d)) {
        decap::detach_device(bpf_dir, &device).map_err(|source| NodeError::Bpf {
            what: format!("detaching the decapsulation from device {device}"),
            source: source.into(),
        })?;
        info!(device, "decapsulation detached (no directors or DSR, or device not listed)");
    }
    let attached = nodeport::attached_devices(bpf_dir).map_err(|source| NodeError::Bpf {
        what: "listing attached devices".into(),
        source: source.into(),
    })?;
    for device in attached {
        if !keep.contains(&device) {
            nodeport::detach_device(bpf_dir, &device).map_err(|source| NodeError::Bpf {
                what: format!("detaching from device {device}"),
                source: source.into(),
            })?;
            info!(device, "per-packet programs detached (device no longer in --devices)");
        }
    }
    Ok(())
}

fn settings(
    primary: PrimaryAddresses,
    snat_ports: PortRange,
    node_port_range: PortRange,
    dsr_port: Option<u16>,
) -> PacketSettings {
    PacketSettings {
        snat_ipv4: primary.ipv4,
        snat_ipv6: primary.ipv6,
        snat_ports: snat_ports.first..=snat_ports.last,
        node_port_range: node_port_range.first..=node_port_range.last,
        dsr_port,
        ..PacketSettings::default()
    }
}

fn log_errors(errors: &[PacketError]) {
    for err in errors {
        error!(err = %ErrorChain(err), "per-packet state not written");
    }
}
