//! `switchyard maglev`: builds the Maglev table for a backend list and shows how it spreads the
//! slots, and with `--remove` how many slots move when one backend leaves.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use switchyard_maglev::{
    Backend, MaglevConfig, Seed, Table, TableSize, canonical_identity, parse_backend_list,
};

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
    print!("{}", distribution_report(&built.table));

    if let Some((identity, rest)) = removal {
        let after = Table::build(&config, &rest)
            .with_context(|| format!("cannot build a table without {identity}"))?
            .table;
        print!("{}", removal_report(&built.table, &after, &identity)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per backend (slots, share, the share its weight asks for), then the extremes.
fn distribution_report(table: &Table) -> String {
    let m = table.size().get();
    let total_weight: u64 = table.backends().iter().map(|b| u64::from(b.weight())).sum();
    let counts = table.slot_counts();
    let width = table.backends().iter().map(|b| b.identity_text().len()).max().unwrap_or(0).max(7);

    let mut out = String::new();
    let active = table.backends().iter().filter(|b| b.weight() > 0).count();
    let _ = writeln!(out, "table size {m}, {} backends ({active} active)", table.backends().len());
    let _ = writeln!(
        out,
        "{:<width$} {:>10} {:>8} {:>9} {:>9} {:>10}",
        "BACKEND", "WEIGHT", "SLOTS", "SHARE", "IDEAL", "DEVIATION"
    );
    // (relative deviation, share, backend) of active backends, for the extremes.
    let mut deviations: Vec<(f64, f64, &Backend)> = Vec::new();
    for (backend, &count) in table.backends().iter().zip(&counts) {
        let share = f64::from(count) / f64::from(m);
        let ideal = f64::from(backend.weight()) / total_weight as f64;
        let deviation = if backend.weight() > 0 {
            let deviation = share / ideal - 1.0;
            deviations.push((deviation, share, backend));
            format!("{:+.3}%", 100.0 * deviation)
        } else {
            "drained".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<width$} {:>10} {:>8} {:>8.3}% {:>8.3}% {:>10}",
            backend.identity_text(),
            backend.weight(),
            count,
            100.0 * share,
            100.0 * ideal,
            deviation
        );
    }
    let by_deviation = |a: &&(f64, f64, &Backend), b: &&(f64, f64, &Backend)| a.0.total_cmp(&b.0);
    if let (Some(max), Some(min)) =
        (deviations.iter().max_by(by_deviation), deviations.iter().min_by(by_deviation))
    {
        for (label, (deviation, share, backend)) in [("max", max), ("min", min)] {
            let _ = writeln!(
                out,
                "{label} share: {:.3}% ({:+.3}% of its weight share) {}",
                100.0 * share,
                100.0 * deviation,
                backend.identity_text()
            );
        }
    }
    out
}

/// How many slots changed owner when `removed` left, next to the slots it owned.
fn removal_report(before: &Table, after: &Table, removed: &str) -> anyhow::Result<String> {
    let moved = Table::diff_count(before, after)?;
    let m = before.size().get();
    let owned = before
        .backends()
        .iter()
        .zip(before.slot_counts())
        .find(|(b, _)| b.identity() == removed.as_bytes())
        .map_or(0, |(_, count)| count as usize);
    Ok(format!(
        "removing {removed}: {moved} of {m} slots moved ({:.3}%); it owned {owned}, so {} other \
         slots moved too\n",
        100.0 * moved as f64 / f64::from(m),
        moved - owned,
    ))
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
        let report = distribution_report(&t);
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
        let report = removal_report(&before, &after, "a").expect("same size");
        assert!(report.starts_with(&format!("removing a: {moved} of 251 slots moved")), "{report}");
    }
}
