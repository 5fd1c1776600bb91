//! Batch → Elasticsearch documents: one per sample, one per removed source.
//!
//! ```json
//! {"@timestamp":"2026-11-25T17:00:00.123Z","op":"replace","metric":"vm_memory_bytes","family":"vm_memory",
//!  "type":"gauge","unit":"bytes","value":2.5,"labels":{"node":"n1"},
//!  "source":{"kind":"object","id":"kubevirt.io/v1/VirtualMachineInstance/default/vm1","api_version":"kubevirt.io/v1",
//!            "object_kind":"VirtualMachineInstance","namespace":"default","name":"vm1","uid":"…"}}
//! {"@timestamp":"…","op":"remove","source":{…}}
//! ```
//!
//! Sources and samples are written by `periscope_plugin_api::json`, as the file exporter and the
//! dead-letter file write them: empty source fields and an empty unit are left out. JSON has no NaN
//! or infinities, and a `double` field cannot hold them either: such a value is written as
//! `"value": null` (indexed as no value) with `"value_text": "NaN"` (or `"+Inf"`, `"-Inf"`).
//!
//! Every document has a deterministic `_id` ([`Document::id`]), so indexing a retried batch again
//! overwrites the same documents instead of adding copies.
//!
//! # Data-stream mode
//!
//! The same fields, with two differences ([`Shape::TimeSeries`]):
//!
//! - a counter's sample (a counter's `_total`, a histogram's or summary's `_count`, `_sum` and
//!   `_bucket`) carries its value in `counter` instead of `value`, so each field has one
//!   `time_series_metric` type (`value` a gauge, `counter` a counter);
//! - a removal, which has no metric, becomes the marker sample
//!   `{"metric":"periscope_source_removed","type":"gauge","value":1,"op":"remove","source":{…}}`
//!   at the export time: time series indices are append-only, so the source's earlier samples
//!   stay, and the marker says when it went away (the samples simply stop after it).
//!
//! The node derives the `_id` there, from the dimensions and `@timestamp`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use periscope_plugin_api::json::{
    LabelsJson, SampleJson, SourceJson, non_finite_text, serialize_value,
};
use periscope_plugin_api::{FamilyKind, Sample, Source, Suffix};
use serde::ser::{Serialize, SerializeMap, Serializer};
use sha2::{Digest, Sha256};

/// What a document records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// One sample of a `Replace`.
    Replace,
    /// A source that is gone.
    Remove,
}

impl Op {
    /// The `op` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Replace => "replace",
            Op::Remove => "remove",
        }
    }
}

/// One document, borrowing from the batch.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    /// What it records.
    pub op: Op,
    /// Milliseconds since the Unix epoch: the sample's timestamp, or the export time for removals.
    pub timestamp_ms: i64,
    /// The source.
    pub source: Source<'a>,
    /// The sample, for [`Op::Replace`].
    pub sample: Option<Sample<'a>>,
}

impl<'a> Document<'a> {
    /// The document of one sample of `source`.
    pub fn sample(source: Source<'a>, sample: Sample<'a>) -> Self {
        Document {
            op: Op::Replace,
            timestamp_ms: sample.timestamp_ms(),
            source,
            sample: Some(sample),
        }
    }

    /// The document saying `source` is gone, stamped `now_ms`.
    pub fn remove(source: Source<'a>, now_ms: i64) -> Self {
        Document {
            op: Op::Remove,
            timestamp_ms: now_ms,
            source,
            sample: None,
        }
    }

    /// The metric name (family plus suffix), empty for removals.
    pub fn metric(&self) -> String {
        self.sample.map(|s| s.metric_name()).unwrap_or_default()
    }

    /// The deterministic `_id`: the first 128 bits of a SHA-256, in hex, over the source id, the
    /// metric, the labels sorted by name, the timestamp and the op. A removal's id leaves out the
    /// timestamp (a removal has none of its own: it is stamped at export time, which a retry
    /// would change) and takes the source's uid instead, so a retried removal is indexed once.
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(self.op.as_str().as_bytes());
        field(self.source.id.as_bytes());
        match self.sample {
            Some(sample) => {
                field(self.metric().as_bytes());
                let mut labels: Vec<(&str, &str)> = sample.labels().collect();
                labels.sort_unstable();
                field(&(labels.len() as u64).to_le_bytes());
                for (name, value) in labels {
                    field(name.as_bytes());
                    field(value.as_bytes());
                }
                field(&self.timestamp_ms.to_le_bytes());
            }
            None => field(self.source.uid.as_bytes()),
        }
        let digest = hash.finalize();
        hex::encode(&digest[..16])
    }

    /// The timestamp as RFC 3339 in UTC, or why it cannot be written.
    pub fn timestamp_text(&self) -> Result<String, IndexError> {
        timestamp(self.timestamp_ms).map(|t| t.to_string())
    }

    /// A short description for error messages: source id and metric.
    pub fn describe(&self) -> String {
        match self.op {
            Op::Replace => format!("{} {}", self.source.id, self.metric()),
            Op::Remove => format!("{} (remove)", self.source.id),
        }
    }

    /// The serializable body in `shape`, with its timestamp already formatted.
    pub fn body(&self, shape: Shape) -> Result<Body<'_, 'a>, IndexError> {
        Ok(Body {
            doc: self,
            shape,
            timestamp: self.timestamp_text()?,
        })
    }
}

/// The metric of the marker a removal becomes in a data stream.
pub const REMOVED_METRIC: &str = "periscope_source_removed";

/// Which fields a document has: index mode's or data-stream mode's (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Index mode: `value` for every sample, a removal without metric.
    Plain,
    /// Data-stream mode: `value` or `counter`, a removal as a marker sample.
    TimeSeries,
}

/// Whether `sample` is a counter's value, kept in the `counter` field in a time series.
pub fn is_counter(sample: Sample<'_>) -> bool {
    match sample.family().kind {
        FamilyKind::Counter => matches!(sample.suffix(), Suffix::None | Suffix::Total),
        FamilyKind::Histogram | FamilyKind::Summary => {
            matches!(
                sample.suffix(),
                Suffix::Count | Suffix::Sum | Suffix::Bucket
            )
        }
        _ => false,
    }
}

/// A document's JSON body (see the module docs).
pub struct Body<'d, 'a> {
    doc: &'d Document<'a>,
    shape: Shape,
    timestamp: String,
}

impl Serialize for Body<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@timestamp", &self.timestamp)?;
        map.serialize_entry("op", self.doc.op.as_str())?;
        match (self.doc.sample, self.shape) {
            (Some(sample), Shape::TimeSeries) if is_counter(sample) => {
                let family = sample.family();
                map.serialize_entry("family", family.name)?;
                map.serialize_entry("metric", &sample.metric_name())?;
                map.serialize_entry("type", family.kind.as_str())?;
                if !family.unit.is_empty() {
                    map.serialize_entry("unit", family.unit)?;
                }
                map.serialize_entry("labels", &LabelsJson(sample))?;
                match non_finite_text(sample.value()) {
                    None => map.serialize_entry("counter", &sample.value())?,
                    Some(text) => {
                        map.serialize_entry("counter", &())?;
                        map.serialize_entry("value_text", text)?;
                    }
                }
            }
            (Some(sample), _) => SampleJson(sample).serialize_fields(&mut map)?,
            (None, Shape::TimeSeries) => {
                map.serialize_entry("metric", REMOVED_METRIC)?;
                map.serialize_entry("type", FamilyKind::Gauge.as_str())?;
                serialize_value(&mut map, 1.0)?;
            }
            (None, Shape::Plain) => {}
        }
        map.serialize_entry("source", &SourceJson(self.doc.source))?;
        map.end()
    }
}

/// Why a document has no index name or timestamp.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A timestamp outside the range of dates.
    #[error("timestamp {ms} ms is out of range: {source}")]
    Timestamp {
        /// The timestamp.
        ms: i64,
        /// Why.
        source: jiff::Error,
    },
    /// Date math that cannot be formatted.
    #[error("{0}")]
    DateMath(jiff::Error),
    /// The name the pattern formats into is not a valid index name.
    #[error("index name {name:?} {rule}")]
    Name {
        /// The name.
        name: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// The pattern given in the config does not format into a valid name.
    #[error("`index` {pattern:?}: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        source: Box<IndexError>,
    },
}

/// A rule of Elasticsearch's for index names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    /// Empty, `.` or `..`.
    #[error("is not a valid index name")]
    Reserved,
    /// More than 255 bytes.
    #[error("is longer than 255 bytes")]
    TooLong,
    /// An upper-case letter.
    #[error("must be lowercase")]
    Uppercase,
    /// A character Elasticsearch forbids.
    #[error("must not contain {0:?}")]
    Forbidden(char),
    /// `-`, `_` or `+` first.
    #[error("must not start with '-', '_' or '+'")]
    Start,
}

fn timestamp(ms: i64) -> Result<Timestamp, IndexError> {
    Timestamp::from_millisecond(ms).map_err(|source| IndexError::Timestamp { ms, source })
}

/// The `index` option: an index name with `strftime` date math over the document's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    pattern: String,
}

impl IndexPattern {
    /// Checks that `pattern` formats into a valid index name.
    pub fn new(pattern: &str) -> Result<Self, IndexError> {
        let this = IndexPattern {
            pattern: pattern.to_owned(),
        };
        // 2001-02-03T04:05:06Z: every field differs, so a bad specifier shows.
        this.name(981_173_106_000)
            .map_err(|source| IndexError::Pattern {
                pattern: pattern.to_owned(),
                source: Box::new(source),
            })?;
        Ok(this)
    }

    /// The index name for a document at `timestamp_ms` (UTC).
    pub fn name(&self, timestamp_ms: i64) -> Result<String, IndexError> {
        let name = if self.pattern.contains('%') {
            let time = timestamp(timestamp_ms)?.to_zoned_datetime(TimeZone::UTC);
            jiff::fmt::strtime::format(&self.pattern, &time).map_err(IndexError::DateMath)?
        } else {
            self.pattern.clone()
        };
        match broken_rule(&name) {
            None => Ok(name),
            Some(rule) => Err(IndexError::Name { name, rule }),
        }
    }

    /// The `index_patterns` entry of a template covering every index this pattern names: the
    /// fixed prefix followed by `*`, or the name itself without date math; `None` when the
    /// pattern starts with date math (the template would match every index).
    pub fn template_pattern(&self) -> Option<String> {
        match self.pattern.find('%') {
            None => Some(self.pattern.clone()),
            Some(0) => None,
            Some(i) => Some(format!("{}*", &self.pattern[..i])),
        }
    }
}

/// The first of Elasticsearch's rules for index names that `name` breaks.
fn broken_rule(name: &str) -> Option<NameRule> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(NameRule::Reserved);
    }
    if name.len() > 255 {
        return Some(NameRule::TooLong);
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Some(NameRule::Uppercase);
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Some(NameRule::Forbidden(c));
    }
    if name.starts_with(['-', '_', '+']) {
        return Some(NameRule::Start);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{
        Batch, BatchBuilder, Family, FamilyKind, SourceKind, Suffix, Update,
    };

    fn source() -> Source<'static> {
        Source {
            kind: SourceKind::Object,
            id: "v1/ConfigMap/demo/a",
            api_version: "v1",
            object_kind: "ConfigMap",
            namespace: "demo",
            name: "a",
            uid: "uid-a",
        }
    }

    /// A test sample: value, timestamp, labels.
    type TestSample<'a> = (f64, i64, &'a [(&'a str, &'a str)]);

    /// One sample per `(value, timestamp, labels)`.
    fn batch(samples: &[TestSample<'_>]) -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "demo_bytes",
            help: "",
            unit: "bytes",
            kind: FamilyKind::Counter,
        });
        let mut r = b.replace(source());
        for (value, ts, labels) in samples {
            r.sample(f, Suffix::Total, *value, *ts)
                .labels(labels.iter().copied());
        }
        b.remove(source());
        b.build()
    }

    fn documents(batch: &Batch) -> Vec<Document<'_>> {
        let mut out = Vec::new();
        for update in batch.updates() {
            match update {
                Update::Replace { source, samples } => {
                    out.extend(samples.iter().map(|s| Document::sample(source, s)));
                }
                Update::Remove { source } => out.push(Document::remove(source, 7)),
            }
        }
        out
    }

    fn json(doc: &Document<'_>) -> serde_json::Value {
        serde_json::to_value(doc.body(Shape::Plain).unwrap()).unwrap()
    }

    fn time_series_json(doc: &Document<'_>) -> serde_json::Value {
        serde_json::to_value(doc.body(Shape::TimeSeries).unwrap()).unwrap()
    }

    #[test]
    fn in_a_time_series_a_counter_goes_to_counter_and_a_removal_is_a_marker() {
        let b = batch(&[
            (2.5, 1_764_090_000_123, &[("node", "n1")]),
            (f64::NAN, 1, &[]),
        ]);
        let docs = documents(&b);
        let counter = time_series_json(&docs[0]);
        assert_eq!(counter["counter"], 2.5);
        assert!(counter.get("value").is_none(), "{counter}");
        assert_eq!(counter["metric"], "demo_bytes_total");
        assert_eq!(counter["labels"]["node"], "n1");
        let nan = time_series_json(&docs[1]);
        assert!(
            nan["counter"].is_null() && nan["value_text"] == "NaN",
            "{nan}"
        );
        let marker = time_series_json(&docs[2]);
        assert_eq!(
            marker,
            serde_json::json!({
                "@timestamp": "1970-01-01T00:00:00.007Z",
                "op": "remove",
                "metric": "periscope_source_removed",
                "type": "gauge",
                "value": 1.0,
                "source": {"kind": "object", "id": "v1/ConfigMap/demo/a", "api_version": "v1",
                           "object_kind": "ConfigMap", "namespace": "demo", "name": "a", "uid": "uid-a"},
            })
        );
    }

    #[test]
    fn counters_are_told_from_gauges_by_family_and_suffix() {
        let mut b = BatchBuilder::new();
        let family = |b: &mut BatchBuilder, name, kind| {
            b.family(Family {
                name,
                help: "",
                unit: "",
                kind,
            })
        };
        let c = family(&mut b, "c", FamilyKind::Counter);
        let h = family(&mut b, "h", FamilyKind::Histogram);
        let g = family(&mut b, "g", FamilyKind::Gauge);
        let mut r = b.replace(source());
        r.sample(c, Suffix::Total, 1.0, 1);
        r.sample(c, Suffix::Created, 1.0, 1);
        r.sample(h, Suffix::Bucket, 1.0, 1);
        r.sample(h, Suffix::Sum, 1.0, 1);
        r.sample(g, Suffix::None, 1.0, 1);
        let b = b.build();
        let Some(Update::Replace { samples, .. }) = b.updates().next() else {
            panic!("a replace");
        };
        let kinds: Vec<bool> = samples.iter().map(is_counter).collect();
        assert_eq!(kinds, [true, false, true, true, false]);
    }

    #[test]
    fn a_sample_document_has_every_field() {
        let b = batch(&[(2.5, 1_764_090_000_123, &[("node", "n1"), ("a.b/c", "x")])]);
        let docs = documents(&b);
        assert_eq!(
            json(&docs[0]),
            serde_json::json!({
                "@timestamp": "2025-11-25T17:00:00.123Z",
                "op": "replace",
                "metric": "demo_bytes_total",
                "family": "demo_bytes",
                "type": "counter",
                "unit": "bytes",
                "value": 2.5,
                "labels": {"node": "n1", "a.b/c": "x"},
                "source": {"kind": "object", "id": "v1/ConfigMap/demo/a", "api_version": "v1",
                           "object_kind": "ConfigMap", "namespace": "demo", "name": "a", "uid": "uid-a"},
            })
        );
        let remove = json(&docs[1]);
        assert_eq!(remove["op"], "remove");
        assert_eq!(remove["@timestamp"], "1970-01-01T00:00:00.007Z");
        assert!(remove.get("value").is_none() && remove.get("metric").is_none());
        assert_eq!(remove["source"]["name"], "a");
    }

    #[test]
    fn non_finite_values_are_null_with_a_text() {
        let b = batch(&[
            (f64::NAN, 1, &[]),
            (f64::INFINITY, 2, &[]),
            (f64::NEG_INFINITY, 3, &[]),
        ]);
        let docs = documents(&b);
        for (doc, text) in docs.iter().zip(["NaN", "+Inf", "-Inf"]) {
            let v = json(doc);
            assert!(v["value"].is_null(), "{v}");
            assert_eq!(v["value_text"], text);
        }
    }

    #[test]
    fn empty_source_fields_are_left_out() {
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Endpoint, "http://a/metrics"));
        let b = b.build();
        let v = json(&documents(&b)[0]);
        assert_eq!(
            v["source"],
            serde_json::json!({"kind": "endpoint", "id": "http://a/metrics"})
        );
    }

    #[test]
    fn ids_are_deterministic_and_tell_samples_apart() {
        let b = batch(&[
            (1.0, 10, &[("x", "1"), ("y", "2")]),
            (9.0, 10, &[("y", "2"), ("x", "1")]), // same series and time, labels in another order
            (1.0, 11, &[("x", "1"), ("y", "2")]), // another time
            (1.0, 10, &[("x", "1"), ("y", "3")]), // another label value
            (1.0, 10, &[("x", "1")]),             // fewer labels
        ]);
        let ids: Vec<String> = documents(&b).iter().map(Document::id).collect();
        let again: Vec<String> = documents(&b).iter().map(Document::id).collect();
        assert_eq!(ids, again);
        assert_eq!(ids[0].len(), 32);
        assert!(ids[0].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            ids[0], ids[1],
            "the value and label order do not change the id"
        );
        let mut distinct = vec![&ids[0], &ids[2], &ids[3], &ids[4], &ids[5]];
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{ids:?}");
    }

    #[test]
    fn a_removal_id_ignores_the_export_time() {
        let b = batch(&[]);
        let source = b.updates().next().unwrap().source();
        assert_eq!(
            Document::remove(source, 1).id(),
            Document::remove(source, 2).id()
        );
    }

    #[test]
    fn index_names_use_date_math_in_utc() {
        let daily = IndexPattern::new("periscope-%Y.%m.%d").unwrap();
        // 2025-11-25T23:59:59.999Z and one millisecond later.
        assert_eq!(
            daily.name(1_764_115_199_999).unwrap(),
            "periscope-2025.11.25"
        );
        assert_eq!(
            daily.name(1_764_115_200_000).unwrap(),
            "periscope-2025.11.26"
        );
        assert_eq!(daily.template_pattern().as_deref(), Some("periscope-*"));
        let fixed = IndexPattern::new("metrics").unwrap();
        assert_eq!(fixed.name(0).unwrap(), "metrics");
        assert_eq!(fixed.template_pattern().as_deref(), Some("metrics"));
        assert_eq!(IndexPattern::new("%Y-x").unwrap().template_pattern(), None);
        assert!(daily.name(i64::MAX).is_err());
    }

    #[test]
    fn bad_index_patterns_are_refused() {
        let rule = |pattern: &str| match IndexPattern::new(pattern) {
            Err(IndexError::Pattern { source, .. }) => match *source {
                IndexError::Name { rule, .. } => Some(rule),
                _ => None,
            },
            _ => None,
        };
        assert_eq!(rule("Periscope"), Some(NameRule::Uppercase));
        assert_eq!(rule("p-%b"), Some(NameRule::Uppercase));
        assert_eq!(rule("a b"), Some(NameRule::Forbidden(' ')));
        assert_eq!(rule("_x"), Some(NameRule::Start));
        assert_eq!(rule(""), Some(NameRule::Reserved));
        assert!(
            IndexPattern::new("Periscope")
                .unwrap_err()
                .to_string()
                .contains("lowercase")
        );
        assert!(IndexPattern::new("a b").is_err());
        assert!(IndexPattern::new("_x").is_err());
        assert!(IndexPattern::new("").is_err());
        assert!(IndexPattern::new("x-%Q").is_err());
    }
}
