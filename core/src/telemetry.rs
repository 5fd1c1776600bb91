//! The host's own metrics, served on its `/metrics`.
//!
//! Every counter has exactly one definition here; the rest of the host increments them through the
//! typed handles ([`ExporterMetrics`], [`InputMetrics`]), never by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use periscope_scraper::ErrorKind;
use periscope_scraper::objects::{ExpressionFailure, PipelineStats};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All self-metrics of one host.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    exporter: ExporterVecs,
    input: InputVecs,
    /// Sources currently known to the collector.
    pub sources: IntGauge,
    /// Bytes the collector keeps of the sources: the packed last update of those no input sends
    /// again for a resync, the packed `Remove` of the others.
    pub source_state_bytes: IntGauge,
    /// Batches fanned out to the exporters.
    pub batches: IntCounter,
    /// Updates skipped because they changed nothing.
    pub unchanged_updates: IntCounter,
    /// Tasks and threads of the host that ended abnormally (a panic), by task.
    pub task_failures: IntCounterVec,
    /// What the config reloads did.
    pub reloads: ReloadMetrics,
    /// `periscope_exporter_info`: which plugin file each exporter runs.
    exporter_info: IntGaugeVec,
    /// The labels each exporter's info series has now, to replace them.
    exporter_info_labels: Arc<Mutex<HashMap<String, [String; 3]>>>,
    /// What the guards of the pipeline and of the host held back, served at every scrape.
    guards: GuardsCollector,
    /// The host's own guard counts (exporters' caps).
    guard_stats: Arc<PipelineStats>,
}

/// The config reload metrics, named as Prometheus names its own.
#[derive(Clone)]
pub struct ReloadMetrics {
    /// 1 if the last reload (or the start) applied its config, 0 if it was refused.
    pub last_successful: IntGauge,
    /// When the last config was applied, in seconds since the epoch.
    pub last_success_timestamp: prometheus::Gauge,
    /// Reloads by result: `success` or `failure`.
    reloads: IntCounterVec,
    /// `periscope_config_hash{sha256}`: 1 for the config running now.
    hash: IntGaugeVec,
}

impl ReloadMetrics {
    /// Records a config applied, whose files hash to `sha256`; `reload` is false at the start.
    pub fn applied(&self, sha256: &str, reload: bool) {
        if reload {
            self.reloads.with_label_values(&["success"]).inc();
        }
        self.last_successful.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success_timestamp.set(now.as_secs_f64());
        self.hash.reset();
        self.hash.with_label_values(&[sha256]).set(1);
    }

    /// Records a reload refused: the running config stays.
    pub fn refused(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
        self.last_successful.set(0);
    }
}

#[derive(Clone)]
struct ExporterVecs {
    queued_batches: IntGaugeVec,
    queued_samples: IntGaugeVec,
    sent: IntCounterVec,
    exports: IntCounterVec,
    retries: IntCounterVec,
    rejected: IntCounterVec,
    dropped: IntCounterVec,
    lagged: IntCounterVec,
    resyncs: IntCounterVec,
    restarts: IntCounterVec,
    corrupt: IntCounterVec,
    up: IntGaugeVec,
    health: IntGaugeVec,
    latency: HistogramVec,
    stalled: IntCounterVec,
}

#[derive(Clone)]
struct InputVecs {
    updates: IntCounterVec,
    errors: IntCounterVec,
    synced: IntGaugeVec,
    expressions: ExpressionErrors,
}

/// The self-metrics of one exporter.
#[derive(Clone)]
pub struct ExporterMetrics {
    /// Batches waiting in the queue.
    pub queued_batches: IntGauge,
    /// Samples waiting in the queue.
    pub queued_samples: IntGauge,
    /// Samples the exporter accepted.
    pub sent: IntCounter,
    /// `export` calls that delivered their batch: Ok, or every item but those it refused.
    pub exports: IntCounter,
    /// Batches tried again: `export` answered Retry, or failed and the exporter was restarted.
    pub retries: IntCounter,
    /// Samples the target rejected (written to the dead-letter file), whether the whole batch was
    /// rejected or single items of it.
    pub rejected: IntCounter,
    /// Samples dropped because the queue was full.
    pub dropped_queue_full: IntCounter,
    /// Samples dropped because the disk queue could not write them (a full or failing disk).
    pub dropped_write_failed: IntCounter,
    /// Samples dropped because shutdown timed out before they were delivered.
    pub dropped_shutdown: IntCounter,
    /// Samples dropped because they could not be written to the dead-letter file either.
    pub dropped_dead_letter: IntCounter,
    /// Samples of disk queue records found torn or corrupt (as far as their header still tells).
    pub dropped_corrupt: IntCounter,
    /// Batches missed because the exporter fell behind the fan-out.
    pub lagged: IntCounter,
    /// Full snapshots sent to the exporter.
    pub resyncs: IntCounter,
    /// Times the exporter was restarted after a failure or panic.
    pub restarts: IntCounter,
    /// Torn or corrupt records found in the disk queue (cut, never delivered).
    pub queue_corrupt_records: IntCounter,
    /// 1 while an exporter instance is running.
    pub up: IntGauge,
    /// What the exporter says of its target after each export.
    pub health: HealthGauges,
    /// Duration of `export` calls.
    pub latency: Histogram,
    /// `export` calls that did not return within the exporter's `export_timeout`.
    pub stalled_exports: IntCounter,
}

/// What an exporter says of its target (its `health()`), as the host records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterHealth {
    /// Working normally.
    Healthy,
    /// Working, with a problem worth reporting.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl ExporterHealth {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExporterHealth::Healthy => "healthy",
            ExporterHealth::Degraded => "degraded",
            ExporterHealth::Unhealthy => "unhealthy",
        }
    }
}

/// `periscope_exporter_health{exporter, state}` of one exporter: 1 for the current state, 0 for
/// the others; all 0 while no instance runs.
#[derive(Clone)]
pub struct HealthGauges {
    healthy: IntGauge,
    degraded: IntGauge,
    unhealthy: IntGauge,
}

impl HealthGauges {
    /// Records the current state (`None`: no instance, nothing known).
    pub fn set(&self, state: Option<ExporterHealth>) {
        self.healthy
            .set(i64::from(state == Some(ExporterHealth::Healthy)));
        self.degraded
            .set(i64::from(state == Some(ExporterHealth::Degraded)));
        self.unhealthy
            .set(i64::from(state == Some(ExporterHealth::Unhealthy)));
    }
}

/// The self-metrics of one input.
#[derive(Clone)]
pub struct InputMetrics {
    /// Source updates received.
    pub updates: IntCounter,
    /// Errors reported, by kind.
    pub errors: InputErrors,
    /// 1 once the first complete read is done.
    pub synced: IntGauge,
    /// Expressions that failed, shared by every input.
    pub expressions: ExpressionErrors,
}

/// The counters of expressions that gave no value, by entry and metric (the same for every
/// input: an entry's expressions fail alike wherever its objects come from).
#[derive(Clone)]
pub struct ExpressionErrors {
    failed: IntCounterVec,
    cost_exceeded: IntCounterVec,
    /// When a failure of each (entry, metric) was last let through to the log.
    logged: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

/// How often the failures of one expression are logged: the counters count every one.
pub const EXPRESSION_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl ExpressionErrors {
    /// Counts one failure (in `periscope_expression_cost_exceeded_total` when the cost bound
    /// refused it, in `periscope_expression_errors_total` otherwise) and says whether to log it:
    /// the first failure of an entry's metric, then at most one per
    /// [`EXPRESSION_LOG_INTERVAL`].
    pub fn inc(&self, failure: &ExpressionFailure, now: Instant) -> bool {
        let counter = if failure.too_costly {
            &self.cost_exceeded
        } else {
            &self.failed
        };
        counter
            .with_label_values(&[failure.resource.as_str(), failure.metric.as_str()])
            .inc();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (failure.resource.clone(), failure.metric.clone());
        match logged.get(&key) {
            Some(last) if now.saturating_duration_since(*last) < EXPRESSION_LOG_INTERVAL => false,
            _ => {
                logged.insert(key, now);
                true
            }
        }
    }
}

/// The error counters of one input, one per [`ErrorKind`] (all shown from the start, at 0).
#[derive(Clone)]
pub struct InputErrors {
    by_kind: Vec<(ErrorKind, IntCounter)>,
}

impl InputErrors {
    /// Counts one error of `kind`.
    pub fn inc(&self, kind: ErrorKind) {
        if let Some((_, counter)) = self.by_kind.iter().find(|(k, _)| *k == kind) {
            counter.inc();
        }
    }
}

impl Telemetry {
    /// Creates and registers every self-metric.
    pub fn new() -> Telemetry {
        let registry = Registry::new();
        let exporter = ExporterVecs {
            queued_batches: gauge_vec(
                &registry,
                "periscope_exporter_queued_batches",
                "Batches waiting in the exporter's queue.",
                &["exporter"],
            ),
            queued_samples: gauge_vec(
                &registry,
                "periscope_exporter_queued_samples",
                "Samples waiting in the exporter's queue.",
                &["exporter"],
            ),
            sent: counter_vec(
                &registry,
                "periscope_exporter_sent_samples_total",
                "Samples the exporter accepted.",
                &["exporter"],
            ),
            exports: counter_vec(
                &registry,
                "periscope_exporter_exports_total",
                "Export calls that delivered their batch, wholly or all but the items the target refused.",
                &["exporter"],
            ),
            retries: counter_vec(
                &registry,
                "periscope_exporter_retries_total",
                "Batches tried again: the exporter answered Retry, or failed and was restarted.",
                &["exporter"],
            ),
            rejected: counter_vec(
                &registry,
                "periscope_exporter_rejected_samples_total",
                "Samples the target rejected; they are in the dead-letter file.",
                &["exporter"],
            ),
            dropped: counter_vec(
                &registry,
                "periscope_exporter_dropped_samples_total",
                "Samples dropped, by reason.",
                &["exporter", "reason"],
            ),
            lagged: counter_vec(
                &registry,
                "periscope_exporter_lagged_batches_total",
                "Batches the exporter missed by falling behind the fan-out (each lag triggers a resync).",
                &["exporter"],
            ),
            resyncs: counter_vec(
                &registry,
                "periscope_exporter_resyncs_total",
                "Full snapshots sent to the exporter.",
                &["exporter"],
            ),
            corrupt: counter_vec(
                &registry,
                "periscope_exporter_queue_corrupt_records_total",
                "Torn or corrupt records found in the disk queue; cut and never delivered.",
                &["exporter"],
            ),
            restarts: counter_vec(
                &registry,
                "periscope_exporter_restarts_total",
                "Restarts of the exporter after a failure or panic.",
                &["exporter"],
            ),
            up: gauge_vec(
                &registry,
                "periscope_exporter_up",
                "1 while an exporter instance is running.",
                &["exporter"],
            ),
            health: gauge_vec(
                &registry,
                "periscope_exporter_health",
                "What the exporter says of its target after each export: 1 for the current state \
                 (healthy, degraded, unhealthy); the reason is in the log.",
                &["exporter", "state"],
            ),
            stalled: counter_vec(
                &registry,
                "periscope_exporter_stalled_exports_total",
                "Export calls that did not return within the exporter's export_timeout.",
                &["exporter"],
            ),
            latency: {
                let vec = HistogramVec::new(
                    HistogramOpts::new(
                        "periscope_exporter_export_duration_seconds",
                        "Duration of export calls.",
                    )
                    .buckets(prometheus::exponential_buckets(0.0005, 4.0, 10).unwrap_or_default()),
                    &["exporter"],
                )
                .expect("valid histogram definition");
                register(&registry, vec)
            },
        };
        let input = InputVecs {
            updates: counter_vec(
                &registry,
                "periscope_input_updates_total",
                "Source updates received from the input.",
                &["input"],
            ),
            errors: counter_vec(
                &registry,
                "periscope_input_errors_total",
                "Errors reported by the input, by kind: read, parse, value, scrape, config.",
                &["input", "kind"],
            ),
            synced: gauge_vec(
                &registry,
                "periscope_input_synced",
                "1 once the input finished its first complete read.",
                &["input"],
            ),
            expressions: ExpressionErrors {
                failed: counter_vec(
                    &registry,
                    "periscope_expression_errors_total",
                    "Evaluations of a CEL expression that gave no value for an object, by entry and metric.",
                    &["resource", "metric"],
                ),
                cost_exceeded: counter_vec(
                    &registry,
                    "periscope_expression_cost_exceeded_total",
                    "Evaluations of a CEL expression refused by the cost bound, by entry and metric.",
                    &["resource", "metric"],
                ),
                logged: Arc::default(),
            },
        };
        let sources = register(
            &registry,
            IntGauge::new("periscope_sources", "Sources currently known.").expect("valid gauge"),
        );
        let source_state_bytes = register(
            &registry,
            IntGauge::new(
                "periscope_source_state_bytes",
                "Bytes the collector keeps of the sources, LZ4-compressed: the last update of those no input can send again for a resync, only the source of the others (a watch sends them again).",
            )
            .expect("valid gauge"),
        );
        let batches = register(
            &registry,
            IntCounter::new(
                "periscope_batches_total",
                "Batches fanned out to the exporters.",
            )
            .expect("valid counter"),
        );
        let unchanged_updates = register(
            &registry,
            IntCounter::new(
                "periscope_unchanged_updates_total",
                "Updates skipped because they changed nothing.",
            )
            .expect("valid counter"),
        );
        let task_failures = counter_vec(
            &registry,
            "periscope_task_failures_total",
            "Tasks and threads of the host that ended abnormally (a panic): `collector`, \
             `input:<name>`, `delivery:<exporter>`. Each also fails /readyz.",
            &["task"],
        );
        let reloads = ReloadMetrics {
            last_successful: register(
                &registry,
                IntGauge::new(
                    "periscope_config_last_reload_successful",
                    "1 if the last config reload (or the start) applied its config, 0 if it was refused.",
                )
                .expect("valid gauge"),
            ),
            last_success_timestamp: register(
                &registry,
                prometheus::Gauge::new(
                    "periscope_config_last_reload_success_timestamp_seconds",
                    "When the running config was applied.",
                )
                .expect("valid gauge"),
            ),
            reloads: counter_vec(
                &registry,
                "periscope_config_reloads_total",
                "Config reloads, by result: success or failure (the running config stayed).",
                &["result"],
            ),
            hash: gauge_vec(
                &registry,
                "periscope_config_hash",
                "1 for the SHA-256 of the running config's files.",
                &["sha256"],
            ),
        };
        for result in ["success", "failure"] {
            reloads.reloads.with_label_values(&[result]);
        }
        let exporter_info = gauge_vec(
            &registry,
            "periscope_exporter_info",
            "1 for the plugin each exporter runs: its name, version and file's SHA-256.",
            &["exporter", "plugin", "plugin_version", "sha256"],
        );
        let info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("periscope_build_info", "Build information."),
                &["version", "plugin_abi"],
            )
            .expect("valid gauge"),
        );
        info.with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            &periscope_plugin_api::ABI_VERSION.to_string(),
        ])
        .set(1);
        let guard_stats = Arc::new(PipelineStats::default());
        let guards = GuardsCollector::new();
        guards.add(guard_stats.clone());
        registry
            .register(Box::new(guards.clone()))
            .expect("self-metric names are unique");
        registry
            .register(Box::new(crate::allocator::AllocatorCollector::new()))
            .expect("self-metric names are unique");
        Telemetry {
            guards,
            guard_stats,
            registry,
            exporter,
            input,
            sources,
            source_state_bytes,
            batches,
            unchanged_updates,
            task_failures,
            reloads,
            exporter_info,
            exporter_info_labels: Arc::default(),
        }
    }

    /// Records which plugin exporter `name` runs now (replacing what it ran before).
    pub fn exporter_info(&self, name: &str, plugin: &str, plugin_version: &str, sha256: &str) {
        self.forget_exporter_info(name);
        let mut labels = self
            .exporter_info_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.exporter_info
            .with_label_values(&[name, plugin, plugin_version, sha256])
            .set(1);
        labels.insert(
            name.to_owned(),
            [
                plugin.to_owned(),
                plugin_version.to_owned(),
                sha256.to_owned(),
            ],
        );
    }

    /// The handles of exporter `name`.
    pub fn exporter(&self, name: &str) -> ExporterMetrics {
        let e = &self.exporter;
        let one = [name];
        ExporterMetrics {
            queued_batches: e.queued_batches.with_label_values(&one),
            queued_samples: e.queued_samples.with_label_values(&one),
            sent: e.sent.with_label_values(&one),
            exports: e.exports.with_label_values(&one),
            retries: e.retries.with_label_values(&one),
            rejected: e.rejected.with_label_values(&one),
            dropped_queue_full: e.dropped.with_label_values(&[name, "queue_full"]),
            dropped_write_failed: e.dropped.with_label_values(&[name, "write_failed"]),
            dropped_shutdown: e.dropped.with_label_values(&[name, "shutdown"]),
            dropped_dead_letter: e.dropped.with_label_values(&[name, "dead_letter_failed"]),
            dropped_corrupt: e.dropped.with_label_values(&[name, "corrupt"]),
            lagged: e.lagged.with_label_values(&one),
            resyncs: e.resyncs.with_label_values(&one),
            restarts: e.restarts.with_label_values(&one),
            queue_corrupt_records: e.corrupt.with_label_values(&one),
            up: e.up.with_label_values(&one),
            health: HealthGauges {
                healthy: e.health.with_label_values(&[name, "healthy"]),
                degraded: e.health.with_label_values(&[name, "degraded"]),
                unhealthy: e.health.with_label_values(&[name, "unhealthy"]),
            },
            latency: e.latency.with_label_values(&one),
            stalled_exports: e.stalled.with_label_values(&one),
        }
    }

    /// The handles of input `name`.
    pub fn input(&self, name: &str) -> InputMetrics {
        let one = [name];
        InputMetrics {
            updates: self.input.updates.with_label_values(&one),
            errors: InputErrors {
                by_kind: ErrorKind::ALL
                    .iter()
                    .map(|kind| {
                        let labels = [name, kind.as_str()];
                        (*kind, self.input.errors.with_label_values(&labels))
                    })
                    .collect(),
            },
            synced: self.input.synced.with_label_values(&one),
            expressions: self.input.expressions.clone(),
        }
    }

    /// Serves the counts of `stats` (what the object pipeline and its inputs held back) among
    /// the self-metrics, beside the host's own ([`guard_stats`](Self::guard_stats)).
    pub fn watch_pipeline(&self, stats: Arc<PipelineStats>) {
        self.guards.add(stats);
    }

    /// Drops the info series of exporter `name` (a reload removed it).
    pub fn forget_exporter_info(&self, name: &str) {
        let mut labels = self
            .exporter_info_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some([p, v, h]) = labels.remove(name) {
            let _ = self.exporter_info.remove_label_values(&[name, &p, &v, &h]);
        }
    }

    /// Where the host's own guards (an exporter's `max_series`) count what they hold back.
    pub fn guard_stats(&self) -> Arc<PipelineStats> {
        self.guard_stats.clone()
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("self-metric names are unique");
    collector
}

/// The counts of every [`PipelineStats`] (the pipeline's, the host's), summed at every scrape.
#[derive(Clone)]
struct GuardsCollector {
    stats: Arc<Mutex<Vec<Arc<PipelineStats>>>>,
    label_collisions: IntCounterVec,
    series_limited: IntCounterVec,
    series: IntGaugeVec,
    objects_ignored: IntCounterVec,
    watch_objects: IntGaugeVec,
    watch_held_bytes: IntGaugeVec,
}

impl GuardsCollector {
    fn new() -> GuardsCollector {
        GuardsCollector {
            stats: Arc::default(),
            label_collisions: IntCounterVec::new(
                Opts::new(
                    "periscope_label_collisions_total",
                    "Keys of a labels_from map left out because another key, or a configured label, had their label name; by entry and metric.",
                ),
                &["resource", "metric"],
            )
            .expect("valid counter"),
            series_limited: IntCounterVec::new(
                Opts::new(
                    "periscope_series_limited_total",
                    "Series not written because a cap held them back, by entry (resources[i], endpoints[i], exporter:<name>), metric and reason (max_series, max_values, memory_limit).",
                ),
                &["entry", "metric", "reason"],
            )
            .expect("valid counter"),
            series: IntGaugeVec::new(
                Opts::new(
                    "periscope_entry_series",
                    "Series an entry with a cap writes now (a resources entry over its objects, an exporter over its sources).",
                ),
                &["entry"],
            )
            .expect("valid gauge"),
            objects_ignored: IntCounterVec::new(
                Opts::new(
                    "periscope_watch_objects_ignored_total",
                    "Objects a watch did not take in, by reason (max_objects, memory_limit).",
                ),
                &["watch", "reason"],
            )
            .expect("valid counter"),
            watch_objects: IntGaugeVec::new(
                Opts::new(
                    "periscope_watch_objects",
                    "Objects a watch holds now: those its selectors and shard let in, and for a kind only joins read, those joins may find.",
                ),
                &["watch"],
            )
            .expect("valid gauge"),
            watch_held_bytes: IntGaugeVec::new(
                Opts::new(
                    "periscope_watch_held_bytes",
                    "Bytes of the objects a watch holds, as held: pruned to what the config reads, as LZ4-compressed JSON.",
                ),
                &["watch"],
            )
            .expect("valid gauge"),
        }
    }

    fn add(&self, stats: Arc<PipelineStats>) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stats);
    }
}

impl prometheus::core::Collector for GuardsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [
            self.label_collisions.desc(),
            self.series_limited.desc(),
            self.series.desc(),
            self.objects_ignored.desc(),
            self.watch_objects.desc(),
            self.watch_held_bytes.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let all: Vec<_> = (self.stats.lock().unwrap_or_else(PoisonError::into_inner))
            .iter()
            .map(|stats| stats.snapshot())
            .collect();
        self.label_collisions.reset();
        self.series_limited.reset();
        self.series.reset();
        self.objects_ignored.reset();
        self.watch_objects.reset();
        self.watch_held_bytes.reset();
        for now in &all {
            for ((resource, metric), count) in &now.label_collisions {
                self.label_collisions
                    .with_label_values(&[resource, metric])
                    .inc_by(*count);
            }
            for ((entry, metric, reason), count) in &now.series_limited {
                self.series_limited
                    .with_label_values(&[entry, metric, reason])
                    .inc_by(*count);
            }
            for (entry, count) in &now.series {
                self.series
                    .with_label_values(&[entry])
                    .set(i64::try_from(*count).unwrap_or(i64::MAX));
            }
            for ((watch, reason), count) in &now.objects_ignored {
                self.objects_ignored
                    .with_label_values(&[watch, reason])
                    .inc_by(*count);
            }
            for (watch, held) in &now.held {
                let gauge = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
                self.watch_objects
                    .with_label_values(&[watch])
                    .set(gauge(held.held.objects));
                self.watch_held_bytes
                    .with_label_values(&[watch])
                    .set(gauge(held.held.bytes));
            }
        }
        [
            self.label_collisions.collect(),
            self.series_limited.collect(),
            self.series.collect(),
            self.objects_ignored.collect(),
            self.watch_objects.collect(),
            self.watch_held_bytes.collect(),
        ]
        .concat()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_counts_are_served_as_they_are_at_the_scrape() {
        let t = Telemetry::new();
        let stats = Arc::new(PipelineStats::default());
        t.watch_pipeline(stats.clone());
        stats.series_limited("resources[0]", "kube_pod_info", "max_series", 3);
        stats.set_series("resources[0]", 10);
        stats.object_ignored("kube:v1/ConfigMap", "max_objects");
        let held = periscope_scraper::objects::HeldObjects {
            objects: 7,
            bytes: 900,
        };
        stats.set_held("kube:v1/Pod", 1, held);
        let text = t.render();
        for line in [
            "periscope_series_limited_total{entry=\"resources[0]\",metric=\"kube_pod_info\",reason=\"max_series\"} 3",
            "periscope_entry_series{entry=\"resources[0]\"} 10",
            "periscope_watch_objects_ignored_total{reason=\"max_objects\",watch=\"kube:v1/ConfigMap\"} 1",
            "periscope_watch_objects{watch=\"kube:v1/Pod\"} 7",
            "periscope_watch_held_bytes{watch=\"kube:v1/Pod\"} 900",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        stats.series_limited("resources[0]", "kube_pod_info", "max_series", 2);
        assert!(t.render().contains("reason=\"max_series\"} 5"));
        // A watch started again under the same name keeps its figure when the old one stops.
        stats.set_held("kube:v1/Pod", 2, held);
        stats.forget_held("kube:v1/Pod", 1);
        assert!(
            t.render()
                .contains("periscope_watch_objects{watch=\"kube:v1/Pod\"} 7")
        );
        stats.forget_held("kube:v1/Pod", 2);
        assert!(!t.render().contains("periscope_watch_objects{"));
    }

    #[test]
    fn expression_failures_are_all_counted_and_logged_once_a_minute_per_metric() {
        let t = Telemetry::new();
        let errors = t.input("files:m").expressions;
        let failure = |metric: &str, too_costly| ExpressionFailure {
            resource: "Pod".to_owned(),
            metric: metric.to_owned(),
            too_costly,
            message: String::new(),
        };
        let start = Instant::now();
        assert!(errors.inc(&failure("a", false), start));
        assert!(!errors.inc(&failure("a", false), start + Duration::from_secs(59)));
        assert!(errors.inc(&failure("b", true), start + Duration::from_secs(59)));
        assert!(errors.inc(&failure("a", false), start + Duration::from_secs(60)));
        let text = t.render();
        assert!(
            text.contains("periscope_expression_errors_total{metric=\"a\",resource=\"Pod\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "periscope_expression_cost_exceeded_total{metric=\"b\",resource=\"Pod\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn exporter_counters_appear_with_their_labels() {
        let t = Telemetry::new();
        let m = t.exporter("files");
        m.sent.inc_by(3);
        m.dropped_queue_full.inc();
        m.dropped_write_failed.inc_by(2);
        let text = t.render();
        assert!(
            text.contains("periscope_exporter_sent_samples_total{exporter=\"files\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("periscope_exporter_dropped_samples_total{exporter=\"files\",reason=\"queue_full\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("periscope_exporter_dropped_samples_total{exporter=\"files\",reason=\"write_failed\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn exporter_health_is_one_series_per_state_with_the_current_one_set() {
        let t = Telemetry::new();
        let m = t.exporter("search");
        let series = |state: &str| {
            let name =
                format!("periscope_exporter_health{{exporter=\"search\",state=\"{state}\"}} ");
            t.render()
                .lines()
                .find_map(|l| l.strip_prefix(&name).map(str::to_owned))
                .unwrap_or_default()
        };
        m.health.set(Some(ExporterHealth::Unhealthy));
        assert_eq!(
            (series("healthy"), series("degraded"), series("unhealthy")),
            ("0".into(), "0".into(), "1".into())
        );
        m.health.set(Some(ExporterHealth::Healthy));
        assert_eq!(
            (series("healthy"), series("unhealthy")),
            ("1".into(), "0".into())
        );
        m.health.set(None);
        assert_eq!(series("healthy"), "0");
    }

    #[test]
    fn an_exporters_info_series_is_replaced_and_forgotten() {
        let telemetry = Telemetry::new();
        telemetry.exporter_info("a", "file", "0.1.0", "aa");
        telemetry.exporter_info("a", "file", "0.2.0", "bb");
        let page = telemetry.render();
        assert!(!page.contains("sha256=\"aa\""), "{page}");
        assert!(
            page.contains("periscope_exporter_info{exporter=\"a\",plugin=\"file\",plugin_version=\"0.2.0\",sha256=\"bb\"} 1"),
            "{page}"
        );
        telemetry.forget_exporter_info("a");
        assert!(!telemetry.render().contains("periscope_exporter_info{"));
    }
}
