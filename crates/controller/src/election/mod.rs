//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder writes. The rules are
//! client-go's, decided here without I/O ([`Election`]); [`run`] carries them out against the
//! API server.
//!
//! A Lease's `renewTime` is written by another machine's clock, so expiry is judged by this
//! process's own clock. A record is dated by the moment the previous read was *sent*, the last
//! moment its predecessor was known to be current: the record was written after that, so a
//! follower that takes over one lease duration later does so at most one lease duration after
//! the holder's last renewal — within the lease duration of its death. A leader that cannot
//! renew stops acting as one after the renew deadline, and a record is never dated more than
//! `lease duration − renew deadline` before it was read, so two leaders never write at once.

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

/// One read of the Lease: when it was sent and when it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub sent: Instant,
    pub answered: Instant,
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
    /// The record last read, and the moment from which it is dated (see the module docs).
    observed: Option<(Record, Instant)>,
    /// When the last successful read was sent.
    last_read: Option<Instant>,
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
            last_read: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// Decides what to do about the Lease as `read` returned it (`None`: it does not exist).
    pub fn decide(&mut self, read: Read, current: Option<&Record>) -> Step {
        let previous_read = self.last_read.replace(read.sent);
        let Some(record) = current else {
            self.observed = None;
            return Step::Create;
        };
        if self.observed.as_ref().is_none_or(|(seen, _)| seen != record) {
            // Written after the previous read was served (it showed something else), and before
            // this answer; never dated so early that a live leader could still be writing.
            let earliest = read.answered.checked_sub(self.lease_duration - self.renew_deadline);
            let dated = match (previous_read, earliest) {
                (Some(previous), Some(earliest)) => previous.max(earliest),
                (Some(previous), None) => previous,
                (None, _) => read.sent,
            };
            self.observed = Some((record.clone(), dated.min(read.sent)));
        }
        match record.holder.clone().filter(|h| !h.is_empty()) {
            Some(holder) if holder == self.identity => Step::Renew,
            None => Step::TakeOver,
            Some(holder) => match self.expiry() {
                Some(expiry) if read.answered >= expiry => Step::TakeOver,
                _ => {
                    self.renewed = None;
                    Step::Follow { holder }
                }
            },
        }
    }

    /// When the record last read expires, if someone else holds it.
    fn expiry(&self) -> Option<Instant> {
        let (record, dated) = self.observed.as_ref()?;
        let holder = record.holder.as_deref().filter(|h| !h.is_empty())?;
        if holder == self.identity {
            return None;
        }
        // The longer of the Lease's whole seconds and ours: waiting longer is always safe.
        let duration = record.duration.map_or(self.lease_duration, |d| d.max(self.lease_duration));
        Some(*dated + duration)
    }

    /// When to read the Lease next: after `retry`, or earlier, the moment the holder's record
    /// expires (so the takeover does not wait for a retry tick).
    pub fn next_read(&self, now: Instant, retry: Duration) -> Instant {
        let tick = now + retry;
        match self.expiry() {
            Some(expiry) if expiry > now => expiry.min(tick),
            _ => tick,
        }
    }

    /// The Lease was written with us as holder; `read` is the read the write was based on.
    pub fn renewed(&mut self, read: Read) {
        self.renewed = Some(read.answered);
        self.observed = None;
    }

    /// A write failed because someone else changed the Lease first.
    pub fn lost(&mut self) {
        self.renewed = None;
    }

    /// Until when we may act as leader (`None`: we do not lead).
    pub fn leading_until(&self) -> Option<Instant> {
        self.renewed.map(|at| at + self.renew_deadline)
    }

    /// True while we may act as leader.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leading_until().is_some_and(|until| now < until)
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

    /// A read sent at `sent` seconds and answered 0.1 s later.
    fn read(start: Instant, sent: f64) -> Read {
        let sent = start + Duration::from_secs_f64(sent);
        Read { sent, answered: sent + Duration::from_millis(100) }
    }

    #[test]
    fn follows_a_live_holder_and_takes_over_an_expired_one() {
        let start = Instant::now();
        let at = |s: f64| read(start, s);
        let mut e = Election::new("b", Duration::from_secs(15), Duration::from_secs(10));
        assert_eq!(e.decide(at(0.0), None), Step::Create);
        // Created after the read at 0 showed no Lease: dated 0.
        let held = record("a", "t1");
        assert_eq!(e.decide(at(1.0), Some(&held)), Step::Follow { holder: "a".to_owned() });
        assert!(matches!(e.decide(at(14.0), Some(&held)), Step::Follow { .. }));
        assert_eq!(e.decide(at(15.0), Some(&held)), Step::TakeOver);
        // A renewal seen at 16 was written after the read at 15 was sent: dated 15.
        assert!(matches!(e.decide(at(16.0), Some(&record("a", "t2"))), Step::Follow { .. }));
        assert!(matches!(e.decide(at(29.8), Some(&record("a", "t2"))), Step::Follow { .. }));
        assert_eq!(e.decide(at(30.0), Some(&record("a", "t2"))), Step::TakeOver);
        assert_eq!(e.decide(at(31.0), Some(&record("", "t2"))), Step::TakeOver, "released");
        assert_eq!(e.decide(at(31.0), Some(&record("b", "t3"))), Step::Renew);
    }

    #[test]
    fn the_next_read_is_when_the_record_expires() {
        let start = Instant::now();
        let retry = Duration::from_secs(2);
        let mut e = Election::new("b", Duration::from_secs(15), Duration::from_secs(10));
        assert!(matches!(
            e.decide(read(start, 0.0), Some(&record("a", "t1"))),
            Step::Follow { .. }
        ));
        assert!(matches!(
            e.decide(read(start, 2.0), Some(&record("a", "t2"))),
            Step::Follow { .. }
        ));
        let now = start + Duration::from_secs(3);
        assert_eq!(e.next_read(now, retry), now + retry, "a retry tick first");
        let now = start + Duration::from_secs(14);
        assert_eq!(e.next_read(now, retry), start + Duration::from_secs(15), "then the expiry");
        assert_eq!(e.decide(read(start, 15.0), Some(&record("a", "t2"))), Step::TakeOver);
        // Leading: every retry.
        e.renewed(read(start, 15.0));
        assert_eq!(e.next_read(now, retry), now + retry);
    }

    #[test]
    fn a_record_read_after_an_outage_is_not_dated_back_to_before_it() {
        let start = Instant::now();
        let mut e = Election::new("b", Duration::from_secs(15), Duration::from_secs(10));
        assert!(matches!(
            e.decide(read(start, 0.0), Some(&record("a", "t1"))),
            Step::Follow { .. }
        ));
        // Reads failed for a minute; the renewal seen now may be from a moment ago: dated no
        // earlier than 5 s (lease duration − renew deadline) before the answer, 60.1.
        assert!(matches!(
            e.decide(read(start, 60.0), Some(&record("a", "t9"))),
            Step::Follow { .. }
        ));
        assert!(matches!(
            e.decide(read(start, 69.8), Some(&record("a", "t9"))),
            Step::Follow { .. }
        ));
        assert_eq!(e.decide(read(start, 70.0), Some(&record("a", "t9"))), Step::TakeOver);
    }

    #[test]
    fn leads_only_within_the_renew_deadline() {
        let start = Instant::now();
        let mut e = Election::new("a", Duration::from_secs(15), Duration::from_secs(10));
        assert!(!e.is_leader(start));
        e.renewed(Read { sent: start, answered: start });
        assert!(e.is_leader(start + Duration::from_secs(9)));
        assert!(!e.is_leader(start + Duration::from_secs(10)), "stops before anyone may take over");
        assert_eq!(e.leading_until(), Some(start + Duration::from_secs(10)));
        e.lost();
        assert!(!e.is_leader(start + Duration::from_secs(9)));
    }
}
