//! The end-to-end harness of the `switchyard` binary (crates/switchyard's tests and benchmarks):
//! a lab with `switchyard agent` on every node, echo servers in every pod, manifests written by
//! the test, and the built-in clients run as processes inside pods and nodes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use switchyard_lab::tools::clients::ClientOutput;
use switchyard_lab::tools::servers::{self, ServerHandle, ServerKind};
use switchyard_lab::{Lab, NodeSpec, Topology, wait_until};

/// The `switchyard` binary cargo built beside the running test or benchmark.
pub static BIN: LazyLock<PathBuf> = LazyLock::new(|| crate::cargo_bin("switchyard"));
/// Port the echo servers listen on in every pod (the Services' targetPort).
pub const ECHO_PORT: u16 = 8080;
/// How long a change may take from manifest write to traffic following it. Generous: the
/// agent takes milliseconds, but CI machines are loaded.
pub const CONVERGE: Duration = Duration::from_secs(10);
/// How long an agent may take to start: loading the per-packet programs is verifier work that
/// took 8-10 s per agent on a machine with five builds running (a wait, so free when fast).
pub const START: Duration = Duration::from_secs(40);

/// Runs `switchyard agent` with paths that do not exist plus `extra`, for checks the agent
/// makes before it touches anything (no root needed).
pub fn agent_refusing(extra: &[&str]) -> std::process::Output {
    Command::new(&*BIN)
        .args(["agent", "--manifests", "/nonexistent", "--node-name", "n", "--cgroup"])
        .args(["/nonexistent", "--bpf-dir", "/nonexistent", "--api-socket", "/nonexistent/s"])
        .args(extra)
        .output()
        .unwrap()
}

/// Condition of an endpoint in an EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    /// serving and terminating, not ready (a pod being deleted).
    Terminating,
}

/// A lab with an agent on every node and echo servers (TCP and UDP on [`ECHO_PORT`]) in every
/// pod. Dropping it stops the agents and tears the lab down (which removes every pin).
pub struct Cluster {
    pub lab: Lab,
    pub manifests: PathBuf,
    pub agents: Vec<Agent>,
    /// Extra arguments every agent of this cluster gets.
    pub agent_args: Vec<String>,
    _servers: Vec<ServerHandle>,
}

#[derive(Debug)]
pub struct Agent {
    pub node: String,
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("lab", &self.lab.prefix())
            .field("manifests", &self.manifests)
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

/// Starts `command` (stderr piped) in lab member `member`; its stderr lines are echoed with
/// `label` and collected.
pub fn spawn_logged(
    lab: &Lab,
    member: &str,
    command: Command,
    label: &str,
) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = lab.spawn_in(member, command).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let (sink, name) = (Arc::clone(&log), format!("{label} {member}"));
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{name}: {line}");
            sink.lock().unwrap().push(line);
        }
    });
    (child, log)
}

impl Agent {
    pub fn start(lab: &Lab, manifests: &Path, node: &str) -> Agent {
        Self::start_with(lab, manifests, node, &[])
    }

    /// Like [`Agent::start`], with extra command-line arguments (e.g. `--devices eth0`).
    pub fn start_with(lab: &Lab, manifests: &Path, node: &str, extra: &[String]) -> Agent {
        let info = lab.node(node).unwrap();
        let mut command = Command::new(&*BIN);
        command
            .args(["agent", "--manifests"])
            .arg(manifests)
            .args(["--node-name", node, "--cgroup"])
            .arg(&info.cgroup)
            .arg("--bpf-dir")
            .arg(&info.bpf_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SIGTERM stops at once unless a test asks for the shutdown grace (which it then counts).
        if !extra.iter().any(|arg| arg == "--shutdown-grace-seconds") {
            command.args(["--shutdown-grace-seconds", "0"]);
        }
        // Each agent its own local API socket, so a second agent serves its API too.
        if !extra.iter().any(|arg| arg == "--api-socket") {
            command.arg("--api-socket").arg(Self::api_socket(lab, node));
        }
        let (child, log) = spawn_logged(lab, node, command, "agent");
        let agent = Agent { node: node.to_string(), child, log };
        let ready = wait_until(START, || agent.logged("agent ready"));
        assert!(ready, "agent on {node} did not get ready: {:#?}", agent.log.lock().unwrap());
        agent
    }

    /// The local API socket of the agent on `node` of `lab` (in the temporary directory).
    pub fn api_socket(lab: &Lab, node: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{}-{node}-agent.sock", lab.prefix()))
    }

    /// The `/metrics` text of the agent on `node`, read over its local API socket (HTTP/1.0:
    /// the answer ends with the connection).
    pub fn metrics(lab: &Lab, node: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream = std::os::unix::net::UnixStream::connect(Self::api_socket(lab, node))
            .unwrap_or_else(|e| panic!("the agent's API socket on {node}: {e}"));
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{node}: {answer}"
        );
        answer
    }

    /// The value of the sample `name` (with its labels, exactly as the text shows them) in a
    /// `/metrics` text, if present.
    pub fn metric(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            if sample == name { value.parse().ok() } else { None }
        })
    }

    /// How many updates the agent has logged as applied so far.
    pub fn updates_applied(&self) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains("update applied")).count()
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }

    /// SIGTERM, as a service manager stops it; the pinned state stays behind.
    pub fn stop(mut self) {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "agent on {} exited with {exit}", self.node);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Cluster {
    /// Two nodes (`node1` with pods `a1`, `a2`; `node2` with `b1`, `b2`) unless told otherwise.
    pub fn up() -> Cluster {
        Self::with(&[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])])
    }

    pub fn with(nodes: &[(&str, &[&str])]) -> Cluster {
        Self::with_clients(nodes, &[], &[])
    }

    /// A cluster with external clients (namespaces behind the router) and extra agent
    /// arguments.
    pub fn with_clients(
        nodes: &[(&str, &[&str])],
        clients: &[&str],
        agent_args: &[&str],
    ) -> Cluster {
        let agent_args: Vec<String> = agent_args.iter().map(ToString::to_string).collect();
        Self::with_topology(&topology(nodes, clients, &[]), |_| agent_args)
    }

    /// A cluster of `topology`; `agent_args` gives every agent's extra arguments once the lab
    /// (and so every address) exists.
    pub fn with_topology(
        topology: &Topology,
        agent_args: impl FnOnce(&Lab) -> Vec<String>,
    ) -> Cluster {
        let lab = Lab::up(topology).unwrap();
        let manifests = std::env::temp_dir().join(format!("{}-manifests", lab.prefix()));
        std::fs::create_dir_all(&manifests).unwrap();
        let mut servers = Vec::new();
        for pod in lab.pods() {
            let name = pod.name.clone();
            for kind in [ServerKind::TcpEcho, ServerKind::UdpEcho] {
                servers.push(
                    lab.run_in(&name, || servers::start(kind, &name, ECHO_PORT)).unwrap().unwrap(),
                );
            }
        }
        let agent_args = agent_args(&lab);
        let mut cluster =
            Cluster { lab, manifests, agents: Vec::new(), agent_args, _servers: servers };
        cluster.apply("nodes.yaml", &cluster.nodes_yaml());
        let names: Vec<String> = cluster.lab.nodes().iter().map(|n| n.name.clone()).collect();
        for node in names {
            let agent = cluster.start_agent(&node);
            cluster.agents.push(agent);
        }
        cluster
    }

    /// Starts an agent on `node` with this cluster's arguments (waits until it is ready).
    pub fn start_agent(&self, node: &str) -> Agent {
        Agent::start_with(&self.lab, &self.manifests, node, &self.agent_args)
    }

    /// Writes a manifest file atomically (hidden temporary file, then rename), as `kubectl`-like
    /// tools and ConfigMap volumes do, so the agent never reads half a file.
    pub fn apply(&self, file: &str, text: &str) {
        let temporary = self.manifests.join(format!(".{file}.tmp"));
        std::fs::File::create(&temporary).unwrap().write_all(text.as_bytes()).unwrap();
        std::fs::rename(&temporary, self.manifests.join(file)).unwrap();
    }

    /// Writes a manifest that changes every node's maps and waits until every agent applied
    /// an update, so the test sends no packet to an address not yet programmed (it would
    /// leave through the router untranslated and fail the containment check).
    pub fn apply_and_wait(&self, file: &str, text: &str) {
        self.apply_and_wait_within(file, text, CONVERGE);
    }

    /// As [`Cluster::apply_and_wait`], for a change allowed to take longer than `CONVERGE`
    /// (one that makes the agents grow their maps and reload every program).
    pub fn apply_and_wait_within(&self, file: &str, text: &str, within: Duration) {
        let before: Vec<usize> = self.agents.iter().map(Agent::updates_applied).collect();
        self.apply(file, text);
        self.eventually_within(&format!("every agent applied {file}"), within, || {
            self.agents.iter().zip(&before).all(|(agent, n)| agent.updates_applied() > *n)
        });
    }

    pub fn delete(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// Deletes a manifest file and waits until every agent applied the update (see
    /// [`Cluster::apply_and_wait`]).
    pub fn delete_and_wait(&self, file: &str) {
        let before: Vec<usize> = self.agents.iter().map(Agent::updates_applied).collect();
        self.delete(file);
        self.eventually(&format!("every agent applied the deletion of {file}"), || {
            self.agents.iter().zip(&before).all(|(agent, n)| agent.updates_applied() > *n)
        });
    }

    pub fn nodes_yaml(&self) -> String {
        let mut text = String::new();
        for node in self.lab.nodes() {
            text += &format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nspec:\n  podCIDRs: [\"{}\", \"{}\"]\n\
                 status:\n  addresses:\n  - {{type: InternalIP, address: \"{}\"}}\n  - {{type: InternalIP, address: \"{}\"}}\n",
                node.name, node.pod_cidr_v4, node.pod_cidr_v6, node.ipv4, node.ipv6
            );
        }
        text
    }

    pub fn pod_ip(&self, pod: &str, v6: bool) -> IpAddr {
        let info = self.lab.pod(pod).unwrap();
        if v6 { IpAddr::V6(info.ipv6) } else { IpAddr::V4(info.ipv4) }
    }

    /// A Service with TCP and UDP on `port` (targetPort [`ECHO_PORT`] unless `target` says
    /// otherwise) and its EndpointSlices, one per address family of `cluster_ips`.
    pub fn service(
        &self,
        name: &str,
        cluster_ips: &[IpAddr],
        port: u16,
        extra_spec: &str,
        endpoints: &[(&str, State)],
    ) -> String {
        self.service_to(name, cluster_ips, port, ECHO_PORT, extra_spec, endpoints)
    }

    pub fn service_to(
        &self,
        name: &str,
        cluster_ips: &[IpAddr],
        port: u16,
        target: u16,
        extra_spec: &str,
        endpoints: &[(&str, State)],
    ) -> String {
        let family = |ip: &IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        let ips: Vec<String> = cluster_ips.iter().map(|ip| format!("\"{ip}\"")).collect();
        let families: Vec<&str> = cluster_ips.iter().map(family).collect();
        let policy = if cluster_ips.len() > 1 { "RequireDualStack" } else { "SingleStack" };
        let mut text = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\n\
             spec:\n  type: ClusterIP\n  clusterIP: {first}\n  clusterIPs: [{ips}]\n  ipFamilies: [{families}]\n\
             \x20 ipFamilyPolicy: {policy}\n  ports:\n\
             \x20 - {{name: tcp, port: {port}, protocol: TCP, targetPort: {target}}}\n\
             \x20 - {{name: udp, port: {port}, protocol: UDP, targetPort: {target}}}\n{extra_spec}",
            first = ips[0],
            ips = ips.join(", "),
            families = families.join(", "),
        );
        for ip in cluster_ips {
            text += &self.endpoint_slice(name, ip.is_ipv6(), target, endpoints);
        }
        text
    }

    /// A dual-stack LoadBalancer Service `e2e/<name>` (TCP and UDP on port 80 → [`ECHO_PORT`],
    /// NodePort `node_port`) with its EndpointSlices; `spec` adds spec fields (indented two
    /// spaces), `ingress` the `status.loadBalancer.ingress` IPs.
    pub fn load_balancer(
        &self,
        name: &str,
        node_port: u16,
        spec: &str,
        ingress: &[&str],
        endpoints: &[(&str, State)],
    ) -> String {
        let last = 10 + node_port % 100;
        let ips = [format!("10.96.{last}.10"), format!("fd00:96::{last}:10")];
        let ingress: Vec<String> = ingress.iter().map(|ip| format!("{{ip: \"{ip}\"}}")).collect();
        let mut text = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\n\
             spec:\n  type: LoadBalancer\n  clusterIP: \"{v4}\"\n  clusterIPs: [\"{v4}\", \"{v6}\"]\n\
             \x20 ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  ports:\n\
             \x20 - {{name: tcp, port: 80, protocol: TCP, targetPort: {ECHO_PORT}, nodePort: {node_port}}}\n\
             \x20 - {{name: udp, port: 80, protocol: UDP, targetPort: {ECHO_PORT}, nodePort: {node_port}}}\n\
             {spec}status:\n  loadBalancer:\n    ingress: [{ingress}]\n",
            v4 = ips[0],
            v6 = ips[1],
            ingress = ingress.join(", "),
        );
        for v6 in [false, true] {
            text += &self.endpoint_slice(name, v6, ECHO_PORT, endpoints);
        }
        text
    }

    /// The EndpointSlice `<name>-v4` or `<name>-v6` of Service `name`: TCP and UDP on
    /// `target`, one endpoint per pod of `endpoints` (in the slice's family).
    pub fn endpoint_slice(
        &self,
        name: &str,
        v6: bool,
        target: u16,
        endpoints: &[(&str, State)],
    ) -> String {
        let list = if endpoints.is_empty() {
            "[]\n".to_string()
        } else {
            format!("\n{}", self.endpoint_items(endpoints, v6))
        };
        format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{fam}\n  namespace: e2e\n\
             \x20 labels: {{kubernetes.io/service-name: {name}}}\naddressType: {family}\nendpoints: {list}\
             ports:\n- {{name: tcp, port: {target}, protocol: TCP}}\n- {{name: udp, port: {target}, protocol: UDP}}\n",
            fam = if v6 { "v6" } else { "v4" },
            family = if v6 { "IPv6" } else { "IPv4" },
        )
    }

    /// The `endpoints:` items of an EndpointSlice of one family: one per pod, with its
    /// address, conditions and node.
    pub fn endpoint_items(&self, endpoints: &[(&str, State)], v6: bool) -> String {
        let mut list = String::new();
        for (pod, state) in endpoints {
            let (ready, terminating) = match state {
                State::Ready => (true, false),
                State::Terminating => (false, true),
            };
            list += &format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: {ready}, serving: true, terminating: {terminating}}}\n  nodeName: {}\n",
                self.pod_ip(pod, v6),
                self.lab.pod(pod).unwrap().node
            );
        }
        list
    }

    /// [`Cluster::apply_and_wait`], then waits until one TCP request from `from` to `target`
    /// gets an answer (the Service is up before the test measures anything).
    pub fn apply_until_it_answers(&self, file: &str, text: &str, from: &str, target: SocketAddr) {
        self.apply_and_wait(file, text);
        self.eventually(&format!("{target} answers {from} after {file}"), || {
            self.client(from, "tcp", target, 1).summary.errors.is_empty()
        });
    }

    /// A long-lived TCP connection from `member` to `target` (`switchyard lab client hold`),
    /// a request every `interval_ms`, until its stdin is closed; its report is on stdout.
    pub fn spawn_hold(&self, member: &str, target: SocketAddr, interval_ms: u64) -> Child {
        let mut hold = Command::new(&*BIN);
        hold.args([
            "lab",
            "client",
            "hold",
            "--target",
            &target.to_string(),
            "--until-stdin-closes",
        ])
        .args(["--interval-ms", &interval_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        self.lab.spawn_in(member, hold).unwrap()
    }

    /// Runs a built-in client (`switchyard lab client KIND`) as a process in `member` (a pod or
    /// a node: inside the node's cgroup) and parses its JSON lines.
    pub fn client(
        &self,
        member: &str,
        kind: &str,
        target: SocketAddr,
        count: usize,
    ) -> ClientOutput {
        self.client_with(member, kind, target, count, &[])
    }

    pub fn client_with(
        &self,
        member: &str,
        kind: &str,
        target: SocketAddr,
        count: usize,
        extra: &[&str],
    ) -> ClientOutput {
        let mut command = Command::new(&*BIN);
        command
            .args(["lab", "client", kind, "--target", &target.to_string()])
            .args(["--count", &count.to_string(), "--timeout-ms", "3000"])
            .args(extra);
        let output = self.lab.output_in(member, command).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        ClientOutput::parse(&stdout).unwrap_or_else(|err| {
            panic!(
                "{kind} client in {member}: {err}; stderr {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// Backends that answered `count` requests of `kind` from `member`; panics on any error.
    pub fn backends(
        &self,
        member: &str,
        kind: &str,
        target: SocketAddr,
        count: usize,
    ) -> BTreeSet<String> {
        let out = self.client(member, kind, target, count);
        let failed: Vec<_> = out.attempts.iter().filter(|a| a.error.is_some()).collect();
        assert!(
            failed.is_empty(),
            "{kind} from {member} to {target}: {:?}; failed attempts {failed:#?}; router counters {:?}",
            out.summary,
            self.lab.ip_counters("fabric").map(|c| (c["IpExt.InNoRoutes"], c["Ip6.InNoRoutes"]))
        );
        for attempt in &out.attempts {
            if let Some(from) = &attempt.reply_from {
                assert_eq!(
                    from,
                    &target.to_string(),
                    "UDP reply source not translated back: {attempt:?}"
                );
            }
        }
        out.summary.backends.keys().cloned().collect()
    }

    /// Waits until `probe` holds, polling; panics with `what` and the agents' logs otherwise.
    pub fn eventually(&self, what: &str, probe: impl FnMut() -> bool) {
        self.eventually_within(what, CONVERGE, probe);
    }

    /// As [`Cluster::eventually`], waiting up to `within`.
    pub fn eventually_within(&self, what: &str, within: Duration, mut probe: impl FnMut() -> bool) {
        if !wait_until(within, &mut probe) {
            let logs: Vec<String> =
                self.agents.iter().flat_map(|a| a.log.lock().unwrap().clone()).collect();
            panic!("timed out waiting until {what}; agent logs:\n{}", logs.join("\n"));
        }
    }

    pub fn agent_index(&self, node: &str) -> usize {
        self.agents.iter().position(|a| a.node == node).unwrap()
    }

    /// Nothing a client sent left the lab or went untranslated towards a ClusterIP: the router
    /// has no route for Service addresses (nor a default route), so any such packet counts as
    /// `InNoRoutes` there; nodes and pods route everything else to the router.
    pub fn assert_nothing_left_the_lab(&self) {
        let fabric = self.lab.ip_counters("fabric").unwrap();
        for key in ["IpExt.InNoRoutes", "Ip6.InNoRoutes"] {
            assert_eq!(fabric[key], 0, "router counter {key}: a packet tried to leave the lab");
        }
        for node in self.lab.nodes() {
            let counters = self.lab.ip_counters(&node.name).unwrap();
            for key in ["Ip.OutNoRoutes", "Ip6.OutNoRoutes"] {
                assert_eq!(counters[key], 0, "{} counter {key}", node.name);
            }
        }
    }
}

impl Cluster {
    /// Per-packet counters (packets per reason) of the pinned maps of node `node`.
    pub fn packet_counters(
        &self,
        node: &str,
    ) -> std::collections::BTreeMap<switchyard_bpf::nodeport_abi::PacketReason, u64> {
        let bpf_dir = self.lab.node(node).unwrap().bpf_dir.clone();
        self.lab
            .run_in(node, move || {
                switchyard_bpf::nodeport::PacketMaps::open_pinned(&bpf_dir)
                    .unwrap()
                    .counters()
                    .unwrap()
                    .into_iter()
                    .map(|(reason, c)| (reason, c.packets))
                    .collect()
            })
            .unwrap()
    }

    /// Routes one address (a LoadBalancer or external IP) from the router to `nodes` (ECMP),
    /// as a BGP speaker or an L2 announcer would.
    pub fn route(&self, ip: &str, nodes: &[&str]) {
        let len = if ip.contains(':') { 128 } else { 32 };
        self.lab.route_to_nodes(format!("{ip}/{len}").parse().unwrap(), nodes).unwrap();
    }

    /// The address of lab node `node` in one family.
    pub fn node_ip(&self, node: &str, v6: bool) -> IpAddr {
        let info = self.lab.node(node).unwrap();
        if v6 { info.ipv6.into() } else { info.ipv4.into() }
    }

    /// The address of external client `client` in one family.
    pub fn client_ip(&self, client: &str, v6: bool) -> IpAddr {
        let info = self.lab.client(client).unwrap();
        if v6 { info.ipv6.into() } else { info.ipv4.into() }
    }
}

impl Cluster {
    /// The containment counters now, for labs whose bring-up already counted (a topology with
    /// external clients counts one stray `Ip6.InNoRoutes` while it comes up).
    pub fn containment_baseline(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        let fabric = self.lab.ip_counters("fabric").unwrap();
        for key in ["IpExt.InNoRoutes", "Ip6.InNoRoutes"] {
            out.push(("fabric".to_string(), key.to_string(), fabric[key]));
        }
        for node in self.lab.nodes() {
            let counters = self.lab.ip_counters(&node.name).unwrap();
            for key in ["Ip.OutNoRoutes", "Ip6.OutNoRoutes"] {
                out.push((node.name.clone(), key.to_string(), counters[key]));
            }
        }
        out
    }

    /// Nothing answers `member`'s TCP connection to `target`, and the attempt reached the
    /// lab's router untranslated (it has no route for Service addresses and counts what it
    /// cannot route): no agent translates that address. `baseline` (see
    /// [`Cluster::containment_baseline`]) must hold before the probe and moves past it, so a
    /// final containment check still covers everything else.
    pub fn assert_untranslated(
        &self,
        member: &str,
        target: SocketAddr,
        baseline: &mut Vec<(String, String, u64)>,
    ) {
        let key = if target.is_ipv6() { "Ip6.InNoRoutes" } else { "IpExt.InNoRoutes" };
        self.assert_nothing_left_the_lab_since(baseline);
        let out = self.client(member, "tcp", target, 1);
        assert!(out.summary.backends.is_empty(), "{target} answers {member}: {:?}", out.summary);
        let now = self.containment_baseline();
        for ((node, counter, before), (_, _, after)) in baseline.iter().zip(&now) {
            if node == "fabric" && counter == key {
                assert!(
                    after > before,
                    "{member} -> {target}: {:?}, router saw nothing",
                    out.summary
                );
            } else {
                assert_eq!(
                    after, before,
                    "{node} counter {counter}: a packet tried to leave the lab"
                );
            }
        }
        *baseline = now;
    }

    /// [`Cluster::assert_nothing_left_the_lab`] relative to a baseline.
    pub fn assert_nothing_left_the_lab_since(&self, baseline: &[(String, String, u64)]) {
        for ((member, key, before), (_, _, now)) in baseline.iter().zip(self.containment_baseline())
        {
            assert_eq!(now, *before, "{member} counter {key}: a packet tried to leave the lab");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agents.clear();
        let _ = std::fs::remove_dir_all(&self.manifests);
    }
}

/// A topology of `nodes` (each with its pods), external `clients` and `directors`.
pub fn topology(nodes: &[(&str, &[&str])], clients: &[&str], directors: &[&str]) -> Topology {
    Topology {
        nodes: nodes
            .iter()
            .map(|(name, pods)| NodeSpec {
                name: name.to_string(),
                pods: pods.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        clients: clients.iter().map(ToString::to_string).collect(),
        directors: directors.iter().map(ToString::to_string).collect(),
    }
}

pub fn v4(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(ToString::to_string).collect()
}

/// The names of the programs attached at TC ingress (tcx) of `device` in lab member `member`,
/// as the kernel lists them (`BPF_PROG_QUERY`; this machine's bpftool predates tcx).
pub fn tc_ingress_programs(lab: &Lab, member: &str, device: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let (_, programs) = lab
        .run_in(member, || SchedClassifier::query_tcx(device, TcAttachType::Ingress))
        .unwrap()
        .unwrap_or_else(|e| panic!("tcx programs of {member}/{device}: {e}"));
    programs.iter().map(|p| p.name_as_str().unwrap_or("?").to_owned()).collect()
}
