//! Batch → NDJSON: one line per sample, one per removed source, one per empty replace.
//!
//! ```text
//! {"ts":1700000000000,"op":"replace","source":{"kind":"object","id":"default/vm1",…},"family":"vm_memory","metric":"vm_memory_bytes","type":"gauge","unit":"bytes","labels":{"node":"n1"},"value":2.5}
//! {"ts":1700000000000,"op":"replace","source":{…},"samples":0}
//! {"ts":1700000000000,"op":"remove","source":{…}}
//! ```
//!
//! Empty source fields and an empty unit are left out. JSON has no NaN or infinities, so those
//! values are written as the strings `"NaN"`, `"+Inf"` and `"-Inf"` (the Prometheus spelling).

use periscope_plugin_api::{Batch, Sample, Source, Update};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Appends the NDJSON lines of every update of `batch` to `out`.
///
/// `now_ms` stamps the lines that have no sample timestamp (removals and empty replaces).
pub fn encode_batch(batch: &Batch, now_ms: i64, out: &mut Vec<u8>) -> serde_json::Result<()> {
    for update in batch.updates() {
        match update {
            Update::Replace { source, samples } if samples.is_empty() => {
                write_line(out, &EmptyReplace::new(now_ms, source))?;
            }
            Update::Replace { source, samples } => {
                for sample in samples.iter() {
                    write_line(out, &SampleRecord::new(source, sample))?;
                }
            }
            Update::Remove { source } => write_line(out, &RemoveRecord::new(now_ms, source))?,
        }
    }
    Ok(())
}

fn write_line(out: &mut Vec<u8>, record: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.push(b'\n');
    Ok(())
}

/// The line of one sample of a `Replace`.
#[derive(serde::Serialize)]
struct SampleRecord<'a> {
    ts: i64,
    op: &'static str,
    source: SourceRecord<'a>,
    family: &'a str,
    metric: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    unit: &'a str,
    labels: Labels<'a>,
    value: Value,
}

impl<'a> SampleRecord<'a> {
    fn new(source: Source<'a>, sample: Sample<'a>) -> Self {
        let family = sample.family();
        SampleRecord {
            ts: sample.timestamp_ms(),
            op: "replace",
            source: SourceRecord(source),
            family: family.name,
            metric: sample.metric_name(),
            kind: family.kind.as_str(),
            unit: family.unit,
            labels: Labels(sample),
            value: Value(sample.value()),
        }
    }
}

/// The line of a `Replace` without samples, so that an emptied source is visible in the file.
#[derive(serde::Serialize)]
struct EmptyReplace<'a> {
    ts: i64,
    op: &'static str,
    source: SourceRecord<'a>,
    samples: u32,
}

impl<'a> EmptyReplace<'a> {
    fn new(ts: i64, source: Source<'a>) -> Self {
        EmptyReplace {
            ts,
            op: "replace",
            source: SourceRecord(source),
            samples: 0,
        }
    }
}

/// The line of a `Remove`.
#[derive(serde::Serialize)]
struct RemoveRecord<'a> {
    ts: i64,
    op: &'static str,
    source: SourceRecord<'a>,
}

impl<'a> RemoveRecord<'a> {
    fn new(ts: i64, source: Source<'a>) -> Self {
        RemoveRecord {
            ts,
            op: "remove",
            source: SourceRecord(source),
        }
    }
}

/// A source as a JSON object, without its empty fields.
struct SourceRecord<'a>(Source<'a>);

impl Serialize for SourceRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let source = &self.0;
        let fields = [
            ("id", source.id),
            ("api_version", source.api_version),
            ("object_kind", source.object_kind),
            ("namespace", source.namespace),
            ("name", source.name),
            ("uid", source.uid),
        ];
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", source.kind.as_str())?;
        for (key, value) in fields.into_iter().filter(|(_, v)| !v.is_empty()) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A sample's labels as a JSON object, in the sample's order.
struct Labels<'a>(Sample<'a>);

impl Serialize for Labels<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.labels())
    }
}

/// A sample value: a JSON number, or a string for the values JSON cannot hold.
struct Value(f64);

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            serializer.serialize_str("NaN")
        } else if v == f64::INFINITY {
            serializer.serialize_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            serializer.serialize_str("-Inf")
        } else {
            serializer.serialize_f64(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, SourceKind, Suffix};
    use serde_json::{Value as Json, json};

    fn vm(id: &str) -> Source<'_> {
        Source {
            kind: SourceKind::Object,
            id,
            api_version: "kubevirt.io/v1",
            object_kind: "VirtualMachineInstance",
            namespace: "default",
            name: "vm1",
            uid: "",
        }
    }

    fn lines(batch: &Batch) -> Vec<Json> {
        let mut out = Vec::new();
        encode_batch(batch, 99, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') || text.is_empty());
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_replace_writes_one_line_per_sample() {
        let mut b = BatchBuilder::new();
        let memory = b.family(Family {
            name: "vm_memory",
            help: "Memory.",
            unit: "bytes",
            kind: FamilyKind::Gauge,
        });
        let phases = b.family(Family {
            name: "vm_phase_transitions",
            help: "Transitions.",
            unit: "",
            kind: FamilyKind::Counter,
        });
        let mut r = b.replace(vm("default/vm1"));
        r.sample(memory, Suffix::None, 2.5, 1000)
            .label("node", "n1")
            .label("zone", "a");
        r.sample(phases, Suffix::Total, 3.0, 1001);
        let records = lines(&b.build());

        assert_eq!(
            records,
            [
                json!({
                    "ts": 1000, "op": "replace",
                    "source": {"kind": "object", "id": "default/vm1", "api_version": "kubevirt.io/v1",
                               "object_kind": "VirtualMachineInstance", "namespace": "default", "name": "vm1"},
                    "family": "vm_memory", "metric": "vm_memory", "type": "gauge", "unit": "bytes",
                    "labels": {"node": "n1", "zone": "a"}, "value": 2.5
                }),
                json!({
                    "ts": 1001, "op": "replace",
                    "source": {"kind": "object", "id": "default/vm1", "api_version": "kubevirt.io/v1",
                               "object_kind": "VirtualMachineInstance", "namespace": "default", "name": "vm1"},
                    "family": "vm_phase_transitions", "metric": "vm_phase_transitions_total",
                    "type": "counter", "labels": {}, "value": 3.0
                }),
            ]
        );
    }

    #[test]
    fn a_remove_writes_one_line_stamped_now() {
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Endpoint, "http://x/metrics"));
        assert_eq!(
            lines(&b.build()),
            [
                json!({"ts": 99, "op": "remove", "source": {"kind": "endpoint", "id": "http://x/metrics"}})
            ]
        );
    }

    #[test]
    fn an_empty_replace_is_visible() {
        let mut b = BatchBuilder::new();
        b.replace(Source::new(SourceKind::Aggregate, "vms_by_node"));
        assert_eq!(
            lines(&b.build()),
            [
                json!({"ts": 99, "op": "replace", "source": {"kind": "aggregate", "id": "vms_by_node"}, "samples": 0})
            ]
        );
    }

    #[test]
    fn values_json_cannot_hold_are_strings() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "x",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source::new(SourceKind::Object, "o"));
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5] {
            r.sample(f, Suffix::None, v, 0);
        }
        let values: Vec<Json> = lines(&b.build())
            .into_iter()
            .map(|l| l["value"].clone())
            .collect();
        assert_eq!(
            values,
            [json!("NaN"), json!("+Inf"), json!("-Inf"), json!(-0.5)]
        );
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        assert!(lines(&Batch::new()).is_empty());
    }
}
