//! # periscope-exporter-csv
//!
//! An example third-party exporter for Periscope (`plugin = "csv"`), built outside the Periscope
//! workspace against `periscope-plugin-api` alone. It appends every sample as a CSV row to one
//! file and makes each export durable before acknowledging it.
//!
//! Modules:
//! - [`config`]: the options (`path`, `header`);
//! - [`rows`]: batch → CSV rows.
//!
//! Read it alongside `docs/plugin-authors.md` in the Periscope repository.

#![warn(missing_docs)]

pub mod config;
pub mod rows;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter};

use crate::config::CsvConfig;

/// The CSV exporter: one file, appended to.
pub struct CsvExporter {
    file: File,
    /// What a failed export asks the host to wait before retrying.
    retry_after: Duration,
}

impl Exporter for CsvExporter {
    type Config = CsvConfig;

    fn new(config: CsvConfig, _context: Context<'_>) -> Result<Self, BoxError> {
        let open = || -> std::io::Result<File> {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.path)?;
            if config.header && file.metadata()?.len() == 0 {
                file.write_all(rows::HEADER.as_bytes())?;
            }
            Ok(file)
        };
        // Fail here, with the path, on anything that will not fix itself: the host reports it.
        let file = open().map_err(|e| format!("cannot open {}: {e}", config.path.display()))?;
        Ok(CsvExporter {
            file,
            retry_after: Duration::from_secs(1),
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let mut text = String::new();
        rows::encode_batch(batch, now_ms(), &mut text);
        if text.is_empty() {
            return Ok(Export::Ok);
        }
        match self.append(text.as_bytes()) {
            Ok(()) => Ok(Export::Ok),
            // Disk full and friends may pass: the host keeps the batch and retries it.
            Err(e) => Ok(Export::Retry {
                after: self.retry_after,
                reason: format!("cannot write rows: {e}"),
            }),
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(self.file.sync_data()?)
    }
}

impl CsvExporter {
    /// Appends `bytes` in one write and syncs them to disk: only then is the batch handed over.
    /// On failure the file is cut back, so the retried batch leaves no half row behind.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let size_before = self.file.metadata()?.len();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            let _ = self.file.set_len(size_before);
        }
        written
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// The host looks for `libperiscope_exporter_csv.so` and this plugin name.
periscope_plugin_api::export_exporter!(name = "csv", exporter = CsvExporter);

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;
    use periscope_plugin_api::{BatchBuilder, Source, SourceKind};

    fn removal() -> Batch {
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Object, "default/vm1"));
        b.build()
    }

    fn exporter(toml: &str) -> CsvExporter {
        CsvExporter::new(parse(toml).unwrap(), Context { exporter: "rows" }).unwrap()
    }

    #[test]
    fn a_new_file_gets_a_header_then_rows() {
        let path = std::env::temp_dir().join(format!("csv-exporter-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut csv = exporter(&format!("path = {:?}", path.display().to_string()));
        assert_eq!(csv.export(&removal()).unwrap(), Export::Ok);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], rows::HEADER.trim_end());
        assert!(lines[1].ends_with(",default/vm1,-,,"), "{text}");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn a_full_disk_asks_for_a_retry() {
        // Every write to /dev/full fails with ENOSPC.
        let mut csv = exporter("path = \"/dev/full\"\nheader = false");
        assert!(matches!(
            csv.export(&removal()).unwrap(),
            Export::Retry { .. }
        ));
    }

    #[test]
    fn a_missing_directory_fails_new_with_the_path() {
        let config = parse("path = \"/nonexistent/dir/rows.csv\"").unwrap();
        let Err(err) = CsvExporter::new(config, Context { exporter: "rows" }) else {
            panic!("expected an error");
        };
        assert!(
            err.to_string().contains("/nonexistent/dir/rows.csv"),
            "{err}"
        );
    }
}
