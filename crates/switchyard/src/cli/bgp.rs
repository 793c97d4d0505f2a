//! `switchyard bgp`: the node agent's (or a director's) BGP sessions and, per peer, each address
//! announced or not and why (from the running agent's or director's local API).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use switchyard_observe::bgp::BgpReport;

use super::output::OutputArgs;

/// Show BGP sessions (state, uptime, capabilities) and, per peer, every LoadBalancer IP and
/// externalIP of this node, announced or not, and why.
#[derive(Debug, Args)]
pub(crate) struct BgpArgs {
    /// The running agent's local API socket (a director's: its --api-socket, default
    /// /run/switchyard/director.sock).
    #[arg(long, value_name = "PATH", default_value = switchyard_node::api_client::DEFAULT_API_SOCKET)]
    api_socket: PathBuf,

    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: &BgpArgs) -> anyhow::Result<ExitCode> {
    let report = switchyard_node::api_client::bgp(&args.api_socket)?;
    args.output.print(&report, |_| render(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// The report as text: one block per session, then the peers this node does not use.
pub(crate) fn render(report: &BgpReport) -> String {
    let mut out = String::new();
    if let Some(why) = &report.announce_held {
        out.push_str(&format!("waiting to announce: {why}\n"));
    }
    if report.sessions.is_empty() {
        out.push_str("no BGP sessions (no BGPPeer selects this node)\n");
    }
    for session in &report.sessions {
        let uptime = session.uptime_seconds.map_or_else(String::new, |s| format!(" for {s}s"));
        out.push_str(&format!(
            "peer {} {} AS {}: {}{uptime}\n",
            session.peer, session.address, session.asns, session.state
        ));
        if !session.capabilities.is_empty() {
            out.push_str(&format!("  capabilities: {}\n", session.capabilities.join(", ")));
        }
        if let Some(down) = &session.last_down {
            out.push_str(&format!("  last down: {down}\n"));
        }
        if let Some(error) = &session.connect_error {
            out.push_str(&format!("  last connection attempt: {error}\n"));
        }
        if let Some(bfd) = &session.bfd {
            out.push_str(&format!("  bfd: {bfd}\n"));
        }
        out.push_str(&format!(
            "  routes at the router: {}, updates sent: {}, flaps: {}\n",
            session.routes_announced, session.updates_sent, session.flaps
        ));
        for (address, decision) in &session.addresses {
            out.push_str(&format!("  {address:<20} {decision}\n"));
        }
    }
    for (peer, why) in &report.not_peering {
        out.push_str(&format!("peer {peer}: no session: {why}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A director holding its VIPs back says so first, and not once it announces.
    #[test]
    fn a_held_director_says_why_it_is_waiting_to_announce() {
        let held = BgpReport {
            announce_held: Some("settle window (2000 ms left)".to_owned()),
            ..BgpReport::default()
        };
        let text = render(&held);
        assert!(text.starts_with("waiting to announce: settle window (2000 ms left)\n"), "{text}");
        assert!(!render(&BgpReport::default()).contains("waiting to announce"));
    }
}
