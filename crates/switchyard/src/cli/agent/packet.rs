//! The per-packet half of the node role (`--devices`): the TC programs on the node's devices,
//! and what they need besides frontends — node addresses, loadBalancerSourceRanges and the SNAT
//! settings. The model decides all of it; this only carries it out and logs what failed.

use anyhow::{Context, bail};
use switchyard_bpf::decap::DecapDatapath;
use switchyard_bpf::tc::{self, PacketDatapath, PacketMapSizes, PacketSettings};
use switchyard_bpf::{LoadOptions, Maps};
use switchyard_dataplane::packet::{PacketError, PacketState};
use switchyard_dataplane::reconciler::KernelPlanner;
use switchyard_model::{DesiredState, Frontend, FrontendKey, NodeModel, PortRange};
use tracing::{error, info, warn};

/// Which directors' encapsulated packets the node accepts (none: no decapsulation).
pub(crate) struct Directors {
    pub(crate) addresses: std::collections::BTreeSet<std::net::IpAddr>,
    pub(crate) gue_port: u16,
}

/// The loaded TC programs, the devices they belong on, and what was written for them.
pub(crate) struct PacketPath {
    datapath: PacketDatapath,
    /// Decapsulation of director traffic, when directors are named.
    decap: Option<DecapDatapath>,
    state: PacketState,
    devices: Vec<String>,
    snat_ports: PortRange,
    node_port_range: PortRange,
}

/// Refuses a SNAT port range that overlaps the NodePort range: a SNATed flow on a NodePort
/// number would catch the replies meant for another Service's clients.
pub(crate) fn check_port_ranges(
    snat_ports: PortRange,
    node_port_range: PortRange,
) -> anyhow::Result<()> {
    if snat_ports.first <= node_port_range.last && node_port_range.first <= snat_ports.last {
        bail!(
            "--snat-port-range {snat_ports} overlaps the NodePort range {node_port_range} \
             (--node-port-range); choose SNAT ports outside it (default 61000-65535)"
        );
    }
    Ok(())
}

impl PacketPath {
    /// Loads the TC programs against the maps pinned in `options.bpf_dir` (the socket
    /// datapath is loaded already) and writes this node's addresses and SNAT settings as
    /// `model` knows them. Nothing is attached yet.
    pub(crate) fn load(
        options: &LoadOptions,
        maps: &mut Maps,
        devices: Vec<String>,
        snat_ports: PortRange,
        node_port_range: PortRange,
        model: &NodeModel,
        directors: Directors,
    ) -> anyhow::Result<Self> {
        check_port_ranges(snat_ports, node_port_range)?;
        let settings = settings(model, snat_ports, node_port_range);
        // Loading writes the settings: they are computed from the model first, so a restarted
        // agent never has the programs SNAT to a stale or missing address.
        let datapath = PacketDatapath::load(options, PacketMapSizes::default(), &settings)
            .context("loading the per-packet programs")?;
        let state =
            PacketState::adopt(maps, datapath.maps()).context("reading the per-packet maps")?;
        let decap = if directors.addresses.is_empty() {
            None
        } else {
            Some(
                DecapDatapath::load(&options.bpf_dir, &directors.addresses, directors.gue_port)
                    .context("loading the decapsulation of director traffic")?,
            )
        };
        let mut path = PacketPath { datapath, decap, state, devices, snat_ports, node_port_range };
        path.node_changed(maps, model);
        Ok(path)
    }

    /// Before a plan: source ranges of frontends that keep their id.
    pub(crate) fn prepare<'a>(
        &mut self,
        planner: &KernelPlanner,
        changes: impl IntoIterator<Item = (FrontendKey, Option<&'a Frontend>)>,
    ) {
        let errors = self.state.prepare(self.datapath.maps_mut(), planner, changes);
        log_errors(&errors);
    }

    /// After a plan: every changed frontend has its source ranges.
    pub(crate) fn finish<'a>(
        &mut self,
        planner: &KernelPlanner,
        changes: impl IntoIterator<Item = (FrontendKey, Option<&'a Frontend>)>,
    ) {
        let errors = self.state.finish(self.datapath.maps_mut(), planner, changes);
        log_errors(&errors);
    }

    /// After a full reconciliation: source ranges of exactly `desired`.
    pub(crate) fn finish_full(&mut self, planner: &KernelPlanner, desired: &DesiredState) {
        let errors = self.state.finish_full(self.datapath.maps_mut(), planner, desired);
        log_errors(&errors);
    }

    /// This node's addresses or SNAT settings may have changed (its Node object).
    pub(crate) fn node_changed(&mut self, maps: &mut Maps, model: &NodeModel) {
        match self.state.set_node_addresses(maps, model.node_port_addresses()) {
            Ok(true) => info!(addresses = ?self.state.node_addresses(), "node addresses written"),
            Ok(false) => {}
            Err(err) => error!(%err, "node addresses not written"),
        }
        let settings = settings(model, self.snat_ports, self.node_port_range);
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
            Err(err) => error!(%err, "per-packet settings not written"),
        }
    }

    /// Attaches to every device (each new link before the old one goes), then detaches devices
    /// an earlier agent attached that are no longer listed.
    pub(crate) fn attach(&mut self, bpf_dir: &std::path::Path) -> anyhow::Result<()> {
        for device in &self.devices {
            self.datapath
                .attach(device)
                .with_context(|| format!("attaching the per-packet programs to device {device}"))?;
            if let Some(decap) = &mut self.decap {
                decap.attach(device).with_context(|| {
                    format!("attaching the decapsulation of director traffic to device {device}")
                })?;
            }
        }
        detach_others(bpf_dir, &self.devices)
    }
}

/// Detaches the per-packet programs from every device not in `keep`.
pub(crate) fn detach_others(bpf_dir: &std::path::Path, keep: &[String]) -> anyhow::Result<()> {
    for device in tc::attached_devices(bpf_dir).context("listing attached devices")? {
        if !keep.contains(&device) {
            tc::detach_device(bpf_dir, &device)
                .with_context(|| format!("detaching from device {device}"))?;
            info!(device, "per-packet programs detached (device no longer in --devices)");
        }
    }
    Ok(())
}

fn settings(
    model: &NodeModel,
    snat_ports: PortRange,
    node_port_range: PortRange,
) -> PacketSettings {
    let primary = model.primary_addresses();
    PacketSettings {
        snat_ipv4: primary.ipv4,
        snat_ipv6: primary.ipv6,
        snat_ports: snat_ports.first..=snat_ports.last,
        node_port_range: node_port_range.first..=node_port_range.last,
        ..PacketSettings::default()
    }
}

fn log_errors(errors: &[PacketError]) {
    for err in errors {
        error!(%err, "per-packet state not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snat_ports_must_not_overlap_the_node_port_range() {
        let range = |text: &str| text.parse::<PortRange>().unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("61000-65535", "30000-32767", true),
            ("20000-29999", "30000-32767", true),
            ("32767-40000", "30000-32767", false),
            ("1000-30000", "30000-32767", false),
            ("30500-30600", "30000-32767", false),
            ("61000-65535", "60000-61000", false),
        ];
        for (snat, node_ports, ok) in cases {
            let result = check_port_ranges(range(snat), range(node_ports));
            assert_eq!(result.is_ok(), ok, "{snat} against {node_ports}: {result:?}");
            if let Err(err) = result {
                assert!(err.to_string().contains("--snat-port-range"), "{err}");
            }
        }
    }
}
