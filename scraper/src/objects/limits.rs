//! Caps on what one `[[resources]]` entry writes over all its objects: `max_series` (series of
//! every metric of the entry together) and `max_values` (distinct values of one label within one
//! metric).
//!
//! # Which series are held back
//!
//! An object's series are admitted in the order the entry writes them, as long as they fit: the
//! series that arrive once a cap is reached (the newest) are the ones not written. An object
//! applied again gives back what it held first, so an object that did not change keeps its
//! series. Every series held back is counted in `periscope_series_limited_total{entry,metric,
//! reason}`; the series written are `periscope_entry_series{entry}`; a warning is logged when
//! an entry starts holding series back and a note when it stops.
//!
//! # Coming back
//!
//! An object with series held back is kept (as JSON) until it is written whole, removed, or
//! written again by its input. When series or values are given back (an object went away or
//! shrank), the pipeline applies the waiting objects again, oldest first, at the next
//! [`ObjectPipeline::derived_updates`](super::ObjectPipeline::derived_updates), so their series
//! come back without waiting for them to change. What the waiting objects hold is bounded by what
//! their watch may hold (`max_objects`).

use std::collections::{BTreeMap, HashMap};

use periscope_plugin_api::batch::{ReplaceWriter, Update};
use serde_json::Value;

use super::ObjectKey;
use super::label_values::{HeldValues, LabelValues};
use super::stats::PipelineStats;
use crate::event::SourceUpdate;

/// Why a series was held back: the `reason` label.
pub const MAX_SERIES: &str = "max_series";
/// Why a series was held back: the `reason` label.
pub const MAX_VALUES: &str = "max_values";

/// How many waiting objects may still not fit, at one retry, before the retry stops.
pub(super) const RETRY_MISSES: usize = 64;

/// The caps of an entry (or of an exporter, which has only `max_series`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The most series over every source.
    pub max_series: Option<u64>,
    /// The most distinct values one label takes within one metric.
    pub max_values: Option<u64>,
}

/// What an entry has admitted, and the objects waiting for room.
#[derive(Debug)]
pub(super) struct Budget {
    /// The `entry` label: `resources[i]`.
    pub(super) entry: String,
    caps: Caps,
    /// Series admitted over every object.
    total: u64,
    /// Per object (source id): what it holds.
    objects: HashMap<String, Held>,
    /// Only with `max_values`: every value admitted.
    values: Option<LabelValues>,
    /// Objects with series held back, oldest first: arrival → the object.
    waiting: BTreeMap<u64, (ObjectKey, Value)>,
    /// Source id → arrival in `waiting`.
    waiting_since: HashMap<String, u64>,
    next_arrival: u64,
    /// Whether something was given back since the waiting objects were last tried.
    freed: bool,
    /// Whether series are being held back now (for the log, once per change).
    limiting: bool,
}

/// What one object holds of an entry's budget.
#[derive(Debug, Default)]
struct Held {
    series: u64,
    /// Only with `max_values`: the values of every admitted series.
    values: HeldValues,
}

impl Budget {
    pub(super) fn new(entry: String, caps: Caps) -> Budget {
        Budget {
            entry,
            caps,
            total: 0,
            objects: HashMap::new(),
            values: caps.max_values.map(LabelValues::new),
            waiting: BTreeMap::new(),
            waiting_since: HashMap::new(),
            next_arrival: 0,
            freed: false,
            limiting: false,
        }
    }

    /// Admits what the entry wrote for an object (`written`, a `Replace`) and copies the
    /// admitted samples to `writer`; the object waits (its JSON kept) if any was held back.
    pub(super) fn admit(
        &mut self,
        key: &ObjectKey,
        object: &Value,
        written: &SourceUpdate,
        writer: &mut ReplaceWriter<'_>,
        stats: &PipelineStats,
    ) {
        let id = key.source_id();
        self.give_back(id);
        let Update::Replace { samples, .. } = written.update() else {
            return;
        };
        let mut held = Held::default();
        let mut held_back = false;
        for sample in samples.iter() {
            let family = sample.family();
            let reason = self.refusal(family.name, sample.labels());
            if let Some(reason) = reason {
                held_back = true;
                stats.series_limited(&self.entry, family.name, reason, 1);
                continue;
            }
            self.total += 1;
            held.series += 1;
            if let Some(values) = &mut self.values {
                values.add(family.name, sample.labels(), &mut held.values);
            }
            let id = writer.family(family);
            writer
                .sample(id, sample.suffix(), sample.value(), sample.timestamp_ms())
                .labels(sample.labels());
        }
        self.objects.insert(id.to_owned(), held);
        if held_back {
            let arrival = match self.waiting_since.get(id) {
                Some(arrival) => *arrival,
                None => {
                    self.next_arrival += 1;
                    self.next_arrival
                }
            };
            self.waiting_since.insert(id.to_owned(), arrival);
            self.waiting.insert(arrival, (key.clone(), object.clone()));
        } else {
            self.stop_waiting(id);
        }
        self.note(stats);
    }

    /// Gives back everything the object held, as when it is removed.
    pub(super) fn remove(&mut self, id: &str, stats: &PipelineStats) {
        self.give_back(id);
        self.stop_waiting(id);
        self.note(stats);
    }

    /// The waiting objects to apply again, oldest first, if something was given back since the
    /// last time; empty otherwise.
    pub(super) fn retry(&mut self) -> Vec<(ObjectKey, Value)> {
        if !std::mem::take(&mut self.freed) {
            return Vec::new();
        }
        self.waiting.values().cloned().collect()
    }

    /// Whether the series cap is full (a retry can stop).
    pub(super) fn full(&self) -> bool {
        self.caps.max_series.is_some_and(|max| self.total >= max)
    }

    /// Whether the object is still waiting.
    pub(super) fn is_waiting(&self, id: &str) -> bool {
        self.waiting_since.contains_key(id)
    }

    /// Why a series of `family` with `labels` cannot be admitted now, if it cannot.
    fn refusal<'l>(
        &self,
        family: &str,
        labels: impl Iterator<Item = (&'l str, &'l str)>,
    ) -> Option<&'static str> {
        if self.caps.max_series.is_some_and(|max| self.total >= max) {
            return Some(MAX_SERIES);
        }
        let values = self.values.as_ref()?;
        values.refuses(family, labels).then_some(MAX_VALUES)
    }

    /// Takes back what the object held.
    fn give_back(&mut self, id: &str) {
        let Some(held) = self.objects.remove(id) else {
            return;
        };
        if held.series > 0 {
            self.freed = true;
        }
        self.total -= held.series;
        if let Some(values) = &mut self.values {
            values.give_back(held.values);
        }
    }

    fn stop_waiting(&mut self, id: &str) {
        if let Some(arrival) = self.waiting_since.remove(id) {
            self.waiting.remove(&arrival);
        }
    }

    /// Publishes the count and logs a change of state.
    fn note(&mut self, stats: &PipelineStats) {
        stats.set_series(&self.entry, self.total);
        let limiting = !self.waiting.is_empty();
        if limiting != self.limiting {
            self.limiting = limiting;
            if limiting {
                tracing::warn!(
                    entry = %self.entry,
                    series = self.total,
                    max_series = ?self.caps.max_series,
                    max_values = ?self.caps.max_values,
                    "series held back by a cap (counted in periscope_series_limited_total)"
                );
            } else {
                tracing::info!(entry = %self.entry, series = self.total, "no series held back any more");
            }
        }
    }
}
