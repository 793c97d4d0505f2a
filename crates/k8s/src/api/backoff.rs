//! Exponential backoff with jitter for watch restarts.
//!
//! kube-runtime's own exponential backoff cannot be configured from outside the crate, and tests
//! need short delays. Jitter spreads the reconnects of thousands of nodes after an API server
//! restart.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// Delays `min, 2·min, 4·min, …` capped at `max`, each stretched by up to 50% of jitter.
#[derive(Debug, Clone)]
pub struct JitteredBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
    random: u64,
}

impl JitteredBackoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self { min, max: max.max(min), next: min, random: seed | 1 }
    }

    /// xorshift64: plenty for jitter.
    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }
}

impl Iterator for JitteredBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter_permille = self.next_random() % 501;
        let delay = base + base.mul_f64(jitter_permille as f64 / 1000.0);
        Some(delay.min(self.max + self.max / 2))
    }
}

impl Backoff for JitteredBackoff {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_starts_over() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut backoff = JitteredBackoff::new(min, max);
        let bases = [100, 200, 400, 800, 1000, 1000];
        for (step, base) in bases.iter().enumerate() {
            let delay = backoff.next().unwrap_or_default();
            let base = Duration::from_millis(*base);
            assert!(
                delay >= base && delay <= base + base / 2,
                "step {step}: {delay:?} vs {base:?}"
            );
        }
        backoff.reset();
        let delay = backoff.next().unwrap_or_default();
        assert!(delay >= min && delay <= min + min / 2, "after reset: {delay:?}");
    }
}
