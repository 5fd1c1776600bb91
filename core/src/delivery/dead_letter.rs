//! The dead-letter file: where what an exporter's target refused goes, so nothing disappears.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use periscope_plugin_api::{Batch, Sample, Source, Update};
use serde_json::json;

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

impl Lines<'_> {
    /// Every line of `update`: its removal, or each of its samples.
    fn update(&mut self, update: Update<'_>, reason: &str) -> std::io::Result<()> {
        match update {
            Update::Remove { source } => {
                let line = json!({"ts": self.ts, "exporter": self.exporter, "reason": reason, "op": "remove", "source": source.id});
                writeln!(self.out, "{line}")
            }
            Update::Replace { source, samples } => {
                for sample in samples.iter() {
                    self.sample(source, sample, reason)?;
                }
                Ok(())
            }
        }
    }

    fn sample(&mut self, source: Source<'_>, s: Sample<'_>, reason: &str) -> std::io::Result<()> {
        let labels: serde_json::Map<String, serde_json::Value> =
            s.labels().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let line = json!({
            "ts": self.ts, "exporter": self.exporter, "reason": reason, "op": "replace",
            "source": source.id, "metric": s.metric_name(), "labels": labels,
            "value": number(s.value()), "sample_ts": s.timestamp_ms(),
        });
        writeln!(self.out, "{line}")
    }
}

fn number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(|| v.to_string().into(), serde_json::Value::Number)
}
