//! docs/conformance.md kept true (no root): every row names tests that exist, at the level the
//! row claims, and no behaviour of the checklist goes missing; the rows not yet end to end are
//! printed (`cargo test -p switchyard --test conformance_doc -- --nocapture`).

#![allow(clippy::expect_used, reason = "a test: a missing doc is a failure")]

use std::fmt;
use std::path::Path;

/// The table this test keeps true, relative to the workspace root.
const DOC: &str = "docs/conformance.md";
/// Atomic behaviours of the checklist (shared/brief/service-semantics.md split into one row per
/// behaviour, rows `1..`). Rows may be added, never dropped.
const CHECKLIST_BEHAVIOURS: usize = 52;

/// How close to a real cluster a test asserts a behaviour, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    None,
    Model,
    TestRun,
    Lab,
    EndToEnd,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        Some(match text {
            "none" => Level::None,
            "model" => Level::Model,
            "test run" => Level::TestRun,
            "lab" => Level::Lab,
            "end to end" => Level::EndToEnd,
            _ => return None,
        })
    }

    /// The level of every test in `file` (a path from the workspace root): end to end with
    /// running agents, a lab with hand-programmed maps, BPF_PROG_TEST_RUN, or model only.
    fn of_file(file: &str) -> Level {
        let name = file.rsplit('/').next().unwrap_or(file);
        let stem = name.strip_suffix(".rs").unwrap_or(name);
        if file.starts_with("crates/switchyard/tests/")
            && (stem.ends_with("_e2e") || ["agent_api", "demo"].contains(&stem))
        {
            Level::EndToEnd
        } else if stem.ends_with("_lab")
            || file.starts_with("crates/lab/tests/")
            || ["crates/bpf/tests/socket_lb.rs", "crates/dataplane/tests/kernel.rs"].contains(&file)
            || file == "crates/dataplane/tests/sockdiag.rs"
        {
            Level::Lab
        } else if ["nodeport", "nodeport_frames", "pod_frames", "director", "mirror"]
            .iter()
            .any(|t| file == format!("crates/bpf/tests/{t}.rs"))
        {
            Level::TestRun
        } else {
            Level::Model
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::None => "none",
            Level::Model => "model",
            Level::TestRun => "test run",
            Level::Lab => "lab",
            Level::EndToEnd => "end to end",
        })
    }
}

/// `done`: asserted end to end; `partial`: end to end for part of it; `gap`: only below end to
/// end; `missing`: the feature is not built.
const STATUSES: [&str; 4] = ["done", "partial", "gap", "missing"];

#[derive(Debug)]
struct Row {
    line: usize,
    id: String,
    tests: Vec<(String, String)>,
    level: Level,
    status: String,
}

/// Rows of the tables whose first cell is a number (checklist) or `A` and a number (added).
/// Problems with a row's shape are pushed to `problems`.
fn rows(doc: &str, problems: &mut Vec<String>) -> Vec<Row> {
    let mut rows = Vec::new();
    for (index, text) in doc.lines().enumerate() {
        let line = index + 1;
        let Some(inner) = text.trim().strip_prefix('|').and_then(|t| t.strip_suffix('|')) else {
            continue;
        };
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        let id = cells[0];
        let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if !(numeric(id) || id.strip_prefix('A').is_some_and(numeric)) {
            continue;
        }
        let [_, _, tests, level, status, _notes] = cells[..] else {
            problems.push(format!("line {line}: row {id} needs 6 cells, has {}", cells.len()));
            continue;
        };
        let Some(level) = Level::parse(level) else {
            problems.push(format!("line {line}: row {id}: unknown level `{level}`"));
            continue;
        };
        let tests = tests
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|name| {
                let reference = name.split_once("::").map(|(f, t)| (f.to_owned(), t.to_owned()));
                if reference.is_none() {
                    problems.push(format!("line {line}: row {id}: `{name}` is not FILE::TEST"));
                }
                reference
            })
            .collect();
        rows.push(Row { line, id: id.to_owned(), tests, level, status: status.to_owned() });
    }
    rows
}

/// Whether `source` defines a test function `name` (`#[test]`, `#[tokio::test]`, proptest).
fn defines_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        let line = line.trim_start();
        let signature = line.strip_prefix("async ").unwrap_or(line);
        if !signature.strip_prefix("fn ").is_some_and(|s| s.starts_with(&format!("{name}("))) {
            return false;
        }
        lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("//") || l.ends_with(")]"))
            .any(|l| l.starts_with("#[") && l.contains("test"))
    })
}

/// Everything wrong with `doc`; `read` gives a file's text by its path from the root.
fn problems(doc: &str, read: &dyn Fn(&str) -> Option<String>) -> (Vec<String>, Vec<Row>) {
    let mut problems = Vec::new();
    let rows = rows(doc, &mut problems);
    let checklist: Vec<usize> = rows.iter().filter_map(|r| r.id.parse().ok()).collect();
    let expected: Vec<usize> = (1..=checklist.len()).collect();
    if checklist != expected {
        problems.push(format!("checklist rows must be numbered 1.. in order: {checklist:?}"));
    }
    if checklist.len() < CHECKLIST_BEHAVIOURS {
        problems.push(format!(
            "{} checklist rows, fewer than the {CHECKLIST_BEHAVIOURS} behaviours",
            checklist.len()
        ));
    }
    for row in &rows {
        let what = format!("line {}: row {}", row.line, row.id);
        if row.tests.is_empty() {
            problems.push(format!("{what} names no test"));
        }
        let mut highest = Level::None;
        for (file, test) in &row.tests {
            match read(file) {
                None => problems.push(format!("{what}: no file {file}")),
                Some(source) if !defines_test(&source, test) => {
                    problems.push(format!("{what}: {file} has no test `{test}`"));
                }
                Some(_) => highest = highest.max(Level::of_file(file)),
            }
        }
        if row.level != highest {
            problems.push(format!("{what} says `{}`, its tests are `{highest}`", row.level));
        }
        let end_to_end = row.level == Level::EndToEnd;
        match row.status.as_str() {
            "done" | "partial" if !end_to_end => {
                problems.push(format!("{what}: `{}` needs an end-to-end test", row.status));
            }
            "gap" if end_to_end => problems.push(format!("{what}: `gap` but end to end")),
            status if !STATUSES.contains(&status) => {
                problems.push(format!("{what}: unknown status `{status}`"));
            }
            _ => {}
        }
    }
    (problems, rows)
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn read_from_root(file: &str) -> Option<String> {
    std::fs::read_to_string(root().join(file)).ok()
}

#[test]
fn every_row_names_existing_tests_at_its_level_and_no_behaviour_is_dropped() {
    let doc = std::fs::read_to_string(root().join(DOC)).expect("docs/conformance.md");
    let (problems, rows) = problems(&doc, &read_from_root);
    assert!(problems.is_empty(), "{DOC} is not true:\n{}", problems.join("\n"));
    let below: Vec<&Row> = rows.iter().filter(|r| r.status != "done").collect();
    println!("{} of {} rows are not fully end to end:", below.len(), rows.len());
    for row in below {
        println!("  row {:>3}: {} ({})", row.id, row.status, row.level);
    }
}

/// The checker itself: each kind of broken row is caught.
#[test]
fn broken_rows_are_reported() {
    let files = |file: &str| match file {
        "crates/switchyard/tests/node_e2e.rs" => Some("#[test]\nfn real() {}\n".to_owned()),
        "crates/model/tests/rules.rs" => Some("#[test]\nfn rule() {}\nfn helper() {}\n".into()),
        _ => None,
    };
    let doc = |rows: &[&str]| {
        let mut text = String::from("| # | behaviour | tests | level | status | notes |\n");
        for (i, row) in rows.iter().enumerate() {
            text += &format!("| {} | b | {row} |  |\n", i + 1);
        }
        for i in rows.len()..CHECKLIST_BEHAVIOURS {
            text += &format!(
                "| {} | b | `crates/switchyard/tests/node_e2e.rs::real` | end to end | done |  |\n",
                i + 1
            );
        }
        text
    };
    let cases: [(&str, &str); 8] = [
        ("`crates/switchyard/tests/node_e2e.rs::gone` | end to end | done", "has no test `gone`"),
        ("`crates/model/tests/rules.rs::helper` | model | gap", "has no test `helper`"),
        ("`crates/nowhere.rs::real` | model | gap", "no file crates/nowhere.rs"),
        ("  | none | gap", "names no test"),
        ("`crates/model/tests/rules.rs::rule` | end to end | done", "says `end to end`"),
        ("`crates/switchyard/tests/node_e2e.rs::real` | model | gap", "its tests are `end to"),
        ("`crates/model/tests/rules.rs::rule` | model | done", "needs an end-to-end test"),
        ("`crates/model/tests/rules.rs::rule` | model | fine", "unknown status `fine`"),
    ];
    for (row, expected) in cases {
        let (problems, _) = problems(&doc(&[row]), &files);
        assert!(problems.iter().any(|p| p.contains(expected)), "{row}: {problems:?}");
    }
    let (clean, _) = problems(&doc(&["`crates/model/tests/rules.rs::rule` | model | gap"]), &files);
    assert!(clean.is_empty(), "{clean:?}");
    // A dropped row is noticed, whichever it was.
    let text = doc(&[]);
    let dropped: String =
        text.lines().filter(|l| !l.starts_with("| 7 |")).map(|l| l.to_owned() + "\n").collect();
    let (problems, _) = problems(&dropped, &files);
    assert!(problems.iter().any(|p| p.contains("numbered 1..")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("fewer than")), "{problems:?}");
}
