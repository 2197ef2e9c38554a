//! Flush timings: how long batches waited, how long the sinks took and how many changes each
//! batch held, as HDR histograms the UI reads, plus the most recent batches for a chart.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Recent batches kept for the chart.
const RECENT_BATCHES: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchTiming {
    pub number: u64,
    pub changes: usize,
    pub waited: Duration,
    pub flush: Duration,
}

pub struct FlushTimings {
    inner: Mutex<TimingsInner>,
}

struct TimingsInner {
    waited_us: Histogram<u64>,
    flush_us: Histogram<u64>,
    batch_sizes: Histogram<u64>,
    batches: u64,
    changes: u64,
    recent: VecDeque<BatchTiming>,
}

/// Percentiles of one histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// A copy for one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimingsSnapshot {
    pub batches: u64,
    pub changes: u64,
    pub waited_ms: Percentiles,
    pub flush_ms: Percentiles,
    pub batch_size: Percentiles,
    pub recent: Vec<BatchTiming>,
}

impl Default for FlushTimings {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram(max: u64) -> Histogram<u64> {
    // Three significant digits up to `max`; values above it are clamped by `saturating_record`.
    Histogram::new_with_bounds(1, max, 3).expect("static histogram bounds are valid")
}

impl FlushTimings {
    pub fn new() -> Self {
        FlushTimings {
            inner: Mutex::new(TimingsInner {
                waited_us: histogram(3_600_000_000),
                flush_us: histogram(3_600_000_000),
                batch_sizes: histogram(1_000_000),
                batches: 0,
                changes: 0,
                recent: VecDeque::with_capacity(RECENT_BATCHES),
            }),
        }
    }

    pub fn record(&self, timing: BatchTiming) {
        let mut inner = self.lock();
        inner.waited_us.saturating_record(micros(timing.waited));
        inner.flush_us.saturating_record(micros(timing.flush));
        inner.batch_sizes.saturating_record(timing.changes as u64);
        inner.batches += 1;
        inner.changes += timing.changes as u64;
        if inner.recent.len() == RECENT_BATCHES {
            inner.recent.pop_front();
        }
        inner.recent.push_back(timing);
    }

    pub fn snapshot(&self) -> TimingsSnapshot {
        let inner = self.lock();
        let ms = |h: &Histogram<u64>| percentiles(h, 1000.0);
        TimingsSnapshot {
            batches: inner.batches,
            changes: inner.changes,
            waited_ms: ms(&inner.waited_us),
            flush_ms: ms(&inner.flush_us),
            batch_size: percentiles(&inner.batch_sizes, 1.0),
            recent: inner.recent.iter().copied().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TimingsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn percentiles(histogram: &Histogram<u64>, divisor: f64) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let at = |q: f64| histogram.value_at_quantile(q) as f64 / divisor;
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: histogram.max() as f64 / divisor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_recent_batches() {
        let timings = FlushTimings::new();
        assert_eq!(timings.snapshot().batches, 0);
        for number in 1..=300u64 {
            timings.record(BatchTiming {
                number,
                changes: 100,
                waited: Duration::from_millis(number % 10),
                flush: Duration::from_micros(800),
            });
        }
        let snapshot = timings.snapshot();
        assert_eq!(snapshot.batches, 300);
        assert_eq!(snapshot.changes, 30_000);
        assert_eq!(snapshot.recent.len(), RECENT_BATCHES);
        assert_eq!(snapshot.recent.last().unwrap().number, 300);
        assert!((snapshot.flush_ms.p50 - 0.8).abs() < 0.01);
        assert!((snapshot.waited_ms.max - 9.0).abs() < 0.01);
        assert_eq!(snapshot.batch_size.p99, 100.0);
    }
}
