//! The record of accepted batches: one NDJSON line per update, appended to a file.
//!
//! ```text
//! {"call":3,"op":"replace","source":"default/vm1","samples":[{"metric":"up","labels":{"a":"b"},"value":1.0}]}
//! {"call":3,"op":"remove","source":"default/vm2","samples":[]}
//! ```
//!
//! Labels and values are written by `periscope_plugin_api::json`: NaN and infinities as
//! `"value": null` with `"value_text": "NaN"` (or `"+Inf"`, `"-Inf"`).

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::Path;

use periscope_plugin_api::batch::Samples;
use periscope_plugin_api::json::{self, LabelsJson};
use periscope_plugin_api::{Batch, Sample, Update};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Appends the lines of `batch`, accepted as export call `call`, to the file at `path` in one write.
pub fn append(path: &Path, call: u64, batch: &Batch) -> io::Result<()> {
    let mut out = Vec::new();
    encode(call, batch, &mut out)?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&out)
}

/// Appends the lines of `batch` to `out`.
pub fn encode(call: u64, batch: &Batch, out: &mut Vec<u8>) -> io::Result<()> {
    for update in batch.updates() {
        serde_json::to_writer(&mut *out, &Line { call, update })?;
        out.push(b'\n');
    }
    Ok(())
}

/// One line: an update accepted by call `call`.
struct Line<'a> {
    call: u64,
    update: Update<'a>,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("call", &self.call)?;
        match self.update {
            Update::Replace { source, samples } => {
                map.serialize_entry("op", "replace")?;
                map.serialize_entry("source", source.id)?;
                map.serialize_entry("samples", &SampleList(samples))?;
            }
            Update::Remove { source } => {
                map.serialize_entry("op", "remove")?;
                map.serialize_entry("source", source.id)?;
                map.serialize_entry("samples", &[(); 0])?;
            }
        }
        map.end()
    }
}

/// The samples of a replace as a JSON array.
struct SampleList<'a>(Samples<'a>);

impl Serialize for SampleList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for sample in self.0.iter() {
            seq.serialize_element(&SampleRecord(sample))?;
        }
        seq.end()
    }
}

/// One sample: metric name, labels, value.
struct SampleRecord<'a>(Sample<'a>);

impl Serialize for SampleRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sample = &self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("metric", &sample.metric_name())?;
        map.serialize_entry("labels", &LabelsJson(*sample))?;
        json::serialize_value(&mut map, sample.value())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};
    use serde_json::{Value as Json, json};

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "restarts",
            help: "",
            unit: "",
            kind: FamilyKind::Counter,
        });
        let mut r = b.replace(Source::new(SourceKind::Object, "default/vm1"));
        r.sample(f, Suffix::Total, 2.0, 0).label("node", "n1");
        r.sample(f, Suffix::Created, f64::NAN, 0);
        b.remove(Source::new(SourceKind::Object, "default/vm2"));
        b.build()
    }

    #[test]
    fn each_update_is_one_line_with_its_call_number() {
        let mut out = Vec::new();
        encode(7, &batch(), &mut out).unwrap();
        let lines: Vec<Json> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                json!({"call": 7, "op": "replace", "source": "default/vm1", "samples": [
                    {"metric": "restarts_total", "labels": {"node": "n1"}, "value": 2.0},
                    {"metric": "restarts_created", "labels": {}, "value": null, "value_text": "NaN"},
                ]}),
                json!({"call": 7, "op": "remove", "source": "default/vm2", "samples": []}),
            ]
        );
    }

    #[test]
    fn append_adds_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.ndjson");
        append(&path, 1, &batch()).unwrap();
        append(&path, 2, &batch()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let calls: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Json>(l).unwrap()["call"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(calls, [1, 1, 2, 2]);
    }
}
