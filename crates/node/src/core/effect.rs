//! What the node core asks its runtime to do, in the order it must be done.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use switchyard_dataplane::kernel::KernelOp;
use switchyard_dataplane::packet_settings::FrontendRanges;
use switchyard_dataplane::planner::PlanError;
use switchyard_model::{HealthCheck, PrimaryAddresses, StateDiff};

/// One backend address as sockets see it.
pub type Endpoint = (IpAddr, u16);

/// One thing for the runtime to carry out. Effects come in the order they must be carried out;
/// [`Effect::Program`] and [`Effect::ReadBack`] are answered with
/// [`crate::NodeCore::programmed`] and [`crate::NodeCore::read_back`], whose effects come next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// This node's addresses changed: NodePort addresses for the per-packet programs' wildcard
    /// entries and the SNAT source address per family.
    NodeAddresses {
        /// Addresses that carry NodePorts, sorted.
        node_port_addresses: Vec<IpAddr>,
        /// The SNAT source address per family.
        primary: PrimaryAddresses,
    },
    /// DSR (`--nodeport-mode dsr`): the other nodes' addresses, from which encapsulated DSR
    /// packets are accepted, and each remote backend's node address (same family), to which
    /// its flows are encapsulated.
    DsrNodes {
        /// Accepted outer sources of DSR packets.
        sources: BTreeSet<IpAddr>,
        /// Remote backend address -> its node's address.
        backends: BTreeMap<IpAddr, IpAddr>,
    },
    /// Start, update or stop (`None`) the health check node port server of `port`.
    HealthCheck {
        /// The node port.
        port: u16,
        /// What it must answer.
        check: Option<HealthCheck>,
    },
    /// Write loadBalancerSourceRanges. Before a plan (`before`): the prefixes of frontends that
    /// keep their id are added first, so no allowed client is dropped while the frontend's flag
    /// is ahead of its prefixes. After it: each listed frontend gets exactly its prefixes, and
    /// with `full` every prefix of an unlisted frontend goes.
    SourceRanges {
        /// Before the map operations (add only) or after them (add and remove).
        before: bool,
        /// After a full reconciliation: `frontends` is everything; remove the rest.
        full: bool,
        /// The changed frontends, resolved to their ids at this point.
        frontends: Vec<FrontendRanges>,
    },
    /// Carry out these map operations, in order (make-before-break), then report the outcome
    /// with [`crate::NodeCore::programmed`].
    Program {
        /// The operations.
        ops: Vec<KernelOp>,
        /// Whether this brings the maps to the whole desired state.
        full: bool,
    },
    /// Writing the maps failed: the core's view may be ahead of the kernel. Read the maps
    /// back and hand them to [`crate::NodeCore::read_back`].
    ReadBack,
    /// The maps hold the desired state (as far as it fits).
    Synced {
        /// A full reconciliation (first, or after a read-back).
        full: bool,
        /// Map operations carried out.
        ops: usize,
        /// Backends deleted from the maps.
        released: usize,
        /// Frontends that did not fit; they keep their previous state.
        errors: Vec<PlanError>,
    },
    /// The maps could not be brought up to date; the next update tries again.
    SyncFailed {
        /// Whether the core wants the maps read back ([`Effect::ReadBack`] follows).
        reading_back: bool,
    },
    /// The maps are complete for the first time: attach the programs (socket programs to the
    /// cgroup, per-packet programs to the devices).
    Attach,
    /// Destroy sockets connected to these backends: they are gone for good (not terminating,
    /// not used by any frontend), and the maps no longer lead to them.
    SweepSockets(BTreeSet<Endpoint>),
    /// The objects that decide what this node announces to routers (Services and their status,
    /// endpoints, this Node, pools, BGP peers and advertisements) changed, and the maps hold
    /// the result: decide the announcements again. Comes after the maps are synced, so a router
    /// never learns an address before this node's maps serve it; never after a failed write
    /// (it waits for the next successful one).
    Announcements {
        /// The differences of the desired state written since the last one.
        changed: Vec<StateDiff>,
        /// Not every difference is listed (a full reconciliation, a failed write): decide on
        /// the whole desired state.
        full: bool,
    },
}
