//! The per-packet XDP program (`c/nodeport_xdp.bpf.c`, the agent's `--xdp native|generic`):
//! loaded after the TC programs against the same pinned maps (one conntrack for both), attached
//! to the same devices. It forwards what it can finish itself and passes everything else,
//! untouched, to the TC programs.
//!
//! Links are pinned as `<bpf_dir>/links/xdp-<device>-<generation>`. A device holds one XDP
//! link: a restarted agent takes the pinned one over and replaces its program in one step
//! (`BPF_LINK_UPDATE`), like the director. `sy_xdp_devs` (ifindex -> MAC) names the devices
//! the program runs on: it redirects only to those.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::Xdp,
};
use tracing::info;

use crate::{
    Error, LoadOptions,
    director::{XdpMode, attach_pinned},
    loader::{LINKS_DIR, unpin_link},
    maps::typed,
    nodeport::{PacketMapSizes, check_device_name, check_pins},
    nodeport_abi::{NP_ROUTE_TTL_MS, XdpDev},
};

/// The program's function name in `c/nodeport_xdp.bpf.c`.
pub const PROGRAM: &str = "sy_nodeport_xdp";

/// Link pins of the XDP program start with this (`xdp-<device>-<generation>`).
pub const LINK_PREFIX: &str = "xdp-";

/// `sy_xdp_devs`: ifindex -> the device's MAC, for every device the program is attached to.
pub const DEVS_MAP: &str = "sy_xdp_devs";

/// The loaded XDP program and its device map.
#[derive(Debug)]
pub struct XdpDatapath {
    ebpf: Ebpf,
    devs: HashMap<MapData, u32, XdpDev>,
    bpf_dir: PathBuf,
}

impl XdpDatapath {
    /// Loads `c/nodeport_xdp.bpf.c` against the maps pinned in `opts.bpf_dir`: load the socket
    /// datapath and the TC programs ([`crate::nodeport::PacketDatapath::load`]) with the same
    /// options and sizes first (they create the maps and write the settings).
    pub fn load(opts: &LoadOptions, sizes: PacketMapSizes) -> Result<Self, Error> {
        Self::load_object(opts, sizes, crate::nodeport_xdp_object())
    }

    /// [`XdpDatapath::load`] with the object's bytes given: the per-packet bench compares
    /// another build of `c/nodeport_xdp.bpf.c` (`scripts/nodeport-ab`) on the same maps.
    pub fn load_object(
        opts: &LoadOptions,
        sizes: PacketMapSizes,
        object: &[u8],
    ) -> Result<Self, Error> {
        if !opts.bpf_dir.join(crate::nodeport::names::CT).exists() {
            return Err(Error::InvalidArgument(format!(
                "{}: no pinned {}; load the per-packet TC programs first",
                opts.bpf_dir.display(),
                crate::nodeport::names::CT
            )));
        }
        check_pins(&opts.bpf_dir, sizes, &opts.sizes)?;
        let mut ebpf = crate::nodeport::packet_loader(opts, sizes).load(object)?;
        let devs =
            typed(DEVS_MAP, ebpf.take_map(DEVS_MAP).ok_or(Error::MissingMap { name: DEVS_MAP })?)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })?;
        crate::loader::load_retrying(PROGRAM, || program.load())?;
        info!(bpf_dir = %opts.bpf_dir.display(), "per-packet XDP program loaded");
        Ok(XdpDatapath { ebpf, devs, bpf_dir: opts.bpf_dir.clone() })
    }

    /// The loaded program (e.g. for `TestRun`).
    pub fn program(&self) -> Result<&Xdp, Error> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(Error::MissingProgram { name: PROGRAM })?
            .try_into()
            .map_err(|source| Error::Program { name: PROGRAM, source })
    }

    /// Declares `ifindex` a device the program runs on, with its MAC (what
    /// [`XdpDatapath::attach`] writes; tests use it for BPF_PROG_TEST_RUN's loopback).
    pub fn set_device(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), Error> {
        self.devs
            .insert(ifindex, XdpDev { mac, flags: 0 }, 0)
            .map_err(|source| Error::Map { name: DEVS_MAP, source })
    }

    /// Removes `ifindex` from the devices the program runs on and redirects to (what
    /// [`detach_device`] does for the agent).
    pub fn remove_device(&mut self, ifindex: u32) -> Result<(), Error> {
        match self.devs.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::Map { name: DEVS_MAP, source }),
        }
    }

    /// Attaches the program to `device` (in the caller's network namespace) in `mode` and pins
    /// the link; a link an earlier agent pinned for the device is taken over (its program
    /// replaced in one step). Then records the device in `sy_xdp_devs` and removes its older
    /// pins. Native mode on a driver without XDP support fails (the operator asked for it).
    pub fn attach(&mut self, device: &str, mode: XdpMode) -> Result<(), Error> {
        crate::nodeport::check_device(device)?;
        let (ifindex, mac) = device_address(device)?;
        // Before the program runs there: a frame for this device is recognised from the start.
        self.set_device(ifindex, mac)?;
        let links_dir = self.bpf_dir.join(LINKS_DIR);
        let took_over =
            attach_pinned(&mut self.ebpf, PROGRAM, device, mode, &links_dir, LINK_PREFIX)?;
        info!(device, ?mode, took_over, "per-packet XDP program attached");
        Ok(())
    }
}

/// The ifindex and MAC address of `device` in the caller's network namespace (netlink, so a
/// thread in a namespace of its own sees its own devices).
fn device_address(device: &str) -> Result<(u32, [u8; 6]), Error> {
    let ifindex = nix::net::if_::if_nametoindex(device).map_err(|e| {
        Error::InvalidArgument(format!("device {device}: no such network device ({e})"))
    })?;
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::InvalidArgument(format!("listing interface addresses: {e}")))?;
    for ifa in addrs {
        if ifa.interface_name != device {
            continue;
        }
        if let Some(mac) =
            ifa.address.as_ref().and_then(|a| a.as_link_addr()).and_then(|l| l.addr())
        {
            return Ok((ifindex, mac));
        }
    }
    Err(Error::InvalidArgument(format!("device {device}: no Ethernet address (XDP needs one)")))
}

/// Link pins of the XDP program under `<bpf_dir>/links`, as (device, path).
fn xdp_links(bpf_dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    for path in crate::loader::link_pins(bpf_dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // xdp-<device>-<generation>; the device may itself contain '-'.
        let Some((device, generation)) =
            name.strip_prefix(LINK_PREFIX).and_then(|rest| rest.rsplit_once('-'))
        else {
            continue;
        };
        if !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()) {
            out.push((device.to_owned(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Devices the XDP program is attached to (by their link pins), sorted.
pub fn attached_devices(bpf_dir: &Path) -> Result<Vec<String>, Error> {
    let mut devices: Vec<String> = xdp_links(bpf_dir)?.into_iter().map(|(d, _)| d).collect();
    devices.dedup();
    Ok(devices)
}

/// Detaches the XDP program from `device`: removes its `sy_xdp_devs` entry (when the device
/// still exists), then its link pins. Returns how many links were removed. The program on
/// other devices redirects to this one until its per-CPU next hops expire
/// ([`NP_ROUTE_TTL_MS`]), so when an entry was removed and links remain, the links go only
/// after that time: frames redirected meanwhile still find the program.
pub fn detach_device(bpf_dir: &Path, device: &str) -> Result<usize, Error> {
    check_device_name(device)?;
    let pins: Vec<PathBuf> =
        xdp_links(bpf_dir)?.into_iter().filter(|(d, _)| d == device).map(|(_, p)| p).collect();
    let map_pin = bpf_dir.join(DEVS_MAP);
    let mut removed = false;
    if let Ok(ifindex) = nix::net::if_::if_nametoindex(device)
        && map_pin.exists()
    {
        let data =
            MapData::from_pin(&map_pin).map_err(|source| Error::Map { name: DEVS_MAP, source })?;
        let map = aya::maps::Map::from_map_data(data)
            .map_err(|source| Error::Map { name: DEVS_MAP, source })?;
        let mut devs: HashMap<MapData, u32, XdpDev> = typed(DEVS_MAP, map)?;
        match devs.remove(&ifindex) {
            Ok(()) => removed = true,
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => return Err(Error::Map { name: DEVS_MAP, source }),
        }
    }
    if removed && !pins.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(NP_ROUTE_TTL_MS + 10));
    }
    for path in &pins {
        unpin_link(path)?;
    }
    Ok(pins.len())
}

/// Removes the XDP program's map pin (after its links went with [`crate::loader::cleanup`]).
pub fn cleanup(bpf_dir: &Path) -> Result<(), Error> {
    crate::loader::remove_map_pins(bpf_dir, &[DEVS_MAP])
}
