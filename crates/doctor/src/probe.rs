//! Gathers [`Facts`] from this node: the only module of the crate that touches the system.
//!
//! Probes that change something do it where nobody else sees it: the clsact qdisc is added in a
//! network namespace and the bpffs mounted in a mount namespace, both private to a thread of
//! ours that ends right after.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya_obj::btf::BtfKind;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, FsType, statfs};

use crate::facts::{
    AgentFacts, BpfFacts, BpffsState, BtfFacts, DeviceFacts, Facts, KubeProxyFacts, Probed,
    SocketState,
};
use crate::{Options, decide, netdev, parse};

/// How long the API server gets to answer.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes everything [`crate::decide::all`] looks at.
pub fn gather(options: &Options) -> Facts {
    Facts {
        kernel_release: kernel_release(),
        bpf: bpf(),
        btf: btf(),
        mounts: read("/proc/self/mountinfo").map(|text| parse::mountinfo(&text)),
        cgroup_dir: options.cgroup.as_deref().map(|dir| on_fs(dir, CGROUP2_SUPER_MAGIC)),
        bpffs: bpffs(&options.bpf_dir),
        clsact: clsact(),
        devices: options.devices.iter().map(|name| device(name)).collect(),
        sctp: sctp(),
        kube_proxy: kube_proxy(),
        programs: programs(),
        local_port_range: read("/proc/sys/net/ipv4/ip_local_port_range").and_then(|text| {
            parse::local_port_range(&text)
                .ok_or_else(|| format!("ip_local_port_range {text:?} does not parse"))
        }),
        reserved_ports: read("/proc/sys/net/ipv4/ip_local_reserved_ports").and_then(|text| {
            parse::reserved_ports(&text)
                .ok_or_else(|| format!("ip_local_reserved_ports {text:?} does not parse"))
        }),
        clock_synchronized: clock_synchronized(),
        api_server: options.kubeconfig.as_deref().map(api_server),
        agent: agent(&options.bpf_dir, &options.api_socket),
    }
}

fn read(path: &str) -> Probed<String> {
    fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

fn kernel_release() -> Probed<String> {
    nix::sys::utsname::uname()
        .map(|uts| uts.release().to_string_lossy().into_owned())
        .map_err(|e| format!("uname: {e}"))
}

/// Program and map types of the node's and the director's objects.
const PROGRAM_TYPES: &[(ProgramType, &str)] = &[
    (ProgramType::CgroupSockAddr, "cgroup/sock_addr programs"),
    (ProgramType::CgroupSock, "cgroup/sock programs"),
    (ProgramType::SchedClassifier, "TC classifier programs"),
    (ProgramType::Xdp, "XDP programs"),
];
const MAP_TYPES: &[(MapType, &str)] = &[
    (MapType::Hash, "hash maps"),
    (MapType::LruHash, "LRU hash maps"),
    (MapType::PerCpuHash, "per-CPU hash maps"),
    (MapType::PerCpuArray, "per-CPU arrays"),
    (MapType::HashOfMaps, "hash-of-maps"),
    (MapType::ArrayOfMaps, "array-of-maps"),
    (MapType::LpmTrie, "LPM tries"),
    (MapType::RingBuf, "ring buffers"),
];

fn bpf() -> BpfFacts {
    let syscall = match aya::sys::is_map_supported(MapType::Array) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the kernel refused an array map".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    if syscall.is_err() {
        return BpfFacts { syscall, missing: Vec::new() };
    }
    let programs = PROGRAM_TYPES
        .iter()
        .filter(|(kind, _)| !matches!(aya::sys::is_program_supported(*kind), Ok(true)))
        .map(|(_, name)| *name);
    let maps = MAP_TYPES
        .iter()
        .filter(|(kind, _)| !matches!(aya::sys::is_map_supported(*kind), Ok(true)))
        .map(|(_, name)| *name);
    BpfFacts { syscall, missing: programs.chain(maps).collect() }
}

fn btf() -> Probed<BtfFacts> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
    let sock_destroy = btf.id_by_type_name_kind("bpf_sock_destroy", BtfKind::Func).is_ok();
    Ok(BtfFacts { sock_destroy })
}

fn on_fs(path: &Path, magic: FsType) -> Probed<bool> {
    statfs(path).map(|stat| stat.filesystem_type() == magic).map_err(|e| format!("statfs: {e}"))
}

fn bpffs(dir: &Path) -> BpffsState {
    let dir = dir.to_path_buf();
    if dir.exists() {
        if on_fs(&dir, BPF_FS_MAGIC) == Ok(true) {
            return BpffsState::Mounted { dir };
        }
    } else if let Some(parent) = decide::nearest_existing(&dir, Path::exists)
        && on_fs(&parent, BPF_FS_MAGIC) == Ok(true)
    {
        return BpffsState::Below { dir, bpffs: parent };
    }
    match in_private_thread(CloneFlags::CLONE_NEWNS, try_mount_bpffs) {
        Ok(()) => BpffsState::Mountable { dir },
        Err(error) => BpffsState::NotMountable { dir, error },
    }
}

/// Mounts a bpffs on a fresh directory; called in a mount namespace of its own.
fn try_mount_bpffs() -> Probed<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making the probe's mounts private: {e}"))?;
    let target = tempfile::tempdir().map_err(|e| format!("creating a directory: {e}"))?;
    mount(Some("bpf"), target.path(), Some("bpf"), MsFlags::empty(), None::<&str>)
        .map_err(|e| format!("mount -t bpf: {e}"))?;
    umount2(target.path(), MntFlags::MNT_DETACH).map_err(|e| format!("umount: {e}"))
}

/// Runs `probe` on a thread of its own in fresh namespaces (`flags`), so nothing it changes is
/// seen outside; the namespaces go away with the thread.
fn in_private_thread<T: Send>(
    flags: CloneFlags,
    probe: impl FnOnce() -> Probed<T> + Send,
) -> Probed<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))?;
                probe()
            })
            .join()
            .unwrap_or_else(|_| Err("the probe panicked".to_owned()))
    })
}

fn clsact() -> Probed<()> {
    in_private_thread(CloneFlags::CLONE_NEWNET, || {
        aya::programs::tc::qdisc_add_clsact("lo").map_err(|e| format!("on lo: {e}"))
    })
}

fn device(name: &str) -> DeviceFacts {
    let Ok(ifindex) = nix::net::if_::if_nametoindex(name) else {
        return DeviceFacts { name: name.to_owned(), present: false, xdp: Ok(None) };
    };
    let xdp = netdev::xdp_features(ifindex).map_err(|e| format!("netdev netlink: {e}"));
    DeviceFacts { name: name.to_owned(), present: true, xdp }
}

fn sctp() -> Probed<()> {
    // SAFETY: plain socket(2); a returned descriptor is owned and closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!("socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): {error}"));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

fn kube_proxy() -> KubeProxyFacts {
    let mut facts = KubeProxyFacts::default();
    for tool in ["iptables-save", "ip6tables-save"] {
        match run(tool, &[]) {
            Ok(text) => facts.iptables_chains.extend(parse::kube_proxy_chains(&text)),
            Err(error) => facts.unreadable.push(error),
        }
    }
    facts.iptables_chains.sort();
    facts.iptables_chains.dedup();
    match run("nft", &["list", "tables"]) {
        Ok(text) => facts.nft_tables = parse::kube_proxy_tables(&text),
        Err(error) => facts.unreadable.push(error),
    }
    facts.ipvs_device = nix::net::if_::if_nametoindex("kube-ipvs0").is_ok();
    facts
}

/// Standard output of `tool args`; the error says why there is none.
fn run(tool: &str, args: &[&str]) -> Probed<String> {
    let output = Command::new(tool).args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{tool} is not installed"),
        _ => format!("{tool} did not run: {e}"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{tool} failed ({}): {}", output.status, stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn programs() -> Probed<Vec<String>> {
    aya::programs::loaded_programs()
        .map(|program| {
            program
                .map(|info| String::from_utf8_lossy(info.name()).into_owned())
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn clock_synchronized() -> Probed<bool> {
    // SAFETY: all-zero is a valid timex; modes 0 only reads the kernel's state into it.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: timex is a valid, writable struct for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut timex) };
    match state {
        -1 => Err(format!("adjtimex: {}", std::io::Error::last_os_error())),
        libc::TIME_ERROR => Ok(false),
        _ => Ok(true),
    }
}

fn api_server(kubeconfig: &Path) -> Probed<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting an async runtime: {e}"))?;
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
            .map_err(|e| format!("reading the kubeconfig: {e}"))?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| format!("loading the kubeconfig: {e}"))?;
        config.connect_timeout = Some(API_TIMEOUT);
        config.read_timeout = Some(API_TIMEOUT);
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| format!("client: {e}"))?;
        match tokio::time::timeout(API_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(version)) => Ok(format!("{} at {server}", version.git_version)),
            Ok(Err(e)) => Err(format!("GET {server}version: {e}")),
            Err(_) => Err(format!("GET {server}version: no answer in {API_TIMEOUT:?}")),
        }
    })
}

fn agent(bpf_dir: &Path, api_socket: &Path) -> AgentFacts {
    let count = |dir: PathBuf| {
        fs::read_dir(dir).map_or(0, |entries| {
            entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).count()
        })
    };
    let api_socket = if !api_socket.exists() {
        SocketState::Absent
    } else {
        match UnixStream::connect(api_socket) {
            Ok(_) => SocketState::Accepting,
            Err(e) => SocketState::Refused(e.to_string()),
        }
    };
    AgentFacts {
        pinned_maps: count(bpf_dir.to_path_buf()),
        pinned_links: count(bpf_dir.join("links")),
        api_socket,
    }
}
