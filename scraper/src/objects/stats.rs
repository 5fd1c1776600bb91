//! What the pipeline and the watchers held back, counted for the host's self-metrics.
//!
//! The scraper counts; the host names and serves the metrics (`core/src/telemetry.rs` reads a
//! [`StatsSnapshot`] at every scrape of its `/metrics`). One [`PipelineStats`] per pipeline,
//! shared with every input that feeds it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::LabelCollisions;

/// Counters shared by the pipeline and its inputs.
#[derive(Debug, Default)]
pub struct PipelineStats {
    inner: Mutex<StatsSnapshot>,
}

/// The counts at one moment, each keyed by its label values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `labels_from` keys left out because their name was taken, by (resource, metric).
    pub label_collisions: BTreeMap<(String, String), u64>,
    /// Series not written because a cap held them back, by (entry, metric, reason).
    pub series_limited: BTreeMap<(String, String, String), u64>,
    /// Series an entry writes now, after its caps, by entry.
    pub series: BTreeMap<String, u64>,
    /// Objects a watch did not take in, by (watch, reason).
    pub objects_ignored: BTreeMap<(String, String), u64>,
}

impl PipelineStats {
    /// The counts now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.lock().clone()
    }

    /// Counts the keys `labels_from` left out.
    pub(crate) fn collisions(&self, collisions: &[LabelCollisions]) {
        if collisions.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for c in collisions {
            *inner
                .label_collisions
                .entry((c.resource.clone(), c.metric.clone()))
                .or_default() += c.count;
        }
    }

    /// Counts series a cap held back.
    pub fn series_limited(&self, entry: &str, metric: &str, reason: &str, count: u64) {
        if count == 0 {
            return;
        }
        let key = (entry.to_owned(), metric.to_owned(), reason.to_owned());
        *self.lock().series_limited.entry(key).or_default() += count;
    }

    /// Sets how many series an entry writes now.
    pub fn set_series(&self, entry: &str, count: u64) {
        self.lock().series.insert(entry.to_owned(), count);
    }

    /// Counts an object a watch did not take in.
    pub fn object_ignored(&self, watch: &str, reason: &str) {
        let key = (watch.to_owned(), reason.to_owned());
        *self.lock().objects_ignored.entry(key).or_default() += 1;
    }

    fn lock(&self) -> MutexGuard<'_, StatsSnapshot> {
        // Counters stay consistent whatever panicked while they were locked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
