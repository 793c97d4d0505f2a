//! From facts to findings: one pure function per check, no I/O.

use std::path::{Path, PathBuf};

use switchyard_model::{PortRange, choose_snat_ports};

use crate::facts::{
    AgentFacts, BpfFacts, BpffsState, BtfFacts, DeviceFacts, Facts, KubeProxyFacts, Mount, Probed,
    SocketState,
};
use crate::{Finding, Options, parse};

/// The oldest kernel with everything the node role uses (`bpf_set_retval` in sock_addr hooks).
pub const MIN_KERNEL: (u32, u32) = (5, 18);

/// Every check, in the order they are printed.
pub fn all(facts: &Facts, options: &Options) -> Vec<Finding> {
    let mut findings = vec![
        kernel(&facts.kernel_release),
        bpf(&facts.bpf),
        btf(&facts.btf),
        sock_destroy(&facts.btf),
        cgroup(&facts.mounts, options.cgroup.as_deref(), facts.cgroup_dir.as_ref()),
        bpffs(&facts.bpffs),
        clsact(&facts.clsact, !options.devices.is_empty()),
    ];
    findings.extend(devices(&facts.devices));
    findings.push(sctp(&facts.sctp));
    findings.push(kube_proxy(&facts.kube_proxy));
    findings.push(cilium(&facts.programs));
    findings.push(ports(
        options.node_port_range,
        options.snat_port_range,
        options.decap_port,
        &facts.local_port_range,
        &facts.reserved_ports,
    ));
    findings.push(clock(&facts.clock_synchronized));
    if let Some(api_server) = &facts.api_server {
        findings.push(api(api_server, options.kubeconfig.as_deref()));
    }
    findings.push(agent(&facts.agent, &options.bpf_dir, &options.api_socket));
    findings
}

/// The kernel is new enough for every hook and helper the node role uses.
pub fn kernel(release: &Probed<String>) -> Finding {
    let (min_major, min_minor) = MIN_KERNEL;
    let upgrade = format!("upgrade to Linux {min_major}.{min_minor} or later");
    let release = match release {
        Ok(release) => release,
        Err(error) => return Finding::fail("kernel", format!("unknown release: {error}"), upgrade),
    };
    match parse::kernel_version(release) {
        Some(version) if version >= MIN_KERNEL => Finding::ok(
            "kernel",
            format!("Linux {release} ({min_major}.{min_minor} or later needed)"),
        ),
        Some(_) => Finding::fail(
            "kernel",
            format!(
                "Linux {release} is older than {min_major}.{min_minor} (sock_addr hooks cannot \
                 refuse a connection with bpf_set_retval)"
            ),
            upgrade,
        ),
        None => Finding::fail("kernel", format!("cannot read the release {release:?}"), upgrade),
    }
}

/// The BPF system call works for us, and the kernel has every program and map type we load.
pub fn bpf(facts: &BpfFacts) -> Finding {
    if let Err(error) = &facts.syscall {
        return Finding::fail(
            "bpf",
            format!("the bpf(2) system call failed: {error}"),
            "run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON and a seccomp profile \
             that allows bpf(2); the kernel needs CONFIG_BPF_SYSCALL=y",
        );
    }
    if !facts.missing.is_empty() {
        return Finding::fail(
            "bpf",
            format!("the kernel lacks {}", facts.missing.join(", ")),
            "use a kernel with CONFIG_CGROUP_BPF, CONFIG_NET_CLS_BPF and CONFIG_BPF_JIT \
             (every distribution kernel of Linux 5.18 or later has them)",
        );
    }
    Finding::ok("bpf", "bpf(2) works; every program and map type Switchyard loads is there")
}

/// The kernel publishes its BTF (what `bpftool` and kfunc lookups read).
pub fn btf(facts: &Probed<BtfFacts>) -> Finding {
    match facts {
        Ok(_) => Finding::ok("btf", "kernel BTF at /sys/kernel/btf/vmlinux"),
        Err(error) => Finding::warn(
            "btf",
            format!("no kernel BTF: {error}"),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Switchyard's programs load \
             without it; kfunc checks and bpftool's view of the maps need it)",
        ),
    }
}

/// The `bpf_sock_destroy` kfunc, for closing sockets to removed backends from BPF.
pub fn sock_destroy(facts: &Probed<BtfFacts>) -> Finding {
    match facts {
        Ok(BtfFacts { sock_destroy: true }) => {
            Finding::ok("sock-destroy", "the bpf_sock_destroy kfunc is in the kernel")
        }
        Ok(BtfFacts { sock_destroy: false }) => Finding::warn(
            "sock-destroy",
            "the bpf_sock_destroy kfunc is not in the kernel's BTF (Linux 6.5+)",
            "sockets connected to removed backends are closed through sock_diag instead; that \
             needs CONFIG_INET_DIAG_DESTROY=y",
        ),
        Err(_) => Finding::warn(
            "sock-destroy",
            "cannot tell whether the bpf_sock_destroy kfunc is there (no kernel BTF)",
            "sockets connected to removed backends are closed through sock_diag instead; that \
             needs CONFIG_INET_DIAG_DESTROY=y",
        ),
    }
}

/// cgroup v2 is mounted, and `--cgroup` (when given) is on it.
pub fn cgroup(
    mounts: &Probed<Vec<Mount>>,
    cgroup: Option<&Path>,
    cgroup_dir: Option<&Probed<bool>>,
) -> Finding {
    let mounts = match mounts {
        Ok(mounts) => mounts,
        Err(error) => {
            return Finding::fail(
                "cgroup-v2",
                format!("cannot read the mounts: {error}"),
                "run on Linux with /proc mounted",
            );
        }
    };
    let at: Vec<String> = mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.display().to_string())
        .collect();
    if at.is_empty() {
        return Finding::fail(
            "cgroup-v2",
            "cgroup v2 is not mounted (the socket programs attach to a cgroup v2 directory)",
            "mount it: mount -t cgroup2 none /sys/fs/cgroup (systemd does this at boot unless \
             the kernel command line asks for cgroup v1)",
        );
    }
    let at = at.join(", ");
    match (cgroup, cgroup_dir) {
        (Some(dir), Some(Ok(true))) => Finding::ok(
            "cgroup-v2",
            format!("mounted at {at}; --cgroup {} is on it", dir.display()),
        ),
        (Some(dir), Some(Ok(false))) => Finding::fail(
            "cgroup-v2",
            format!("--cgroup {} is not a cgroup v2 directory", dir.display()),
            format!("give --cgroup a directory on the cgroup v2 mount ({at})"),
        ),
        (Some(dir), Some(Err(error))) => Finding::fail(
            "cgroup-v2",
            format!("--cgroup {}: {error}", dir.display()),
            format!("give --cgroup a directory on the cgroup v2 mount ({at})"),
        ),
        _ => Finding::ok(
            "cgroup-v2",
            format!("mounted at {at} (give the agent --cgroup there, usually its root)"),
        ),
    }
}

/// `--bpf-dir` is on a bpffs, or one can be mounted there.
pub fn bpffs(state: &BpffsState) -> Finding {
    match state {
        BpffsState::Mounted { dir } => {
            Finding::ok("bpffs", format!("{} is on a bpffs", dir.display()))
        }
        BpffsState::Below { dir, bpffs } => Finding::ok(
            "bpffs",
            format!("{} will be created on the bpffs at {}", dir.display(), bpffs.display()),
        ),
        BpffsState::Mountable { dir } => Finding::warn(
            "bpffs",
            format!("no bpffs at {}; the agent mounts one there itself", dir.display()),
            "mount -t bpf bpf /sys/fs/bpf on the host (systemd does this at boot): a bpffs the \
             agent mounts inside its pod vanishes with the pod, and with it the pinned state \
             that upgrades keep",
        ),
        BpffsState::NotMountable { dir, error } => Finding::fail(
            "bpffs",
            format!("no bpffs at {} and mounting one failed: {error}", dir.display()),
            "mount -t bpf bpf /sys/fs/bpf as root, or run the agent with CAP_SYS_ADMIN",
        ),
    }
}

/// A clsact qdisc can be added, for the per-packet programs at TC (before TCX links, 6.6).
pub fn clsact(result: &Probed<()>, devices_given: bool) -> Finding {
    match result {
        Ok(()) => Finding::ok("tc", "a clsact qdisc can be added (per-packet programs at TC)"),
        Err(error) => {
            let detail = format!("adding a clsact qdisc failed: {error}");
            let remedy = "use a kernel with CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF";
            if devices_given {
                Finding::fail("tc", detail, remedy)
            } else {
                Finding::warn("tc", format!("{detail} (needed only with --devices)"), remedy)
            }
        }
    }
}

/// Every `--devices` entry exists, and its driver runs XDP natively.
pub fn devices(devices: &[DeviceFacts]) -> Vec<Finding> {
    if devices.is_empty() {
        return vec![Finding::ok(
            "devices",
            "none given (--devices): the per-packet path and XDP were not checked",
        )];
    }
    devices.iter().map(device).collect()
}

fn device(facts: &DeviceFacts) -> Finding {
    let check = format!("device {}", facts.name);
    if !facts.present {
        return Finding::fail(
            check,
            format!("there is no device {:?} in this network namespace", facts.name),
            "list the devices with `ip -br link` and give --devices the ones that receive \
             traffic from outside the node",
        );
    }
    match &facts.xdp {
        Ok(Some(features)) if features.native() => {
            Finding::ok(check, "present; its driver runs XDP natively")
        }
        Ok(Some(_)) => Finding::warn(
            check,
            "present; its driver has no native XDP",
            "the director falls back to generic XDP there (much slower); the node's TC \
             programs are not affected",
        ),
        Ok(None) => Finding::warn(
            check,
            "present; the kernel does not say whether its driver runs XDP natively (no netdev \
             netlink family before Linux 6.3)",
            "check the driver's documentation for native XDP (xdpdrv)",
        ),
        Err(error) => Finding::warn(
            check,
            format!("present; asking for its XDP features failed: {error}"),
            "check the driver's documentation for native XDP (xdpdrv)",
        ),
    }
}

/// SCTP sockets can be opened (SCTP Services need them).
pub fn sctp(result: &Probed<()>) -> Finding {
    match result {
        Ok(()) => Finding::ok("sctp", "SCTP sockets can be opened"),
        Err(error) => Finding::warn(
            "sctp",
            format!("cannot open an SCTP socket: {error}; SCTP Services will not work here"),
            "load the module (modprobe sctp) if the cluster has SCTP Services",
        ),
    }
}

/// kube-proxy's rules are gone, or it is known that both run during a migration.
pub fn kube_proxy(facts: &KubeProxyFacts) -> Finding {
    let mut found = Vec::new();
    if !facts.iptables_chains.is_empty() {
        found.push(format!("iptables chains {}", abbreviate(&facts.iptables_chains, 4)));
    }
    if !facts.nft_tables.is_empty() {
        found.push(format!("nftables tables {}", facts.nft_tables.join(", ")));
    }
    if facts.ipvs_device {
        found.push("the IPVS device kube-ipvs0".to_owned());
    }
    if !found.is_empty() {
        return Finding::warn(
            "kube-proxy",
            format!("kube-proxy's rules are on this node: {}", found.join("; ")),
            "fine while migrating (both can run); once kube-proxy is removed, run \
             `kube-proxy --cleanup` on the node (docs/operations.md, migrating from kube-proxy)",
        );
    }
    if facts.unreadable.is_empty() {
        Finding::ok("kube-proxy", "no kube-proxy rules (iptables, nftables, IPVS)")
    } else {
        Finding::warn(
            "kube-proxy",
            format!("no kube-proxy rules found, but {}", facts.unreadable.join("; ")),
            "check by hand: iptables-save | grep KUBE-SERVICES; nft list tables",
        )
    }
}

/// No Cilium programs that would translate Service traffic too.
pub fn cilium(programs: &Probed<Vec<String>>) -> Finding {
    let programs = match programs {
        Ok(programs) => programs,
        Err(error) => {
            return Finding::warn(
                "cilium",
                format!("cannot list the loaded BPF programs: {error}"),
                "run as root to check for Cilium's programs",
            );
        }
    };
    // Cilium names its programs cil_*; the kernel keeps the first 15 bytes of a name.
    let mut cilium: Vec<String> =
        programs.iter().filter(|name| name.starts_with("cil_")).cloned().collect();
    cilium.sort();
    cilium.dedup();
    if cilium.iter().any(|name| name.starts_with("cil_sock")) {
        return Finding::fail(
            "cilium",
            format!(
                "Cilium's socket load balancer is loaded ({}): it and Switchyard would both \
                 translate Service connections",
                abbreviate(&cilium, 4)
            ),
            "turn off Cilium's kube-proxy replacement (kubeProxyReplacement=false, \
             socketLB.enabled=false) or run only one of them",
        );
    }
    if !cilium.is_empty() {
        return Finding::warn(
            "cilium",
            format!("Cilium programs are loaded ({})", abbreviate(&cilium, 4)),
            "make sure Cilium does not handle Services (kubeProxyReplacement=false)",
        );
    }
    Finding::ok("cilium", "no Cilium programs loaded")
}

/// NodePorts, SNAT ports and the kernel's local (ephemeral) ports do not collide. Without
/// `--snat-port-range` the SNAT ports are the agent's own choice from the same facts
/// ([`switchyard_model::choose_snat_ports`]), reported with why.
pub fn ports(
    node_ports: PortRange,
    snat_flag: Option<PortRange>,
    decap_port: Option<u16>,
    local: &Probed<PortRange>,
    reserved: &Probed<Vec<PortRange>>,
) -> Finding {
    let local_read = local.as_ref().ok().copied();
    let snat = match choose_snat_ports(snat_flag, node_ports, local_read, decap_port) {
        Ok(snat) => snat,
        Err(error) => {
            return Finding::fail(
                "ports",
                error.to_string(),
                "choose a SNAT range outside the NodePort range and without the decapsulation port \
                 (the agent refuses to start)",
            );
        }
    };
    let snat_ports = snat.range;
    let local = match local {
        Ok(local) => *local,
        Err(error) => {
            return Finding::warn(
                "ports",
                format!("SNAT ports {snat}; cannot read net.ipv4.ip_local_port_range: {error}"),
                "check that it overlaps neither the NodePort nor the SNAT range",
            );
        }
    };
    let reserved = reserved.as_deref().unwrap_or_default();
    let mut clashes = Vec::new();
    let mut remedies = Vec::new();
    if let Some(shared) = overlap(local, node_ports).filter(|r| !covered(*r, reserved)) {
        clashes.push(format!(
            "local connections may take NodePorts {shared} as source ports, and replies to \
             them would be taken for NodePort traffic"
        ));
        remedies.push(format!("sysctl -w net.ipv4.ip_local_reserved_ports={node_ports}"));
    }
    if let Some(shared) = overlap(local, snat_ports).filter(|r| !covered(*r, reserved)) {
        clashes.push(format!(
            "SNAT source ports {shared} are also handed to local connections (SNAT ports {snat})"
        ));
        remedies.push(format!(
            "move --snat-port-range outside {local}, or narrow net.ipv4.ip_local_port_range"
        ));
    }
    if clashes.is_empty() {
        return Finding::ok(
            "ports",
            format!(
                "NodePorts {node_ports}, SNAT ports {snat} and local ports {local} do not collide"
            ),
        );
    }
    Finding::warn(
        "ports",
        format!("net.ipv4.ip_local_port_range is {local}: {}", clashes.join("; ")),
        remedies.join("; "),
    )
}

/// The ports two ranges share.
pub use switchyard_model::snat_ports::overlap;

/// Whether every port of `range` is in one of `reserved`.
pub fn covered(range: PortRange, reserved: &[PortRange]) -> bool {
    let mut sorted = reserved.to_vec();
    sorted.sort_by_key(|r| r.first);
    let mut next = u32::from(range.first);
    for r in sorted {
        if u32::from(r.first) > next {
            break;
        }
        next = next.max(u32::from(r.last) + 1);
        if next > u32::from(range.last) {
            return true;
        }
    }
    false
}

/// The system clock is synchronized (TLS to the API server and lease times rely on it).
pub fn clock(synchronized: &Probed<bool>) -> Finding {
    match synchronized {
        Ok(true) => Finding::ok("clock", "the system clock is synchronized"),
        Ok(false) => Finding::warn(
            "clock",
            "the system clock is not synchronized (adjtimex reports TIME_ERROR)",
            "run an NTP client (chrony, systemd-timesyncd): certificates and leases need a \
             correct clock",
        ),
        Err(error) => Finding::warn(
            "clock",
            format!("cannot read the clock's state: {error}"),
            "check that an NTP client runs (timedatectl)",
        ),
    }
}

/// The API server answers with the given kubeconfig.
pub fn api(result: &Probed<String>, kubeconfig: Option<&Path>) -> Finding {
    let kubeconfig =
        kubeconfig.map_or_else(|| "the kubeconfig".to_owned(), |p| p.display().to_string());
    match result {
        Ok(version) => {
            Finding::ok("api-server", format!("answers with {kubeconfig} (Kubernetes {version})"))
        }
        Err(error) => Finding::fail(
            "api-server",
            format!("no answer with {kubeconfig}: {error}"),
            "check the server address and credentials in the kubeconfig, and that this node \
             reaches the API server without a Service address (docs/operations.md)",
        ),
    }
}

/// What an installed agent left, and whether it runs.
pub fn agent(facts: &AgentFacts, bpf_dir: &Path, api_socket: &Path) -> Finding {
    let pinned = facts.pinned_maps + facts.pinned_links;
    let (bpf_dir, socket) = (bpf_dir.display(), api_socket.display());
    match (&facts.api_socket, pinned) {
        (SocketState::Absent, 0) => {
            Finding::ok("agent", format!("not installed yet (nothing pinned under {bpf_dir})"))
        }
        (SocketState::Accepting, 1..) => Finding::ok(
            "agent",
            format!(
                "running: {} maps and {} links pinned under {bpf_dir}, API socket {socket} \
                 accepts connections",
                facts.pinned_maps, facts.pinned_links
            ),
        ),
        (SocketState::Accepting, 0) => Finding::warn(
            "agent",
            format!("an agent answers on {socket} but nothing is pinned under {bpf_dir}"),
            "give doctor the agent's --bpf-dir",
        ),
        (SocketState::Refused(error), 0) => Finding::warn(
            "agent",
            format!(
                "nothing pinned under {bpf_dir}, but a stale API socket {socket} refuses \
                 connections ({error})"
            ),
            format!("a stopped agent left it behind: rm {socket}"),
        ),
        (state, _) => {
            let socket_state = match state {
                SocketState::Refused(error) => format!("{socket} refuses connections ({error})"),
                _ => format!("there is no API socket {socket}"),
            };
            Finding::warn(
                "agent",
                format!(
                    "{} maps and {} links pinned under {bpf_dir}, but {socket_state}: the \
                     pinned programs keep serving the last programmed state",
                    facts.pinned_maps, facts.pinned_links
                ),
                format!(
                    "start the agent, or remove what it left: switchyard agent --cleanup \
                     --bpf-dir {bpf_dir}"
                ),
            )
        }
    }
}

/// `a, b, c, d and 3 more`.
fn abbreviate(items: &[String], keep: usize) -> String {
    let shown = items.iter().take(keep).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(keep) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The nearest existing directory at or above `path` (for a `--bpf-dir` not created yet).
pub fn nearest_existing(path: &Path, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    path.ancestors().find(|p| !p.as_os_str().is_empty() && exists(p)).map(Path::to_path_buf)
}
