//! What a run measured: per-operation latency histograms (hdrhistogram, in
//! microseconds), completed sessions, and errors by kind. Each load thread
//! records into its own [`Recorder`]; the main thread merges them.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency tracked: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
}

#[derive(Clone)]
pub struct Recorder {
    /// Latency of each operation, by name (LOGIN, SELECT, FETCH, ...).
    pub ops: BTreeMap<&'static str, Histogram<u64>>,
    /// Latency of whole sessions (login and session scenarios).
    pub sessions: Histogram<u64>,
    /// Errors by operation and kind.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { ops: BTreeMap::new(), sessions: histogram(), errors: BTreeMap::new() }
    }
}

impl Recorder {
    pub fn op(&mut self, name: &'static str, took: Duration) {
        let _ = self.ops.entry(name).or_insert_with(histogram).record(micros(took));
    }

    pub fn session(&mut self, took: Duration) {
        let _ = self.sessions.record(micros(took));
    }

    pub fn error(&mut self, op: &str, what: &str) {
        *self.errors.entry(format!("{op}: {what}")).or_insert(0) += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn op_count(&self) -> u64 {
        self.ops.values().map(Histogram::len).sum()
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (name, h) in &other.ops {
            let _ = self.ops.entry(name).or_insert_with(histogram).add(h);
        }
        let _ = self.sessions.add(&other.sessions);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// The latencies the live line shows: sessions when there are any, else
    /// every operation together.
    pub fn headline(&self) -> Histogram<u64> {
        if !self.sessions.is_empty() {
            return self.sessions.clone();
        }
        let mut all = histogram();
        for h in self.ops.values() {
            let _ = all.add(h);
        }
        all
    }
}

/// Percentiles of one histogram in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn summary(h: &Histogram<u64>) -> Summary {
    let ms = |v: u64| v as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_errors() {
        let mut a = Recorder::default();
        a.op("LOGIN", Duration::from_millis(2));
        a.error("LOGIN", "NO failed");
        let mut b = Recorder::default();
        b.op("LOGIN", Duration::from_millis(4));
        b.op("SELECT", Duration::from_micros(300));
        b.session(Duration::from_millis(9));
        b.error("LOGIN", "NO failed");
        a.merge(&b);
        assert_eq!(a.ops["LOGIN"].len(), 2);
        assert_eq!(a.op_count(), 3);
        assert_eq!(a.errors["LOGIN: NO failed"], 2);
        let s = summary(&a.ops["LOGIN"]);
        assert!((s.max - 4.0).abs() < 0.01 && (s.p50 - 2.0).abs() < 0.01, "{s:?}");
        assert_eq!(a.headline().len(), 1);
    }
}
