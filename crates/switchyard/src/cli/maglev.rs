//! `switchyard maglev`: builds the Maglev table for a backend list and shows how it spreads the
//! slots, and with `--remove` how many slots move when one backend leaves.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Serialize;
use switchyard_maglev::{
    Backend, MaglevConfig, Seed, Table, TableSize, canonical_identity, parse_backend_list,
};

use super::output::{OutputArgs, Table as OutputTable, say};

#[derive(Debug, clap::Args)]
pub(crate) struct MaglevArgs {
    /// Backend list: one `BACKEND [WEIGHT]` per line (e.g. `10.0.0.1:8080 2`; weight 1 if
    /// omitted, 0 drains); `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    backends: PathBuf,

    /// Table size M, a prime (16381 for node services, 65537 for directors).
    #[arg(long, value_name = "M")]
    size: u32,

    /// Cluster-wide hash seed, 32 hexadecimal digits (default: the built-in seed).
    #[arg(long, value_name = "HEX", env = "SWITCHYARD_MAGLEV_SEED")]
    seed: Option<Seed>,

    /// Also build the table without this backend and report the fraction of slots that move.
    #[arg(long, value_name = "BACKEND")]
    remove: Option<String>,

    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: &MaglevArgs) -> anyhow::Result<ExitCode> {
    let size = TableSize::new(args.size).context("--size")?;
    let path = args.backends.display();
    let text = std::fs::read_to_string(&args.backends)
        .with_context(|| format!("cannot read backend list {path}"))?;
    let backends = parse_backend_list(&text).with_context(|| format!("backend list {path}"))?;
    let config = MaglevConfig { size, seed: args.seed.unwrap_or_default() };

    // Check --remove before printing anything, so a typo does not look like a result.
    let removal = match &args.remove {
        Some(removed) => {
            let identity = canonical_identity(removed).into_owned();
            let rest: Vec<Backend> =
                backends.iter().filter(|b| b.identity() != identity.as_bytes()).cloned().collect();
            if rest.len() == backends.len() {
                bail!("--remove {removed}: no such backend in {path}");
            }
            Some((identity, rest))
        }
        None => None,
    };

    let built = Table::build(&config, &backends)
        .with_context(|| format!("cannot build a table from {path}"))?;
    for warning in &built.warnings {
        eprintln!("warning: {warning}");
    }
    let mut report = Distribution::of(&built.table);
    if let Some((identity, rest)) = removal {
        let after = Table::build(&config, &rest)
            .with_context(|| format!("cannot build a table without {identity}"))?
            .table;
        report.removal = Some(Removal::of(&built.table, &after, &identity)?);
    }
    args.output.print(&report, |_| report.text())?;
    Ok(ExitCode::SUCCESS)
}

/// How a table spreads its slots (the `-o json` document).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Distribution {
    table_size: u32,
    backends: Vec<Share>,
    /// With `--remove`: what moves when that backend leaves.
    removal: Option<Removal>,
}

/// One backend's slots against the share its weight asks for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Share {
    backend: String,
    weight: u32,
    slots: u32,
    /// Fraction of the table (0..1).
    share: f64,
    /// The fraction its weight asks for.
    ideal: f64,
    /// share / ideal - 1; `None` for a drained backend (weight 0).
    deviation: Option<f64>,
}

/// Slots that changed owner when one backend left.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Removal {
    backend: String,
    moved: usize,
    /// Slots the removed backend owned (they must move); the rest moved between others.
    owned: usize,
}

impl Distribution {
    fn of(table: &Table) -> Self {
        let m = table.size().get();
        let total_weight: u64 = table.backends().iter().map(|b| u64::from(b.weight())).sum();
        let backends = table
            .backends()
            .iter()
            .zip(table.slot_counts())
            .map(|(backend, slots)| {
                let share = f64::from(slots) / f64::from(m);
                let ideal = f64::from(backend.weight()) / total_weight.max(1) as f64;
                Share {
                    backend: backend.identity_text().into_owned(),
                    weight: backend.weight(),
                    slots,
                    share,
                    ideal,
                    deviation: (backend.weight() > 0).then(|| share / ideal - 1.0),
                }
            })
            .collect();
        Self { table_size: m, backends, removal: None }
    }

    /// One row per backend (slots, share, the share its weight asks for), the extremes, and
    /// what moved.
    fn text(&self) -> String {
        let active = self.backends.iter().filter(|b| b.weight > 0).count();
        let mut out = format!(
            "table size {}, {} backends ({active} active)\n",
            self.table_size,
            self.backends.len()
        );
        let mut rows =
            OutputTable::new(["BACKEND", "WEIGHT", "SLOTS", "SHARE", "IDEAL", "DEVIATION"]);
        for column in 1..6 {
            rows.align_right(column);
        }
        for b in &self.backends {
            rows.row([
                b.backend.clone(),
                b.weight.to_string(),
                b.slots.to_string(),
                format!("{:.3}%", 100.0 * b.share),
                format!("{:.3}%", 100.0 * b.ideal),
                b.deviation.map_or_else(|| "drained".to_owned(), |d| format!("{:+.3}%", 100.0 * d)),
            ]);
        }
        out += &rows.render();
        let active: Vec<(&Share, f64)> =
            self.backends.iter().filter_map(|b| Some((b, b.deviation?))).collect();
        let max = active.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let min = active.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(max), Some(min)) = (max, min) {
            for (label, (b, deviation)) in [("max", max), ("min", min)] {
                say!(
                    out,
                    "{label} share: {:.3}% ({:+.3}% of its weight share) {}",
                    100.0 * b.share,
                    100.0 * deviation,
                    b.backend
                );
            }
        }
        if let Some(r) = &self.removal {
            let m = self.table_size;
            say!(
                out,
                "removing {}: {} of {m} slots moved ({:.3}%); it owned {}, so {} other slots moved too",
                r.backend,
                r.moved,
                100.0 * r.moved as f64 / f64::from(m),
                r.owned,
                r.moved - r.owned
            );
        }
        out
    }
}

impl Removal {
    fn of(before: &Table, after: &Table, removed: &str) -> anyhow::Result<Self> {
        let moved = Table::diff_count(before, after)?;
        let owned = before
            .backends()
            .iter()
            .zip(before.slot_counts())
            .find(|(b, _)| b.identity() == removed.as_bytes())
            .map_or(0, |(_, count)| count as usize);
        Ok(Self { backend: removed.to_owned(), moved, owned })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(backends: &[Backend]) -> Table {
        let config =
            MaglevConfig { size: TableSize::new(251).expect("prime"), seed: Seed::DEFAULT };
        Table::build(&config, backends).expect("buildable").table
    }

    #[test]
    fn the_distribution_lists_every_backend_and_the_extremes() {
        let backends = [Backend::new("b:1", 1), Backend::new("a:1", 3), Backend::new("c:1", 0)];
        let t = table(&backends);
        let report = Distribution::of(&t).text();
        let counts = t.slot_counts();
        assert!(report.starts_with("table size 251, 3 backends (2 active)\n"), "{report}");
        // Rows come in identity order with each backend's slot count.
        for (backend, count) in t.backends().iter().zip(&counts) {
            let row = report
                .lines()
                .find(|line| line.starts_with(&*backend.identity_text()))
                .unwrap_or_else(|| panic!("no row for {backend:?} in {report}"));
            let fields: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(fields[1], backend.weight().to_string(), "{row}");
            assert_eq!(fields[2], count.to_string(), "{row}");
        }
        assert!(report.contains("drained"), "{report}");
        assert!(report.lines().any(|l| l.starts_with("max share:")), "{report}");
        assert!(report.lines().any(|l| l.starts_with("min share:")), "{report}");
    }

    #[test]
    fn the_removal_report_counts_moved_slots() {
        let backends = [Backend::new("a", 1), Backend::new("b", 1), Backend::new("c", 1)];
        let before = table(&backends);
        let after = table(&backends[1..]);
        let moved = Table::diff_count(&before, &after).expect("same size");
        let mut distribution = Distribution::of(&before);
        distribution.removal = Some(Removal::of(&before, &after, "a").expect("same size"));
        let report = distribution.text();
        assert!(report.contains(&format!("\nremoving a: {moved} of 251 slots moved")), "{report}");
    }
}
