//! Results on disk: JSON for machines, a Markdown table with ratios for people.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::machine::Machine;
use crate::programming::{Measurement, Peer, Step};

/// Everything one `programming` run measured, with the conditions it ran under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgrammingReport {
    pub machine: Machine,
    pub quick: bool,
    pub per_run_limit_seconds: f64,
    pub measurements: Vec<Measurement>,
}

pub fn write_file(path: &Path, contents: &str) -> Result<(), BenchError> {
    let write_error =
        |source| BenchError::Write { path: path.display().to_string(), cause: source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    std::fs::write(path, contents).map_err(write_error)
}

pub fn write_json(path: &Path, report: &impl Serialize) -> Result<(), BenchError> {
    let text = serde_json::to_string_pretty(report).map_err(|e| BenchError::Write {
        path: path.display().to_string(),
        cause: std::io::Error::other(e),
    })?;
    write_file(path, &format!("{text}\n"))
}

fn cell(m: Option<&Measurement>) -> String {
    match m {
        Some(Measurement { median_seconds: Some(wall), median_cpu_seconds: Some(cpu), .. }) => {
            format!("{} ({})", seconds(*wall), seconds(*cpu))
        }
        Some(Measurement { exceeded_seconds: Some(limit), .. }) => format!("> {limit:.0}"),
        Some(Measurement { error: Some(error), .. }) if error.contains("not available") => {
            "n/a".into()
        }
        Some(Measurement { error: Some(error), .. }) if error.starts_with("reaching") => {
            "start not reached".into()
        }
        Some(Measurement { error: Some(error), .. }) if error.starts_with("not tried") => {
            "not tried".into()
        }
        Some(Measurement { error: Some(_), .. }) => "failed".into(),
        _ => "—".into(),
    }
}

/// Seconds with three decimals, or two significant digits below 10 ms (Switchyard's changes take
/// microseconds; `0.000` would hide them).
fn seconds(value: f64) -> String {
    if value >= 0.01 || value <= 0.0 {
        return format!("{value:.3}");
    }
    let decimals = (1.0 - value.log10().floor()).clamp(3.0, 9.0) as usize;
    format!("{value:.decimals$}")
}

/// `numerator / denominator` of median CPU times, when both were measured.
fn ratio(numerator: Option<&Measurement>, denominator: Option<&Measurement>) -> String {
    match (
        numerator.and_then(|m| m.median_cpu_seconds),
        denominator.and_then(|m| m.median_cpu_seconds),
    ) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.1}×", n / d),
        _ => match (
            numerator.and_then(|m| m.exceeded_seconds),
            denominator.and_then(|m| m.median_seconds),
        ) {
            (Some(limit), Some(d)) if d > 0.0 => format!("> {:.0}× (wall)", limit / d),
            _ => "—".into(),
        },
    }
}

/// Markdown table: one row per shape and step, one column per peer, ratios against nftables
/// (and against Switchyard once it is measured).
pub fn programming_markdown(report: &ProgrammingReport) -> String {
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for m in &report.measurements {
        if !shapes.contains(&(m.services, m.endpoints_per_service)) {
            shapes.push((m.services, m.endpoints_per_service));
        }
    }
    let find = |shape: (usize, usize), peer: Peer, step: Step| {
        report.measurements.iter().find(|m| {
            (m.services, m.endpoints_per_service) == shape && m.peer == peer && m.step == step
        })
    };
    let switchyard_measured = report
        .measurements
        .iter()
        .any(|m| m.peer == Peer::Switchyard && m.median_seconds.is_some());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Seconds, median wall clock (CPU time of the tool in parentheses); `> N` = killed at the \
         per-run limit; `start not reached` = the starting state for the step could not be built \
         (untimed) within the catch-up budget; `not tried` = not run because the peer's full sync \
         already exceeded the limit on a cluster this one dominates (no fewer Services, no fewer \
         endpoints), or the run's programming budget was used up. Ratios use CPU time; `(wall)` ratios compare the \
         limit with a measured wall time, so they are lower bounds.\n"
    );
    let _ = write!(
        out,
        "| Services × endpoints | step | iptables-nft | iptables-legacy | nftables | switchyard | iptables-nft / nftables | iptables-legacy / nftables |"
    );
    if switchyard_measured {
        let _ = write!(out, " nftables / switchyard |");
    }
    out.push('\n');
    let _ = write!(out, "|---|---|---|---|---|---|---|---|");
    if switchyard_measured {
        out.push_str("---|");
    }
    out.push('\n');
    for shape in shapes {
        for step in [Step::Full, Step::ChangeFullRewrite, Step::ChangePartial, Step::FullResync] {
            let cells: Vec<Option<&Measurement>> =
                Peer::ALL.iter().map(|&peer| find(shape, peer, step)).collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let nft = find(shape, Peer::Nftables, step);
            // nftables has no "full rewrite" of its own: compare with what it does for a change.
            let nft_reference = nft.or_else(|| {
                (step == Step::ChangeFullRewrite)
                    .then(|| find(shape, Peer::Nftables, Step::ChangePartial))
                    .flatten()
            });
            let _ = write!(
                out,
                "| {} × {} | {:?} | {} | {} | {} | {} | {} | {} |",
                shape.0,
                shape.1,
                step,
                cell(cells[0]),
                cell(cells[1]),
                cell(cells[2]),
                cell(cells[3]),
                ratio(cells[0], nft_reference),
                ratio(cells[1], nft_reference),
            );
            if switchyard_measured {
                let _ = write!(out, " {} |", ratio(nft, cells[3]));
            }
            out.push('\n');
        }
    }
    out
}

/// Everything one latency run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub machine: Machine,
    pub quick: bool,
    pub connections_per_point: usize,
    /// Visits of every size per peer (see [`crate::latency::LatencyPlan::rounds`]).
    pub rounds: usize,
    /// Clients and echo server under `SCHED_FIFO` ([`crate::latency::LatencyPlan::realtime`]).
    #[serde(default)]
    pub realtime: bool,
    pub points: Vec<crate::latency::LatencyPoint>,
}

/// Markdown: one table per path, p50/p99 per peer and size, with each peer's p50 as a ratio of
/// Switchyard's on the same path (same run).
pub fn latency_markdown(report: &LatencyReport) -> String {
    use crate::latency::{LatencyPath, LatencyPoint};
    let mut sizes: Vec<usize> = report.points.iter().map(|p| p.services).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let cell = |p: Option<&LatencyPoint>| match p {
        Some(LatencyPoint { p50_us: Some(p50), p99_us: Some(p99), .. }) => {
            format!("{p50:.0} / {p99:.0}")
        }
        Some(LatencyPoint { error: Some(error), .. }) if error.contains("not available") => {
            "n/a".into()
        }
        Some(LatencyPoint { error: Some(_), .. }) => "failed".into(),
        _ => "—".into(),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    let peers = [Peer::IptablesNft, Peer::IptablesLegacy, Peer::Nftables];
    let mut out = format!(
        "Microseconds, p50 / p99 over all connections at each size ({} per point, in {} \
         round(s) over all sizes). Ratios: the peer's p50 over Switchyard's p50 on the same \
         path, in the same run.{} Load average when written: {}.\n",
        report.connections_per_point,
        report.rounds,
        if report.realtime {
            " Clients and echo server under SCHED_FIFO (--realtime)."
        } else {
            ""
        },
        report.machine.load_average
    );
    for path in LatencyPath::ALL {
        let find = |peer: Peer, services: usize| {
            report
                .points
                .iter()
                .find(|p| p.peer == peer && p.path == path && p.services == services)
        };
        if !report.points.iter().any(|p| p.path == path) {
            continue;
        }
        let _ = write!(
            out,
            "\n**{}**\n\n| Services | iptables-nft | iptables-legacy | nftables | {} |",
            path.label(),
            path.switchyard_label()
        );
        for peer in peers {
            let _ = write!(out, " {} / switchyard p50 |", peer.label());
        }
        out.push_str("\n|---|---|---|---|---|---|---|---|\n");
        for &services in &sizes {
            let sy = find(Peer::Switchyard, services).and_then(|p| p.p50_us);
            let _ = write!(
                out,
                "| {services} | {} | {} | {} | {} |",
                cell(find(Peer::IptablesNft, services)),
                cell(find(Peer::IptablesLegacy, services)),
                cell(find(Peer::Nftables, services)),
                cell(find(Peer::Switchyard, services)),
            );
            for peer in peers {
                let _ =
                    write!(out, " {} |", ratio(find(peer, services).and_then(|p| p.p50_us), sy));
            }
            out.push('\n');
        }
        // What the p99 column is made of: retransmissions are the network's, not the data
        // plane's, so they are counted beside it.
        out.push_str("\nRetransmitted TCP segments (client's and server's namespaces) per size:");
        for peer in [Peer::Switchyard, Peer::IptablesNft, Peer::IptablesLegacy, Peer::Nftables] {
            let counts: Vec<String> = sizes
                .iter()
                .filter_map(|&n| find(peer, n))
                .map(|p| p.retransmitted_segments.map_or_else(|| "?".into(), |r| r.to_string()))
                .collect();
            if !counts.is_empty() {
                let _ = write!(out, " {} {};", peer.label(), counts.join("/"));
            }
        }
        out.push('\n');
        let (Some(&smallest), Some(&largest)) = (sizes.first(), sizes.last()) else { continue };
        if smallest != largest {
            let point = |n| find(Peer::Switchyard, n);
            if let (Some(small), Some(large)) = (point(smallest), point(largest))
                && let Some(ratio) = crate::latency::P99Ratio::of(large, small)
            {
                let verdict = match ratio.within(0.05) {
                    Some(true) => "within 5 %",
                    Some(false) => "not within 5 %",
                    None => "the rounds cannot tell whether within 5 %: more rounds or connections",
                };
                let _ = writeln!(
                    out,
                    "\nSwitchyard's p99 at {largest} Services over its p99 at {smallest}: {:.3}× \
                     pooled; round by round (each round's two visits, minutes apart at most) \
                     median {:.3}×, 95 % interval {:.3}–{:.3}× over {} rounds: {verdict}.",
                    ratio.pooled, ratio.round_median, ratio.low, ratio.high, ratio.rounds
                );
            }
        }
    }
    out
}

/// Everything one connection-rate run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    pub machine: Machine,
    pub clients: usize,
    pub seconds_per_point: f64,
    pub rounds: usize,
    /// Every point of every round, in the order measured.
    pub points: Vec<crate::connection_rate::RatePoint>,
}

/// One peer at one size over the rounds: medians, and Switchyard's rate over the peer's round
/// by round.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSummary {
    pub peer: Peer,
    pub services: usize,
    pub rounds: usize,
    pub failed: u64,
    pub slow: u64,
    pub retransmitted: u64,
    pub median_per_second: Option<f64>,
    pub median_per_cpu_second: Option<f64>,
    /// Switchyard / peer per round (rounds where both got through): median and its
    /// distribution-free 95 % interval, per wall-clock second and per CPU second.
    pub ratio: Option<RoundRatio>,
    pub ratio_per_cpu: Option<RoundRatio>,
}

pub use crate::latency::RoundRatio;

/// The points of a run summarised per peer and size, in the order first measured.
pub fn rate_summaries(points: &[crate::connection_rate::RatePoint]) -> Vec<RateSummary> {
    use crate::connection_rate::RatePoint;
    let mut keys: Vec<(Peer, usize)> = Vec::new();
    for p in points {
        if !keys.contains(&(p.peer, p.services)) {
            keys.push((p.peer, p.services));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        crate::latency::percentile(&v, 0.5)
    };
    let paired = |peer: Peer, services: usize, pick: fn(&RatePoint) -> Option<f64>| {
        let ratios: Vec<f64> = points
            .iter()
            .filter(|p| p.peer == peer && p.services == services)
            .filter_map(|p| {
                let ours = points.iter().find(|s| {
                    s.peer == Peer::Switchyard && s.services == services && s.round == p.round
                })?;
                Some(pick(ours)? / pick(p).filter(|&r| r > 0.0)?)
            })
            .collect();
        RoundRatio::of(ratios)
    };
    keys.into_iter()
        .map(|(peer, services)| {
            let mine: Vec<&RatePoint> =
                points.iter().filter(|p| p.peer == peer && p.services == services).collect();
            RateSummary {
                peer,
                services,
                rounds: mine.len(),
                failed: mine.iter().map(|p| p.failures).sum(),
                slow: mine.iter().map(|p| p.slow).sum(),
                retransmitted: mine.iter().filter_map(|p| p.retransmitted_segments).sum(),
                median_per_second: median(mine.iter().filter_map(|p| p.per_second).collect()),
                median_per_cpu_second: median(
                    mine.iter().filter_map(|p| p.per_cpu_second).collect(),
                ),
                ratio: paired(peer, services, |p| p.per_second),
                ratio_per_cpu: paired(peer, services, |p| p.per_cpu_second),
            }
        })
        .collect()
}

/// Markdown: new connections per second per peer and size (medians over the rounds), with
/// Switchyard's rate as a ratio of each peer's, taken round by round (same run).
pub fn connection_markdown(report: &ConnectionReport) -> String {
    let mut out = format!(
        "New connections per second through node 1's NodePort (DNAT + SNAT to a pod on node 2), \
         {} client threads for {:.0} s per point, {} round(s): every peer once per round, the \
         ratios taken round by round (median, and in brackets the distribution-free 95 % \
         interval of the median). Clients, forwarder and echo server share the machine's CPUs, \
         so only same-run ratios mean anything; per CPU second divides by the CPU time the \
         clients, the echo server and the forwarding they cause took. Load average when \
         written: {}.\n\n\
         | peer | Services | connections/s (median) | per CPU second (median) | failed | slower than 200 ms | retransmitted segments | switchyard / peer | per CPU second: switchyard / peer |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        report.clients, report.seconds_per_point, report.rounds, report.machine.load_average
    );
    let number = |v: Option<f64>| v.map_or_else(|| "failed".into(), |r| format!("{r:.0}"));
    let ratio = |r: Option<RoundRatio>| {
        r.map_or_else(|| "—".into(), |r| format!("{:.2}× ({:.2}–{:.2})", r.median, r.low, r.high))
    };
    for s in rate_summaries(&report.points) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.peer.label(),
            s.services,
            number(s.median_per_second),
            number(s.median_per_cpu_second),
            s.failed,
            s.slow,
            s.retransmitted,
            ratio(s.ratio),
            ratio(s.ratio_per_cpu),
        );
    }
    out
}

/// Everything one throughput run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    pub machine: Machine,
    pub quick: bool,
    pub services: usize,
    pub rounds: usize,
    pub seconds_per_sample: f64,
    pub summary: Vec<crate::throughput::ThroughputSummary>,
    pub points: Vec<crate::throughput::ThroughputPoint>,
}

/// Markdown: medians per forwarder with ratios against the kernel's own forwarding and
/// nftables (same run), then every sample.
pub fn throughput_markdown(report: &ThroughputReport) -> String {
    use crate::throughput::Forwarder;
    let median = |f: Forwarder| {
        report.summary.iter().find(|s| s.forwarder == f).and_then(|s| s.median_received_per_second)
    };
    let median_cpu = |f: Forwarder| {
        report.summary.iter().find(|s| s.forwarder == f).and_then(|s| s.median_per_cpu_second)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    let kernel = median(Forwarder::KernelForwarding);
    let kernel_cpu = median_cpu(Forwarder::KernelForwarding);
    let nft = median(Forwarder::Nftables);
    let mut out = format!(
        "{} Services loaded; {} round(s), each in a fresh lab, of {:.0} s per forwarder. Packets/s \
         received by the pod; per CPU second = received / (sender + receiver thread CPU time), \
         which discounts time the threads spent waiting for a CPU on a shared machine. Medians over \
         rounds (min–max of packets/s in brackets); ratios against the kernel's own forwarding of \
         the same traffic without NAT and against nftables, both from this run. Load average when \
         written: {}.\n\n\
         | forwarder | samples | packets/s received | per CPU second | pps / kernel forwarding | per CPU s / kernel forwarding | pps / nftables |\n\
         |---|---|---|---|---|---|---|\n",
        report.services, report.rounds, report.seconds_per_sample, report.machine.load_average
    );
    for s in &report.summary {
        let Some(pps) = s.median_received_per_second else {
            let _ = writeln!(out, "| {} | 0 | failed | | | | |", s.forwarder.label());
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.0} | {} | {} | {} |",
            s.forwarder.label(),
            s.samples,
            pps,
            s.min_received_per_second.unwrap_or(pps),
            s.max_received_per_second.unwrap_or(pps),
            s.median_per_cpu_second.unwrap_or(0.0),
            ratio(Some(pps), kernel),
            ratio(s.median_per_cpu_second, kernel_cpu),
            ratio(Some(pps), nft),
        );
    }
    out.push_str(
        "\nSamples:\n\n| round | forwarder | packets/s | sent | received | node 1 forwarded | sender CPU s | receiver CPU s | load 1 min |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &report.points {
        if let Some(error) = &p.error {
            let _ =
                writeln!(out, "| {} | {} | {error} | | | | | | |", p.round, p.forwarder.label());
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.1} |",
            p.round,
            p.forwarder.label(),
            p.received_per_second,
            p.sent,
            p.received,
            p.node1_forwarded,
            p.sender_cpu_seconds,
            p.receiver_cpu_seconds,
            p.load_1m
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests: a failure should panic")]
mod tests {
    use super::{Peer, rate_summaries, seconds};
    use crate::connection_rate::RatePoint;

    fn rate(peer: Peer, round: usize, per_second: Option<f64>, cpu_seconds: f64) -> RatePoint {
        let connections = per_second.map_or(0, |r| r as u64);
        RatePoint {
            peer,
            services: 10,
            round,
            connections,
            failures: u64::from(per_second.is_none()),
            slow: 1,
            seconds: 1.0,
            per_second,
            cpu_seconds: Some(cpu_seconds),
            per_cpu_second: per_second.map(|r| r / cpu_seconds),
            retransmitted_segments: Some(2),
            switchyard_counters: Vec::new(),
            error: per_second.is_none().then(|| "no connection got through".into()),
        }
    }

    #[test]
    fn connection_ratios_are_taken_round_by_round() {
        // nftables gets the busy second in round 0 and the quiet one in round 1: per round
        // Switchyard is 2× and 1.5×; pooled medians would say 1.2×.
        let points = vec![
            rate(Peer::Switchyard, 0, Some(6000.0), 1.0),
            rate(Peer::Nftables, 0, Some(3000.0), 0.5),
            rate(Peer::Switchyard, 1, Some(7500.0), 1.25),
            rate(Peer::Nftables, 1, Some(5000.0), 1.0),
            rate(Peer::Switchyard, 2, Some(6600.0), 1.1),
            rate(Peer::Nftables, 2, None, 1.0),
        ];
        let summaries = rate_summaries(&points);
        assert_eq!(summaries.len(), 2);
        let nft = &summaries[1];
        assert_eq!(
            (nft.peer, nft.rounds, nft.failed, nft.slow, nft.retransmitted),
            (Peer::Nftables, 3, 1, 3, 6)
        );
        // Nearest rank: the lower of two.
        assert_eq!(nft.median_per_second, Some(3000.0));
        let ratio = nft.ratio.unwrap();
        // Two rounds got through on both sides: 2.0 and 1.5; nearest-rank median 1.5.
        assert_eq!((ratio.median, ratio.low, ratio.high), (1.5, 1.5, 2.0));
        // Per CPU second: 6000 / 6000 and 6000 / 5000.
        let per_cpu = nft.ratio_per_cpu.unwrap();
        assert_eq!((per_cpu.median, per_cpu.high), (1.0, 1.2));
        let ours = &summaries[0];
        assert_eq!(ours.ratio.unwrap().median, 1.0);
        assert_eq!(ours.median_per_cpu_second, Some(6000.0));
    }

    #[test]
    fn seconds_keep_two_significant_digits_below_ten_milliseconds() {
        let cases = [
            (12.3456, "12.346"),
            (0.0123, "0.012"),
            (0.00456, "0.0046"),
            (0.0000347, "0.000035"),
            (0.0, "0.000"),
        ];
        for (value, expected) in cases {
            assert_eq!(seconds(value), expected, "{value}");
        }
    }
}
