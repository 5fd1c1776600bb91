//! An exporter's `max_series`: the most series one exporter is given, whatever plugin it is.
//!
//! The cap ([`SeriesCap`], shared with `[[endpoints]]` entries) sits in the exporter's intake,
//! before its queue, so every plugin alike sees at most `max_series` series at any time, counted
//! under `entry="exporter:<name>"`. When room is given back while series are left out, the
//! intake asks the collector for a resync (at most once per [`RESYNC_EVERY`]): the snapshot
//! replaces every source again and the series left out come back as far as they fit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use periscope_plugin_api::batch::Batch;
use periscope_scraper::objects::{Caps, PipelineStats, SeriesCap};

/// How often, at most, an exporter with series left out asks for a resync once room is given
/// back.
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// The series cap of one exporter, with when it last asked for a resync.
pub struct ExporterCap {
    cap: SeriesCap,
    last_resync: Option<Instant>,
}

impl ExporterCap {
    /// The cap of exporter `name`, counting into `stats`.
    pub fn new(name: &str, max: u64, stats: Arc<PipelineStats>) -> ExporterCap {
        ExporterCap {
            cap: SeriesCap::new(
                format!("exporter:{name}"),
                Caps {
                    max_series: Some(max),
                    max_values: None,
                },
                stats,
            ),
            last_resync: None,
        }
    }

    /// The batch as the exporter may see it (see [`SeriesCap::admit`]).
    pub fn admit(&mut self, batch: Arc<Batch>) -> Arc<Batch> {
        self.cap.admit(batch)
    }

    /// A snapshot is coming: every source is replaced from scratch.
    pub fn reset(&mut self) {
        self.cap.reset();
    }

    /// Whether to ask for a resync now: there is room while series are left out, and the last
    /// one asked for is [`RESYNC_EVERY`] old.
    pub fn wants_resync(&mut self, now: Instant) -> bool {
        let due = self
            .last_resync
            .is_none_or(|last| now.duration_since(last) >= RESYNC_EVERY);
        if due && self.cap.has_room_for_left_out() {
            self.last_resync = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::batch::{
        BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix,
    };

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

    #[test]
    fn room_given_back_asks_for_a_resync_that_brings_the_series_back() {
        let stats = Arc::new(PipelineStats::default());
        let mut cap = ExporterCap::new("e", 5, stats.clone());
        cap.admit(replace("a", 3));
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 2);
        let now = Instant::now();
        assert!(!cap.wants_resync(now), "no room");
        cap.admit(remove("a"));
        assert!(cap.wants_resync(now));
        assert!(!cap.wants_resync(now), "at most once per RESYNC_EVERY");
        cap.reset();
        assert_eq!(cap.admit(replace("b", 4)).sample_count(), 4);
        assert_eq!(stats.snapshot().series["exporter:e"], 4);
        assert!(!cap.wants_resync(now + RESYNC_EVERY), "nothing left out");
    }
}
