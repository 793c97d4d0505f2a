//! The outside half of `switchyard demo`: two directors behind the lab's router, which spreads
//! the `edge` example's VIPs over them (ECMP); connections from the external client, each
//! attributed to the director and the node that carried it by their counters, and the count of
//! packets the directors received beyond what they encapsulated (a reply through a director
//! would show there).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_bpf::decap::{DecapMaps, DecapReason};
use switchyard_bpf::director::{DirMaps, DirReason};
use switchyard_lab::tools::clients;
use switchyard_lab::{Lab, wait_until};

use super::output::Table;

/// The directors of the demo lab.
pub(crate) const DIRECTORS: [&str; 2] = ["dir1", "dir2"];

/// The `edge` example's VIPs (examples/demo/edge.yaml).
const VIPS: [&str; 2] = ["10.96.100.3", "fd00:96::100:3"];

/// The agents' extra arguments: accept encapsulated packets from every director.
pub(crate) fn agent_args(lab: &Lab) -> Vec<String> {
    let addresses: Vec<String> =
        lab.directors().iter().flat_map(|d| [d.ipv4.to_string(), d.ipv6.to_string()]).collect();
    vec!["--director-addresses".to_string(), addresses.join(",")]
}

/// A running director; killed when dropped (the lab's teardown would too).
pub(crate) struct DirectorProcess(Child);

impl Drop for DirectorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `switchyard director` in every director namespace and routes the VIPs to them.
pub(crate) fn start(
    lab: &Lab,
    exe: &Path,
    work: &Path,
    manifests: &Path,
) -> anyhow::Result<Vec<DirectorProcess>> {
    let mut directors = Vec::new();
    for info in lab.directors() {
        let log_path = work.join(format!("director-{}.log", info.name));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(exe);
        command
            .args(["director", "--manifests"])
            .arg(manifests)
            .args(["--devices", &info.interface, "--address"])
            .arg(format!("{},{}", info.ipv4, info.ipv6))
            .arg("--bpf-dir")
            .arg(&info.bpf_dir)
            // The table's last column counts every packet a director receives beyond the client
            // packets it encapsulated (a reply through a director would show there); the node
            // health probes' answers would too. Health is shown by `director_health_e2e`.
            .args(["--health-probe", "off"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut process = DirectorProcess(lab.spawn_in(&info.name, command)?);
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let ready = wait_until(Duration::from_secs(20), || {
            read_log().contains("director tables programmed")
                || matches!(process.0.try_wait(), Ok(Some(_)))
        });
        if !ready || !read_log().contains("director tables programmed") {
            bail!("the director {} did not start:\n{}", info.name, read_log());
        }
        directors.push(process);
    }
    for vip in VIPS {
        let cidr = if vip.contains(':') { format!("{vip}/128") } else { format!("{vip}/32") };
        lab.route_to_directors(
            cidr.parse().map_err(|e: String| anyhow::anyhow!("{cidr}: {e}"))?,
            &DIRECTORS,
        )
        .with_context(|| format!("routing {vip} to the directors"))?;
    }
    Ok(directors)
}

/// Open handles on the directors' and nodes' counters.
struct Counters {
    directors: Vec<DirMaps>,
    nodes: Vec<DecapMaps>,
}

impl Counters {
    fn open(lab: &Lab) -> anyhow::Result<Self> {
        let directors = lab
            .directors()
            .iter()
            .map(|d| {
                DirMaps::open_pinned(&d.bpf_dir).with_context(|| format!("maps of {}", d.name))
            })
            .collect::<anyhow::Result<_>>()?;
        let nodes = lab
            .nodes()
            .iter()
            .map(|n| {
                DecapMaps::open_pinned(&n.bpf_dir).with_context(|| format!("maps of {}", n.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Counters { directors, nodes })
    }

    /// Packets each director encapsulated, and packets each node decapsulated.
    fn read(&self) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
        let mut directors = Vec::new();
        for maps in &self.directors {
            let counters = maps.counters()?;
            let sum = [DirReason::EncapGue, DirReason::EncapFou, DirReason::EncapIpip]
                .iter()
                .map(|r| counters.get(r).map_or(0, |c| c.packets))
                .sum();
            directors.push(sum);
        }
        let mut nodes = Vec::new();
        for maps in &self.nodes {
            let counters = maps.counters()?;
            let sum = [DecapReason::Gue, DecapReason::Fou, DecapReason::Ipip]
                .iter()
                .map(|r| counters.get(r).map_or(0, |c| c.packets))
                .sum();
            nodes.push(sum);
        }
        Ok((directors, nodes))
    }
}

/// The index whose count grew most, if one grew more than every other: a connection's own
/// packets (handshake, request, reply, close) outnumber the last ACK of the one before it.
fn carried_by(before: &[u64], after: &[u64]) -> Option<usize> {
    let grew: Vec<u64> = before.iter().zip(after).map(|(b, a)| a.saturating_sub(*b)).collect();
    let most = *grew.iter().max()?;
    let winners: Vec<usize> = (0..grew.len()).filter(|&i| grew[i] == most).collect();
    match winners.as_slice() {
        [one] if most > 0 => Some(*one),
        _ => None,
    }
}

/// Received packets on every director's uplink.
fn director_rx(lab: &Lab) -> anyhow::Result<u64> {
    let mut sum = 0;
    for director in lab.directors() {
        let links = lab.link_stats(&director.name)?;
        sum += links.get(&director.interface).map_or(0, |s| s.rx_packets);
    }
    Ok(sum)
}

/// The table: per VIP and protocol, `requests` connections (TCP) or sockets (UDP) from the
/// external client, one at a time, and which director and node carried each.
/// Returns the table and the number of failed requests.
pub(crate) fn table(lab: &Lab, from: &str, requests: usize) -> anyhow::Result<(String, usize)> {
    let counters = Counters::open(lab)?;
    let mut headers = vec!["VIP (edge)".to_owned(), "PROTO".to_owned()];
    headers.extend(lab.directors().iter().map(|director| director.name.clone()));
    headers.extend(lab.nodes().iter().map(|node| node.name.clone()));
    headers.extend(["REPLIES", "OTHER@DIR", "ERRORS"].map(String::from));
    let mut table = Table::new(headers);
    for column in 2..5 + lab.directors().len() + lab.nodes().len() {
        table.align_right(column);
    }
    let mut failed = 0;
    for vip in VIPS {
        for kind in ["tcp", "udp"] {
            let target = SocketAddr::new(vip.parse().context("demo VIP")?, 80);
            let mut per_director = vec![0usize; lab.directors().len()];
            let mut per_node = vec![0usize; lab.nodes().len()];
            let mut errors = 0;
            let (rx_before, encap_before) = (director_rx(lab)?, counters.read()?.0);
            let client_rx_before = lab.link_stats(from)?.get("eth0").map_or(0, |s| s.rx_packets);
            for _ in 0..requests {
                let (directors_before, nodes_before) = counters.read()?;
                let timeout = Duration::from_secs(1);
                let attempt = lab.run_in(from, || match kind {
                    "tcp" => clients::tcp(target, 1, timeout),
                    _ => clients::udp(target, 1, timeout),
                })?;
                // The connection's last packets (the client's final ACK) cross the directors
                // just after the reply: let them pass before counting.
                std::thread::sleep(Duration::from_millis(3));
                let (directors_after, nodes_after) = counters.read()?;
                if attempt.iter().any(|a| a.error.is_some()) {
                    errors += 1;
                }
                if let Some(d) = carried_by(&directors_before, &directors_after) {
                    per_director[d] += 1;
                }
                if let Some(n) = carried_by(&nodes_before, &nodes_after) {
                    per_node[n] += 1;
                }
            }
            let encapsulated: u64 =
                counters.read()?.0.iter().sum::<u64>() - encap_before.iter().sum::<u64>();
            // Whatever the directors received beyond the client packets they encapsulated (a
            // few ARP / neighbour packets at most); a reply through a director would count.
            let extra = (director_rx(lab)? - rx_before).saturating_sub(encapsulated);
            failed += errors;
            let replies =
                lab.link_stats(from)?.get("eth0").map_or(0, |s| s.rx_packets) - client_rx_before;
            let mut cells = vec![target.to_string(), kind.to_owned()];
            cells.extend(per_director.iter().chain(&per_node).map(usize::to_string));
            cells.extend([replies.to_string(), extra.to_string(), errors.to_string()]);
            table.row(cells);
        }
    }
    Ok((table.render(), failed))
}
