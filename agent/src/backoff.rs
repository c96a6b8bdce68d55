//! Reconnect delays: exponential back-off with jitter (pure; the caller supplies randomness).

use std::time::Duration;

/// Exponential back-off: `base · 2^attempt`, capped at `max`, each delay drawn uniformly from
/// its upper half ("equal jitter") so a fleet of agents that lost the aggregator together does
/// not reconnect in lockstep, yet no delay collapses to zero.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off starting at `base`, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max: max.max(base), attempt: 0 }
    }

    /// The next delay; `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Back to the first delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A small xorshift generator for jitter: not for anything secret.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded by the caller (the driver mixes in its process id and the clock).
    pub fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let lows: Vec<_> = (0..6).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(lows, [50, 100, 200, 400, 500, 500]);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.999_999).as_millis(), 99);
        b.reset();
        assert_eq!(b.next_delay(0.5).as_millis(), 75);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_varies() {
        let mut j = Jitter::new(42);
        let draws: Vec<f64> = (0..1000).map(|_| j.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
