//! The dead-letter file: where batches an exporter's target rejected go, so nothing disappears.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use periscope_plugin_api::{Batch, Update};
use serde_json::json;

/// Appends rejected batches to `<dead_letter_dir>/<exporter>.ndjson`, one line per sample (or per
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

    /// Appends `batch` with `reason` and syncs the file.
    pub fn write(&self, reason: &str, batch: &Batch) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut out = BufWriter::new(file);
        let ts = periscope_plugin_api::now_ms();
        for update in batch.updates() {
            let source = update.source();
            match update {
                Update::Remove { .. } => {
                    let line = json!({"ts": ts, "exporter": self.exporter, "reason": reason, "op": "remove", "source": source.id});
                    writeln!(out, "{line}")?;
                }
                Update::Replace { samples, .. } => {
                    for s in samples.iter() {
                        let labels: serde_json::Map<String, serde_json::Value> =
                            s.labels().map(|(k, v)| (k.to_owned(), v.into())).collect();
                        let line = json!({
                            "ts": ts, "exporter": self.exporter, "reason": reason, "op": "replace",
                            "source": source.id, "metric": s.metric_name(), "labels": labels,
                            "value": number(s.value()), "sample_ts": s.timestamp_ms(),
                        });
                        writeln!(out, "{line}")?;
                    }
                }
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()
    }
}

fn number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(|| v.to_string().into(), serde_json::Value::Number)
}
