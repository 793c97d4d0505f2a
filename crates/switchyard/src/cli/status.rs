//! `switchyard status`: what is programmed in the kernel, read from the pinned maps (works
//! whether or not an agent is running).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use switchyard_bpf::Maps;
use switchyard_observe::kernel;

/// The node agent's default bpffs directory.
const NODE_BPF_DIR: &str = "/sys/fs/bpf/switchyard";

/// Show the programs attached, the frontends and backends in the kernel, counters and map fill.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// bpffs directory the agent (or a director: its VIPs, tables and counters) pinned its
    /// maps and links in; a director's default when only a director is installed here.
    #[arg(long, value_name = "PATH", default_value = NODE_BPF_DIR)]
    bpf_dir: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let bpf_dir = super::director_view::default_dir(&args.bpf_dir, NODE_BPF_DIR);
    if super::director_view::is_director(&bpf_dir) {
        return super::director_view::status(&bpf_dir, args.json);
    }
    let maps = Maps::open_pinned(&args.bpf_dir)
        .with_context(|| format!("opening the maps pinned in {}", args.bpf_dir.display()))?;
    let state = kernel::read(&maps, &args.bpf_dir)
        .with_context(|| format!("reading the maps pinned in {}", args.bpf_dir.display()))?;
    let programs = kernel::attached_programs(&args.bpf_dir);
    if args.json {
        let doc =
            serde_json::json!({ "bpf_dir": args.bpf_dir, "programs": programs, "kernel": state });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("bpf dir: {}", args.bpf_dir.display());
    println!("programs attached: {}", programs.len());
    for link in &programs {
        println!("  {link}");
    }
    println!("frontends: {}", state.frontends.len());
    for fe in &state.frontends {
        let wildcard = if fe.family == "ipv6" { "[*]" } else { "*" };
        let address = fe.ip.map_or_else(|| wildcard.to_owned(), |ip| ip.to_string());
        let traffic = state.frontend_counters.get(&fe.id).copied().unwrap_or_default();
        println!(
            "  #{} {address}:{}/{} scope={} flags=[{}] backends={} connections={} packets={} bytes={}",
            fe.id,
            fe.port,
            fe.protocol,
            fe.scope,
            fe.flags.join(","),
            fe.backends.len(),
            traffic.connections,
            traffic.packets,
            traffic.bytes,
        );
        for (slot, be) in fe.backends.iter().enumerate() {
            println!("      slot {slot}: {}:{} [{}]", be.ip, be.port, be.flags.join(","));
        }
        if !fe.broken_slots.is_empty() {
            println!("      BROKEN slots (missing or unknown backend): {:?}", fe.broken_slots);
        }
    }
    match switchyard_bpf::monitor::read_settings(&args.bpf_dir) {
        Ok(m) if m.enabled != 0 => println!(
            "monitor: on (decisions 1 in {}, drops 1 in {}); `switchyard monitor --off` stops it",
            m.sample_every.max(1),
            m.drop_sample_every.max(1)
        ),
        Ok(_) => println!("monitor: off"),
        Err(_) => println!("monitor: not available (maps of an older build)"),
    }
    println!("counters (nonzero):");
    for (reason, count) in state.reasons.iter().filter(|(_, c)| c.packets != 0) {
        println!("  {reason}: {} (bytes {})", count.packets, count.bytes);
    }
    println!("maps:");
    for map in &state.maps {
        let memory = map.memory_bytes.map_or_else(|| "?".to_owned(), |b| b.to_string());
        println!(
            "  {:<16} {:>8} / {:<8} memory {memory} B",
            map.name, map.entries, map.max_entries
        );
    }
    Ok(ExitCode::SUCCESS)
}
