//! Exponential backoff with jitter for reconnecting sources.
//!
//! The delay doubles at each failure in a row, from `min` up to `max`, and
//! is spread by ±20% so that cameras that failed together (a switch that
//! rebooted) do not all hammer their servers at the same instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Delays between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Delays from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        // Seeded per process and per instance: jitter must differ between
        // cameras, not be reproducible.
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ ((std::process::id() as u64) << 32)
            ^ instance.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// Records a failure; returns the attempt number (from 1) and how long
    /// to wait before the next try.
    pub fn next_delay(&mut self) -> (u32, Duration) {
        self.attempt = self.attempt.saturating_add(1);
        let doublings = (self.attempt - 1).min(30);
        let base = self.min.saturating_mul(1u32 << doublings).min(self.max);
        // xorshift: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let jittered = base.mul_f64(0.8 + 0.4 * unit).min(self.max);
        (self.attempt, jittered)
    }

    /// The source works again: the next failure starts from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<(u32, Duration)> = (0..8).map(|_| b.next_delay()).collect();
        for (i, (attempt, d)) in delays.iter().enumerate() {
            assert_eq!(*attempt, i as u32 + 1);
            let base = (100u64 << i).min(1000) as f64;
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= base * 0.8 - 1e-6 && ms <= (base * 1.2).min(1000.0) + 1e-6,
                "attempt {attempt}: {ms} ms"
            );
        }
        b.reset();
        assert_eq!(b.next_delay().0, 1);
    }

    #[test]
    fn two_cameras_do_not_retry_in_lockstep() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let same = (0..5).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 5);
    }
}
