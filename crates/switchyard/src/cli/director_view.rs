//! `switchyard status` and `explain` on a director: the same commands as on a node, reading
//! the director's pinned maps (switchyard_observe::director) when the bpffs directory holds them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use switchyard_bpf::director::{DirMaps, names};
use switchyard_maglev::FlowKey;
use switchyard_observe::director::{self, Share};

use super::output::{OutputArgs, say};

/// Where a director pins its maps unless told otherwise (`switchyard director --bpf-dir`).
pub(crate) const DEFAULT_BPF_DIR: &str = "/sys/fs/bpf/switchyard-director";

/// Whether `bpf_dir` holds a director's maps.
pub(crate) fn is_director(bpf_dir: &Path) -> bool {
    bpf_dir.join(names::VIPS).exists()
}

/// The node's default directory, unless only a director is installed on this machine.
pub(crate) fn default_dir(bpf_dir: &Path, node_default: &str) -> PathBuf {
    let director = Path::new(DEFAULT_BPF_DIR);
    if bpf_dir == Path::new(node_default) && !bpf_dir.exists() && is_director(director) {
        return director.to_path_buf();
    }
    bpf_dir.to_path_buf()
}

fn open(bpf_dir: &Path) -> anyhow::Result<DirMaps> {
    DirMaps::open_pinned(bpf_dir)
        .with_context(|| format!("opening the director's maps pinned in {}", bpf_dir.display()))
}

fn share(s: &Share, table_size: u32) -> String {
    let address = s.address.map_or_else(|| "(missing)".to_owned(), |a| a.to_string());
    let name = s.name.as_deref().map_or_else(String::new, |n| format!("{n} "));
    let weight = s.weight.map_or_else(String::new, |w| format!(", weight {w}"));
    let percent = f64::from(s.slots) * 100.0 / f64::from(table_size.max(1));
    format!("#{} {name}{address}{weight}: {} slots ({percent:.1}%)", s.node_id, s.slots)
}

/// `switchyard status` on a director.
pub(crate) fn status(bpf_dir: &Path, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let maps = open(bpf_dir)?;
    let status = director::read_status(&maps, bpf_dir)
        .with_context(|| format!("reading the director's maps in {}", bpf_dir.display()))?;
    let health = read_health(bpf_dir)?;
    let doc = serde_json::json!({
        "role": "director",
        "bpfDir": bpf_dir,
        "director": status,
        "health": health,
    });
    output.print(&doc, |_| {
        let text = status_text(bpf_dir, &status);
        health_text(text, &health)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One probed target as `status` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetHealth {
    node: String,
    address: std::net::SocketAddr,
    state: &'static str,
    /// Unix time (ms) the state began; absent: up since first probed.
    since_ms: Option<u64>,
    last: &'static str,
    failures: u32,
    successes: u32,
}

/// What the director's health checker wrote (`None`: a director without the health map, or
/// one that does not check health: the map is empty then).
fn read_health(bpf_dir: &Path) -> anyhow::Result<Option<Vec<TargetHealth>>> {
    use switchyard_bpf::director_probe::HealthMap;
    if !bpf_dir.join(names::HEALTH).exists() {
        return Ok(None);
    }
    let map = HealthMap::open_pinned(bpf_dir)
        .with_context(|| format!("opening the director's health map in {}", bpf_dir.display()))?;
    let entries = map.entries().context("reading the director's health map")?;
    Ok(Some(
        entries
            .iter()
            .map(|(key, e)| TargetHealth {
                node: e.name(),
                address: key.socket_addr(),
                state: e.state_name(),
                since_ms: (e.since_ms != 0).then_some(e.since_ms),
                last: e.last_name(),
                failures: e.failures,
                successes: e.successes,
            })
            .collect(),
    ))
}

/// The health section of the text status.
fn health_text(mut out: String, health: &Option<Vec<TargetHealth>>) -> String {
    let Some(health) = health else { return out };
    if health.is_empty() {
        say!(out, "node health: not checked (--health-probe off, or no node to check)");
        return out;
    }
    say!(out, "node health: {} targets", health.len());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    for t in health {
        let since = t.since_ms.map_or_else(
            || "since start".to_owned(),
            |ms| format!("for {:.1} s", now_ms.saturating_sub(ms) as f64 / 1000.0),
        );
        say!(
            out,
            "  {} {} {} {since} (last probe {}, {} failed / {} ok in a row)",
            t.node,
            t.address,
            t.state,
            t.last,
            t.failures,
            t.successes
        );
    }
    out
}

/// The director's status as text.
fn status_text(bpf_dir: &Path, status: &director::DirectorStatus) -> String {
    let mut out = String::new();
    let s = &status.settings;
    say!(out, "director, bpf dir: {}", bpf_dir.display());
    say!(out, "programs attached: {}", status.links.len());
    for link in &status.links {
        say!(out, "  {link}");
    }
    let sources: Vec<String> =
        [s.source4, s.source6].iter().flatten().map(IpAddr::to_string).collect();
    say!(
        out,
        "settings: M = {}, seed {}, encapsulation {} (port {}), outer sources {}",
        s.table_size,
        s.seed,
        s.encapsulation,
        s.gue_port,
        sources.join(", ")
    );
    say!(out, "vips: {}", status.vips.len());
    for vip in &status.vips {
        let address = std::net::SocketAddr::new(vip.address, vip.port);
        say!(
            out,
            "  #{} {address}/{} table #{} packets={} bytes={}",
            vip.id,
            vip.protocol,
            vip.table_id,
            vip.packets,
            vip.bytes
        );
        if vip.table_id == 0 {
            say!(out, "      no node serves it: its packets are dropped (drop_no_node)");
        }
        for s in &vip.shares {
            say!(out, "      {}", share(s, status.settings.table_size));
        }
    }
    say!(out, "nodes: {}", status.nodes.len());
    for node in &status.nodes {
        let name = node.name.as_deref().map_or_else(String::new, |n| format!("{n} "));
        say!(
            out,
            "  #{} {name}{} packets={} bytes={}",
            node.id,
            node.address,
            node.packets,
            node.bytes
        );
    }
    say!(out, "counters (nonzero):");
    for (reason, count) in status.reasons.iter().filter(|(_, c)| c.packets != 0) {
        say!(out, "  {reason}: {} (bytes {})", count.packets, count.bytes);
    }
    out
}

/// `switchyard explain SRC:PORT VIP:PORT/PROTO` on a director.
pub(crate) fn explain(
    bpf_dir: &Path,
    source: IpAddr,
    source_port: Option<u16>,
    destination: std::net::SocketAddr,
    protocol: u8,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    let source_port = source_port.context(
        "on a director SRC needs its port (ADDR:PORT): the node is chosen by the whole 5-tuple",
    )?;
    let maps = open(bpf_dir)?;
    let flow = FlowKey {
        source,
        destination: destination.ip(),
        source_port,
        destination_port: destination.port(),
        protocol,
    };
    let e = director::explain(&maps, &flow)
        .with_context(|| format!("reading the director's maps in {}", bpf_dir.display()))?;
    output.print(&e, |_| explain_text(bpf_dir, &e))?;
    Ok(ExitCode::SUCCESS)
}

/// A director's explanation as text.
fn explain_text(bpf_dir: &Path, e: &director::FlowExplanation) -> String {
    let mut out = String::new();
    let m = e.settings.table_size;
    say!(out, "flow: {} (director, maps in {})", e.flow, bpf_dir.display());
    match &e.vip {
        None => say!(out, "vip: none"),
        Some(vip) => {
            say!(
                out,
                "vip: #{} table #{} (M = {m}), {} nodes:",
                vip.id,
                vip.table_id,
                vip.shares.len()
            );
            for s in &vip.shares {
                say!(out, "  {}", share(s, m));
            }
        }
    }
    if let (Some(hash), Some(slot)) = (&e.hash, e.slot) {
        say!(
            out,
            "hash: {} of the 5-tuple (VIP first) under seed {} = {hash}",
            switchyard_maglev::FLOW_HASH_NAME,
            e.settings.seed
        );
        say!(out, "slot: hash mod {m} = {slot}");
    }
    if let Some(node) = &e.node {
        say!(
            out,
            "node: {} — every director with this seed and these objects picks the same",
            share(node, m)
        );
    }
    say!(out, "decision: {}", e.decision);
    out
}
