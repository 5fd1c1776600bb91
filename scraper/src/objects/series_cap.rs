//! A series cap over sources: at most `max` series over every source that goes through it, the
//! series beyond (the newest) left out of each `Replace` and counted in
//! `periscope_series_limited_total{entry,metric,reason="max_series"}`; `periscope_entry_series`
//! shows how many are held. A `Replace` gives back what its source held before, a `Remove` all of
//! it. Used by an `[[endpoints]]` entry's `max_series` (over its targets) and by an exporter's
//! (`core/src/guards.rs`, over every source it is given).

use std::collections::HashSet;
use std::sync::Arc;

use periscope_plugin_api::batch::{Batch, BatchBuilder, ReplaceWriter, Samples, Update};
use tracing::{info, warn};

use super::stats::PipelineStats;
use crate::event::SourceUpdate;

/// The reason label of series left out by a series cap.
const REASON: &str = "max_series";

/// A series cap over sources.
#[derive(Debug)]
pub struct SeriesCap {
    /// The `entry` label: `endpoints[i]`, `exporter:<name>`.
    entry: String,
    max: u64,
    /// Series held, over every source.
    total: u64,
    /// Source id → series it holds.
    held: std::collections::HashMap<String, u64>,
    /// Sources with series left out now.
    short: HashSet<String>,
    stats: Arc<PipelineStats>,
}

impl SeriesCap {
    /// A cap of `max` series named `entry`, counting into `stats`.
    pub fn new(entry: String, max: u64, stats: Arc<PipelineStats>) -> SeriesCap {
        stats.set_series(&entry, 0);
        SeriesCap {
            entry,
            max,
            total: 0,
            held: std::collections::HashMap::new(),
            short: HashSet::new(),
            stats,
        }
    }

    /// The batch as it may go on: `batch` itself when every series fits, otherwise a copy
    /// without the series beyond the cap.
    pub fn admit(&mut self, batch: Arc<Batch>) -> Arc<Batch> {
        if self.admit_updates(&batch) {
            Arc::new(self.copy_admitted(&batch))
        } else {
            batch
        }
    }

    /// The update as it may go on (see [`admit`](Self::admit)).
    pub fn admit_update(&mut self, update: SourceUpdate) -> SourceUpdate {
        if !self.admit_updates(update.batch()) {
            return update;
        }
        let cut = match update.update() {
            Update::Replace { source, samples } => {
                let keep = self.held.get(source.id).copied().unwrap_or(0) as usize;
                Some(SourceUpdate::replace(source, |writer| {
                    copy_samples(writer, samples, keep);
                }))
            }
            // Only a Replace is ever cut.
            Update::Remove { .. } => None,
        };
        cut.unwrap_or(update)
    }

    /// Forgets every source, as before a snapshot that replaces them all.
    pub fn reset(&mut self) {
        self.total = 0;
        self.held.clear();
        self.short.clear();
    }

    /// Whether series are left out while there is room for some: room was given back since.
    pub fn has_room_for_left_out(&self) -> bool {
        self.total < self.max && !self.short.is_empty()
    }

    /// Admits the updates of `batch`; whether any series was left out.
    fn admit_updates(&mut self, batch: &Batch) -> bool {
        let was_short = !self.short.is_empty();
        let mut cut = false;
        for update in batch.updates() {
            let id = update.source().id;
            if let Some(series) = self.held.remove(id) {
                self.total -= series;
            }
            let Update::Replace { samples, .. } = update else {
                self.short.remove(id);
                continue;
            };
            let count = samples.len() as u64;
            let admitted = count.min(self.max - self.total);
            self.total += admitted;
            self.held.insert(id.to_owned(), admitted);
            if admitted < count {
                cut = true;
                self.short.insert(id.to_owned());
                for sample in samples.iter().skip(admitted as usize) {
                    (self.stats).series_limited(&self.entry, sample.family().name, REASON, 1);
                }
            } else {
                self.short.remove(id);
            }
        }
        self.stats.set_series(&self.entry, self.total);
        self.note(was_short);
        cut
    }

    /// `batch` with each `Replace` cut to the series its source holds now.
    fn copy_admitted(&self, batch: &Batch) -> Batch {
        let mut builder = BatchBuilder::new();
        for update in batch.updates() {
            match update {
                Update::Remove { source } => builder.remove(source),
                Update::Replace { source, samples } => {
                    let keep = self.held.get(source.id).copied().unwrap_or(0) as usize;
                    copy_samples(&mut builder.replace(source), samples, keep);
                }
            }
        }
        builder.build()
    }

    fn note(&self, was_short: bool) {
        let short = !self.short.is_empty();
        if short && !was_short {
            warn!(entry = %self.entry, max_series = self.max, "series left out by max_series (counted in periscope_series_limited_total)");
        } else if was_short && !short {
            info!(entry = %self.entry, series = self.total, "no series left out by max_series any more");
        }
    }
}

/// Writes the first `keep` of `samples` to `writer`.
fn copy_samples(writer: &mut ReplaceWriter<'_>, samples: Samples<'_>, keep: usize) {
    for sample in samples.iter().take(keep) {
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

    fn limited(stats: &PipelineStats) -> u64 {
        let key = ("e".to_owned(), "m".to_owned(), REASON.to_owned());
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
        let mut cap = SeriesCap::new("e".to_owned(), 5, stats.clone());
        let first = replace("a", 3);
        assert!(
            Arc::ptr_eq(&cap.admit(first.clone()), &first),
            "fits: no copy"
        );
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 2);
        assert_eq!(limited(&stats), 2);
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
}
