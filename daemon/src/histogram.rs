//! A histogram of atomics: recorded on the hot path (model workers) without
//! a lock, read as plain data by whoever reports it (`http::metrics`).
//! A leaf: it imports nothing of glimpse.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) for model call latencies: 1 ms to 30 s covers a
/// decode step on a GPU and a SmolVLM vision call on a small CPU.
pub const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds for a frame's retention (kept / total tokens).
pub const RATIO: &[f64] = &[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0];

/// Counts of observations per bucket, their sum and count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is +Inf.
    buckets: Vec<AtomicU64>,
    /// Sum of the observations, in millionths.
    sum_micros: AtomicU64,
}

/// A histogram read out: cumulative buckets as Prometheus wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    /// (upper bound, observations at or below it); the last is +Inf.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// The counts now. Each bucket is read once; a concurrent observation
    /// may show in the count and not yet in the sum, as in every
    /// Prometheus client.
    pub fn counts(&self) -> Counts {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, total));
        }
        Counts {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let h = Histogram::new(RATIO);
        for v in [0.0, 0.0, 0.07, 0.4, 0.95] {
            h.observe(v);
        }
        let c = h.counts();
        assert_eq!(c.count, 5);
        assert!((c.sum - 1.42).abs() < 1e-6, "{}", c.sum);
        let at = |bound: f64| c.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(0.0), 2, "0 is at or below the 0 bound");
        assert_eq!(at(0.05), 2);
        assert_eq!(at(0.1), 3);
        assert_eq!(at(0.4), 4, "0.4 is at or below 0.4");
        assert_eq!(at(0.8), 4);
        assert_eq!(at(1.0), 5);
        assert_eq!(c.buckets.last(), Some(&(f64::INFINITY, 5)));
    }
}
