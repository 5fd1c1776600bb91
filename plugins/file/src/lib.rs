//! # periscope-exporter-file
//!
//! A Periscope exporter plugin (`plugin = "file"`) that appends every batch to an NDJSON file,
//! rotated by size. Useful for audits, debugging a pipeline, and as a worked example of a plugin.
//!
//! Start with [`FileExporter`]; its options are in [`config::FileConfig`].
//!
//! Modules:
//! - [`config`]: the options (`path`, `max_bytes`, `max_files`, `fsync`);
//! - [`encode`]: batch → NDJSON lines (the record format is documented there);
//! - [`rotate`]: the output file, its size-based rotation and fsync policy.
//!
//! An export is encoded into one buffer and appended with one write; it is acknowledged only after
//! that write (and the fsync, with `fsync = "always"`) succeeded. An I/O error such as a full disk
//! is reported as [`Export::Retry`], so the host keeps the batch.

pub mod config;
pub mod encode;
pub mod rotate;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter, Health};

use crate::config::FileConfig;
use crate::rotate::RotatingFile;

/// How long the host should wait before retrying an export that failed on I/O.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Buffers above this size are released after an export instead of being kept for the next.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// The file exporter: one NDJSON file (plus rotated ones) per instance.
#[derive(Debug)]
pub struct FileExporter {
    file: RotatingFile,
    /// Reused between exports to avoid reallocating.
    buffer: Vec<u8>,
    /// The reason the last export failed, cleared by the next success; reported by `health`.
    last_error: Option<String>,
}

impl Exporter for FileExporter {
    type Config = FileConfig;

    fn validate(config: &FileConfig) -> Result<(), BoxError> {
        Ok(config.validate()?)
    }

    fn new(config: FileConfig, context: Context<'_>) -> Result<Self, BoxError> {
        Self::validate(&config)?;
        let file = RotatingFile::open(&config)?;
        tracing::info!(
            exporter = context.exporter,
            path = %config.path.display(),
            max_bytes = config.max_bytes.0,
            max_files = config.max_files,
            "writing NDJSON"
        );
        Ok(FileExporter {
            file,
            buffer: Vec::new(),
            last_error: None,
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        self.buffer.clear();
        encode::encode_batch(batch, now_ms(), &mut self.buffer)?;
        if self.buffer.is_empty() {
            return Ok(Export::Ok);
        }
        let result = self.file.write(&self.buffer);
        if self.buffer.capacity() > KEEP_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        match result {
            Ok(()) => {
                self.last_error = None;
                Ok(Export::Ok)
            }
            Err(error) => {
                let reason = error.to_string();
                self.last_error = Some(reason.clone());
                Ok(Export::Retry {
                    after: RETRY_AFTER,
                    reason,
                })
            }
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(self.file.sync()?)
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some(reason) => Health::Degraded(reason.clone()),
        }
    }
}

/// Milliseconds since the Unix epoch, for lines without a sample timestamp.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

periscope_plugin_api::export_exporter!(name = "file", exporter = FileExporter);

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    fn context() -> Context<'static> {
        Context { exporter: "test" }
    }

    fn exporter(toml: &str) -> Result<FileExporter, BoxError> {
        FileExporter::new(parse(toml)?, context())
    }

    fn batch(values: &[f64]) -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source::new(SourceKind::Endpoint, "http://a/metrics"));
        for v in values {
            r.sample(f, Suffix::None, *v, 5);
        }
        b.build()
    }

    #[test]
    fn an_acknowledged_export_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/samples.ndjson");
        let mut exporter = exporter(&format!("path = {:?}", path.display().to_string())).unwrap();
        assert_eq!(exporter.export(&batch(&[1.0, 2.0])).unwrap(), Export::Ok);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""value":2.0"#), "{text}");
        assert_eq!(exporter.health(), Health::Healthy);
        exporter.shutdown().unwrap();
    }

    #[test]
    fn an_empty_batch_is_acknowledged_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let mut exporter = exporter(&format!("path = {:?}", path.display().to_string())).unwrap();
        assert_eq!(exporter.export(&Batch::new()).unwrap(), Export::Ok);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_full_disk_asks_for_a_retry_and_degrades_health() {
        // Every write to /dev/full fails with ENOSPC.
        let mut exporter = exporter("path = \"/dev/full\"\nfsync = \"never\"").unwrap();
        match exporter.export(&batch(&[1.0])).unwrap() {
            Export::Retry { reason, .. } => {
                assert!(reason.contains("/dev/full"), "{reason}");
                assert!(reason.contains("No space left"), "{reason}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert!(matches!(exporter.health(), Health::Degraded(_)));
    }

    #[test]
    fn an_unwritable_path_fails_new_with_the_path_and_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("out.ndjson");
        let err = exporter(&format!("path = {:?}", path.display().to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("os error"), "{err}");
    }

    #[test]
    fn a_zero_max_bytes_fails_new() {
        let err = exporter("path = \"x\"\nmax_bytes = 0").unwrap_err();
        assert!(err.to_string().contains("max_bytes"), "{err}");
    }
}
