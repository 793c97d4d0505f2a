//! `switchyard doctor`: will Switchyard work on this node, and is its agent healthy?
//!
//! [`probe`] gathers [`Facts`] about the kernel and the node; it is the only module that touches
//! the system. [`decide`] turns facts into [`Finding`]s — ok, warn or fail, each with what to do —
//! without any I/O, so every verdict is tested with plain values and without root. [`parse`]
//! reads the kernel's and the tools' text formats, also without I/O.

pub mod decide;
pub mod facts;
mod netdev;
pub mod parse;
pub mod probe;

use std::path::PathBuf;

use serde::Serialize;
use switchyard_model::PortRange;

pub use facts::Facts;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Switchyard works as far as this check can tell.
    Ok,
    /// Switchyard works, but something is degraded or worth a look.
    Warn,
    /// Switchyard does not work on this node until this is fixed.
    Fail,
}

impl Verdict {
    /// The word printed in the first column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One line of the report: which check, its verdict, what was found and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Short name of the check (`kernel`, `cgroup-v2`, `device eth0`, ...).
    pub check: String,
    pub verdict: Verdict,
    /// What was found, in one sentence.
    pub detail: String,
    /// What to do about it (for warn and fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Finding {
    pub(crate) fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { check: check.into(), verdict: Verdict::Ok, detail: detail.into(), remedy: None }
    }

    pub(crate) fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self::with_remedy(Verdict::Warn, check.into(), detail.into(), remedy.into())
    }

    pub(crate) fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self::with_remedy(Verdict::Fail, check.into(), detail.into(), remedy.into())
    }

    fn with_remedy(verdict: Verdict, check: String, detail: String, remedy: String) -> Self {
        Self { check, verdict, detail, remedy: Some(remedy) }
    }
}

/// What to check: the settings the agent would run with (same names as its flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent's `--bpf-dir`.
    pub bpf_dir: PathBuf,
    /// The agent's `--cgroup`, if known.
    pub cgroup: Option<PathBuf>,
    /// The agent's `--devices` (and the director's).
    pub devices: Vec<String>,
    /// Check that the API server answers, with this kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// The agent's `--node-port-range`.
    pub node_port_range: PortRange,
    /// The agent's `--snat-port-range`; None: the agent's own choice (the widest gap outside
    /// the NodePort range and `net.ipv4.ip_local_port_range`).
    pub snat_port_range: Option<PortRange>,
    /// The UDP port the node decapsulates on (the agent's `--gue-port` when it has
    /// `--director-addresses` or `--nodeport-mode dsr`; None: it decapsulates nothing): kept out
    /// of the SNAT ports.
    pub decap_port: Option<u16>,
    /// The agent's `--api-socket`.
    pub api_socket: PathBuf,
}

/// Every finding of one run, in the order the checks ran.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst verdict of all findings (`Ok` for an empty report).
    pub fn worst(&self) -> Verdict {
        self.findings.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Ok)
    }

    /// How many findings have `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.findings.iter().filter(|f| f.verdict == verdict).count()
    }
}

/// Probes this node and decides every check.
pub fn examine(options: &Options) -> Report {
    let facts = probe::gather(options);
    Report { findings: decide::all(&facts, options) }
}
