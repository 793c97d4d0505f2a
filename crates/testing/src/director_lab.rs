//! The director half of the end-to-end harness: `switchyard director` in the lab's director
//! namespaces, agents that accept the directors' packets, and what the directors' and nodes'
//! maps say about a flow (docs/director.md).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use switchyard_bpf::decap::{DecapMaps, DecapReason};
use switchyard_bpf::director::{DirMaps, DirReason};
use switchyard_lab::tools::bird::{Bird, Neighbor, ROUTER_ASN, router_next_hops};
use switchyard_lab::tools::clients::{self, Attempt, HoldReport, UdpHoldReport};
use switchyard_lab::{Lab, wait_until};
use switchyard_maglev::FlowKey;

use crate::e2e::{BIN, CONVERGE, Cluster, ECHO_PORT, START, State, spawn_logged};

/// The agents' extra arguments in a lab with directors: per-packet programs on the uplink,
/// decapsulation of every director's packets, and `/healthz` on the port the directors probe
/// ([`AGENT_HEALTH_PORT`]; off by default with `--manifests`).
pub fn agent_args(lab: &Lab) -> Vec<String> {
    let addresses: Vec<String> =
        lab.directors().iter().flat_map(|d| [d.ipv4.to_string(), d.ipv6.to_string()]).collect();
    vec![
        "--devices".to_string(),
        "eth0".to_string(),
        "--director-addresses".to_string(),
        addresses.join(","),
        "--healthz-bind-address".to_string(),
        format!("[::]:{AGENT_HEALTH_PORT}"),
    ]
}

/// An IPv4 `Cluster` LoadBalancer Service `e2e/web` that directors carry ([`vip_service`] is
/// the dual-stack one): port 80 for each of `protocols` ("TCP", "UDP") to the echo port, `vip`
/// as its address, the pods a1, b1 and c1 ready as its endpoints.
pub fn vip_service_v4(cluster: &Cluster, vip: &str, protocols: &[&str]) -> String {
    let mut text = String::from(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: e2e\n\
         \x20 annotations: {switchyard.io/director: \"true\"}\n\
         spec:\n  type: LoadBalancer\n  clusterIP: \"10.96.7.80\"\n\
         \x20 ports:\n",
    );
    for protocol in protocols {
        let name = protocol.to_lowercase();
        text += &format!(
            "  - {{name: {name}, port: 80, protocol: {protocol}, targetPort: {ECHO_PORT}}}\n"
        );
    }
    text += &format!("status:\n  loadBalancer:\n    ingress: [{{ip: \"{vip}\"}}]\n");
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    text += &cluster.endpoint_slice("web", false, ECHO_PORT, &all);
    text
}

/// The lab's Node objects (`Cluster::nodes_yaml`) with a `Ready` condition on `node`: status
/// True or False, turned so at the current time (RFC 3339, whole seconds) — a node that joins
/// (or is not ready yet) as the API server would say.
pub fn nodes_with_ready(cluster: &Cluster, node: &str, ready: bool) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let at = k8s_openapi::jiff::Timestamp::from_second(now)
        .map_or_else(|_| String::new(), |t| t.to_string());
    let status = if ready { "True" } else { "False" };
    cluster
        .nodes_yaml()
        .split_inclusive("---\n")
        .map(|block| {
            if block.contains(&format!("  name: {node}\n")) {
                block.replace(
                    "status:\n",
                    &format!(
                        "status:\n  conditions:\n  - {{type: Ready, status: \"{status}\", \
                         lastTransitionTime: \"{at}\"}}\n"
                    ),
                )
            } else {
                block.to_owned()
            }
        })
        .collect()
}

/// The agents' health port in the lab (kube-proxy's default; the directors' `--health-port`).
pub const AGENT_HEALTH_PORT: u16 = 10256;

/// The directors' AS number in the lab (the router is [`ROUTER_ASN`]).
pub const DIRECTOR_ASN: u32 = 64512;

/// Node objects of the lab's directors (directors are cluster machines): their addresses (the
/// next hops they announce), `switchyard.io/role: director`, their hostname (each director's
/// BGPPeer selects it alone), and Kubernetes' exclusion from external load balancers, which
/// keeps them out of the VIPs' node lists.
pub fn director_nodes_yaml(lab: &Lab) -> String {
    let mut text = String::new();
    for director in lab.directors() {
        text += &format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n\
             \x20   switchyard.io/role: director\n    kubernetes.io/hostname: {name}\n\
             \x20   node.kubernetes.io/exclude-from-external-load-balancers: \"\"\n\
             status:\n  addresses:\n  - {{type: InternalIP, address: \"{v4}\"}}\n\
             \x20 - {{type: InternalIP, address: \"{v6}\"}}\n",
            name = director.name,
            v4 = director.ipv4,
            v6 = director.ipv6,
        );
    }
    text
}

/// One BGPPeer per director (the router's address on its link; hold time `hold_seconds`),
/// selecting it by hostname, and one BGPAdvertisement of everything.
pub fn director_bgp_yaml(lab: &Lab, hold_seconds: u16) -> String {
    director_bgp_yaml_with(lab, hold_seconds, false)
}

/// As [`director_bgp_yaml`]; with `bfd`, every BGPPeer runs BFD (`spec.bfd: {}`: 100 ms × 3).
pub fn director_bgp_yaml_with(lab: &Lab, hold_seconds: u16, bfd: bool) -> String {
    let mut text = String::from(
        "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPAdvertisement\nmetadata:\n  name: all\nspec: {}\n",
    );
    for director in lab.directors() {
        text += &format!(
            "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: tor-{name}\n\
             spec:\n  peerAddress: \"{router}\"\n  peerASN: {ROUTER_ASN}\n  myASN: {DIRECTOR_ASN}\n\
             \x20 holdTime: {hold_seconds}s\n{bfd}\
             \x20 nodeSelector: {{matchLabels: {{switchyard.io/role: director, kubernetes.io/hostname: {name}}}}}\n",
            name = director.name,
            router = director.router_ipv4,
            bfd = if bfd { "  bfd: {}\n" } else { "" },
        );
    }
    text
}

/// BIRD 2 on the lab router, peered with every director (its IPv4 link, carrying IPv4 and IPv6
/// unicast), learning the VIPs into the router's kernel table with ECMP (`merge paths on`).
pub fn bird_for_directors(lab: &Lab, hold_seconds: u16) -> Bird {
    bird_for_directors_with(lab, hold_seconds, false)
}

/// As [`bird_for_directors`]; with `bfd`, BIRD runs BFD with every director and drops a
/// director's routes when its BFD session goes down.
pub fn bird_for_directors_with(lab: &Lab, hold_seconds: u16, bfd: bool) -> Bird {
    let neighbors: Vec<Neighbor> = lab
        .directors()
        .iter()
        .map(|d| Neighbor {
            bfd,
            ..Neighbor::new(d.router_ipv4.into(), d.ipv4.into(), DIRECTOR_ASN)
        })
        .collect();
    Bird::start(lab, &neighbors, hold_seconds).unwrap()
}

/// `switchyard director` running in a director namespace of the lab.
#[derive(Debug)]
pub struct Director {
    pub name: String,
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Director {
    /// Starts the director `name` on the cluster's manifests (`--devices eth0`, its own
    /// addresses, its bpffs directory) with `extra` arguments; waits until its tables are
    /// programmed and its program attached.
    pub fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Director {
        let manifests = cluster.manifests.display().to_string();
        Self::start_from(cluster, name, &["--manifests", &manifests], extra)
    }

    /// As [`Director::start`], reading its objects from `source` (`--manifests DIR` or
    /// `--kubeconfig PATH`).
    pub fn start_from(cluster: &Cluster, name: &str, source: &[&str], extra: &[&str]) -> Director {
        Self::start_command(cluster, name, Command::new(&*BIN), source, extra)
    }

    /// As [`Director::start_from`], with only `capabilities` (setpriv's syntax: `+bpf,+net_admin`)
    /// in the process's bounding set: what a DaemonSet that drops all and adds those grants.
    pub fn start_with_capabilities(
        cluster: &Cluster,
        name: &str,
        capabilities: &str,
        source: &[&str],
        extra: &[&str],
    ) -> Director {
        let mut setpriv = Command::new("setpriv");
        setpriv.arg(format!("--bounding-set=-all,{capabilities}")).arg(&*BIN);
        Self::start_command(cluster, name, setpriv, source, extra)
    }

    /// Starts `program` (the binary, or a wrapper naming it) as director `name`.
    fn start_command(
        cluster: &Cluster,
        name: &str,
        mut command: Command,
        source: &[&str],
        extra: &[&str],
    ) -> Director {
        let info = cluster.lab.director(name).unwrap();
        command
            .arg("director")
            .args(source)
            .args(["--devices", &info.interface, "--address"])
            .arg(format!("{},{}", info.ipv4, info.ipv6))
            .arg("--bpf-dir")
            .arg(&info.bpf_dir)
            .arg("--api-socket")
            .arg(Self::api_socket(cluster, name))
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (child, log) = spawn_logged(&cluster.lab, name, command, "director");
        let director = Director { name: name.to_string(), child, log };
        // A start, not a change: loading the XDP program is verifier work, which took more
        // than CONVERGE for a director restarted at load 150 (a wait, so free when fast).
        let ready = wait_until(START, || director.programmed() > 0);
        assert!(ready, "director {name} did not program its tables: {:#?}", director.log);
        director
    }

    /// Kills the process (SIGKILL: no withdraw, no Cease, no BFD AdminDown).
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (graceful shutdown: withdraw, forward for the grace period, exit).
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let sent = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        assert!(sent.is_ok(), "SIGTERM to {}: {sent:?}", self.name);
    }

    /// Waits up to `timeout` for the process to exit; true when it did, successfully.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> bool {
        let exited = wait_until(timeout, || matches!(self.child.try_wait(), Ok(Some(_))));
        exited && self.child.wait().is_ok_and(|status| status.success())
    }

    /// The director's local API socket (`/metrics`, `/status`) in the lab.
    pub fn api_socket(cluster: &Cluster, name: &str) -> std::path::PathBuf {
        cluster.manifests.join(format!("{name}-api.sock"))
    }

    /// `GET path` on the director's local API: the response body.
    pub fn get(&self, cluster: &Cluster, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream =
            std::os::unix::net::UnixStream::connect(Self::api_socket(cluster, &self.name)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "GET {path}: {response}");
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }

    /// When the director logged the first "director tables programmed" after line `from` of
    /// its log for which every `wanted` line (each a set of substrings) came first, and that
    /// line's index: the director's own clock ([`logged_at`]), so a test measures the director,
    /// not its own polling.
    pub fn programmed_after(
        &self,
        from: usize,
        wanted: &[&[&str]],
    ) -> Option<(usize, std::time::SystemTime)> {
        let log = self.log.lock().unwrap();
        let mut last = from;
        for parts in wanted {
            let found = log
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| parts.iter().all(|p| l.contains(p)))?;
            last = last.max(found.0);
        }
        let (index, line) = log
            .iter()
            .enumerate()
            .skip(last)
            .find(|(_, l)| l.contains("director tables programmed"))?;
        Some((index, logged_at(line)?))
    }

    /// How many updates the director has programmed so far.
    pub fn programmed(&self) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains("director tables programmed")).count()
    }

    /// The director's pinned maps.
    pub fn maps(&self, lab: &Lab) -> DirMaps {
        DirMaps::open_pinned(&lab.director(&self.name).unwrap().bpf_dir).unwrap()
    }

    /// Reason counters (packets).
    pub fn counters(&self, lab: &Lab) -> BTreeMap<DirReason, u64> {
        self.maps(lab).counters().unwrap().into_iter().map(|(r, c)| (r, c.packets)).collect()
    }

    /// Packets the director encapsulated to nodes (every format, ICMP errors included).
    pub fn encapsulated(&self, lab: &Lab) -> u64 {
        let counters = self.counters(lab);
        [DirReason::EncapGue, DirReason::EncapFou, DirReason::EncapIpip, DirReason::IcmpToNode]
            .iter()
            .map(|r| counters[r])
            .sum()
    }

    /// The node this director's maps send `flow` to (by the node's address in the lab).
    pub fn node_for(&self, lab: &Lab, flow: &FlowKey) -> Option<String> {
        let lookup = self.maps(lab).lookup(flow).unwrap()?;
        let (_, node) = lookup.node?;
        node_named(lab, node.ip())
    }

    /// Where this director's maps send `flow` now, for a failure message: the slot, the
    /// node and the slot's previous node (the second chance's), by name.
    pub fn describe(&self, lab: &Lab, flow: &FlowKey) -> String {
        let maps = self.maps(lab);
        let Ok(Some(lookup)) = maps.lookup(flow) else {
            return format!("{}: no VIP", self.name);
        };
        let Some(slot) = lookup.slot else {
            return format!("{}: no table", self.name);
        };
        let name = |id: u32| match maps.node(id) {
            Ok(Some(node)) => node_named(lab, node.ip()).unwrap_or_else(|| format!("id {id}")),
            _ => format!("id {id} (gone)"),
        };
        let node = lookup.node.map_or_else(|| "none".to_string(), |(id, _)| name(id));
        let previous = match maps.prev_node(lookup.vip.table_id, slot) {
            Ok(0) => "none".to_string(),
            Ok(id) => name(id),
            Err(err) => format!("unreadable ({err})"),
        };
        format!(
            "{}: table {} slot {slot} node {node} previous {previous}",
            self.name, lookup.vip.table_id
        )
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// When a process logged `line`: the timestamp `tracing` writes first (RFC 3339, UTC), taken
/// by the process itself.
pub fn logged_at(line: &str) -> Option<std::time::SystemTime> {
    let stamp: k8s_openapi::jiff::Timestamp = line.split_whitespace().next()?.parse().ok()?;
    let micros = u64::try_from(stamp.as_microsecond()).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(micros))
}

/// Unix milliseconds as the logs write times (RFC 3339, UTC), to set an event against them.
pub fn unix_ms_text(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{ms} ms"), |t| t.to_string())
}

/// The lab node that owns `address`.
pub fn node_named(lab: &Lab, address: IpAddr) -> Option<String> {
    lab.nodes()
        .iter()
        .find(|n| IpAddr::V4(n.ipv4) == address || IpAddr::V6(n.ipv6) == address)
        .map(|n| n.name.clone())
}

/// Decapsulation counters (packets) of a node's agent.
pub fn decap_counters(lab: &Lab, node: &str) -> BTreeMap<DecapReason, u64> {
    let maps = DecapMaps::open_pinned(&lab.node(node).unwrap().bpf_dir).unwrap();
    maps.counters().unwrap().into_iter().map(|(r, c)| (r, c.packets)).collect()
}

/// Which lab nodes' conntrack holds `flow` (client → VIP), and to which backend address and
/// state, for a failure message.
pub fn conntrack_of(lab: &Lab, flow: &FlowKey) -> String {
    let key = switchyard_bpf::nodeport_abi::CtKey::new(
        flow.source,
        flow.source_port,
        flow.destination,
        flow.destination_port,
        flow.protocol,
    );
    let held: Vec<String> = lab
        .nodes()
        .iter()
        .filter_map(|node| {
            let maps = switchyard_bpf::nodeport::PacketMaps::open_pinned(&node.bpf_dir).ok()?;
            let entry = maps.conntrack(&key).ok()??;
            Some(format!(
                "{} → {} (state {}, flags {:#x})",
                node.name,
                entry.nat_daddr.to_ip(key.family),
                entry.state,
                entry.flags
            ))
        })
        .collect();
    if held.is_empty() { "no node's conntrack".to_string() } else { held.join(", ") }
}

/// Packets a node decapsulated (GUE, FOU and IPIP).
pub fn decapsulated(lab: &Lab, node: &str) -> u64 {
    let counters = decap_counters(lab, node);
    [DecapReason::Gue, DecapReason::Fou, DecapReason::Ipip].iter().map(|r| counters[r]).sum()
}

/// Makes a node's uplink hand its TC programs GRO-merged packets, as a NIC under load does:
/// GRO on the node's side (a veth then receives through NAPI), TSO off on the router's side (a
/// veth hands *forwarded* packets to its peer's NAPI only then; otherwise they go through the
/// sending CPU's backlog, where nothing merges), and NAPI batching on the node's side
/// (`napi_defer_hard_irqs` 1, `gro_flush_timeout` 100 µs: the poll waits for the timer, so one
/// poll sees several packets of a flow and GRO merges them).
pub fn merge_at_node(lab: &Lab, node: &str) {
    let info = lab.node(node).unwrap().clone();
    lab.set_gro(node, &info.uplink, true).unwrap();
    let router_link = info.router_link.clone();
    lab.run_in("fabric", move || switchyard_lab::offload::set_tso(&router_link, false))
        .unwrap()
        .unwrap();
    // sysfs shows the devices of the namespace it was mounted in: `ip netns exec` mounts the
    // node's own in a private mount namespace (and fails if it cannot). The script checks that
    // sysfs's device is the one netlink shows in the node's namespace before writing.
    let netns = lab.netns_of(node).unwrap();
    let dev = format!("/sys/class/net/{}", info.uplink);
    let script = format!(
        "set -e; test \"$(cat {dev}/ifindex)\" = \"$(ip -o link show dev {link} | cut -d: -f1)\"; \
         echo 1 > {dev}/napi_defer_hard_irqs; echo 100000 > {dev}/gro_flush_timeout",
        link = info.uplink
    );
    let out =
        Command::new("ip").args(["netns", "exec", &netns, "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{node}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The flow key of a client's connection or datagram to a VIP.
pub fn flow(local: SocketAddr, target: SocketAddr, protocol: u8) -> FlowKey {
    FlowKey {
        source: local.ip(),
        destination: target.ip(),
        source_port: local.port(),
        destination_port: target.port(),
        protocol,
    }
}

/// A dual-stack LoadBalancer Service behind the directors (TCP and UDP on port 80 to the echo
/// servers), with its EndpointSlices; `vips` are its status IPs (IPv4, IPv6) and `spec` extra
/// lines of its spec.
pub fn vip_service(
    cluster: &Cluster,
    name: &str,
    spec: &str,
    vips: [&str; 2],
    endpoints: &[(&str, State)],
) -> String {
    let last = vips[0].rsplit('.').next().unwrap();
    let mut text = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\n\
         \x20 annotations: {{switchyard.io/director: \"true\"}}\n\
         spec:\n  type: LoadBalancer\n  clusterIP: \"10.96.7.{last}\"\n\
         \x20 clusterIPs: [\"10.96.7.{last}\", \"fd00:96::7:{last}\"]\n\
         \x20 ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  ports:\n\
         \x20 - {{name: tcp, port: 80, protocol: TCP, targetPort: {ECHO_PORT}}}\n\
         \x20 - {{name: udp, port: 80, protocol: UDP, targetPort: {ECHO_PORT}}}\n\
         {spec}status:\n  loadBalancer:\n    ingress: [{{ip: \"{}\"}}, {{ip: \"{}\"}}]\n",
        vips[0], vips[1]
    );
    for v6 in [false, true] {
        text += &cluster.endpoint_slice(name, v6, ECHO_PORT, endpoints);
    }
    text
}

/// Routes each VIP (host route) from the lab's router over `directors` (static multipath).
pub fn route_vips(cluster: &Cluster, vips: [&str; 2], directors: &[&str]) {
    for vip in vips {
        let len = if vip.contains(':') { 128 } else { 32 };
        cluster.lab.route_to_directors(format!("{vip}/{len}").parse().unwrap(), directors).unwrap();
    }
}

/// The node that carried a client's attempt: the backend's own node when the backend saw the
/// client (a local backend), else the node whose address the backend saw (SNAT to a remote pod).
pub fn carrier(cluster: &Cluster, attempt: &Attempt, client: IpAddr) -> String {
    let seen: SocketAddr = attempt.seen_as.as_deref().unwrap().parse().unwrap();
    if seen.ip() == client {
        cluster.lab.pod(attempt.backend.as_deref().unwrap()).unwrap().node.clone()
    } else {
        node_named(&cluster.lab, seen.ip())
            .unwrap_or_else(|| panic!("backend saw {seen}, neither the client nor a node"))
    }
}

/// The client's end of an attempt (UDP sockets report their unspecified bind address).
pub fn local(attempt: &Attempt, client: IpAddr) -> SocketAddr {
    let local: SocketAddr = attempt.local.as_deref().unwrap().parse().unwrap();
    SocketAddr::new(client, local.port())
}

/// `count` TCP connections and `count` UDP exchanges from client `ext` to `target`: every one
/// answered, UDP replies from the VIP, and each carried by the node every one of `directors`'
/// maps names for its flow. Returns flows per carrying node.
pub fn spread(
    cluster: &Cluster,
    directors: &[Director],
    target: SocketAddr,
    count: usize,
) -> BTreeMap<String, usize> {
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
    let client = cluster.client_ip("ext", target.is_ipv6());
    let tcp = cluster.lab.run_in("ext", || clients::tcp(target, count, TIMEOUT)).unwrap();
    let udp = cluster.lab.run_in("ext", || clients::udp(target, count, TIMEOUT)).unwrap();
    let mut per_node = BTreeMap::new();
    for (attempt, protocol) in tcp.iter().map(|a| (a, 6)).chain(udp.iter().map(|a| (a, 17))) {
        assert_eq!(attempt.error, None, "{target}: {attempt:?}");
        if protocol == 17 {
            assert_eq!(attempt.reply_from, Some(target.to_string()), "reply source: {attempt:?}");
        }
        let node = carrier(cluster, attempt, client);
        let flow = flow(local(attempt, client), target, protocol);
        for director in directors {
            assert_eq!(
                director.node_for(&cluster.lab, &flow).as_deref(),
                Some(node.as_str()),
                "{} sends {flow:?} elsewhere than the node that carried it",
                director.name
            );
        }
        *per_node.entry(node).or_default() += 1;
    }
    per_node
}

/// True when the router's kernel routes each of `vips` (host routes, IPv4 or IPv6) over
/// exactly `directors` (their addresses of the VIP's family: the next hops they announce).
pub fn routed_over(cluster: &Cluster, vips: &[&str], directors: &[&str]) -> bool {
    vips.iter().all(|vip| {
        let v6 = vip.contains(':');
        let prefix = format!("{vip}/{}", if v6 { 128 } else { 32 });
        let wanted: std::collections::BTreeSet<IpAddr> = directors
            .iter()
            .map(|name| {
                let info = cluster.lab.director(name).unwrap();
                if v6 { IpAddr::V6(info.ipv6) } else { IpAddr::V4(info.ipv4) }
            })
            .collect();
        router_next_hops(&cluster.lab, &prefix).unwrap() == wanted
    })
}

/// What [`hold_flows`]' long-lived flows counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCounts {
    /// TCP connections held.
    pub tcp: usize,
    /// UDP flows held.
    pub udp: usize,
    /// TCP connections reset, closed by the far end, or failed.
    pub tcp_reset: usize,
    /// TCP connections answered by more than one backend.
    pub tcp_moved: usize,
    /// TCP round trips answered.
    pub tcp_pings: usize,
    /// UDP round trips unanswered (or failed).
    pub udp_failed: usize,
    /// UDP flows whose answering backend changed.
    pub udp_moved: usize,
    /// UDP round trips answered.
    pub udp_answers: usize,
}

impl FlowCounts {
    /// The counts of [`hold_flows`]' reports.
    pub fn of(tcp: &[HoldReport], udp: &[UdpHoldReport]) -> FlowCounts {
        FlowCounts {
            tcp: tcp.len(),
            udp: udp.len(),
            tcp_reset: tcp.iter().filter(|h| h.reset || h.error.is_some()).count(),
            tcp_moved: tcp.iter().filter(|h| h.backends.len() > 1).count(),
            tcp_pings: tcp.iter().map(|h| h.pings).sum(),
            udp_failed: udp.iter().map(|u| u.errors.values().sum::<usize>()).sum(),
            udp_moved: udp.iter().filter(|u| udp_moved(u)).count(),
            udp_answers: udp.iter().map(|u| u.answers.len()).sum(),
        }
    }
}

/// `200 TCP (4152 round trips, 0 reset, 0 moved), 50 UDP (954 round trips, 0 failed, 0
/// moved)`: the figures of a COUNT line.
impl std::fmt::Display for FlowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} TCP ({} round trips, {} reset, {} moved), {} UDP ({} round trips, {} failed, {} \
             moved)",
            self.tcp,
            self.tcp_pings,
            self.tcp_reset,
            self.tcp_moved,
            self.udp,
            self.udp_answers,
            self.udp_failed,
            self.udp_moved
        )
    }
}

/// Whether a UDP flow's answering backend changed.
pub fn udp_moved(flow: &UdpHoldReport) -> bool {
    flow.answers.windows(2).any(|w| w[0] != w[1])
}

/// A UDP source port no earlier flow of this process had (below the kernel's ephemeral range,
/// 32768 up, so no socket of the kernel's choosing takes it; wraps after 12,768 flows). Flows
/// held one phase after another would otherwise now and then reuse a port: the same 5-tuple,
/// which the node that carried the earlier flow still holds (its conntrack entry), so it is
/// answered there — by the network's rules the same flow, but counted as moved.
fn next_udp_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    20_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 12_768
}

/// Long-lived flows from client `ext`: `tcp` TCP connections and `udp` connected UDP sockets,
/// to `targets` in turn, one round trip each per `interval` (`timeout` for an answer). Runs
/// `during` on this thread once every flow had its first round trip (or ended; at most
/// [`CONVERGE`]), 1 s later, and stops the flows when it returns (or panics). Not after
/// a fixed time: under load a connect can still be in its handshake then, and a SYN
/// retransmitted across a change opens the flow on a second node (not what a long-lived flow
/// meets).
pub fn hold_flows(
    cluster: &Cluster,
    targets: &[SocketAddr],
    (tcp, udp): (usize, usize),
    interval: std::time::Duration,
    timeout: std::time::Duration,
    during: impl FnOnce(),
) -> (Vec<HoldReport>, Vec<UdpHoldReport>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = AtomicBool::new(false);
    // Flows past their first round trip (TCP: `done` is asked after each answer; UDP: before
    // each round trip, so its second asking follows the first).
    let started = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (stop, started) = (&stop, &started);
        let tcp: Vec<_> = (0..tcp)
            .map(|i| {
                let target = targets[i % targets.len()];
                scope.spawn(move || {
                    let mut first = true;
                    cluster.lab.run_in("ext", || {
                        clients::hold_until(target, interval, timeout, || {
                            if std::mem::take(&mut first) {
                                started.fetch_add(1, Ordering::SeqCst);
                            }
                            stop.load(Ordering::SeqCst)
                        })
                    })
                })
            })
            .collect();
        let udp: Vec<_> = (0..udp)
            .map(|i| {
                let target = targets[i % targets.len()];
                let port = next_udp_port();
                scope.spawn(move || {
                    let mut asked = 0;
                    cluster.lab.run_in("ext", || {
                        clients::udp_hold_from_until(port, target, interval, timeout, || {
                            asked += 1;
                            if asked == 2 {
                                started.fetch_add(1, Ordering::SeqCst);
                            }
                            stop.load(Ordering::SeqCst)
                        })
                    })
                })
            })
            .collect();
        {
            let _stop = crate::StopOnDrop(stop);
            let flows = tcp.len() + udp.len();
            wait_until(CONVERGE, || {
                let ended = tcp.iter().filter(|h| h.is_finished()).count()
                    + udp.iter().filter(|h| h.is_finished()).count();
                started.load(Ordering::SeqCst) + ended >= flows
            });
            std::thread::sleep(std::time::Duration::from_secs(1));
            during();
        }
        (
            tcp.into_iter().map(|h| h.join().unwrap().unwrap()).collect(),
            udp.into_iter().map(|h| h.join().unwrap().unwrap()).collect(),
        )
    })
}
