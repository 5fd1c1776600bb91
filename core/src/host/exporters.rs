//! The running exporters, reconciled with each plan: an exporter whose plugin file and settings
//! are unchanged keeps its worker and queue untouched; a changed one delivers what it holds, stops
//! and is replaced; a new one starts from the collector's current state.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info};

use super::{RunError, Wiring};
use crate::check::{PlannedExporter, Refused};
use crate::config::{BatchConfig, QueueConfig, RetryConfig};
use crate::delivery::{DeadLetter, DiskQueue, MemoryQueue, Queue, Worker, WorkerSpec};

/// What makes an exporter the same across a reload.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    name: String,
    plugin_file: crate::plugins::FileVersion,
    config_text: String,
    queue: QueueConfig,
    batch: BatchConfig,
    retry: RetryConfig,
    export_timeout: std::time::Duration,
    max_series: Option<u64>,
    dead_letter_dir: std::path::PathBuf,
}

impl Fingerprint {
    fn of(exporter: &PlannedExporter, dead_letter_dir: &Path) -> Self {
        Fingerprint {
            name: exporter.name.clone(),
            plugin_file: exporter.plugin_file,
            config_text: exporter.config_text.clone(),
            queue: exporter.queue.clone(),
            batch: exporter.batch,
            retry: exporter.retry,
            export_timeout: exporter.export_timeout,
            max_series: exporter.max_series,
            dead_letter_dir: dead_letter_dir.to_owned(),
        }
    }
}

/// The exporters running now.
#[derive(Default)]
pub(super) struct Exporters {
    running: Vec<(Fingerprint, Worker)>,
    /// Names of exporters whose plugin was refused (reported unready).
    refused: Vec<String>,
}

impl Exporters {
    /// Makes the running exporters those of `planned`. `catch_up` is false only for the
    /// exporters started with the host (the collector's state is still empty then). Returns why
    /// any exporter could not start (the others run); each is also unready.
    pub(super) async fn reconcile(
        &mut self,
        planned: Vec<PlannedExporter>,
        refused: &[Refused],
        dead_letter_dir: &Path,
        wiring: &Wiring,
        catch_up: bool,
    ) -> Vec<RunError> {
        let mut failed = Vec::new();
        let wanted: Vec<(Fingerprint, PlannedExporter)> = planned
            .into_iter()
            .map(|e| (Fingerprint::of(&e, dead_letter_dir), e))
            .collect();
        let mut kept = Vec::new();
        for (fingerprint, worker) in std::mem::take(&mut self.running) {
            if wanted.iter().any(|(f, _)| *f == fingerprint) {
                kept.push((fingerprint, worker));
                continue;
            }
            let name = fingerprint.name;
            info!(exporter = %name, "exporter removed or changed: delivering what it holds, then stopping it");
            worker.retire(wiring.grace).await;
            if !wanted.iter().any(|(f, _)| f.name == name) {
                wiring.readiness.remove(&format!("exporter:{name}"));
                wiring.telemetry.exporter(&name).up.set(0);
                wiring.telemetry.forget_exporter_info(&name);
            }
        }
        for name in std::mem::take(&mut self.refused) {
            if !refused.iter().any(|r| r.name == name) {
                wiring.readiness.remove(&format!("exporter:{name}"));
            }
        }
        for refused in refused {
            error!(exporter = %refused.name, problem = %refused.problem.message, "exporter disabled, its plugin was refused");
            wiring.readiness.set(
                &format!("exporter:{}", refused.name),
                Err(format!("plugin refused: {}", refused.problem.message)),
            );
            wiring.telemetry.exporter(&refused.name).up.set(0);
            self.refused.push(refused.name.clone());
        }
        for (fingerprint, exporter) in wanted {
            if kept.iter().any(|(f, _)| *f == fingerprint) {
                continue;
            }
            let name = exporter.name.clone();
            match start(exporter, dead_letter_dir, wiring, catch_up) {
                Ok(worker) => kept.push((fingerprint, worker)),
                Err(e) => {
                    wiring
                        .readiness
                        .set(&format!("exporter:{name}"), Err(e.to_string()));
                    failed.push(e);
                }
            }
        }
        self.running = kept;
        failed
    }

    /// Waits for every worker to deliver what it holds (the fan-out must be closing), at most
    /// `grace` each.
    pub(super) async fn finish(self, grace: std::time::Duration) {
        for (_, worker) in self.running {
            worker.finish(grace).await;
        }
    }
}

/// Opens the exporter's queue and starts its worker.
fn start(
    exporter: PlannedExporter,
    dead_letter_dir: &Path,
    wiring: &Wiring,
    catch_up: bool,
) -> Result<Worker, RunError> {
    let metrics = wiring.telemetry.exporter(&exporter.name);
    let queue = match &exporter.queue {
        QueueConfig::Memory {
            capacity,
            when_full,
        } => Queue::Memory(Arc::new(MemoryQueue::new(
            *capacity,
            *when_full,
            metrics.clone(),
        ))),
        QueueConfig::Disk {
            path,
            max_bytes,
            fsync,
            when_full,
        } => Queue::Disk(Arc::new(
            DiskQueue::open(path, max_bytes.0, *when_full, *fsync, metrics.clone()).map_err(
                |source| RunError::Queue {
                    name: exporter.name.clone(),
                    path: path.clone(),
                    source,
                },
            )?,
        )),
    };
    wiring
        .readiness
        .expect(&format!("exporter:{}", exporter.name), "starting");
    // The file's hash, for `periscope_exporter_info`, read aside: a large plugin takes a moment.
    let info = (
        wiring.telemetry.clone(),
        exporter.name.clone(),
        exporter.plugin_name.clone(),
        exporter.plugin.info().plugin_version,
        exporter.plugin_path.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let (telemetry, name, plugin, version, path) = info;
        let sha256 = crate::plugins::file_sha256(&path).unwrap_or_default();
        telemetry.exporter_info(&name, &plugin, &version, &sha256);
    });
    let spec = WorkerSpec {
        dead_letter: DeadLetter::new(dead_letter_dir, &exporter.name),
        name: exporter.name.clone(),
        plugin: exporter.plugin,
        config_text: exporter.config_text,
        queue,
        batch: exporter.batch,
        retry: exporter.retry,
        export_timeout: exporter.export_timeout,
        max_series: exporter.max_series,
        guard_stats: wiring.telemetry.guard_stats(),
        metrics,
        readiness: wiring.readiness.clone(),
    };
    Worker::start(
        spec,
        wiring.fanout.subscribe(),
        wiring.resyncs.clone(),
        &wiring.supervisor,
        catch_up,
    )
    .map_err(|source| RunError::Thread {
        name: exporter.name,
        source,
    })
}
