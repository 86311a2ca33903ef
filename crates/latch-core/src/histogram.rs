//! A histogram with fixed bucket bounds, safe to share between threads.
//!
//! The store records audit-append latency in one and the server renders it
//! (with its own) in the Prometheus text format; both sides need the type,
//! so it lives here. Observations are counted per bucket (not cumulatively)
//! under one short lock, so a snapshot is always consistent: its `count` is
//! the sum of its buckets.

use std::sync::Mutex;

/// Bucket bounds for latencies of in-process work and store commits, in seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive), strictly increasing; `+Inf` is implicit.
    bounds: &'static [f64],
    inner: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    /// One per bound, plus the overflow bucket (`+Inf`).
    buckets: Vec<u64>,
    sum: f64,
}

/// A consistent copy of a histogram at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Cumulative counts: `cumulative[i]` observations were `<= bounds[i]`.
    pub cumulative: Vec<u64>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// `bounds` must be finite and strictly increasing; anything else is
    /// dropped so the buckets stay well-formed.
    pub fn new(bounds: &'static [f64]) -> Self {
        let ok = bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]);
        let bounds = if ok { bounds } else { &[] };
        Histogram { bounds, inner: Mutex::new(Counts { buckets: vec![0; bounds.len() + 1], sum: 0.0 }) }
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Records one value. NaN is ignored (it belongs in no bucket).
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < v);
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = c.buckets.get_mut(i) {
            *slot += 1;
        }
        c.sum += v;
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let (buckets, sum) = {
            let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            (c.buckets.clone(), c.sum)
        };
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for n in buckets.iter().take(self.bounds.len()) {
            running += n;
            cumulative.push(running);
        }
        let count = running + buckets.last().copied().unwrap_or(0);
        HistogramSnapshot { bounds: self.bounds, cumulative, count, sum }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 4.0, 7.0, 100.0] {
            h.observe(v);
        }
        h.observe(f64::NAN);
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 5]);
        assert_eq!(s.count, 7);
        assert!((s.sum - 116.0).abs() < 1e-9);
    }

    #[test]
    fn empty_and_malformed_bounds() {
        let h = Histogram::new(&[2.0, 1.0]);
        h.observe(3.0);
        let s = h.snapshot();
        assert!(s.bounds.is_empty() && s.cumulative.is_empty());
        assert_eq!(s.count, 1);
        let s = Histogram::new(LATENCY_BUCKETS).snapshot();
        assert_eq!((s.count, s.sum, s.cumulative.len()), (0, 0.0, LATENCY_BUCKETS.len()));
    }
}
