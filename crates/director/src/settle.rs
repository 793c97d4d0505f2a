//! When a director may announce its VIPs (issue 17 (a) and (f)), sans IO.
//!
//! The routers' ECMP sends a director traffic as soon as it announces. A director that starts
//! for the first time (no pins) while the node set changes may not know yet what the others
//! know: the previous nodes of a change they saw happen reach it through their records
//! ([`crate::previous`]) only once they publish, and a node the others' probes took out is
//! still in service on a new health checker until its own probes fail. Flows it carried
//! meanwhile in the moved slots would be reset. So it waits: it announces nothing until
//!
//! 1. the settle window (`--announce-delay-seconds`) has passed since its first complete
//!    reading, so the records the others publish for a change they saw at the same moment
//!    have arrived ([`SettleConfig::delay`]);
//! 2. every VIP's table names the previous nodes the newest record names for its node list
//!    ([`crate::Tables::disagreeing`]); and
//! 3. every node's health is settled ([`crate::health::Checker::unsettled`]).
//!
//! Conditions 2 and 3 are waited on for at most [`SettleConfig::max_wait`] beyond the window
//! (a peer's stale record or a flapping node must not keep a director out forever); then it
//! announces and says why it stopped waiting. Once open the gate stays open: a director that
//! announces never withdraws because of a later record. A restarted director (its pinned
//! tables taken over) is open at once: its tables are the ones it forwarded with, and BGP
//! graceful restart keeps its routes at the routers meanwhile.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_model::FrontendKey;

/// Default of `--announce-delay-seconds`: several merge-patch retries (one a second) and a
/// node's return by health (two probes, 500 ms apart) fit in it.
pub const DEFAULT_ANNOUNCE_DELAY: Duration = Duration::from_secs(5);

/// Default of [`SettleConfig::max_wait`].
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a first-time director waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleConfig {
    /// The settle window after the first complete reading (0: no window; conditions 2 and 3
    /// still hold it back).
    pub delay: Duration,
    /// The longest it waits beyond the window for its tables and health to agree.
    pub max_wait: Duration,
}

impl Default for SettleConfig {
    fn default() -> Self {
        SettleConfig { delay: DEFAULT_ANNOUNCE_DELAY, max_wait: DEFAULT_MAX_WAIT }
    }
}

/// What a director knows now that decides whether it may announce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// VIPs whose table disagrees with the newest record ([`crate::Tables::disagreeing`]).
    pub disagreeing: Vec<FrontendKey>,
    /// Nodes whose health is not settled ([`crate::health::Checker::unsettled`]).
    pub unsettled: Vec<Arc<str>>,
}

/// One reason to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The settle window runs this much longer.
    Window(Duration),
    /// These VIPs' tables do not name the previous nodes the newest record names.
    Records(Vec<FrontendKey>),
    /// These nodes' health is not settled.
    Health(Vec<Arc<str>>),
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(items: &[T]) -> String {
            const SHOWN: usize = 3;
            let mut text: Vec<String> = items.iter().take(SHOWN).map(ToString::to_string).collect();
            if items.len() > SHOWN {
                text.push(format!("{} more", items.len() - SHOWN));
            }
            text.join(", ")
        }
        match self {
            Wait::Window(left) => {
                write!(f, "settle window ({} ms left)", left.as_millis())
            }
            Wait::Records(vips) => {
                write!(f, "tables not yet naming the published previous nodes of {}", list(vips))
            }
            Wait::Health(nodes) => write!(f, "health of {} not settled", list(nodes)),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Announce (from now on).
    Open,
    /// Announce: the longest wait is over, though these still hold.
    GaveUp(Vec<Wait>),
    /// Announce nothing yet, for these reasons.
    Waiting(Vec<Wait>),
}

impl Verdict {
    /// Whether the director announces.
    pub fn announces(&self) -> bool {
        !matches!(self, Verdict::Waiting(_))
    }
}

/// The reasons, `; `-separated ("waiting to announce: …" in logs and `/bgp`).
pub fn describe(waits: &[Wait]) -> String {
    waits.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The gate of one director's announcements.
#[derive(Debug, Clone)]
pub struct Settle {
    config: SettleConfig,
    /// The first check (the first complete reading programmed).
    started: Option<Instant>,
    open: bool,
}

impl Settle {
    /// A gate for a director that starts for the first time (`restarted`: it took over pinned
    /// tables, and is open at once).
    pub fn new(config: SettleConfig, restarted: bool) -> Self {
        Settle { config, started: None, open: restarted }
    }

    /// Whether the director announces.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Decides at `now` with what the director knows. The first call starts the window.
    pub fn check(&mut self, now: Instant, facts: &Facts) -> Verdict {
        if self.open {
            return Verdict::Open;
        }
        let started = *self.started.get_or_insert(now);
        let mut waits = Vec::new();
        let window_end = started + self.config.delay;
        if now < window_end {
            waits.push(Wait::Window(window_end - now));
        }
        if !facts.disagreeing.is_empty() {
            waits.push(Wait::Records(facts.disagreeing.clone()));
        }
        if !facts.unsettled.is_empty() {
            waits.push(Wait::Health(facts.unsettled.clone()));
        }
        if waits.is_empty() {
            self.open = true;
            return Verdict::Open;
        }
        if now >= window_end + self.config.max_wait {
            self.open = true;
            return Verdict::GaveUp(waits);
        }
        Verdict::Waiting(waits)
    }

    /// When a check is due without news (the end of the window, or of the longest wait);
    /// `None` when open or before the first check.
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        if self.open {
            return None;
        }
        let window_end = self.started? + self.config.delay;
        Some(if now < window_end { window_end } else { window_end + self.config.max_wait })
    }
}
