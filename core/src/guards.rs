//! An exporter's `max_series`: the most series one exporter is given, whatever plugin it is.
//!
//! The cap sits in the exporter's intake, before its queue, so every plugin alike sees at most
//! `max_series` series at any time. Each source's series are admitted in the order its `Replace`
//! lists them while there is room; the series beyond (the newest) are left out of the batch and
//! counted in `periscope_series_limited_total{entry="exporter:<name>",metric,reason="max_series"}`,
//! and `periscope_entry_series{entry="exporter:<name>"}` shows how many the exporter holds. A
//! `Replace` gives back what the source held before, a `Remove` all of it.
//!
//! When room is given back while series are left out, the intake asks the collector for a
//! resync (at most once per [`RESYNC_EVERY`]): the snapshot replaces every source again and the
//! series left out come back as far as they fit. A warning is logged when the exporter starts
//! leaving series out and a note when it stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use periscope_plugin_api::batch::{Batch, BatchBuilder, Update};
use periscope_scraper::objects::PipelineStats;
use tracing::{info, warn};

/// How often, at most, an exporter with series left out asks for a resync once room is given
/// back.
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// The reason label of series left out by an exporter's cap.
const REASON: &str = "max_series";

/// The series cap of one exporter.
pub struct SeriesCap {
    /// `exporter:<name>`, the `entry` label.
    entry: String,
    max: u64,
    /// Series the exporter holds, over every source.
    total: u64,
    /// Source id → series it holds.
    held: HashMap<String, u64>,
    /// Sources with series left out now.
    short: HashMap<String, ()>,
    last_resync: Option<Instant>,
    stats: Arc<PipelineStats>,
}

impl SeriesCap {
    /// The cap of exporter `name`, counting into `stats`.
    pub fn new(name: &str, max: u64, stats: Arc<PipelineStats>) -> SeriesCap {
        let entry = format!("exporter:{name}");
        stats.set_series(&entry, 0);
        SeriesCap {
            entry,
            max,
            total: 0,
            held: HashMap::new(),
            short: HashMap::new(),
            last_resync: None,
            stats,
        }
    }

    /// The batch as the exporter may see it: `batch` itself when every series fits, otherwise a
    /// copy without the series beyond the cap.
    pub fn admit(&mut self, batch: Arc<Batch>) -> Arc<Batch> {
        let was_short = !self.short.is_empty();
        let mut cut = false;
        for update in batch.updates() {
            let id = update.source().id;
            self.give_back(id);
            if let Update::Replace { samples, .. } = update {
                let room = self.max - self.total;
                let count = samples.len() as u64;
                let admitted = count.min(room);
                self.take(id, admitted);
                if admitted < count {
                    cut = true;
                    self.short.insert(id.to_owned(), ());
                    for sample in samples.iter().skip(admitted as usize) {
                        let family = sample.family().name;
                        self.stats.series_limited(&self.entry, family, REASON, 1);
                    }
                } else {
                    self.short.remove(id);
                }
            } else {
                self.short.remove(id);
            }
        }
        self.stats.set_series(&self.entry, self.total);
        self.note(was_short);
        if cut {
            Arc::new(self.copy_admitted(&batch))
        } else {
            batch
        }
    }

    /// A snapshot is coming: every source is replaced from scratch.
    pub fn reset(&mut self) {
        self.total = 0;
        self.held.clear();
        self.short.clear();
    }

    /// Whether to ask for a resync now: there is room while series are left out (room was
    /// given back since they were), and the last one asked for is [`RESYNC_EVERY`] old.
    pub fn wants_resync(&mut self, now: Instant) -> bool {
        let due = self
            .last_resync
            .is_none_or(|last| now.duration_since(last) >= RESYNC_EVERY);
        if self.total < self.max && !self.short.is_empty() && due {
            self.last_resync = Some(now);
            return true;
        }
        false
    }

    fn give_back(&mut self, id: &str) {
        if let Some(series) = self.held.remove(id) {
            self.total -= series;
        }
    }

    fn take(&mut self, id: &str, series: u64) {
        self.total += series;
        self.held.insert(id.to_owned(), series);
    }

    /// `batch` with each `Replace` cut to the series its source holds now.
    fn copy_admitted(&self, batch: &Batch) -> Batch {
        let mut builder = BatchBuilder::new();
        for update in batch.updates() {
            match update {
                Update::Remove { source } => builder.remove(source),
                Update::Replace { source, samples } => {
                    let keep = self.held.get(source.id).copied().unwrap_or(0) as usize;
                    let mut writer = builder.replace(source);
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
            }
        }
        builder.build()
    }

    fn note(&self, was_short: bool) {
        let short = !self.short.is_empty();
        if short && !was_short {
            warn!(entry = %self.entry, max_series = self.max, "series left out by the exporter's max_series (counted in periscope_series_limited_total)");
        } else if was_short && !short {
            info!(entry = %self.entry, series = self.total, "no series left out by the exporter's max_series any more");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::batch::{Family, FamilyKind, Source, SourceKind, Suffix};

    fn replace(id: &str, series: usize) -> Arc<Batch> {
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
        let key = ("exporter:e".to_owned(), "m".to_owned(), REASON.to_owned());
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
        let mut cap = SeriesCap::new("e", 5, stats.clone());
        let first = replace("a", 3);
        assert!(
            Arc::ptr_eq(&cap.admit(first.clone()), &first),
            "fits: no copy"
        );
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 2);
        assert_eq!(limited(&stats), 2);
        assert_eq!(stats.snapshot().series["exporter:e"], 5);
        // `a` again, unchanged: it keeps its room; `b` is still short.
        assert_eq!(cap.admit(replace("a", 3)).sample_count(), 3);
        assert!(
            !cap.wants_resync(Instant::now()),
            "nothing given back for good"
        );
    }

    #[test]
    fn room_given_back_asks_for_a_resync_that_brings_the_series_back() {
        let stats = Arc::new(PipelineStats::default());
        let mut cap = SeriesCap::new("e", 5, stats.clone());
        cap.admit(replace("a", 3));
        cap.admit(replace("b", 4));
        cap.admit(remove("a"));
        let now = Instant::now();
        assert!(cap.wants_resync(now));
        assert!(!cap.wants_resync(now), "at most once per RESYNC_EVERY");
        cap.reset();
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 4);
        assert_eq!(stats.snapshot().series["exporter:e"], 4);
        assert!(!cap.wants_resync(now + RESYNC_EVERY), "nothing left out");
    }
}
