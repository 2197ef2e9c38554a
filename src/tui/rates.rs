//! Changes per second, per listener and in total, from the registry's counters: once a second
//! the counters are compared with the previous sample, and the last minutes of rates are kept
//! for the sparklines.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::registry::ListenerSnapshot;

/// How often a rate is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Rates kept per series: wider than any sparkline.
const KEPT: usize = 120;

/// One series of rates, oldest first.
pub type Series = VecDeque<u64>;

#[derive(Default)]
pub struct RateTracker {
    last: Option<Sample>,
    total: Series,
    listeners: HashMap<Arc<str>, Series>,
    /// Per table of each listener (a scope's tables), by listener identity and table.
    tables: HashMap<TableOf, Series>,
}

type TableOf = (Arc<str>, Arc<str>);

struct Sample {
    at: Instant,
    counts: HashMap<Arc<str>, u64>,
    tables: HashMap<TableOf, u64>,
}

impl RateTracker {
    /// Takes a sample if a second has passed since the last one; true when it did (the
    /// sparklines moved).
    pub fn sample(&mut self, now: Instant, listeners: &[ListenerSnapshot]) -> bool {
        let counts: HashMap<Arc<str>, u64> = match &self.last {
            Some(last) if now.duration_since(last.at) < SAMPLE_EVERY => return false,
            _ => listeners
                .iter()
                .map(|l| (l.identity.clone(), l.counts.total()))
                .collect(),
        };
        let tables: HashMap<TableOf, u64> = listeners
            .iter()
            .flat_map(|l| {
                l.tables
                    .iter()
                    .map(|t| ((l.identity.clone(), t.table.clone()), t.counts.total()))
            })
            .collect();
        if let Some(last) = self.last.take() {
            let millis = now.duration_since(last.at).as_millis().max(1) as u64;
            for (table, &count) in &tables {
                let before = last.tables.get(table).copied().unwrap_or(0);
                let rate = count.saturating_sub(before) * 1000 / millis;
                push(self.tables.entry(table.clone()).or_default(), rate);
            }
            let mut total = 0;
            for (identity, &count) in &counts {
                // A listener added again starts counting from zero: no negative rate.
                let before = last.counts.get(identity).copied().unwrap_or(0);
                let rate = count.saturating_sub(before) * 1000 / millis;
                total += rate;
                push(self.listeners.entry(identity.clone()).or_default(), rate);
            }
            push(&mut self.total, total);
        }
        self.last = Some(Sample {
            at: now,
            counts,
            tables,
        });
        true
    }

    pub fn listener(&self, identity: &str) -> Option<&Series> {
        self.listeners.get(identity)
    }

    /// The rates of one table of a listener.
    pub fn table(&self, identity: &Arc<str>, table: &Arc<str>) -> Option<&Series> {
        self.tables.get(&(identity.clone(), table.clone()))
    }

    pub fn total(&self) -> &Series {
        &self.total
    }
}

fn push(series: &mut Series, rate: u64) {
    if series.len() == KEPT {
        series.pop_front();
    }
    series.push_back(rate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;
    use crate::registry::Registry;
    use crate::tui::testing::listener_config;

    #[test]
    fn rates_come_from_counter_deltas_once_a_second() {
        let registry = Registry::new();
        let orders = registry.add(listener_config("orders")).unwrap();
        let items = registry.add(listener_config("items")).unwrap();
        let start = Instant::now();
        let mut rates = RateTracker::default();
        assert!(rates.sample(start, &registry.snapshot()));
        assert!(rates.total().is_empty(), "the first sample is a baseline");

        orders.count_flushed(Op::Insert, 30);
        items.count_flushed(Op::Delete, 5);
        assert!(!rates.sample(start + Duration::from_millis(500), &registry.snapshot()));
        assert!(rates.sample(start + Duration::from_secs(2), &registry.snapshot()));
        assert_eq!(rates.listener(orders.identity()).unwrap(), &[15]);
        assert_eq!(rates.listener(items.identity()).unwrap(), &[2]);
        assert_eq!(rates.total(), &[17]);
    }
}
