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
    /// What each running watch holds now, by watch.
    pub held: BTreeMap<String, HeldWatch>,
}

/// What a running watch holds, and which instance of the watch of that name said so.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldWatch {
    /// The watch's instance number.
    pub instance: u64,
    /// What it holds.
    pub held: HeldObjects,
}

/// What one watch holds: its objects, pruned to what the config reads, compressed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldObjects {
    /// How many objects.
    pub objects: u64,
    /// Their size as held, in bytes.
    pub bytes: u64,
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

    /// Sets what a watch holds now. `instance` tells the watch apart from another of the same
    /// name (a watch started again with new selectors) while both run.
    pub fn set_held(&self, watch: &str, instance: u64, held: HeldObjects) {
        self.lock()
            .held
            .insert(watch.to_owned(), HeldWatch { instance, held });
    }

    /// Forgets what a stopped watch held, unless another of its name has set it since.
    pub fn forget_held(&self, watch: &str, instance: u64) {
        let mut inner = self.lock();
        if inner
            .held
            .get(watch)
            .is_some_and(|h| h.instance == instance)
        {
            inner.held.remove(watch);
        }
    }

    fn lock(&self) -> MutexGuard<'_, StatsSnapshot> {
        // Counters stay consistent whatever panicked while they were locked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
