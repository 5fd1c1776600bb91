//! Duration histograms (`type = "duration_histogram"`): the seconds between two RFC 3339 times of
//! an object, or of each item of it, observed once.
//!
//! Objects are applied again and again (every change, every relist, every read of a file), so
//! the state remembers which durations it has counted: one is identified by the object (its uid,
//! or its source id without one), the values of its `by` labels and its start time. Once one is
//! counted it never is again, even if its end time changes later; a duration whose end is not
//! there yet is not counted until it is. A duration below zero (clocks of different writers) is
//! counted as zero, as KubeVirt does.
//!
//! What was counted for an object outlives the object by an hour, so that a watch that loses
//! and relists its objects does not count them again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use periscope_plugin_api::batch::{FamilyId, ReplaceWriter, Suffix};
use serde_json::Value;

use super::LabelSpec;
use super::reader::Reader;
use super::tracked::Report;
use crate::expr::Input;
use crate::path::Path;

/// How long what was counted for an object is kept after the object went away.
const FORGET_AFTER_MS: i64 = 60 * 60 * 1000;

/// A compiled duration histogram.
#[derive(Debug)]
pub(super) struct Durations {
    /// One duration per item this path reaches; the object itself without it.
    pub(super) each: Option<Path>,
    pub(super) start: Reader,
    pub(super) end: Reader,
    /// Labels read from each item, in name order.
    pub(super) by: Vec<LabelSpec>,
    /// Upper bounds, ascending, without `+Inf`.
    pub(super) buckets: Vec<f64>,
}

/// One duration an object shows.
pub(super) struct Timed {
    identity: u64,
    labels: Vec<String>,
    seconds: f64,
    /// The first bucket it falls in; `buckets.len()` when only in `+Inf`.
    bucket: usize,
}

impl Durations {
    /// Every complete duration of the object (of each item, with `each`).
    pub(super) fn observe<'j>(&self, input: &Input<'j>, report: &mut Report<'_>) -> Vec<Timed> {
        let mut found = Vec::new();
        let within = self.each.is_some();
        let mut item = |item: &'j Value| {
            let item = within.then_some(item);
            let start = report.time(&self.start, input, item);
            let end = report.time(&self.end, input, item);
            let (Some((start_text, start)), Some((_, end))) = (start, end) else {
                return;
            };
            let Some(labels) = report.labels(&self.by, input, item) else {
                return;
            };
            let mut hasher = DefaultHasher::new();
            (&labels, &start_text).hash(&mut hasher);
            let seconds = (end - start).max(0.0);
            found.push(Timed {
                identity: hasher.finish(),
                labels,
                seconds,
                bucket: self.buckets.partition_point(|le| *le < seconds),
            });
        };
        let object = input.object();
        match &self.each {
            Some(each) => each.visit(object, &mut item),
            None => item(object),
        }
        found
    }

    /// Per series: the cumulative buckets with `le` (then `+Inf`), `_sum` and `_count`.
    pub(super) fn write(
        &self,
        state: &DurationsState,
        writer: &mut ReplaceWriter<'_>,
        family: FamilyId,
        now_ms: i64,
    ) {
        for (labels, histogram) in &state.series {
            let common = || {
                self.by
                    .iter()
                    .map(|spec| spec.name.as_str())
                    .zip(labels.iter().map(String::as_str))
            };
            let mut cumulative = 0;
            for (i, le) in self.buckets.iter().enumerate() {
                cumulative += histogram.buckets.get(i).copied().unwrap_or(0);
                writer
                    .sample(family, Suffix::Bucket, cumulative as f64, now_ms)
                    .labels(common())
                    .label("le", &le.to_string());
            }
            let count = histogram.count as f64;
            writer
                .sample(family, Suffix::Bucket, count, now_ms)
                .labels(common())
                .label("le", "+Inf");
            writer
                .sample(family, Suffix::Sum, histogram.sum, now_ms)
                .labels(common());
            writer
                .sample(family, Suffix::Count, count, now_ms)
                .labels(common());
        }
    }
}

/// The histograms, and what was counted for which object.
#[derive(Debug, Default)]
pub(super) struct DurationsState {
    series: BTreeMap<Vec<String>, Histogram>,
    /// Object key → identities of the durations counted.
    counted: HashMap<String, HashSet<u64>>,
    /// Objects gone, with when that was noticed (`None` until the next purge).
    gone: HashMap<String, Option<i64>>,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket, not cumulative; the last one is `+Inf` only.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl DurationsState {
    /// Counts the durations of `object_key` not counted before; whether any was.
    pub(super) fn record(&mut self, object_key: &str, found: Vec<Timed>) -> bool {
        self.gone.remove(object_key);
        if found.is_empty() {
            return false;
        }
        let counted = self.counted.entry(object_key.to_owned()).or_default();
        let mut changed = false;
        for timed in found {
            if !counted.insert(timed.identity) {
                continue;
            }
            let histogram = self.series.entry(timed.labels).or_default();
            if histogram.buckets.len() <= timed.bucket {
                histogram.buckets.resize(timed.bucket + 1, 0);
            }
            histogram.buckets[timed.bucket] += 1;
            histogram.sum += timed.seconds;
            histogram.count += 1;
            changed = true;
        }
        changed
    }

    /// Notes that the object went away; what was counted for it is dropped an hour later.
    pub(super) fn forget(&mut self, object_key: &str) -> bool {
        if self.counted.contains_key(object_key) {
            self.gone.entry(object_key.to_owned()).or_insert(None);
        }
        false
    }

    /// Drops what was counted for objects gone for an hour.
    pub(super) fn purge(&mut self, now_ms: i64) {
        let counted = &mut self.counted;
        self.gone.retain(|key, since| match since {
            None => {
                *since = Some(now_ms);
                true
            }
            Some(since) if now_ms - *since >= FORGET_AFTER_MS => {
                counted.remove(key);
                false
            }
            Some(_) => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn histogram() -> Durations {
        Durations {
            each: Some(Path::parse("status.transitions[*]").unwrap()),
            start: Reader::Path(Path::parse("$.metadata.creationTimestamp").unwrap()),
            end: Reader::Path(Path::parse("time").unwrap()),
            by: vec![LabelSpec {
                name: "phase".to_owned(),
                source: Reader::Path(Path::parse("phase").unwrap()),
            }],
            buckets: vec![1.0, 10.0],
        }
    }

    fn object(transitions: Value) -> Value {
        json!({
            "metadata": {"creationTimestamp": "2024-05-01T10:00:00Z"},
            "status": {"transitions": transitions},
        })
    }

    fn observe(object: &Value) -> (Vec<Timed>, Vec<String>) {
        let mut problems = crate::objects::Problems::default();
        let mut report = Report {
            problems: &mut problems,
            resource: "Pod",
            family: "h",
        };
        let found = histogram().observe(&Input::new(object), &mut report);
        let messages = problems.messages.iter();
        let messages = messages.map(|m| m.trim_start_matches("h: ").to_owned());
        (found, messages.collect())
    }

    #[test]
    fn each_item_is_timed_from_the_anchored_start() {
        let (found, problems) = observe(&object(json!([
            {"phase": "Scheduled", "time": "2024-05-01T10:00:00.5Z"},
            {"phase": "Running", "time": "2024-05-01T10:00:12Z"},
            {"phase": "Pending"},
        ])));
        assert!(problems.is_empty());
        let seen: Vec<_> = found
            .iter()
            .map(|t| (t.labels[0].as_str(), t.seconds, t.bucket))
            .collect();
        assert_eq!(seen, [("Scheduled", 0.5, 0), ("Running", 12.0, 2)]);
    }

    #[test]
    fn an_end_before_the_start_is_zero_and_bad_times_are_problems() {
        let (found, problems) = observe(&object(json!([
            {"phase": "Scheduled", "time": "2024-05-01T09:59:59Z"},
            {"phase": "Running", "time": "yesterday"},
        ])));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seconds, 0.0);
        assert_eq!(
            problems,
            ["time: \"yesterday\" is not an RFC 3339 timestamp"]
        );
    }

    #[test]
    fn a_duration_is_counted_once_however_often_it_is_seen() {
        let mut state = DurationsState::default();
        let first = object(json!([{"phase": "Scheduled", "time": "2024-05-01T10:00:02Z"}]));
        assert!(state.record("uid-1", observe(&first).0));
        assert!(!state.record("uid-1", observe(&first).0));
        let later = object(json!([
            {"phase": "Scheduled", "time": "2024-05-01T10:00:03Z"},
            {"phase": "Running", "time": "2024-05-01T10:01:00Z"},
        ]));
        assert!(state.record("uid-1", observe(&later).0));
        let counts: Vec<_> = state
            .series
            .iter()
            .map(|(l, h)| (l[0].as_str(), h.count, h.sum, h.buckets.clone()))
            .collect();
        assert_eq!(
            counts,
            [
                ("Running", 1, 60.0, vec![0, 0, 1]),
                ("Scheduled", 1, 2.0, vec![0, 1])
            ]
        );
    }

    #[test]
    fn what_was_counted_outlives_the_object_for_an_hour() {
        let mut state = DurationsState::default();
        let seen = object(json!([{"phase": "Running", "time": "2024-05-01T10:00:02Z"}]));
        state.record("uid-1", observe(&seen).0);
        state.forget("uid-1");
        state.purge(1_000);
        // Relisted within the hour: not counted again, and no longer gone.
        assert!(!state.record("uid-1", observe(&seen).0));
        state.purge(FORGET_AFTER_MS + 2_000);
        assert!(state.counted.contains_key("uid-1"));
        state.forget("uid-1");
        state.purge(FORGET_AFTER_MS + 3_000);
        state.purge(2 * FORGET_AFTER_MS + 3_000);
        assert!(state.counted.is_empty());
        assert!(state.gone.is_empty());
    }
}
