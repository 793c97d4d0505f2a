//! The director as a forwarder (issue 16's figure): Switchyard's XDP director in native mode on
//! the forwarder's ingress veth, one UDP VIP over a Maglev table of the production size whose
//! every slot is the one node. A director is one-armed (its route lookup is an output lookup on
//! the device the packet came in on: nodes sit behind its uplink), so the node here is an
//! address on the generator's link whose neighbour entry is the generator's veth: the director
//! encapsulates (IPIP, the cheapest of its encapsulations, 20 bytes) and sends the frame back
//! out with `XDP_TX`, into that veth's ring, whose NAPI thread (the sink, on the generator's CPU)
//! drops it. Forwarded = the director's own count of encapsulated packets; how many reached
//! the sink is the generator veth's receive counter.

use std::net::{IpAddr, Ipv4Addr};

use switchyard_bpf::PrivateBpffs;
use switchyard_bpf::abi::FrontendKey;
use switchyard_bpf::director::{
    DirMapSizes, DirNode, DirReason, DirSettings, DirVip, DirectorDatapath, ENCAP_IPIP,
    GUE_PORT_DEFAULT, XdpMode,
};
use switchyard_error::ErrorChain;

use super::topology::{FwdTopology, NODE_IP, counters, napi_thread};
use crate::error::BenchError;

/// The VIP the generator sends to (TEST-NET-1: never routed on the forwarder).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const VIP_PORT: u16 = 80;
/// The node the director sends to: on the generator's link, answered by the generator's veth.
pub const DIRECTOR_NODE: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 3);
/// The director's default M.
const TABLE_SIZE: u32 = 65_537;
const UDP: u8 = 17;

/// A loaded and attached director; detached and unpinned on drop (the datapath first, then
/// its bpffs).
#[allow(missing_debug_implementations, reason = "holds kernel handles")]
pub struct Director {
    datapath: DirectorDatapath,
    _dir: PrivateBpffs,
    /// The sink's NAPI thread (the generator veth's).
    pub sink_thread: i32,
}

fn err(what: &str, e: &(dyn std::error::Error + 'static)) -> BenchError {
    BenchError::Switchyard(format!("director: {what}: {}", ErrorChain(e)))
}

impl Director {
    /// Loads the director, programs the VIP and its node, attaches it natively to the
    /// forwarder's ingress device.
    pub fn load(topo: &FwdTopology, sink_cpu: usize) -> Result<Self, BenchError> {
        let mac = topo.g_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        topo.fwd.output(
            "ip",
            &["neigh", "replace", &DIRECTOR_NODE.to_string(), "lladdr", &mac, "dev", &topo.i]
                .into_iter()
                .chain(["nud", "permanent"])
                .collect::<Vec<_>>(),
        )?;
        let g = topo.g.clone();
        switchyard_lab::netns::run_in(topo.sender.name(), move || {
            switchyard_lab::offload::set_gro(&g, true)
        })
        .map_err(|e| BenchError::Lab(e.to_string()))?
        .map_err(|e| BenchError::Lab(format!("GRO on {}: {e}", topo.g)))?;
        let sink_thread = napi_thread(&topo.sender, &topo.g, sink_cpu)?;
        let dir = crate::switchyard::private_bpffs("sybench-fwdd")?;
        let settings = DirSettings {
            source4: Some(NODE_IP),
            source6: None,
            seed: switchyard_maglev::Seed::DEFAULT,
            table_size: TABLE_SIZE,
            gue_port: GUE_PORT_DEFAULT,
            encap: ENCAP_IPIP,
        };
        let mut datapath =
            DirectorDatapath::load(dir.path(), false, DirMapSizes::default(), &settings)
                .map_err(|e| err("loading", &e))?;
        let maps = datapath.maps_mut();
        maps.put_node(1, DirNode::new(IpAddr::V4(DIRECTOR_NODE))).map_err(|e| err("node", &e))?;
        let slots = vec![1u32; TABLE_SIZE as usize];
        maps.put_table(1, &slots).map_err(|e| err("table", &e))?;
        let key = FrontendKey::new(IpAddr::V4(VIP), VIP_PORT, UDP, 0);
        maps.put_vip(key, DirVip { id: 1, table_id: 1 }).map_err(|e| err("VIP", &e))?;
        let device = topo.i.clone();
        let datapath = switchyard_lab::netns::run_in(topo.fwd.name(), move || {
            datapath.attach(&device, XdpMode::Native).map(|()| datapath)
        })
        .map_err(|e| BenchError::Lab(e.to_string()))?
        .map_err(|e| err("attaching", &e))?;
        Ok(Self { datapath, _dir: dir, sink_thread })
    }

    /// The director's nonzero counters by reason, for error messages.
    pub fn describe(&self) -> String {
        match self.datapath.maps().counters() {
            Ok(counters) => counters
                .iter()
                .filter(|(_, c)| c.packets > 0)
                .map(|(r, c)| format!("{} {}", r.name(), c.packets))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("counters unreadable: {}", ErrorChain(&e)),
        }
    }

    /// Frames delivered to the sink (the generator's veth) so far.
    pub fn delivered(topo: &FwdTopology) -> Result<u64, BenchError> {
        Ok(counters(&topo.sender, &topo.g)?.rx_packets)
    }

    /// Packets the director encapsulated with IPIP so far.
    pub fn encapsulated(&self) -> Result<u64, BenchError> {
        let counters = self.datapath.maps().counters().map_err(|e| err("counters", &e))?;
        Ok(counters.get(&DirReason::EncapIpip).map_or(0, |c| c.packets))
    }
}
