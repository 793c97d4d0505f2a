//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder writes. The rules are
//! client-go's, decided here without I/O ([`Election`]); [`run`] carries them out against the
//! API server.
//!
//! A Lease's `renewTime` is written by another machine's clock, so expiry is judged by this
//! process's own clock: a record that has not changed for a whole lease duration since we first
//! saw it is expired. A leader that cannot renew stops acting as one after the renew deadline,
//! which is shorter than the lease duration, so two leaders never write at once.

mod lease;

pub use lease::{ElectionConfig, LeaseError, run};

use std::time::{Duration, Instant};

/// What a Lease says, as far as the election cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity` (empty or unset: released).
    pub holder: Option<String>,
    /// `spec.renewTime`, as written (only compared for change).
    pub renew_time: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Option<Duration>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

/// The next request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Released or expired: take it over (transitions + 1).
    TakeOver,
    /// Someone else holds it.
    Follow { holder: String },
}

/// One candidate's view of the election.
#[derive(Debug, Clone)]
pub struct Election {
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    /// The record last seen and when it was first seen in that form.
    observed: Option<(Record, Instant)>,
    /// When we last created, renewed or took over the Lease.
    renewed: Option<Instant>,
}

impl Election {
    /// `renew_deadline` must be shorter than `lease_duration`: a leader that could not renew
    /// for that long stops writing before anyone else may take over.
    pub fn new(
        identity: impl Into<String>,
        lease_duration: Duration,
        renew_deadline: Duration,
    ) -> Self {
        Self {
            identity: identity.into(),
            lease_duration,
            renew_deadline: renew_deadline.min(lease_duration),
            observed: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// Decides what to do about the Lease as read at `now` (`None`: it does not exist).
    pub fn decide(&mut self, now: Instant, current: Option<&Record>) -> Step {
        let Some(record) = current else { return Step::Create };
        if self.observed.as_ref().is_none_or(|(seen, _)| seen != record) {
            self.observed = Some((record.clone(), now));
        }
        let holder = record.holder.clone().filter(|h| !h.is_empty());
        match holder {
            Some(holder) if holder == self.identity => Step::Renew,
            None => Step::TakeOver,
            Some(holder) => {
                let duration = record.duration.unwrap_or(self.lease_duration);
                let since = self.observed.as_ref().map_or(now, |(_, at)| *at);
                if now.duration_since(since) >= duration {
                    Step::TakeOver
                } else {
                    self.renewed = None;
                    Step::Follow { holder }
                }
            }
        }
    }

    /// The Lease was written with us as holder at `now`.
    pub fn renewed(&mut self, now: Instant) {
        self.renewed = Some(now);
    }

    /// A write failed because someone else changed the Lease first.
    pub fn lost(&mut self) {
        self.renewed = None;
    }

    /// True while we may act as leader.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.renewed.is_some_and(|at| now.duration_since(at) < self.renew_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renew: &str) -> Record {
        Record {
            holder: Some(holder.to_owned()).filter(|h| !h.is_empty()),
            renew_time: Some(renew.to_owned()),
            duration: Some(Duration::from_secs(15)),
            transitions: 0,
        }
    }

    #[test]
    fn follows_a_live_holder_and_takes_over_an_expired_one() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut e = Election::new("b", Duration::from_secs(15), Duration::from_secs(10));
        assert_eq!(e.decide(at(0), None), Step::Create);
        let held = record("a", "t1");
        assert_eq!(e.decide(at(0), Some(&held)), Step::Follow { holder: "a".to_owned() });
        // Renewals (a new renewTime) restart the clock.
        assert!(matches!(e.decide(at(10), Some(&record("a", "t2"))), Step::Follow { .. }));
        assert!(matches!(e.decide(at(24), Some(&record("a", "t2"))), Step::Follow { .. }));
        assert_eq!(e.decide(at(25), Some(&record("a", "t2"))), Step::TakeOver);
        assert_eq!(e.decide(at(25), Some(&record("", "t2"))), Step::TakeOver, "released");
        assert_eq!(e.decide(at(25), Some(&record("b", "t3"))), Step::Renew);
    }

    #[test]
    fn leads_only_within_the_renew_deadline() {
        let start = Instant::now();
        let mut e = Election::new("a", Duration::from_secs(15), Duration::from_secs(10));
        assert!(!e.is_leader(start));
        e.renewed(start);
        assert!(e.is_leader(start + Duration::from_secs(9)));
        assert!(!e.is_leader(start + Duration::from_secs(10)), "stops before anyone may take over");
        e.renewed(start + Duration::from_secs(9));
        e.lost();
        assert!(!e.is_leader(start + Duration::from_secs(9)));
    }
}
