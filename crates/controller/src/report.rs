//! `switchyard ipam`: pools, their usage, who holds which address, and the Services still
//! waiting, as text tables.

use std::fmt::Write as _;

use crate::allocator::Allocator;

/// The allocator's view as three tables: pools, held addresses, Services without every address.
pub fn ipam(allocator: &Allocator) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<6} {:>9} {:>9} {:>9} {:>20}  PROBLEM",
        "POOL", "VALID", "V4 USED", "V4 FREE", "V6 USED", "V6 FREE"
    );
    for (name, report) in allocator.pool_reports() {
        let (valid, problem) = match &report.problem {
            None => ("yes", String::new()),
            Some((reason, message)) => ("no", format!("{reason}: {message}")),
        };
        let _ = writeln!(
            out,
            "{name:<20} {valid:<6} {:>9} {:>9} {:>9} {:>20}  {problem}",
            report.used_ipv4, report.available_ipv4, report.used_ipv6, report.available_ipv6
        );
    }
    let _ = writeln!(out, "\n{:<40} {:<20} SERVICES", "ADDRESS", "POOL");
    for holding in allocator.holdings() {
        let services: Vec<String> = holding.services.iter().map(ToString::to_string).collect();
        let pool = holding.pool.unwrap_or_else(|| "(none)".to_owned());
        let _ =
            writeln!(out, "{:<40} {pool:<20} {}", holding.address.to_string(), services.join(", "));
    }
    let mut waiting = allocator.outcomes().filter(|(_, o)| o.is_warning()).peekable();
    if waiting.peek().is_some() {
        let _ = writeln!(out, "\n{:<40} {:<20} MESSAGE", "SERVICE", "REASON");
        for (key, outcome) in waiting {
            let _ = writeln!(
                out,
                "{:<40} {:<20} {}",
                key.to_string(),
                outcome.reason.as_str(),
                outcome.message
            );
        }
    }
    out
}
