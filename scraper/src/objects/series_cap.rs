//! A series cap over sources: at most `max_series` series over every source that goes through it,
//! and at most `max_values` distinct values of one label within one metric. The series beyond
//! (the newest) are left out of each `Replace` and counted in
//! `periscope_series_limited_total{entry,metric,reason}`; `periscope_entry_series` shows how many
//! are held. A `Replace` gives back what its source held before, a `Remove` all of it. Used by an
//! `[[endpoints]]` entry's caps (over its targets; the next scrape brings series back once there is
//! room) and by an exporter's `max_series` (`core/src/guards.rs`, over every source it is given).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use periscope_plugin_api::batch::{Batch, BatchBuilder, ReplaceWriter, Samples, Update};
use tracing::{info, warn};

use super::label_values::{HeldValues, LabelValues};
use super::limits::{Caps, MAX_SERIES, MAX_VALUES};
use super::stats::PipelineStats;
use crate::event::SourceUpdate;

/// A series cap over sources.
#[derive(Debug)]
pub struct SeriesCap {
    /// The `entry` label: `endpoints[i]`, `exporter:<name>`.
    entry: String,
    max_series: Option<u64>,
    /// Only with `max_values`: every value admitted.
    values: Option<LabelValues>,
    /// Series held, over every source.
    total: u64,
    /// Source id → what it holds.
    held: HashMap<String, Held>,
    /// Sources with series left out now.
    short: HashSet<String>,
    stats: Arc<PipelineStats>,
}

/// What one source holds.
#[derive(Debug, Default)]
struct Held {
    series: u64,
    /// Only with `max_values`: the values of its series.
    values: HeldValues,
}

/// Which samples of each update of a batch go on, when some do not: one flag per sample of each
/// `Replace` (a `Remove` has none).
type Kept = Vec<Vec<bool>>;

impl SeriesCap {
    /// A cap named `entry`, counting into `stats`.
    pub fn new(entry: String, caps: Caps, stats: Arc<PipelineStats>) -> SeriesCap {
        stats.set_series(&entry, 0);
        SeriesCap {
            entry,
            max_series: caps.max_series,
            values: caps.max_values.map(LabelValues::new),
            total: 0,
            held: HashMap::new(),
            short: HashSet::new(),
            stats,
        }
    }

    /// The batch as it may go on: `batch` itself when every series fits, otherwise a copy
    /// without the series beyond the caps.
    pub fn admit(&mut self, batch: Arc<Batch>) -> Arc<Batch> {
        match self.admit_updates(&batch) {
            Some(kept) => Arc::new(copy_kept(&batch, &kept)),
            None => batch,
        }
    }

    /// The update as it may go on (see [`admit`](Self::admit)).
    pub fn admit_update(&mut self, update: SourceUpdate) -> SourceUpdate {
        let Some(kept) = self.admit_updates(update.batch()) else {
            return update;
        };
        match (update.update(), kept.first()) {
            (Update::Replace { source, samples }, Some(kept)) => {
                SourceUpdate::replace(source, |writer| copy_samples(writer, samples, kept))
            }
            // Only a Replace is ever cut.
            _ => update,
        }
    }

    /// Forgets every source, as before a snapshot that replaces them all.
    pub fn reset(&mut self) {
        self.total = 0;
        self.held.clear();
        if let Some(values) = &mut self.values {
            *values = LabelValues::new(values.max());
        }
        self.short.clear();
    }

    /// Whether series are left out while `max_series` has room for some: room was given back
    /// since.
    pub fn has_room_for_left_out(&self) -> bool {
        !self.short.is_empty() && self.max_series.is_none_or(|max| self.total < max)
    }

    /// Admits the updates of `batch`; which samples are kept when any was left out.
    fn admit_updates(&mut self, batch: &Batch) -> Option<Kept> {
        let was_short = !self.short.is_empty();
        let mut kept = Kept::new();
        let mut cut = false;
        for update in batch.updates() {
            let id = update.source().id;
            self.give_back(id);
            let Update::Replace { samples, .. } = update else {
                self.short.remove(id);
                kept.push(Vec::new());
                continue;
            };
            let mut held = Held::default();
            let mut flags = Vec::with_capacity(samples.len());
            for sample in samples.iter() {
                let family = sample.family().name;
                let refusal = if self.max_series.is_some_and(|max| self.total >= max) {
                    Some(MAX_SERIES)
                } else if (self.values.as_ref()).is_some_and(|v| v.refuses(family, sample.labels()))
                {
                    Some(MAX_VALUES)
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    self.stats.series_limited(&self.entry, family, reason, 1);
                    flags.push(false);
                    continue;
                }
                self.total += 1;
                held.series += 1;
                if let Some(values) = &mut self.values {
                    values.add(family, sample.labels(), &mut held.values);
                }
                flags.push(true);
            }
            if held.series < samples.len() as u64 {
                cut = true;
                self.short.insert(id.to_owned());
            } else {
                self.short.remove(id);
            }
            self.held.insert(id.to_owned(), held);
            kept.push(flags);
        }
        self.stats.set_series(&self.entry, self.total);
        self.note(was_short);
        cut.then_some(kept)
    }

    /// Takes back what the source held.
    fn give_back(&mut self, id: &str) {
        let Some(held) = self.held.remove(id) else {
            return;
        };
        self.total -= held.series;
        if let Some(values) = &mut self.values {
            values.give_back(held.values);
        }
    }

    fn note(&self, was_short: bool) {
        let short = !self.short.is_empty();
        if short && !was_short {
            warn!(entry = %self.entry, max_series = ?self.max_series, max_values = ?self.values.as_ref().map(LabelValues::max), "series left out by a cap (counted in periscope_series_limited_total)");
        } else if was_short && !short {
            info!(entry = %self.entry, series = self.total, "no series left out by a cap any more");
        }
    }
}

/// `update` with only its first `keep` samples, and the family name of each sample left out.
pub(crate) fn keep_first(update: SourceUpdate, keep: usize) -> (SourceUpdate, Vec<String>) {
    let Update::Replace { source, samples } = update.update() else {
        return (update, Vec::new());
    };
    let left_out = (samples.iter().skip(keep))
        .map(|sample| sample.family().name.to_owned())
        .collect();
    let kept: Vec<bool> = (0..samples.len()).map(|i| i < keep).collect();
    let cut = SourceUpdate::replace(source, |writer| copy_samples(writer, samples, &kept));
    (cut, left_out)
}

/// `batch` with each `Replace` cut to its kept samples.
fn copy_kept(batch: &Batch, kept: &Kept) -> Batch {
    let mut builder = BatchBuilder::new();
    for (update, kept) in batch.updates().zip(kept) {
        match update {
            Update::Remove { source } => builder.remove(source),
            Update::Replace { source, samples } => {
                copy_samples(&mut builder.replace(source), samples, kept);
            }
        }
    }
    builder.build()
}

/// Writes the samples of `samples` whose flag in `kept` is set to `writer`.
fn copy_samples(writer: &mut ReplaceWriter<'_>, samples: Samples<'_>, kept: &[bool]) {
    for (sample, _) in samples.iter().zip(kept).filter(|(_, kept)| **kept) {
        let family = writer.family(sample.family());
        writer
            .sample(
                family,
                sample.suffix(),
                sample.value(),
                sample.timestamp_ms(),
            )
            .labels(sample.labels());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::batch::{Family, FamilyKind, Source, SourceKind, Suffix};

    pub(crate) fn replace(id: &str, series: usize) -> Arc<Batch> {
        let mut builder = BatchBuilder::new();
        let mut writer = builder.replace(Source::new(SourceKind::Object, id));
        let family = writer.family(Family {
            name: "m",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        for i in 0..series {
            writer
                .sample(family, Suffix::None, 1.0, 0)
                .label("i", &i.to_string());
        }
        Arc::new(builder.build())
    }

    fn remove(id: &str) -> Arc<Batch> {
        let mut builder = BatchBuilder::new();
        builder.remove(Source::new(SourceKind::Object, id));
        Arc::new(builder.build())
    }

    fn limited(stats: &PipelineStats, reason: &str) -> u64 {
        let key = ("e".to_owned(), "m".to_owned(), reason.to_owned());
        stats
            .snapshot()
            .series_limited
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn series_beyond_the_cap_are_left_out_and_counted() {
        let stats = Arc::new(PipelineStats::default());
        let caps = Caps {
            max_series: Some(5),
            max_values: None,
        };
        let mut cap = SeriesCap::new("e".to_owned(), caps, stats.clone());
        let first = replace("a", 3);
        assert!(
            Arc::ptr_eq(&cap.admit(first.clone()), &first),
            "fits: no copy"
        );
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 2);
        assert_eq!(limited(&stats, MAX_SERIES), 2);
        assert_eq!(stats.snapshot().series["e"], 5);
        // `a` again, unchanged: it keeps its room; `b` is still short, with no room.
        assert_eq!(cap.admit(replace("a", 3)).sample_count(), 3);
        assert!(!cap.has_room_for_left_out());
        cap.admit(remove("a"));
        assert!(cap.has_room_for_left_out());
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 4, "b fits now");
        assert!(!cap.has_room_for_left_out());
        assert_eq!(stats.snapshot().series["e"], 4);
    }

    #[test]
    fn a_label_value_beyond_max_values_is_left_out_until_one_is_given_back() {
        let stats = Arc::new(PipelineStats::default());
        let caps = Caps {
            max_series: None,
            max_values: Some(2),
        };
        let mut cap = SeriesCap::new("e".to_owned(), caps, stats.clone());
        assert_eq!(cap.admit(replace("a", 3)).sample_count(), 2);
        assert_eq!(limited(&stats, MAX_VALUES), 1);
        // The same two values again: both fit; the third is still one too many.
        assert_eq!(cap.admit(replace("b", 3)).sample_count(), 2);
        assert_eq!(limited(&stats, MAX_VALUES), 2);
        assert_eq!(stats.snapshot().series["e"], 4);
        cap.admit(remove("a"));
        cap.admit(remove("b"));
        assert_eq!(cap.admit(replace("c", 1)).sample_count(), 1);
        let update = SourceUpdate::replace(Source::new(SourceKind::Object, "d"), |writer| {
            let family = writer.family(Family {
                name: "m",
                help: "",
                unit: "",
                kind: FamilyKind::Gauge,
            });
            for value in ["new", "0", "newer"] {
                writer
                    .sample(family, Suffix::None, 1.0, 0)
                    .label("i", value);
            }
        });
        let admitted = cap.admit_update(update);
        let kept: Vec<String> = admitted
            .batch()
            .updates()
            .flat_map(|u| match u {
                Update::Replace { samples, .. } => samples
                    .iter()
                    .flat_map(|s| s.labels().map(|(_, v)| v.to_owned()).collect::<Vec<_>>())
                    .collect(),
                Update::Remove { .. } => Vec::new(),
            })
            .collect();
        assert_eq!(
            kept,
            ["new", "0"],
            "a value in the middle is kept, the newest left out"
        );
    }
}
