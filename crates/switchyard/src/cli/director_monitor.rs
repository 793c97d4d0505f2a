//! `switchyard monitor` on a director: the director's XDP program writes its decisions and
//! drops to its own `sy_events` (path `PATH_DIR`); this names the VIP, the flow, the slot and
//! the node from the director's pinned maps.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use switchyard_bpf::abi::{EVENT_NO_SLOT, Event, PATH_DIR};
use switchyard_bpf::director::{DirMaps, DirReason};
use switchyard_bpf::monitor::Monitor;
use switchyard_bpf::nodeport_abi;
use switchyard_observe::kernel;

use super::monitor::{MonitorArgs, stop_on_signal};

/// One director event as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    /// Seconds since the monitor started.
    t: f64,
    path: &'static str,
    reason: String,
    drop: bool,
    protocol: String,
    client: SocketAddr,
    /// The VIP (for an ICMP error: the VIP of the flow it is about).
    vip: SocketAddr,
    /// 0: no VIP known yet (a fragment or unreadable packet).
    vip_id: u32,
    /// The Maglev slot (hash mod M), once known.
    slot: Option<u32>,
    node_id: Option<u32>,
    node: Option<String>,
    node_address: Option<IpAddr>,
    /// Inner IP length.
    len: u32,
}

fn reason_name(value: u32) -> String {
    DirReason::ALL
        .iter()
        .find(|r| **r as u32 == value)
        .map_or_else(|| format!("reason_{value}"), |r| r.name().to_owned())
}

/// Node names and addresses by id, read once per id (a table change re-reads on a miss).
#[derive(Default)]
struct Nodes(HashMap<u32, (Option<String>, Option<IpAddr>)>);

impl Nodes {
    fn get(&mut self, maps: &DirMaps, id: u32) -> (Option<String>, Option<IpAddr>) {
        if let Some(hit @ (Some(_), Some(_))) = self.0.get(&id) {
            return hit.clone();
        }
        let found = (maps.node_name(id), maps.node(id).ok().flatten().map(|n| n.ip()));
        self.0.insert(id, found.clone());
        found
    }
}

fn describe(maps: &DirMaps, nodes: &mut Nodes, e: &Event, started_ns: u64) -> Shown {
    let reason = reason_name(e.reason);
    let (node, node_address) =
        if e.backend_id == 0 { (None, None) } else { nodes.get(maps, e.backend_id) };
    Shown {
        t: e.ts_ns.saturating_sub(started_ns) as f64 / 1e9,
        path: "director",
        drop: reason.starts_with("drop_"),
        reason,
        protocol: kernel::protocol_name(e.proto),
        client: SocketAddr::new(e.saddr.to_ip(e.family), u16::from_be(e.sport)),
        vip: SocketAddr::new(e.daddr.to_ip(e.family), u16::from_be(e.dport)),
        vip_id: e.frontend_id,
        slot: (e.cookie != EVENT_NO_SLOT).then(|| u32::try_from(e.cookie).ok()).flatten(),
        node_id: (e.backend_id != 0).then_some(e.backend_id),
        node,
        node_address,
        len: e.len,
    }
}

/// One line per event.
fn text(s: &Shown) -> String {
    let slot = s.slot.map_or_else(String::new, |slot| format!(" slot {slot}"));
    let node = match (&s.node, s.node_address, s.node_id) {
        (_, _, None) => String::new(),
        (Some(name), Some(addr), _) => format!(" -> node {name} ({addr})"),
        (None, Some(addr), Some(id)) => format!(" -> node #{id} ({addr})"),
        (_, None, Some(id)) => format!(" -> node #{id} (missing)"),
    };
    format!(
        "{:>10.6} {:<8} {:<20} {} -> {}/{}{slot}{node}\n",
        s.t, s.path, s.reason, s.client, s.vip, s.protocol
    )
}

/// `switchyard monitor` when `bpf_dir` holds a director's maps.
pub(crate) fn run(args: &MonitorArgs, bpf_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut monitor = Monitor::open_pinned(bpf_dir).with_context(|| {
        format!(
            "opening sy_monitor and sy_events in {} (director of this build?)",
            bpf_dir.display()
        )
    })?;
    if args.off {
        monitor.disable().context("switching the monitor off")?;
        println!("monitor off in {}", bpf_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.service.is_some() {
        anyhow::bail!("--service is for nodes; on a director select a VIP with --addr");
    }
    let maps = DirMaps::open_pinned(bpf_dir)
        .with_context(|| format!("opening the director's maps in {}", bpf_dir.display()))?;
    let stop = stop_on_signal()?;
    monitor
        .enable(args.sample, args.drop_sample)
        .with_context(|| format!("switching the monitor on in {}", bpf_dir.display()))?;
    if !args.output.is_document() {
        eprintln!(
            "monitoring the director in {} (decisions 1 in {}, drops 1 in {}); Ctrl-C stops",
            bpf_dir.display(),
            args.sample.max(1),
            args.drop_sample.max(1)
        );
    }
    let started = Instant::now();
    let started_ns = nodeport_abi::monotonic_now_ns();
    let deadline = args.duration_ms.map(|ms| started + Duration::from_millis(ms));
    let mut nodes = Nodes::default();
    let mut printed = 0usize;
    while !stop.load(Ordering::SeqCst)
        && deadline.is_none_or(|d| Instant::now() < d)
        && args.count.is_none_or(|c| printed < c)
    {
        let Some(event) = monitor.next_event() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if event.path != PATH_DIR {
            continue;
        }
        let shown = describe(&maps, &mut nodes, &event, started_ns);
        if args.drops_only && !shown.drop {
            continue;
        }
        if let Some(addr) = args.addr {
            let hit = shown.client.ip() == addr
                || shown.vip.ip() == addr
                || shown.node_address.is_some_and(|n| n == addr);
            if !hit {
                continue;
            }
        }
        args.output.print_item(&shown, |_| text(&shown))?;
        printed += 1;
    }
    monitor.disable().context("switching the monitor off")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_flow_vip_slot_and_node() {
        let shown = Shown {
            t: 0.5,
            path: "director",
            reason: "encap_gue".into(),
            drop: false,
            protocol: "tcp".into(),
            client: "198.51.100.7:40000".parse().expect("address"),
            vip: "192.0.2.10:80".parse().expect("address"),
            vip_id: 1,
            slot: Some(44658),
            node_id: Some(2),
            node: Some("node2".into()),
            node_address: Some(IpAddr::from([10, 100, 2, 2])),
            len: 60,
        };
        assert_eq!(
            text(&shown),
            "  0.500000 director encap_gue            198.51.100.7:40000 -> 192.0.2.10:80/tcp \
             slot 44658 -> node node2 (10.100.2.2)\n"
        );
        assert_eq!(reason_name(DirReason::DropNoNode as u32), "drop_no_node");
        assert_eq!(reason_name(99), "reason_99");
    }
}
