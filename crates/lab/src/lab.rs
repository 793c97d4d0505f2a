//! A running lab: built from a plan, found again through its state file, torn down by prefix.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::plan::{Cidr, ClientInfo, DirectorInfo, LabPlan, NodeInfo, PodInfo};
use crate::topology::Topology;
use crate::{bpffs, cgroup, netns, wiring};

/// Where labs keep their state files and bpffs mounts.
pub const DEFAULT_RUN_DIR: &str = "/run/switchyard-lab";

/// The state file's name inside a lab's run directory.
const STATE_FILE: &str = "state.json";

/// Where a lab lives on the host; the defaults suit tests and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Name prefix of every namespace, cgroup and directory; random (`sy-xxxxxx`) when `None`.
    pub prefix: Option<String>,
    /// cgroup v2 mount under which the lab makes `<prefix>/<node>` directories.
    pub cgroup_root: PathBuf,
    /// Directory for state files and bpffs mounts.
    pub run_dir: PathBuf,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            cgroup_root: PathBuf::from(cgroup::DEFAULT_CGROUP_ROOT),
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
        }
    }
}

/// The process that owns a lab; a lab whose owner died is a leftover that the next `up` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Start time in clock ticks since boot (from /proc), so a reused pid is not mistaken.
    pub start_time: u64,
}

impl Owner {
    fn current() -> Option<Self> {
        let pid = std::process::id();
        Some(Self { pid, start_time: process_start_time(pid)? })
    }

    fn is_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may contain spaces, so count after its closing ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The state file: the plan plus who owns the lab (`None` once `switchyard lab up` detached it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub plan: LabPlan,
    pub owner: Option<Owner>,
}

/// A lab that is up. Dropping the handle tears the lab down unless it was detached with
/// [`Lab::keep_running`] or opened with [`Lab::open`].
#[derive(Debug)]
pub struct Lab {
    plan: LabPlan,
    state_path: PathBuf,
    tear_down_on_drop: bool,
}

fn random_prefix() -> String {
    let mut bytes = [0u8; 3];
    let random =
        File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mix = nanos.subsec_nanos() ^ std::process::id().rotate_left(16);
        bytes.copy_from_slice(&mix.to_le_bytes()[..3]);
    }
    format!("sy-{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2])
}

/// Checks a prefix: it becomes part of netns names, cgroup and run paths.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && !prefix.starts_with('-')
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(LabError::BadPrefix(prefix.to_string())) }
}

impl Lab {
    /// Builds `topology` with default options and a random prefix.
    pub fn up(topology: &Topology) -> Result<Lab, LabError> {
        Self::up_with(topology, &LabOptions::default())
    }

    /// Builds `topology`. Leftovers of labs whose owner process died are removed first. On
    /// failure everything created so far is removed again.
    pub fn up_with(topology: &Topology, options: &LabOptions) -> Result<Lab, LabError> {
        topology.validate("topology")?;
        let prefix = options.prefix.clone().unwrap_or_else(random_prefix);
        check_prefix(&prefix)?;
        if let Err(err) = Self::sweep_stale(options) {
            tracing::warn!("removing stale labs: {err}");
        }
        let plan = LabPlan::new(&prefix, topology, &options.cgroup_root, &options.run_dir);
        let state_path = plan.run_dir.join(STATE_FILE);
        if plan.run_dir.exists() || !netns::list_with_prefix(&format!("{prefix}-")).is_empty() {
            return Err(LabError::AlreadyExists(prefix));
        }
        let lab = Lab { plan, state_path, tear_down_on_drop: true };
        // The state file comes first: if this process dies half-way, the next up finds the lab.
        std::fs::create_dir_all(&lab.plan.run_dir)
            .map_err(LabError::io(format!("creating {}", lab.plan.run_dir.display())))?;
        lab.write_state(Owner::current())?;
        lab.build_host_side()?;
        wiring::build(&lab.plan)?;
        // A client's veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL); an XDP
        // program on the way (a director) turns the packet into a frame and that state is lost,
        // so the checksum would never be completed. Real NICs hand XDP complete packets; with
        // directors, clients compute their checksums themselves.
        if !lab.plan.directors.is_empty() {
            for client in &lab.plan.clients {
                let link = client.interface.clone();
                lab.run_in(&client.name, move || crate::offload::set_tx_checksum(&link, false))?
                    .map_err(LabError::io(format!(
                        "turning off transmit checksum offload in {}",
                        client.name
                    )))?;
            }
        }
        Ok(lab)
    }

    fn build_host_side(&self) -> Result<(), LabError> {
        let plan = &self.plan;
        cgroup::create(&plan.cgroup)
            .map_err(LabError::io(format!("creating cgroup {}", plan.cgroup.display())))?;
        cgroup::create(&plan.external_cgroup)
            .map_err(LabError::io(format!("creating cgroup {}", plan.external_cgroup.display())))?;
        bpffs::mount(&plan.bpffs)
            .map_err(LabError::io(format!("mounting bpffs at {}", plan.bpffs.display())))?;
        for node in &plan.nodes {
            cgroup::create(&node.cgroup)
                .map_err(LabError::io(format!("creating cgroup {}", node.cgroup.display())))?;
            std::fs::create_dir(&node.bpf_dir)
                .map_err(LabError::io(format!("creating bpffs dir {}", node.bpf_dir.display())))?;
        }
        for director in &plan.directors {
            std::fs::create_dir(&director.bpf_dir).map_err(LabError::io(format!(
                "creating bpffs dir {}",
                director.bpf_dir.display()
            )))?;
        }
        Ok(())
    }

    fn write_state(&self, owner: Option<Owner>) -> Result<(), LabError> {
        let state = LabState { plan: self.plan.clone(), owner };
        let text = serde_json::to_string_pretty(&state).map_err(|err| LabError::State {
            path: self.state_path.display().to_string(),
            reason: err.to_string(),
        })?;
        let tmp = self.state_path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(LabError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.state_path)
            .map_err(LabError::io(format!("writing {}", self.state_path.display())))
    }

    /// Attaches to a running lab through its state file; dropping the handle leaves it running.
    pub fn open(options: &LabOptions, prefix: &str) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let state =
            read_state(&options.run_dir.join(prefix).join(STATE_FILE))?.ok_or_else(|| {
                LabError::NotFound {
                    prefix: prefix.to_string(),
                    run_dir: options.run_dir.display().to_string(),
                }
            })?;
        let state_path = state.plan.run_dir.join(STATE_FILE);
        Ok(Lab { plan: state.plan, state_path, tear_down_on_drop: false })
    }

    /// States of every lab under `run_dir` (unreadable state files are skipped with a warning).
    pub fn list(options: &LabOptions) -> Vec<LabState> {
        let Ok(entries) = std::fs::read_dir(&options.run_dir) else { return Vec::new() };
        let mut states: Vec<LabState> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| match read_state(&entry.path().join(STATE_FILE)) {
                Ok(state) => state,
                Err(err) => {
                    tracing::warn!("{err}");
                    None
                }
            })
            .collect();
        states.sort_by(|a, b| a.plan.prefix.cmp(&b.plan.prefix));
        states
    }

    /// Leaves the lab running after this handle is gone (for `switchyard lab up`); it is then
    /// never swept as stale and is removed with [`Lab::down_by_prefix`].
    pub fn keep_running(mut self) -> Result<LabPlan, LabError> {
        self.write_state(None)?;
        self.tear_down_on_drop = false;
        Ok(self.plan.clone())
    }

    /// Tears the lab down now, reporting anything that could not be removed.
    pub fn down(mut self) -> Result<(), LabError> {
        self.tear_down_on_drop = false;
        teardown(&self.plan.prefix, &self.plan.cgroup, &self.plan.run_dir)
    }

    /// Removes everything a lab with this prefix may have created (namespaces, cgroups, bpffs,
    /// state), whether or not its state file survived. Removing nothing is not an error.
    pub fn down_by_prefix(options: &LabOptions, prefix: &str) -> Result<(), LabError> {
        check_prefix(prefix)?;
        teardown(prefix, &options.cgroup_root.join(prefix), &options.run_dir.join(prefix))
    }

    /// Removes labs whose owning process has died (a killed test); returns their prefixes.
    pub fn sweep_stale(options: &LabOptions) -> Result<Vec<String>, LabError> {
        let mut removed = Vec::new();
        for state in Self::list(options) {
            if state.owner.is_some_and(|owner| !owner.is_alive()) {
                Self::down_by_prefix(options, &state.plan.prefix)?;
                removed.push(state.plan.prefix);
            }
        }
        Ok(removed)
    }

    pub fn plan(&self) -> &LabPlan {
        &self.plan
    }

    pub fn prefix(&self) -> &str {
        &self.plan.prefix
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.plan.nodes
    }

    pub fn pods(&self) -> &[PodInfo] {
        &self.plan.pods
    }

    pub fn clients(&self) -> &[ClientInfo] {
        &self.plan.clients
    }

    pub fn directors(&self) -> &[DirectorInfo] {
        &self.plan.directors
    }

    fn unknown(&self, name: &str) -> LabError {
        LabError::UnknownMember { prefix: self.plan.prefix.clone(), name: name.to_string() }
    }

    pub fn node(&self, name: &str) -> Result<&NodeInfo, LabError> {
        self.plan.nodes.iter().find(|n| n.name == name).ok_or_else(|| self.unknown(name))
    }

    pub fn pod(&self, name: &str) -> Result<&PodInfo, LabError> {
        self.plan.pods.iter().find(|p| p.name == name).ok_or_else(|| self.unknown(name))
    }

    pub fn client(&self, name: &str) -> Result<&ClientInfo, LabError> {
        self.plan.clients.iter().find(|c| c.name == name).ok_or_else(|| self.unknown(name))
    }

    pub fn director(&self, name: &str) -> Result<&DirectorInfo, LabError> {
        self.plan.directors.iter().find(|d| d.name == name).ok_or_else(|| self.unknown(name))
    }

    /// Netns name and cgroup of a node, pod, client or the router (`fabric`).
    fn placement(&self, name: &str) -> Result<(String, PathBuf), LabError> {
        if let Ok(node) = self.node(name) {
            return Ok((node.netns.clone(), node.cgroup.clone()));
        }
        if let Ok(pod) = self.pod(name) {
            return Ok((pod.netns.clone(), self.node(&pod.node)?.cgroup.clone()));
        }
        if let Ok(client) = self.client(name) {
            return Ok((client.netns.clone(), self.plan.external_cgroup.clone()));
        }
        if let Ok(director) = self.director(name) {
            return Ok((director.netns.clone(), self.plan.external_cgroup.clone()));
        }
        if name == crate::plan::ROUTER {
            return Ok((self.plan.router_netns.clone(), self.plan.external_cgroup.clone()));
        }
        Err(self.unknown(name))
    }

    /// Lab objects that should exist but do not (namespaces, cgroups, bpffs directories): empty
    /// for a healthy lab.
    pub fn missing(&self) -> Vec<String> {
        let mut missing: Vec<String> = self
            .plan
            .all_netns()
            .into_iter()
            .filter(|name| !netns::netns_path(name).exists())
            .map(|name| format!("netns {name}"))
            .collect();
        for node in &self.plan.nodes {
            for dir in [&node.cgroup, &node.bpf_dir] {
                if !dir.is_dir() {
                    missing.push(format!("{} of node {}", dir.display(), node.name));
                }
            }
        }
        for director in &self.plan.directors {
            if !director.bpf_dir.is_dir() {
                missing.push(format!(
                    "{} of director {}",
                    director.bpf_dir.display(),
                    director.name
                ));
            }
        }
        if !bpffs::is_bpffs(&self.plan.bpffs) {
            missing.push(format!("bpffs mount {}", self.plan.bpffs.display()));
        }
        missing
    }

    /// Netns name of a node, pod, client or the router (`fabric`).
    pub fn netns_of(&self, name: &str) -> Result<String, LabError> {
        Ok(self.placement(name)?.0)
    }

    /// Starts `command` inside the namespace of a node, pod, client or the router (`fabric`).
    /// Processes of a node or its pods join the node's cgroup (where the agent attaches its
    /// cgroup programs); others join the lab's external cgroup. Teardown kills them all.
    pub fn spawn_in(&self, name: &str, mut command: Command) -> Result<Child, LabError> {
        let placement = self.enter_on_exec(name, &mut command)?;
        let child = command
            .spawn()
            .map_err(LabError::io(format!("starting {:?} in {name}", command.get_program())))?;
        drop(placement);
        Ok(child)
    }

    /// Replaces the calling process with `command` inside `name` (see [`Lab::spawn_in`]), so
    /// its pid, exit status and signals are the command's own (`switchyard lab exec`). Returns
    /// only on failure.
    pub fn exec_in(&self, name: &str, mut command: Command) -> LabError {
        let placement = match self.enter_on_exec(name, &mut command) {
            Ok(placement) => placement,
            Err(err) => return err,
        };
        let err = command.exec();
        drop(placement);
        LabError::Io { what: format!("running {:?} in {name}", command.get_program()), cause: err }
    }

    /// Makes `command` join the cgroup and netns of `name` between fork and exec. The returned
    /// descriptors must stay open until the command has been started.
    fn enter_on_exec(&self, name: &str, command: &mut Command) -> Result<(File, File), LabError> {
        let (netns_name, cgroup_dir) = self.placement(name)?;
        let ns_file = netns::open(&netns_name)?;
        let procs_path = cgroup_dir.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(LabError::io(format!("opening {}", procs_path.display())))?;
        let ns_fd = ns_file.as_raw_fd();
        let procs_fd = procs.as_raw_fd();
        // SAFETY: the closure only calls async-signal-safe functions (write, setns) on descriptors
        // the caller keeps open until the command started; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // SAFETY: both descriptors stay open until the command has started (see above).
                let (procs, ns) = (BorrowedFd::borrow_raw(procs_fd), BorrowedFd::borrow_raw(ns_fd));
                // Writing "0" moves the writing process itself.
                nix::unistd::write(procs, b"0")?;
                setns(ns, CloneFlags::CLONE_NEWNET)?;
                Ok(())
            });
        }
        Ok((ns_file, procs))
    }

    /// Runs `command` in `name` (see [`Lab::spawn_in`]) to completion and collects its output.
    pub fn output_in(&self, name: &str, mut command: Command) -> Result<Output, LabError> {
        command.stdin(std::process::Stdio::null());
        command.stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        let child = self.spawn_in(name, command)?;
        child.wait_with_output().map_err(LabError::io(format!("waiting for a command in {name}")))
    }

    /// Routes `destination` (a LoadBalancer or External IP, say) from the router to `nodes`,
    /// spread by ECMP over the 5-tuple when several are given; replaces an earlier route to it.
    /// An empty `nodes` removes the route.
    pub fn route_to_nodes(&self, destination: Cidr, nodes: &[&str]) -> Result<(), LabError> {
        let mut gateways = Vec::new();
        for name in nodes {
            let node = self.node(name)?;
            gateways.push(match destination.addr {
                IpAddr::V4(_) => IpAddr::V4(node.ipv4),
                IpAddr::V6(_) => IpAddr::V6(node.ipv6),
            });
        }
        wiring::set_route(&self.plan.router_netns, destination, &gateways, None)
    }

    /// Routes `destination` (a VIP) from the router to `directors`, spread by ECMP over the
    /// 5-tuple when several are given (static multipath, what BGP with next-hop-self gives);
    /// replaces an earlier route to it. An empty `directors` removes the route.
    pub fn route_to_directors(
        &self,
        destination: Cidr,
        directors: &[&str],
    ) -> Result<(), LabError> {
        let mut gateways = Vec::new();
        for name in directors {
            let director = self.director(name)?;
            gateways.push(match destination.addr {
                IpAddr::V4(_) => IpAddr::V4(director.ipv4),
                IpAddr::V6(_) => IpAddr::V6(director.ipv6),
            });
        }
        wiring::set_route(&self.plan.router_netns, destination, &gateways, None)
    }

    /// Routes `destination` from `member` (a node, client or director) through its router with
    /// a locked MTU (`mtu lock N`: path-MTU discovery cannot raise it, and `bpf_fib_lookup`
    /// honours it), e.g. a director's path to nodes behind a smaller-MTU hop.
    pub fn route_with_mtu(
        &self,
        member: &str,
        destination: Cidr,
        mtu: u32,
    ) -> Result<(), LabError> {
        let v6 = destination.addr.is_ipv6();
        let gateway: IpAddr = if let Ok(node) = self.node(member) {
            if v6 { node.router_ipv6.into() } else { node.router_ipv4.into() }
        } else if let Ok(client) = self.client(member) {
            if v6 { client.router_ipv6.into() } else { client.router_ipv4.into() }
        } else {
            let director = self.director(member)?;
            if v6 { director.router_ipv6.into() } else { director.router_ipv4.into() }
        };
        wiring::set_route(&self.netns_of(member)?, destination, &[gateway], Some(mtu))
    }

    /// Turns generic receive offload on or off on `link` in the namespace of `member`.
    pub fn set_gro(&self, member: &str, link: &str, on: bool) -> Result<(), LabError> {
        let link_name = link.to_string();
        self.run_in(member, move || crate::offload::set_gro(&link_name, on))?.map_err(LabError::io(
            format!("setting GRO {} on {link} in {member}", if on { "on" } else { "off" }),
        ))
    }

    /// Packet counters of every link in the namespace of `member` (`/proc/net/dev`).
    pub fn link_stats(
        &self,
        member: &str,
    ) -> Result<std::collections::BTreeMap<String, crate::counters::LinkStats>, LabError> {
        self.run_in(member, crate::counters::read_link_stats)?
            .map_err(LabError::io(format!("reading link counters of {member}")))
    }

    /// Adds an address to `link` in the namespace of a node, pod, client or the router, e.g. an
    /// External IP a node should own (`lo` works for addresses routed to the node).
    pub fn add_address(&self, member: &str, link: &str, address: Cidr) -> Result<(), LabError> {
        wiring::add_address(&self.netns_of(member)?, link, address)
    }

    /// Attaches an `XDP_PASS` program to `link` in the namespace of `member`: a veth delivers
    /// frames its peer sends with `XDP_TX` (or redirects to it) only when it runs an XDP program
    /// itself, as a NIC always does (e.g. the router's side of a node uplink with `--xdp native`).
    pub fn set_xdp_pass(&self, member: &str, link: &str) -> Result<(), LabError> {
        wiring::set_xdp_pass(&self.netns_of(member)?, link)
    }

    /// Sets the MTU of `link` in the namespace of a node, pod, client or the router (`fabric`),
    /// e.g. to put a smaller-MTU hop between the router and a node.
    pub fn set_mtu(&self, member: &str, link: &str, mtu: u32) -> Result<(), LabError> {
        wiring::set_mtu(&self.netns_of(member)?, link, mtu)
    }

    /// The kernel's IP counters in the namespace of a node, pod, client or the router
    /// (`IpExt.InNoRoutes`, `Ip.OutNoRoutes`, `Ip.ForwDatagrams`, `Udp.NoPorts`, `Ip6.InNoRoutes`...).
    pub fn ip_counters(
        &self,
        member: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, LabError> {
        self.run_in(member, crate::counters::read_snmp)?
            .map_err(LabError::io(format!("reading IP counters of {member}")))
    }

    /// Runs `f` on a thread inside the network namespace of `name` (not its cgroup: a thread
    /// cannot leave its process's cgroup). Good for the built-in servers and clients as a library.
    pub fn run_in<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        netns::run_in(&self.netns_of(name)?, f)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.tear_down_on_drop
            && let Err(err) = teardown(&self.plan.prefix, &self.plan.cgroup, &self.plan.run_dir)
        {
            tracing::error!("{err}");
            eprintln!("switchyard-lab: {err}");
        }
    }
}

fn read_state(path: &Path) -> Result<Option<LabState>, LabError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(LabError::Io { what: format!("reading {}", path.display()), cause });
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|err| LabError::State {
        path: path.display().to_string(),
        reason: err.to_string(),
    })
}

/// Removes a lab: processes (by killing its cgroups), namespaces, bpffs and run directory. Keeps
/// going after a failure and reports every problem at the end.
fn teardown(prefix: &str, cgroup_dir: &Path, run_dir: &Path) -> Result<(), LabError> {
    let mut problems = Vec::new();
    if let Err(err) = cgroup::kill_and_remove(cgroup_dir) {
        problems.push(format!("cgroup {}: {err}", cgroup_dir.display()));
    }
    // Another lab's prefix may extend this one ("sy" and "sy-1"): never touch its namespaces.
    let others: Vec<String> =
        std::fs::read_dir(run_dir.parent().unwrap_or(Path::new(DEFAULT_RUN_DIR)))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|other| other != prefix && other.starts_with(&format!("{prefix}-")))
                    .map(|other| format!("{other}-"))
                    .collect()
            })
            .unwrap_or_default();
    for name in netns::list_with_prefix(&format!("{prefix}-")) {
        if others.iter().any(|other| name.starts_with(other.as_str())) {
            continue;
        }
        if let Err(err) = netns::remove(&name) {
            problems.push(format!("netns {name}: {err}"));
        }
    }
    let bpffs_dir = run_dir.join("bpffs");
    if let Err(err) = bpffs::unmount(&bpffs_dir) {
        problems.push(format!("bpffs {}: {err}", bpffs_dir.display()));
    }
    match std::fs::remove_dir_all(run_dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            problems.push(format!("run dir {}: {err}", run_dir.display()));
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Teardown { prefix: prefix.to_string(), problems })
    }
}

/// Waits until `probe` succeeds or `timeout` passes; returns whether it succeeded.
pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        let cases = [
            ("sy-lab", true),
            ("sy-0a1b2c", true),
            ("a", true),
            ("", false),
            ("-sy", false),
            ("Sy", false),
            ("sy/lab", false),
            ("sy lab", false),
            ("abcdefghijklmnop", true),
            ("abcdefghijklmnopq", false),
        ];
        for (prefix, ok) in cases {
            assert_eq!(check_prefix(prefix).is_ok(), ok, "{prefix:?}");
        }
    }

    #[test]
    fn random_prefixes_are_valid_and_differ() {
        let a = random_prefix();
        let b = random_prefix();
        check_prefix(&a).unwrap();
        assert!(a.starts_with("sy-") && a.len() == 9, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_current_process_is_an_alive_owner_and_a_changed_start_time_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        assert!(!Owner { start_time: me.start_time + 1, ..me }.is_alive());
        assert!(!Owner { pid: u32::MAX, ..me }.is_alive());
    }
}
