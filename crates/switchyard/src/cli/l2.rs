//! `switchyard l2`: L2 mode as the running agent sees it — for every LoadBalancer IP and
//! externalIP the node that answers ARP / NDP for it (or why none does), and this node's
//! responder per interface (from the agent's local API, the `l2` part of `/bgp`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use switchyard_observe::bgp::L2Report;

use super::output::{OutputArgs, Table};

/// Show which node answers ARP / NDP for each LoadBalancer IP, and what this node's responder
/// answers on which interface.
#[derive(Debug, Args)]
pub(crate) struct L2Args {
    /// The running agent's local API socket.
    #[arg(long, value_name = "PATH", default_value = switchyard_node::api_client::DEFAULT_API_SOCKET)]
    api_socket: PathBuf,

    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: &L2Args) -> anyhow::Result<ExitCode> {
    let report = switchyard_node::api_client::bgp(&args.api_socket)?.l2;
    args.output.print(&report, |wide| render(&report, wide))?;
    Ok(ExitCode::SUCCESS)
}

/// The addresses (owner, Services; wide: the decision in words), then the interfaces this node
/// answers on with their counters.
pub(crate) fn render(report: &L2Report, wide: bool) -> String {
    let mut out = String::new();
    if report.addresses.is_empty() {
        out.push_str("no LoadBalancer IPs or externalIPs\n");
    } else {
        let mut headers = vec!["ADDRESS", "ANSWERED BY", "SERVICES"];
        if wide {
            headers.push("DECISION");
        }
        let mut table = Table::new(headers);
        for address in &report.addresses {
            let mut row = vec![
                address.address.clone(),
                address.owner.clone().unwrap_or_else(|| "<none>".to_owned()),
                address.services.join(","),
            ];
            if wide {
                row.push(address.decision.clone());
            }
            table.row(row);
        }
        out.push_str(&table.render());
    }
    if !report.interfaces.is_empty() {
        out.push('\n');
        let mut table = Table::new([
            "INTERFACE",
            "MAC",
            "ANSWERS FOR",
            "ARP REPLIES",
            "NDP REPLIES",
            "ANNOUNCED",
            "REFUSED",
        ]);
        for interface in &report.interfaces {
            let addresses: Vec<String> =
                interface.addresses.iter().map(ToString::to_string).collect();
            let refused: u64 = interface.counters.refused.values().sum();
            let answers = match &interface.error {
                Some(error) => format!("<error: {error}>"),
                None => addresses.join(","),
            };
            table.row([
                interface.name.clone(),
                interface.mac.clone(),
                answers,
                interface.counters.arp_replies.to_string(),
                interface.counters.ndp_replies.to_string(),
                interface.counters.announcements.to_string(),
                refused.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    for name in &report.missing_interfaces {
        out.push_str(&format!("interface {name}: named by an L2Advertisement, not on this host\n"));
    }
    out
}
