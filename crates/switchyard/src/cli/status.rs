//! `switchyard status`: what is programmed in the kernel, read from the pinned maps (works
//! whether or not an agent is running).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::MonitorConfig;
use switchyard_observe::kernel::{self, KernelState, ProgrammedFrontend};

use super::explain::NodeTarget;
use super::output::{OutputArgs, Table, say};

/// The node agent's default bpffs directory.
const NODE_BPF_DIR: &str = "/sys/fs/bpf/switchyard";

/// Show the programs attached, the frontends and backends in the kernel, counters and map fill.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Where the agent (or a director: its VIPs, tables and counters) pinned its maps and
    /// links; a director's default directory when only a director is installed here.
    #[command(flatten)]
    target: NodeTarget,

    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let bpf_dir = super::director_view::default_dir(&args.target.bpf_dir()?, NODE_BPF_DIR);
    if super::director_view::is_director(&bpf_dir) {
        return super::director_view::status(&bpf_dir, &args.output);
    }
    let maps = Maps::open_pinned(&bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", bpf_dir.display()))?;
    let state = kernel::read(&maps, &bpf_dir)
        .with_context(|| format!("reading the maps pinned in {}", bpf_dir.display()))?;
    let programs = kernel::attached_programs(&bpf_dir);
    let monitor = switchyard_bpf::monitor::read_settings(&bpf_dir).ok();
    let doc = serde_json::json!({
        "bpfDir": bpf_dir,
        "programs": programs,
        "kernel": state,
        "monitor": monitor.map(|m| serde_json::json!({
            "enabled": m.enabled != 0,
            "sampleEvery": m.sample_every.max(1),
            "dropSampleEvery": m.drop_sample_every.max(1),
        })),
    });
    args.output.print(&doc, |wide| text(&bpf_dir, &programs, &state, monitor, wide))?;
    Ok(ExitCode::SUCCESS)
}

/// The status as text: sections for programs, frontends, the monitor, counters and maps;
/// `wide` adds every backend slot.
fn text(
    bpf_dir: &Path,
    programs: &[String],
    state: &KernelState,
    monitor: Option<MonitorConfig>,
    wide: bool,
) -> String {
    let mut out = String::new();
    say!(out, "bpf dir: {}", bpf_dir.display());
    say!(out, "programs attached: {}", programs.len());
    for link in programs {
        say!(out, "  {link}");
    }
    say!(out, "frontends: {}", state.frontends.len());
    let mut frontends = Table::new([
        "ID",
        "FRONTEND",
        "SCOPE",
        "FLAGS",
        "BACKENDS",
        "CONNECTIONS",
        "PACKETS",
        "BYTES",
    ]);
    for column in [0, 4, 5, 6, 7] {
        frontends.align_right(column);
    }
    for fe in &state.frontends {
        let traffic = state.frontend_counters.get(&fe.id).copied().unwrap_or_default();
        let mut backends = fe.backends.len().to_string();
        if !fe.broken_slots.is_empty() {
            backends += &format!(" (BROKEN slots {:?})", fe.broken_slots);
        }
        frontends.row([
            format!("#{}", fe.id),
            format!("{}/{}", frontend_address(fe), fe.protocol),
            fe.scope.to_owned(),
            fe.flags.join(","),
            backends,
            traffic.connections.to_string(),
            traffic.packets.to_string(),
            traffic.bytes.to_string(),
        ]);
    }
    out += &frontends.render();
    if wide {
        for fe in state.frontends.iter().filter(|fe| !fe.backends.is_empty()) {
            say!(out, "#{} slots:", fe.id);
            for (slot, be) in fe.backends.iter().enumerate() {
                let address = SocketAddr::new(be.ip, be.port);
                say!(out, "  {slot}: #{} {address} [{}]", be.id, be.flags.join(","));
            }
        }
    }
    match monitor {
        Some(m) if m.enabled != 0 => say!(
            out,
            "monitor: on (decisions 1 in {}, drops 1 in {}); `switchyard monitor --off` stops it",
            m.sample_every.max(1),
            m.drop_sample_every.max(1)
        ),
        Some(_) => say!(out, "monitor: off"),
        None => say!(out, "monitor: not available (maps of an older build)"),
    }
    say!(out, "counters (nonzero):");
    for (reason, count) in state.reasons.iter().filter(|(_, c)| c.packets != 0) {
        say!(out, "  {reason}: {} (bytes {})", count.packets, count.bytes);
    }
    let mut maps = Table::new(["MAP", "ENTRIES", "MAX ENTRIES", "MEMORY (B)"]);
    for column in 1..4 {
        maps.align_right(column);
    }
    for map in &state.maps {
        let memory = map.memory_bytes.map_or_else(|| "?".to_owned(), |b| b.to_string());
        maps.row([
            map.name.to_string(),
            map.entries.to_string(),
            map.max_entries.to_string(),
            memory,
        ]);
    }
    out + &maps.render()
}

/// `ADDR:PORT` (`[v6]:PORT`), or `*:PORT` / `[*]:PORT` for a NodePort wildcard entry.
fn frontend_address(fe: &ProgrammedFrontend) -> String {
    match fe.ip {
        Some(ip) => SocketAddr::new(ip, fe.port).to_string(),
        None if fe.family == "ipv6" => format!("[*]:{}", fe.port),
        None => format!("*:{}", fe.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(ip: Option<&str>, family: &'static str, port: u16) -> ProgrammedFrontend {
        ProgrammedFrontend {
            id: 1,
            ip: ip.map(|ip| ip.parse().expect("test address")),
            family,
            port,
            protocol: "tcp".to_owned(),
            scope: "default",
            flags: Vec::new(),
            maglev_table: false,
            backends: Vec::new(),
            broken_slots: Vec::new(),
        }
    }

    /// Issue 21: IPv6 frontends were printed without brackets (`fd00::1:80`).
    #[test]
    fn ipv6_frontends_are_bracketed() {
        assert_eq!(
            frontend_address(&frontend(Some("fd00:96::10"), "ipv6", 80)),
            "[fd00:96::10]:80"
        );
        assert_eq!(frontend_address(&frontend(None, "ipv6", 30080)), "[*]:30080");
        assert_eq!(frontend_address(&frontend(Some("10.96.0.10"), "ipv4", 53)), "10.96.0.10:53");
        assert_eq!(frontend_address(&frontend(None, "ipv4", 30080)), "*:30080");
    }
}
