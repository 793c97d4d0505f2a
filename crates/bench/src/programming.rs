//! Item 1: programming time. Desired state → programmed data plane, for each peer, in a fresh
//! network namespace per repetition; then one endpoint change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::kube_proxy::{iptables, nftables};
use crate::netns::{Netns, Run};
use crate::state::{DesiredState, NodeConfig};
use crate::switchyard;
use crate::synthetic::{self, Shape};

/// A data plane whose programming time is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// kube-proxy iptables mode with the nf_tables backend of iptables (Debian's default, and
    /// what kube-proxy's image picks on such hosts).
    IptablesNft,
    /// kube-proxy iptables mode with the legacy x_tables backend.
    IptablesLegacy,
    /// kube-proxy nftables mode (KEP-3866).
    Nftables,
    /// Switchyard's reconciler.
    Switchyard,
}

impl Peer {
    pub const ALL: [Peer; 4] =
        [Peer::IptablesNft, Peer::IptablesLegacy, Peer::Nftables, Peer::Switchyard];

    pub fn label(self) -> &'static str {
        match self {
            Self::IptablesNft => "iptables-nft",
            Self::IptablesLegacy => "iptables-legacy",
            Self::Nftables => "nftables",
            Self::Switchyard => "switchyard",
        }
    }

    fn restore_program(self) -> &'static str {
        match self {
            Self::IptablesLegacy => "iptables-legacy-restore",
            _ => "iptables-nft-restore",
        }
    }
}

/// What one timed step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Empty node → whole desired state (kube-proxy's first sync).
    Full,
    /// One endpoint replaced, by rewriting everything (iptables full sync; before KEP-3453 every
    /// sync was one).
    ChangeFullRewrite,
    /// One endpoint replaced, writing only what kube-proxy's partial sync writes (iptables since
    /// KEP-3453; nftables always).
    ChangePartial,
    /// Whole desired state written again over an up-to-date node (nftables' periodic full sync).
    FullResync,
}

/// One measured step: its samples in seconds and the size of the input handed to the tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub peer: Peer,
    pub services: usize,
    pub endpoints_per_service: usize,
    pub step: Step,
    /// Wall-clock time of each repetition, from spawning the tool to its exit.
    pub samples_seconds: Vec<f64>,
    /// CPU time (user + system) of the tool in each repetition.
    pub cpu_samples_seconds: Vec<f64>,
    pub median_seconds: Option<f64>,
    pub median_cpu_seconds: Option<f64>,
    /// Set when a run was killed at the per-run limit: the step takes longer than this.
    pub exceeded_seconds: Option<f64>,
    pub input_lines: usize,
    pub input_bytes: usize,
    /// Why the step has no samples (a tool failed, or the peer does not exist yet).
    pub error: Option<String>,
}

/// Bounds that keep a benchmark run within its time budget.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A timed run taking longer is killed and recorded as exceeding this.
    pub per_run: Duration,
    pub repetitions: usize,
}

fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// Samples of one step across repetitions.
#[derive(Debug)]
pub struct StepRecord {
    pub step: Step,
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
    pub exceeded: Option<Duration>,
    pub input_lines: usize,
    pub input_bytes: usize,
    pub error: Option<String>,
}

impl StepRecord {
    pub fn new(step: Step, input: &str) -> Self {
        Self {
            step,
            wall: Vec::new(),
            cpu: Vec::new(),
            exceeded: None,
            input_lines: input.lines().count(),
            input_bytes: input.len(),
            error: None,
        }
    }

    /// Records how a timed run went. Returns whether the node is now in the state the run was
    /// meant to bring it to.
    fn record(&mut self, result: Result<Run, BenchError>) -> bool {
        match result {
            Ok(run) => {
                self.wall.push(run.elapsed.as_secs_f64());
                self.cpu.push(run.cpu.as_secs_f64());
                true
            }
            Err(BenchError::TimedOut { limit, .. }) => {
                self.exceeded = Some(limit);
                false
            }
            Err(error) => {
                self.error = Some(error.to_string());
                false
            }
        }
    }

    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Measures every peer on one cluster shape.
pub fn measure_shape(
    peers: &[Peer],
    shape: Shape,
    limits: Limits,
    log: &mut dyn FnMut(&str),
) -> Vec<Measurement> {
    let config = NodeConfig::default();
    let before = synthetic::cluster(shape);
    let after = synthetic::replace_one_endpoint(&before);
    let mut out = Vec::new();
    for &peer in peers {
        let records = match peer {
            Peer::IptablesNft | Peer::IptablesLegacy => {
                measure_iptables(peer, &config, &before, &after, limits)
            }
            Peer::Nftables => measure_nftables(&config, &before, &after, limits),
            Peer::Switchyard => switchyard::measure_programming(&before, &after, limits)
                .unwrap_or_else(|| {
                    let mut record = StepRecord::new(Step::Full, "");
                    record.error = Some("Switchyard reconciler not available yet".into());
                    vec![record]
                }),
        };
        for record in records {
            let measurement = Measurement {
                peer,
                services: shape.services,
                endpoints_per_service: shape.endpoints_per_service,
                step: record.step,
                median_seconds: median(&record.wall),
                median_cpu_seconds: median(&record.cpu),
                samples_seconds: record.wall,
                cpu_samples_seconds: record.cpu,
                exceeded_seconds: record.exceeded.map(|d| d.as_secs_f64()),
                input_lines: record.input_lines,
                input_bytes: record.input_bytes,
                error: record.error,
            };
            log(&describe(&measurement));
            out.push(measurement);
        }
    }
    out
}

/// The record of a peer's full sync that was not run (see the reason).
pub fn not_tried(peer: Peer, shape: Shape, reason: &str) -> Measurement {
    Measurement {
        peer,
        services: shape.services,
        endpoints_per_service: shape.endpoints_per_service,
        step: Step::Full,
        samples_seconds: Vec::new(),
        cpu_samples_seconds: Vec::new(),
        median_seconds: None,
        median_cpu_seconds: None,
        exceeded_seconds: None,
        input_lines: 0,
        input_bytes: 0,
        error: Some(reason.to_owned()),
    }
}

fn describe(m: &Measurement) -> String {
    let result = match (m.median_seconds, m.median_cpu_seconds, m.exceeded_seconds, &m.error) {
        (Some(wall), Some(cpu), _, _) => {
            format!("{wall:.3} s wall, {cpu:.3} s CPU (median of {})", m.samples_seconds.len())
        }
        (_, _, Some(limit), _) => format!("> {limit:.0} s (killed at the limit)"),
        (_, _, _, Some(error)) => format!("no result: {error}"),
        _ => "no result".into(),
    };
    format!(
        "{:>6} × {:<3} {:<16} {:<20} {result}  [{} lines]",
        m.services,
        m.endpoints_per_service,
        m.peer.label(),
        format!("{:?}", m.step),
        m.input_lines
    )
}

/// Untimed: brings a namespace to a state some other way when a timed run could not, so the
/// later steps still start from the state they expect.
fn catch_up(netns: &Netns, program: &str, args: &[&str], input: &str) -> Result<(), BenchError> {
    netns.run(program, args, input.as_bytes(), CATCH_UP_LIMIT).map(|_| ())
}

/// How long an untimed catch-up may take before the peer's remaining steps at this size are
/// given up (recorded as errors), so one slow peer cannot blow the whole run's time budget.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(90);

/// Services per transaction when nftables state is built untimed (see
/// [`nftables::render_in_chunks`]).
pub const NFT_CHUNK: usize = 1000;

/// Untimed: replaces the filter and nat tables with `ruleset` (a restore without --noflush, far
/// faster with iptables-nft), then puts the jump rules back (`jumps` must not declare chains).
fn replace_tables(
    netns: &Netns,
    program: &str,
    ruleset: &str,
    jumps: &str,
) -> Result<(), BenchError> {
    catch_up(netns, program, &["-w", "5"], ruleset)?;
    catch_up(netns, program, &["-w", "5", "--noflush"], jumps)
}

fn measure_iptables(
    peer: Peer,
    config: &NodeConfig,
    before: &DesiredState,
    after: &DesiredState,
    limits: Limits,
) -> Vec<StepRecord> {
    let full = iptables::render(config, before, iptables::Sync::Full { previous: None });
    let partial = iptables::render(config, after, iptables::Sync::Partial { previous: before });
    // The full rewrite goes back from `after` to `before`: the same size of change.
    let rewrite = iptables::render(config, before, iptables::Sync::Full { previous: Some(after) });
    let jumps = iptables::render_jump_rules(true);
    let jumps_only = iptables::render_jump_rules(false);
    let program = peer.restore_program();
    let mut full_record = StepRecord::new(Step::Full, &full);
    let mut partial_record = StepRecord::new(Step::ChangePartial, &partial);
    let mut rewrite_record = StepRecord::new(Step::ChangeFullRewrite, &rewrite);

    for _ in 0..limits.repetitions {
        let netns = match Netns::create("sybench-ipt") {
            Ok(netns) => netns,
            Err(error) => {
                full_record.error = Some(error.to_string());
                break;
            }
        };
        // kube-proxy installs its jump rules once at startup; not part of a sync.
        if let Err(error) = catch_up(&netns, program, &["-w", "5", "--noflush"], &jumps) {
            full_record.error = Some(error.to_string());
            break;
        }
        let timed = |input: &str| {
            netns.run(program, iptables::RESTORE_ARGS, input.as_bytes(), limits.per_run)
        };

        if !full_record.record(timed(&full)) {
            if full_record.failed() {
                break;
            }
            // Without --noflush a restore replaces whole tables, which iptables-nft does far
            // faster; used only to reach the state the timed run could not reach in time.
            if let Err(error) = replace_tables(&netns, program, &full, &jumps_only) {
                partial_record.error =
                    Some(format!("reaching the starting state untimed: {error}"));
                break;
            }
        }
        if !partial_record.record(timed(&partial)) {
            if partial_record.failed() {
                break;
            }
            let whole = iptables::render(config, after, iptables::Sync::Full { previous: None });
            if let Err(error) = replace_tables(&netns, program, &whole, &jumps_only) {
                rewrite_record.error = Some(format!("reaching the next state untimed: {error}"));
                break;
            }
        }
        // A full rewrite costs at least what the first full sync cost: not tried when that
        // already exceeded the limit.
        if full_record.exceeded.is_some() {
            rewrite_record.exceeded = full_record.exceeded;
        } else if !rewrite_record.record(timed(&rewrite)) && rewrite_record.failed() {
            break;
        }
    }
    // Also when the repetitions stopped early: a rewrite is never cheaper than the full sync.
    if full_record.exceeded.is_some() && rewrite_record.wall.is_empty() {
        rewrite_record.exceeded = full_record.exceeded;
    }
    vec![full_record, rewrite_record, partial_record]
}

fn measure_nftables(
    config: &NodeConfig,
    before: &DesiredState,
    after: &DesiredState,
    limits: Limits,
) -> Vec<StepRecord> {
    let full = nftables::render(config, before, None);
    let partial = nftables::render(config, after, Some(before));
    let delete_stale = nftables::render_stale_chain_deletion(after, before);
    let resync = nftables::render(config, after, None);
    let mut full_record = StepRecord::new(Step::Full, &full);
    let mut partial_record = StepRecord::new(Step::ChangePartial, &partial);
    let mut resync_record = StepRecord::new(Step::FullResync, &resync);
    let nft_args = ["-f", "-"];

    for _ in 0..limits.repetitions {
        let netns = match Netns::create("sybench-nft") {
            Ok(netns) => netns,
            Err(error) => {
                full_record.error = Some(error.to_string());
                break;
            }
        };
        let timed = |input: &str| netns.run("nft", &nft_args, input.as_bytes(), limits.per_run);
        if !full_record.record(timed(&full)) {
            if full_record.failed() {
                break;
            }
            let chunks = nftables::render_in_chunks(config, before, NFT_CHUNK);
            let started = std::time::Instant::now();
            let built = chunks.iter().try_for_each(|tx| {
                // The budget holds for all the pieces together.
                let left = CATCH_UP_LIMIT.saturating_sub(started.elapsed());
                netns.run("nft", &nft_args, tx.as_bytes(), left).map(|_| ())
            });
            if let Err(error) = built {
                partial_record.error =
                    Some(format!("reaching the starting state untimed: {error}"));
                break;
            }
        }
        if !partial_record.record(timed(&partial)) {
            if partial_record.failed() {
                break;
            }
            if let Err(error) = catch_up(&netns, "nft", &nft_args, &partial) {
                partial_record.error = Some(format!("reaching the next state untimed: {error}"));
                break;
            }
        }
        // kube-proxy deletes flushed chains in a later sync; untimed here.
        if let Err(error) = catch_up(&netns, "nft", &nft_args, &delete_stale) {
            partial_record.error = Some(error.to_string());
            break;
        }
        // A full resync writes at least what the first full sync wrote: not tried when that
        // already exceeded the limit.
        if full_record.exceeded.is_some() {
            resync_record.exceeded = full_record.exceeded;
        } else if !resync_record.record(timed(&resync)) && resync_record.failed() {
            break;
        }
    }
    // Also when the repetitions stopped early: a resync is never cheaper than the full sync.
    if full_record.exceeded.is_some() && resync_record.wall.is_empty() {
        resync_record.exceeded = full_record.exceeded;
    }
    vec![full_record, partial_record, resync_record]
}
