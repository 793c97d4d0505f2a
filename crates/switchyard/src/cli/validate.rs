//! `switchyard validate DIR`: every problem in a manifest directory, each pointing at its file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use switchyard_k8s::manifest::{
    FieldLines, Location, ManifestDirectory, ManifestError, ManifestWarning,
};
use switchyard_model::validate::{Finding, Severity, ValidationOptions, validate};
use switchyard_model::{ClusterState, PortRange};

use super::output::OutputArgs;

/// Check a directory of manifests: syntax, duplicates, and what the API server would reject.
///
/// Exits 0 when there are no errors (warnings are printed but allowed), 1 otherwise.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Directory of *.yaml / *.yml / *.json manifests (read recursively), or a single file.
    dir: PathBuf,

    /// The cluster's NodePort range (kube-apiserver --service-node-port-range).
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    node_port_range: PortRange,

    /// Fail on warnings too (unknown fields, a Service without EndpointSlices, a slice naming a
    /// missing Service).
    #[arg(long)]
    strict: bool,

    #[command(flatten)]
    output: OutputArgs,
}

/// Every problem found in a directory (the `-o json` document).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// In the order a compiler would print them: by file and line.
    pub(crate) problems: Vec<Problem>,
    pub(crate) errors: usize,
    pub(crate) warnings: usize,
}

/// One problem: `error`, `warning` or `ignored` (a document of a kind we do not read).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Problem {
    pub(crate) severity: &'static str,
    /// `FILE:LINE: what` (the location when one is known).
    pub(crate) message: String,
}

impl Problem {
    /// `severity: message`, as printed.
    fn line(&self) -> String {
        format!("{}: {}", self.severity, self.message)
    }
}

/// The document `validate -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidateDoc<'a> {
    dir: &'a std::path::Path,
    valid: bool,
    #[serde(flatten)]
    report: &'a Report,
    summary: String,
}

/// Where a line points, for sorting: problems without a file first, then by file and line, so
/// the output reads like a compiler's.
type SortKey = Option<(PathBuf, usize)>;

/// Reads and checks `directory`'s objects. Semantic findings are prefixed with the location of
/// the object they are about (the field's line when it can be found), so every line points at a
/// file.
pub(crate) fn check(
    directory: &ManifestDirectory,
    state: &ClusterState,
    options: &ValidationOptions,
) -> Report {
    let mut problems: Vec<(SortKey, Problem)> = Vec::new();
    for error in directory.errors() {
        let key = match error {
            ManifestError::Directory { .. } => None,
            ManifestError::Unreadable { file, .. } => Some((file.clone(), 0)),
            ManifestError::Syntax { location, .. }
            | ManifestError::Invalid { location, .. }
            | ManifestError::Refused { location, .. } => {
                Some((location.file.to_path_buf(), location.line))
            }
            ManifestError::Duplicate { second, .. } => {
                Some((second.file.to_path_buf(), second.line))
            }
        };
        problems.push((key, Problem { severity: "error", message: error.to_string() }));
    }
    for warning in directory.warnings() {
        let ManifestWarning::UnknownField { location, .. } = warning;
        let key = Some((location.file.to_path_buf(), location.line));
        problems.push((key, Problem { severity: "warning", message: warning.to_string() }));
    }
    let findings = validate(state, options);
    let mut lines = FieldLines::default();
    for finding in &findings {
        problems.push(format_finding(directory, &mut lines, finding));
    }
    // Stable: equal keys keep the order above (errors before warnings, rule order).
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    let mut problems: Vec<Problem> = problems.into_iter().map(|(_, problem)| problem).collect();
    for ignored in directory.ignored() {
        problems.push(Problem { severity: "ignored", message: ignored.to_string() });
    }
    let semantic_errors = findings.iter().filter(|f| f.is_error()).count();
    Report {
        problems,
        errors: directory.errors().len() + semantic_errors,
        warnings: directory.warnings().len() + findings.len() - semantic_errors,
    }
}

fn format_finding(
    directory: &ManifestDirectory,
    lines: &mut FieldLines,
    finding: &Finding,
) -> (SortKey, Problem) {
    let severity = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    match directory.location_of(&(finding.kind, finding.object.clone())) {
        Some(location) => {
            // Point at the field itself when the file lets us find it.
            let line = lines.line_of(location, &finding.field).unwrap_or(location.line);
            let location = Location { line, ..location.clone() };
            let key = Some((location.file.to_path_buf(), location.line));
            (key, Problem { severity, message: format!("{location}: {finding}") })
        }
        None => (None, Problem { severity, message: finding.to_string() }),
    }
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = ValidationOptions { node_port_range: args.node_port_range };
    let directory = ManifestDirectory::load_with(&args.dir, options);
    let state = directory.state();
    let report = check(&directory, &state, &options);
    let summary = summary(&args, &directory, &state, &report);
    let doc = ValidateDoc { dir: &args.dir, valid: report.errors == 0, report: &report, summary };
    args.output.print(&doc, |_| {
        let mut out: String = report.problems.iter().map(|problem| problem.line() + "\n").collect();
        out += &doc.summary;
        out + "\n"
    })?;
    let failed = report.errors > 0 || (args.strict && report.warnings > 0);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn summary(
    args: &ValidateArgs,
    directory: &ManifestDirectory,
    state: &ClusterState,
    report: &Report,
) -> String {
    let verdict = if report.errors > 0 { "INVALID" } else { "valid" };
    let mut text = format!(
        "{}: {verdict}: {} error{}, {} warning{}; {} file{}, {} Service{}, {} EndpointSlice{}, {} Node{}",
        args.dir.display(),
        report.errors,
        plural(report.errors),
        report.warnings,
        plural(report.warnings),
        directory.file_count(),
        plural(directory.file_count()),
        state.services.len(),
        plural(state.services.len()),
        state.endpoint_slices.len(),
        plural(state.endpoint_slices.len()),
        state.nodes.len(),
        plural(state.nodes.len()),
    );
    for (count, kind) in [
        (state.ip_pools.len(), "IPPool"),
        (state.bgp_peers.len(), "BGPPeer"),
        (state.bgp_advertisements.len(), "BGPAdvertisement"),
        (state.l2_advertisements.len(), "L2Advertisement"),
        (state.namespaces.len(), "Namespace"),
    ] {
        if count > 0 {
            let _ = write!(text, ", {count} {kind}{}", plural(count));
        }
    }
    if !directory.ignored().is_empty() {
        let count = directory.ignored().len();
        let _ = write!(text, "; {count} document{} of other kinds ignored", plural(count));
    }
    text
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}
