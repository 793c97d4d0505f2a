//! Structure-aware fuzzing of manifest reading on stable Rust (issue 18 item 7): the repository's
//! test manifests (valid and broken, YAML and JSON) are mutated as text — bytes flipped, lines
//! dropped, doubled, swapped or re-indented, values replaced by edge cases (`10.96.0.300`, port
//! 70000, `-1`, anchors, tags, deep `[`), documents spliced and truncated — and each input goes
//! through everything a manifest meets on its way to the data plane: parsing and the semantic
//! refusal ([`parse_file`]), validation of what applies, pointing each finding at its line, and
//! the model's desired state of a node (`node-a` of testdata/cluster). A panic is caught and counted, never hidden.
//!
//! cargo-fuzz needs a nightly compiler, which this project does not use; a mutator of our own
//! (as `switchyard_bgp::fuzz`) knows YAML's shape, so few inputs die in the tokenizer. The suite
//! runs a short pass (`tests/fuzz_short.rs`); `cargo run -p switchyard-k8s --example
//! fuzz_manifests -- N` runs N (docs/manifests.md). The seeds are the repository's `testdata/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use switchyard_model::validate::{ValidationOptions, validate};
use switchyard_model::{ClusterState, NodeModel, ProxyConfig};

use super::error::ManifestError;
use super::locate::locate_in_text;
use super::parse::{Format, Outcome, parse_file};

/// What a fuzz run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs tried.
    pub inputs: u64,
    /// Seed files the mutations started from.
    pub seeds: usize,
    /// Documents (or `kind: List` items) the inputs held.
    pub documents: u64,
    /// Objects that applied.
    pub objects: u64,
    /// Documents that did not parse or could not be turned into their kind.
    pub broken: u64,
    /// Objects refused by the semantic checks (errors of their own).
    pub refused: u64,
    /// Findings of `validate` on what applied.
    pub findings: u64,
    /// Inputs that panicked somewhere on the way.
    pub panics: u64,
    /// The first panicking inputs (at most 5).
    pub panic_inputs: Vec<String>,
}

/// A small xorshift generator: reproducible runs from a seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One seed: a file name (its extension picks the parser) and its text.
pub(crate) type Seed = (String, String);

/// Every kind in one file, for when the repository's test data is not at hand.
const BUILT_IN: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, fd00:96::10]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  externalIPs: [192.0.2.10]
  externalTrafficPolicy: Local
  healthCheckNodePort: 30500
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.20}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
  zone: zone-a
ports:
- {name: http, port: 8080, protocol: TCP}
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  podCIDR: 10.244.1.0/24
status:
  addresses:
  - {type: InternalIP, address: 192.168.1.10}
";

/// The repository's test manifests (`testdata/`: every kind, the broken cases, YAML and JSON),
/// read at run time so that building the crate never needs them, plus a built-in seed.
pub(crate) fn corpus() -> Vec<Seed> {
    let mut seeds = vec![("built-in.yaml".to_owned(), BUILT_IN.to_owned())];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if Format::of(&path).is_some()
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                seeds.push((path.to_string_lossy().into_owned(), text));
            }
        }
    }
    seeds.sort();
    seeds
}

/// Values that sit on an edge of some rule or of YAML itself.
const EDGE_VALUES: &[&str] = &[
    "10.96.0.300",
    "256.1.1.1",
    "fd00::1",
    "::",
    "0.0.0.0",
    "127.0.0.1",
    "169.254.169.254",
    "224.0.0.1",
    "10.0.0.0/33",
    "fd00::/129",
    "0",
    "-1",
    "65535",
    "65536",
    "70000",
    "2147483648",
    "-9223372036854775809",
    "99999999999999999999999",
    "1e400",
    ".nan",
    ".inf",
    "0x7f",
    "0o777",
    "true",
    "null",
    "~",
    "\"\"",
    "''",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{a: {b: {c: d}}}",
    "&anchor value",
    "*anchor",
    "!!binary aGVsbG8=",
    "!custom tag",
    "<<: *anchor",
    "|\n  block\n  text",
    ">-\n  folded",
    "\"\\u0000\\uffff\"",
    "\"\\xff\"",
    "IPv4",
    "IPv6",
    "FQDN",
    "Local",
    "Cluster",
    "ClientIP",
    "LoadBalancer",
    "NodePort",
    "ExternalName",
    "ClusterIP",
    "None",
    "SCTP",
    "http",
    "UPPER_case-name",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
];

/// Lines that change what a document is.
const EDGE_LINES: &[&str] = &[
    "---",
    "...",
    "kind: List",
    "items:",
    "- ",
    "  - ",
    "apiVersion: v1",
    "apiVersion: discovery.k8s.io/v1beta1",
    "kind: Service",
    "kind: EndpointSlice",
    "kind: Node",
    "kind: IPPool",
    "kind: BGPPeer",
    "metadata: {name: x}",
    "metadata:",
    "  name: fuzz",
    "  namespace: \"\"",
    "spec: null",
    "spec: []",
    "%YAML 1.2",
    "? complex key",
    ": value",
    "\t tab: indent",
    "key: [unclosed",
    "key: {unclosed",
    "'unclosed",
    "# comment only",
    "\u{feff}bom: here",
];

/// A mutated input: a seed with one to four mutations, and the format to parse it with.
pub(crate) fn mutate(rng: &mut Rng, corpus: &[Seed]) -> (Format, String) {
    let (name, text) = &corpus[rng.below(corpus.len())];
    let format = Format::of(Path::new(name)).unwrap_or(Format::Yaml);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Mostly one mutation: most inputs should stay close enough to a manifest to reach the
    // semantic checks and the model, not only the tokenizer.
    let rounds = [1, 1, 1, 2, 2, 3, 4][rng.below(7)];
    for _ in 0..rounds {
        let len = lines.len().max(1);
        let at = rng.below(len);
        match rng.below(12) {
            // Replace the value of a `key: value` line (or a list item) by an edge value.
            0..=2 => {
                if let Some(line) = lines.get_mut(at) {
                    let value = EDGE_VALUES[rng.below(EDGE_VALUES.len())];
                    match line.find(": ").or_else(|| line.find("- ")) {
                        Some(i) => line.replace_range(i + 2.., value),
                        None => line.push_str(value),
                    }
                }
            }
            3 => {
                if at < lines.len() {
                    lines.remove(at);
                }
            }
            4 => {
                if let Some(line) = lines.get(at).cloned() {
                    lines.insert(at, line);
                }
            }
            5 => {
                let other = rng.below(len);
                if at < lines.len() && other < lines.len() {
                    lines.swap(at, other);
                }
            }
            6 => {
                if let Some(line) = lines.get_mut(at) {
                    if rng.below(2) == 0 {
                        line.insert_str(0, "  ");
                    } else {
                        *line = line.trim_start().to_owned();
                    }
                }
            }
            7 => lines.insert(at.min(lines.len()), EDGE_LINES[rng.below(EDGE_LINES.len())].into()),
            8 => {
                // Another seed's lines spliced in.
                let (_, other) = &corpus[rng.below(corpus.len())];
                let other: Vec<&str> = other.lines().collect();
                let from = rng.below(other.len());
                let count = 1 + rng.below(8);
                let end = (from + count).min(other.len());
                let at = at.min(lines.len());
                lines.splice(at..at, other[from..end].iter().map(|l| (*l).to_owned()));
            }
            9 => lines.truncate(at),
            10 => {
                // Deep flow nesting: the parser's cost grows with its square.
                if let Some(line) = lines.get_mut(at) {
                    let depth = 1 + rng.below(100);
                    line.push_str(&"[".repeat(depth));
                    if rng.below(2) == 0 {
                        line.push_str(&"]".repeat(depth));
                    }
                }
            }
            _ => {
                // Raw bytes: a flipped bit in one character (kept valid UTF-8).
                if let Some(line) = lines.get_mut(at)
                    && !line.is_empty()
                {
                    let mut bytes = std::mem::take(line).into_bytes();
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(7);
                    *line = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
        }
    }
    let mut text = lines.join("\n");
    if rng.below(4) != 0 {
        text.push('\n');
    }
    (format, text)
}

/// Everything a manifest meets on its way to the data plane, for one input.
fn check_one(format: Format, text: &str, options: &ValidationOptions, report: &mut Report) {
    let path = Path::new(match format {
        Format::Yaml => "fuzz.yaml",
        Format::Json => "fuzz.json",
    });
    let mut state = ClusterState::default();
    for document in parse_file(path, format, text, options) {
        report.documents += 1;
        match document.outcome {
            Outcome::Object((_, key), object, _) => {
                report.objects += 1;
                // What the directory keeps must read back: counted with the panics otherwise.
                match object.to_change(key) {
                    Ok(change) => state.apply(change),
                    Err(err) => panic!("a stored {} does not read back: {err}", object.kind()),
                }
            }
            Outcome::Broken { errors, .. } => {
                report.broken += 1;
                if errors.iter().any(|e| matches!(e, ManifestError::Refused { .. })) {
                    report.refused += 1;
                }
                // Every error renders (it names file, line and object).
                for error in &errors {
                    let _ = error.to_string();
                }
            }
            Outcome::Ignored(_) => {}
        }
    }
    let findings = validate(&state, options);
    report.findings += findings.len() as u64;
    for finding in &findings {
        let _ = finding.to_string();
        if format == Format::Yaml {
            let _ = locate_in_text(text, &finding.field);
        }
    }
    let model = NodeModel::from_state(ProxyConfig::new("node-a"), &state);
    let _ = model.desired().frontends.len();
}

/// Runs `inputs` mutated inputs from `seed`.
pub fn run(seed: u64, inputs: u64) -> Report {
    let corpus = corpus();
    let options = ValidationOptions::default();
    let mut rng = Rng::new(seed);
    let mut report = Report { seeds: corpus.len(), ..Report::default() };
    for _ in 0..inputs {
        let (format, text) = mutate(&mut rng, &corpus);
        report.inputs += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut one = Report::default();
            check_one(format, &text, &options, &mut one);
            one
        }));
        match outcome {
            Ok(one) => {
                report.documents += one.documents;
                report.objects += one.objects;
                report.broken += one.broken;
                report.refused += one.refused;
                report.findings += one.findings;
            }
            Err(_) => {
                report.panics += 1;
                if report.panic_inputs.len() < 5 {
                    report.panic_inputs.push(text);
                }
            }
        }
    }
    report
}
