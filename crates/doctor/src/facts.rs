//! What the probes found: plain values, so the decisions can be tested without a kernel.

use std::path::PathBuf;

use switchyard_model::PortRange;

/// A probe's result; the error says what failed and why (`bpf(BPF_MAP_CREATE): EPERM`).
pub type Probed<T> = Result<T, String>;

/// Everything [`crate::decide`] looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `uname -r`.
    pub kernel_release: Probed<String>,
    pub bpf: BpfFacts,
    /// The kernel's BTF (`/sys/kernel/btf/vmlinux`).
    pub btf: Probed<BtfFacts>,
    /// Mounted filesystems (`/proc/self/mountinfo`).
    pub mounts: Probed<Vec<Mount>>,
    /// Whether `--cgroup` is a directory on a cgroup v2 filesystem (when given).
    pub cgroup_dir: Option<Probed<bool>>,
    pub bpffs: BpffsState,
    /// Adding a clsact qdisc, tried in a network namespace of the probe's own.
    pub clsact: Probed<()>,
    /// One per `--devices` entry.
    pub devices: Vec<DeviceFacts>,
    /// Opening an SCTP socket.
    pub sctp: Probed<()>,
    pub kube_proxy: KubeProxyFacts,
    /// Names of the BPF programs loaded in the kernel.
    pub programs: Probed<Vec<String>>,
    /// `net.ipv4.ip_local_port_range`.
    pub local_port_range: Probed<PortRange>,
    /// `net.ipv4.ip_local_reserved_ports`.
    pub reserved_ports: Probed<Vec<PortRange>>,
    /// Whether the kernel considers the clock synchronized (adjtimex).
    pub clock_synchronized: Probed<bool>,
    /// The API server's version (`GET /version`), when a kubeconfig was given.
    pub api_server: Option<Probed<String>>,
    pub agent: AgentFacts,
}

/// The BPF system call and the program and map types Switchyard loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfFacts {
    /// Creating a small array map.
    pub syscall: Probed<()>,
    /// Program and map types the kernel refused (`cgroup/sock_addr program`, `LRU hash map`).
    pub missing: Vec<&'static str>,
}

/// What the kernel's BTF says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfFacts {
    /// The `bpf_sock_destroy` kfunc (Linux 6.5+) is there.
    pub sock_destroy: bool,
}

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Where `--bpf-dir` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BpffsState {
    /// The directory is on a bpffs.
    Mounted { dir: PathBuf },
    /// The directory does not exist yet; its nearest existing parent is on a bpffs.
    Below { dir: PathBuf, bpffs: PathBuf },
    /// No bpffs there, but mounting one (tried in a mount namespace of the probe's own) worked.
    Mountable { dir: PathBuf },
    /// No bpffs there, and mounting one failed.
    NotMountable { dir: PathBuf, error: String },
}

/// One `--devices` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub name: String,
    /// The device exists in this network namespace.
    pub present: bool,
    /// The driver's XDP features (netdev netlink family, Linux 6.3+); `None` when the kernel
    /// has no such family.
    pub xdp: Probed<Option<XdpFeatures>>,
}

/// `NETDEV_A_DEV_XDP_FEATURES`: a bit set of `enum netdev_xdp_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpFeatures(pub u64);

impl XdpFeatures {
    /// `NETDEV_XDP_ACT_BASIC`: XDP_PASS, XDP_DROP, XDP_ABORTED and XDP_TX in the driver.
    pub const BASIC: u64 = 1 << 0;
    /// `NETDEV_XDP_ACT_REDIRECT`.
    pub const REDIRECT: u64 = 1 << 1;

    /// The driver runs XDP programs natively (`xdpdrv`).
    pub fn native(self) -> bool {
        self.0 & Self::BASIC != 0
    }
}

/// Traces of kube-proxy in this network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeProxyFacts {
    /// kube-proxy's chains in `iptables-save` / `ip6tables-save` (the kubelet's own excluded).
    pub iptables_chains: Vec<String>,
    /// kube-proxy's nftables tables (`ip kube-proxy`, `ip6 kube-proxy`).
    pub nft_tables: Vec<String>,
    /// The IPVS mode's `kube-ipvs0` device exists.
    pub ipvs_device: bool,
    /// Tools that could not be run (`iptables-save: not installed`).
    pub unreadable: Vec<String>,
}

/// What an agent left under `--bpf-dir` and whether it answers on `--api-socket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// Map pins directly under `--bpf-dir`.
    pub pinned_maps: usize,
    /// Link pins under `--bpf-dir/links`.
    pub pinned_links: usize,
    pub api_socket: SocketState,
}

/// The agent's unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// No socket file.
    Absent,
    /// Something accepts connections on it.
    Accepting,
    /// The file is there but connecting failed (a stale socket of a stopped agent).
    Refused(String),
}
