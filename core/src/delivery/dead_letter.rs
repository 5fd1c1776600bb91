//! The dead-letter file: where what an exporter's target refused goes, so nothing disappears.
//!
//! ```text
//! {"ts":1700000000000,"exporter":"search","reason":"…","op":"replace","source":"v1/ConfigMap/demo/a","family":"vm_memory","metric":"vm_memory_bytes","type":"gauge","labels":{"node":"n1"},"value":2.5,"sample_ts":1699999999000}
//! {"ts":1700000000000,"exporter":"search","reason":"…","op":"remove","source":"v1/ConfigMap/demo/b"}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use periscope_plugin_api::json::SampleJson;
use periscope_plugin_api::{Batch, Sample, Source, Update};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::refusal::{Refusals, Refused};

/// Appends refused samples to `<dead_letter_dir>/<exporter>.ndjson`, one line per sample (or per
/// `Remove`), each with the target's reason.
pub struct DeadLetter {
    path: PathBuf,
    exporter: String,
}

impl DeadLetter {
    /// The dead-letter file of `exporter` in `dir` (created on first write).
    pub fn new(dir: &Path, exporter: &str) -> Self {
        DeadLetter {
            path: dir.join(format!("{exporter}.ndjson")),
            exporter: exporter.to_owned(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends all of `batch` with `reason` and syncs the file.
    pub fn write(&self, reason: &str, batch: &Batch) -> std::io::Result<()> {
        self.append(|lines| {
            for update in batch.updates() {
                lines.update(update, reason)?;
            }
            Ok(())
        })
    }

    /// Appends the items of `batch` that `refusals` names, each with its own reason, and syncs
    /// the file.
    pub fn write_items(&self, batch: &Batch, refusals: &Refusals) -> std::io::Result<()> {
        self.append(|lines| {
            for (position, update) in batch.updates().enumerate() {
                match (refusals.of_update(position), update) {
                    (None, _) => {}
                    (Some(Refused::Whole(reason)), update) => lines.update(update, reason)?,
                    (Some(Refused::Samples(chosen)), Update::Replace { source, samples }) => {
                        for (index, sample) in samples.iter().enumerate() {
                            if let Some(reason) = chosen.get(&index) {
                                lines.sample(source, sample, reason)?;
                            }
                        }
                    }
                    // `Refusals::resolve` names no samples of a Remove.
                    (Some(Refused::Samples(_)), Update::Remove { .. }) => {}
                }
            }
            Ok(())
        })
    }

    /// Opens the file for appending, lets `write` add lines, then syncs.
    fn append(
        &self,
        write: impl FnOnce(&mut Lines<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut lines = Lines {
            out: BufWriter::new(file),
            exporter: &self.exporter,
            ts: periscope_plugin_api::now_ms(),
        };
        write(&mut lines)?;
        let file = lines.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()
    }
}

/// Writes the lines of one append.
struct Lines<'a> {
    out: BufWriter<File>,
    exporter: &'a str,
    ts: i64,
}

impl<'a> Lines<'a> {
    /// Every line of `update`: its removal, or each of its samples.
    fn update(&mut self, update: Update<'_>, reason: &str) -> std::io::Result<()> {
        match update {
            Update::Remove { source } => self.line(&Line {
                head: self.head(reason, "remove", source),
                sample: None,
            }),
            Update::Replace { source, samples } => {
                for sample in samples.iter() {
                    self.sample(source, sample, reason)?;
                }
                Ok(())
            }
        }
    }

    fn sample(&mut self, source: Source<'_>, s: Sample<'_>, reason: &str) -> std::io::Result<()> {
        self.line(&Line {
            head: self.head(reason, "replace", source),
            sample: Some(s),
        })
    }

    /// The head of a line; it borrows nothing of `self`.
    fn head<'r>(&self, reason: &'r str, op: &'static str, source: Source<'r>) -> Head<'r>
    where
        'a: 'r,
    {
        Head {
            ts: self.ts,
            exporter: self.exporter,
            reason,
            op,
            source,
        }
    }

    fn line(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }
}

/// What every line starts with: when it was written, by which exporter, why, and what.
struct Head<'a> {
    ts: i64,
    exporter: &'a str,
    reason: &'a str,
    op: &'static str,
    source: Source<'a>,
}

/// One line: the head, then the refused sample's fields and timestamp (none for a `Remove`).
/// Samples are written by `periscope_plugin_api::json`, as the file and Elasticsearch exporters
/// write them (NaN and ±Inf included); the source is its id.
struct Line<'a> {
    head: Head<'a>,
    sample: Option<Sample<'a>>,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let head = &self.head;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("ts", &head.ts)?;
        map.serialize_entry("exporter", head.exporter)?;
        map.serialize_entry("reason", head.reason)?;
        map.serialize_entry("op", head.op)?;
        map.serialize_entry("source", head.source.id)?;
        if let Some(sample) = self.sample {
            SampleJson(sample).serialize_fields(&mut map)?;
            map.serialize_entry("sample_ts", &sample.timestamp_ms())?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, SourceKind, Suffix};
    use serde_json::{Value, json};

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_refused_batch_is_written_one_line_per_sample_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetter::new(&dir.path().join("dead"), "search");
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "vm_memory",
            help: "",
            unit: "bytes",
            kind: FamilyKind::Gauge,
        });
        let mut source = Source::new(SourceKind::Object, "v1/ConfigMap/demo/a");
        source.name = "a";
        let mut r = b.replace(source);
        r.sample(f, Suffix::None, 2.5, 7).label("node", "n1");
        r.sample(f, Suffix::None, f64::INFINITY, 7);
        b.remove(Source::new(SourceKind::Endpoint, "http://x/metrics"));
        dead.write("HTTP 400", &b.build()).unwrap();

        let mut lines = lines(dead.path());
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &mut lines {
            assert!(line["ts"].as_i64().unwrap() > 0);
            line.as_object_mut().unwrap().remove("ts");
        }
        assert_eq!(
            lines,
            [
                json!({"exporter": "search", "reason": "HTTP 400", "op": "replace",
                       "source": "v1/ConfigMap/demo/a",
                       "family": "vm_memory", "metric": "vm_memory", "type": "gauge", "unit": "bytes",
                       "labels": {"node": "n1"}, "value": 2.5, "sample_ts": 7}),
                json!({"exporter": "search", "reason": "HTTP 400", "op": "replace",
                       "source": "v1/ConfigMap/demo/a",
                       "family": "vm_memory", "metric": "vm_memory", "type": "gauge", "unit": "bytes",
                       "labels": {}, "value": null, "value_text": "+Inf", "sample_ts": 7}),
                json!({"exporter": "search", "reason": "HTTP 400", "op": "remove",
                       "source": "http://x/metrics"}),
            ]
        );
    }

    #[test]
    fn appends_add_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetter::new(dir.path(), "files");
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Object, "a"));
        let batch = b.build();
        dead.write("first", &batch).unwrap();
        dead.write("second", &batch).unwrap();
        let reasons: Vec<Value> = lines(dead.path())
            .into_iter()
            .map(|l| l["reason"].clone())
            .collect();
        assert_eq!(reasons, [json!("first"), json!("second")]);
    }
}
