//! Faithful reproductions of the rulesets kube-proxy writes, from a [`DesiredState`].
//!
//! Each writer follows the corresponding kube-proxy proxier (pkg/proxy/iptables/proxier.go and
//! pkg/proxy/nftables/proxier.go) for the Service shapes the benchmarks use: ClusterIP and
//! NodePort Services, `externalTrafficPolicy: Cluster`, no session affinity, no load-balancer
//! IPs. docs/benchmarks.md says where each rule shape comes from.
//!
//! [`DesiredState`]: crate::state::DesiredState

pub mod hash;
pub mod iptables;
pub mod nftables;
