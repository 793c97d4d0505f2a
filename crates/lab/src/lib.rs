//! Network-namespace clusters for tests, benchmarks and `switchyard lab`.
//!
//! A [`Lab`] is built from a [`Topology`]: a router namespace (`<prefix>-fabric`) joins node
//! namespaces and external client namespaces; pods hang off their node through veths, in a flat
//! routed network (Calico's non-overlay mode). Every node has a cgroup v2 directory and a bpffs
//! directory for its agent. Nothing is linked to the host namespace, so no traffic leaves the lab.
//!
//! ```no_run
//! use switchyard_lab::{Lab, Topology};
//! let lab = Lab::up(&Topology::default())?;
//! let pod = lab.pod("pod1a")?;
//! println!("{} on {}", pod.ipv4, pod.node);
//! # Ok::<(), switchyard_lab::LabError>(())
//! ```

mod bpffs;
mod cgroup;
pub mod counters;
mod error;
mod lab;
pub mod netns;
pub mod offload;
pub mod plan;
pub mod privilege;
pub mod tools;
pub mod topology;
mod wiring;
pub mod xdp_pass;

pub use cgroup::{DEFAULT_CGROUP_ROOT, kill_and_remove as kill_and_remove_cgroup};
pub use error::LabError;
pub use lab::{DEFAULT_RUN_DIR, Lab, LabOptions, LabState, Owner, check_prefix, wait_until};
pub use plan::{Cidr, ClientInfo, DirectorInfo, LabPlan, NodeInfo, PodInfo};
pub use privilege::require_root;
pub use topology::{NodeSpec, Topology};
