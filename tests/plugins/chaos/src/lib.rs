//! # periscope-exporter-chaos
//!
//! A fault-injection exporter (`plugin = "chaos"`) for the host's end-to-end tests. It panics,
//! asks for retries or rejects on chosen export calls, fails its first `new` calls, delays exports,
//! and records every batch it accepts, so a test can check what the host delivered, retried,
//! dead-lettered and restarted.
//!
//! Modules:
//! - [`config`]: the options;
//! - [`fault`]: the process-wide call counters and which fault a call gets;
//! - [`record`]: the NDJSON record of accepted batches.
//!
//! Each accepted batch is also logged with `tracing::info!`, which exercises the host's log bridge.

pub mod config;
pub mod fault;
pub mod record;

use std::time::Duration;

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter};

use crate::config::ChaosConfig;
use crate::fault::Fault;

/// The wait the chaos exporter asks for when it injects a retry.
pub const RETRY_AFTER: Duration = Duration::from_millis(20);

/// The fault-injecting exporter.
#[derive(Debug)]
pub struct ChaosExporter {
    config: ChaosConfig,
    exporter: String,
}

impl Exporter for ChaosExporter {
    type Config = ChaosConfig;

    fn new(config: ChaosConfig, context: Context<'_>) -> Result<Self, BoxError> {
        let call = fault::next_new_call();
        if fault::new_fails(&config, call) {
            return Err(format!(
                "chaos: new call {call} fails (fail_new = {})",
                config.fail_new
            )
            .into());
        }
        Ok(ChaosExporter {
            config,
            exporter: context.exporter.to_owned(),
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let call = fault::next_export_call();
        if self.config.export_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.export_delay_ms));
        }
        match fault::for_call(&self.config, call) {
            Fault::Panic => panic!("chaos: panic on call {call}"),
            Fault::Retry => Ok(Export::Retry {
                after: RETRY_AFTER,
                reason: format!("chaos: retry on call {call}"),
            }),
            Fault::Reject => Ok(Export::Reject {
                reason: format!("chaos: reject on call {call}"),
            }),
            Fault::None => self.accept(call, batch),
        }
    }
}

impl ChaosExporter {
    fn accept(&self, call: u64, batch: &Batch) -> Result<Export, BoxError> {
        if let Some(path) = &self.config.record
            && let Err(error) = record::append(path, call, batch)
        {
            return Ok(Export::Retry {
                after: RETRY_AFTER,
                reason: format!("chaos: cannot record to {}: {error}", path.display()),
            });
        }
        tracing::info!(
            exporter = %self.exporter,
            call,
            updates = batch.update_count(),
            samples = batch.sample_count(),
            "chaos accepted a batch"
        );
        Ok(Export::Ok)
    }
}

periscope_plugin_api::export_exporter!(name = "chaos", exporter = ChaosExporter);

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Source, SourceKind};

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Object, "gone"));
        b.build()
    }

    #[test]
    fn an_accepted_batch_is_recorded_and_a_recording_failure_asks_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.ndjson");
        let config = ChaosConfig {
            record: Some(path.clone()),
            ..ChaosConfig::default()
        };
        let mut exporter = ChaosExporter::new(config, Context { exporter: "t" }).unwrap();
        assert_eq!(exporter.export(&batch()).unwrap(), Export::Ok);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""op":"remove","source":"gone""#), "{text}");

        exporter.config.record = Some(dir.path().join("missing/record.ndjson"));
        assert!(matches!(
            exporter.export(&batch()).unwrap(),
            Export::Retry { .. }
        ));
    }
}
