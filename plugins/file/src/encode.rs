//! Batch → NDJSON: one line per sample, one per removed source, one per empty replace.
//!
//! ```text
//! {"ts":1700000000000,"op":"replace","source":{"kind":"object","id":"default/vm1",…},"family":"vm_memory","metric":"vm_memory_bytes","type":"gauge","unit":"bytes","labels":{"node":"n1"},"value":2.5}
//! {"ts":1700000000000,"op":"replace","source":{…},"samples":0}
//! {"ts":1700000000000,"op":"remove","source":{…}}
//! ```
//!
//! Sources and samples are written by `periscope_plugin_api::json`, as the Elasticsearch exporter
//! and the dead-letter file write them: empty source fields and an empty unit are left out, and
//! NaN or ±Inf is `"value": null` with `"value_text": "NaN"` (or `"+Inf"`, `"-Inf"`).

use periscope_plugin_api::json::{SampleJson, SourceJson};
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
                    write_line(out, &SampleRecord { source, sample })?;
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

/// The line of one sample of a `Replace`: its timestamp, the op and the source, then the sample's
/// fields as [`SampleJson`] writes them.
struct SampleRecord<'a> {
    source: Source<'a>,
    sample: Sample<'a>,
}

impl Serialize for SampleRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("ts", &self.sample.timestamp_ms())?;
        map.serialize_entry("op", "replace")?;
        map.serialize_entry("source", &SourceJson(self.source))?;
        SampleJson(self.sample).serialize_fields(&mut map)?;
        map.end()
    }
}

/// The line of a `Replace` without samples, so that an emptied source is visible in the file.
#[derive(serde::Serialize)]
struct EmptyReplace<'a> {
    ts: i64,
    op: &'static str,
    source: SourceJson<'a>,
    samples: u32,
}

impl<'a> EmptyReplace<'a> {
    fn new(ts: i64, source: Source<'a>) -> Self {
        EmptyReplace {
            ts,
            op: "replace",
            source: SourceJson(source),
            samples: 0,
        }
    }
}

/// The line of a `Remove`.
#[derive(serde::Serialize)]
struct RemoveRecord<'a> {
    ts: i64,
    op: &'static str,
    source: SourceJson<'a>,
}

impl<'a> RemoveRecord<'a> {
    fn new(ts: i64, source: Source<'a>) -> Self {
        RemoveRecord {
            ts,
            op: "remove",
            source: SourceJson(source),
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
    fn values_json_cannot_hold_are_null_with_a_text() {
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
        let values: Vec<(Json, Json)> = lines(&b.build())
            .into_iter()
            .map(|l| (l["value"].clone(), l["value_text"].clone()))
            .collect();
        assert_eq!(
            values,
            [
                (Json::Null, json!("NaN")),
                (Json::Null, json!("+Inf")),
                (Json::Null, json!("-Inf")),
                (json!(-0.5), Json::Null)
            ]
        );
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        assert!(lines(&Batch::new()).is_empty());
    }
}
