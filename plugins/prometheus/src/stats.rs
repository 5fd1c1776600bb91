//! The page exporter's own counters, shown on its page as `periscope_prometheus_exporter_*`.
//!
//! Ingestion counts into a [`StatsDelta`] that is added to the shared [`Stats`] only once the
//! export succeeded, so a batch the host retries is never counted twice.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::Format;
use crate::names::push_value;

/// Counts of one export, committed with [`Stats::commit`] when the export succeeded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsDelta {
    /// Family names that were not valid metric names and were sanitized.
    pub invalid_metric_names: u64,
    /// Label names that were not valid and were sanitized.
    pub invalid_label_names: u64,
    /// Label values cut to `max_label_value_length`.
    pub truncated_label_values: u64,
    /// Labels dropped because the sample already had a label of that name (after sanitizing).
    pub duplicate_labels: u64,
    /// Series dropped because their family reached `max_series_per_family`.
    pub series_over_limit: u64,
}

/// The shared counters, read when a page is rendered.
#[derive(Debug, Default)]
pub struct Stats {
    invalid_metric_names: AtomicU64,
    invalid_label_names: AtomicU64,
    truncated_label_values: AtomicU64,
    duplicate_labels: AtomicU64,
    series_over_limit: AtomicU64,
    exports: AtomicU64,
    scrapes_text: AtomicU64,
    scrapes_openmetrics: AtomicU64,
    scrapes_unauthorized: AtomicU64,
    family_conflicts: AtomicU64,
    last_render_micros: AtomicU64,
    sources: AtomicU64,
    series: AtomicU64,
    connections_over_limit: AtomicU64,
    connections_too_slow: AtomicU64,
    connections_idle: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Adds the counts of a successful export, and the state's current size.
    pub fn commit(&self, delta: &StatsDelta, sources: u64, series: u64) {
        add(&self.invalid_metric_names, delta.invalid_metric_names);
        add(&self.invalid_label_names, delta.invalid_label_names);
        add(&self.truncated_label_values, delta.truncated_label_values);
        add(&self.duplicate_labels, delta.duplicate_labels);
        add(&self.series_over_limit, delta.series_over_limit);
        add(&self.exports, 1);
        self.sources.store(sources, Ordering::Relaxed);
        self.series.store(series, Ordering::Relaxed);
    }

    /// Counts a scrape served in `format`.
    pub fn scrape(&self, format: Format) {
        match format {
            Format::Text => add(&self.scrapes_text, 1),
            Format::OpenMetrics { .. } => add(&self.scrapes_openmetrics, 1),
        }
    }

    /// Counts a connection closed at once because the server had as many as it takes.
    pub fn connection_over_limit(&self) {
        add(&self.connections_over_limit, 1);
    }

    /// Counts a connection dropped because its client did not read a response within
    /// `write_timeout`.
    pub fn connection_too_slow(&self) {
        add(&self.connections_too_slow, 1);
    }

    /// Counts a connection closed because it sent no (complete) request headers within
    /// `idle_timeout`: an idle keep-alive connection, or a client that sends nothing.
    pub fn connection_idle(&self) {
        add(&self.connections_idle, 1);
    }

    /// Counts a scrape refused for missing or wrong credentials.
    pub fn unauthorized(&self) {
        add(&self.scrapes_unauthorized, 1);
    }

    /// Records a render: how long it took and how many families it had to leave out.
    pub fn rendered(&self, micros: u64, conflicts: u64) {
        self.last_render_micros.store(micros, Ordering::Relaxed);
        self.family_conflicts.store(conflicts, Ordering::Relaxed);
    }

    /// Family names used by the exporter's own metrics (no data family may take them).
    pub fn reserved_names() -> impl Iterator<Item = String> {
        SELF_METRICS.iter().flat_map(|m| {
            let base = format!("{PREFIX}{}", m.name);
            let total = format!("{base}_total");
            [base, total]
        })
    }

    /// Appends the exporter's own metrics to a page in `format`.
    pub fn render(&self, format: Format, out: &mut Vec<u8>) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let values: [&[(&str, f64)]; 11] = [
            &[
                ("kind=\"metric\"", load(&self.invalid_metric_names)),
                ("kind=\"label\"", load(&self.invalid_label_names)),
            ],
            &[("", load(&self.truncated_label_values))],
            &[("", load(&self.duplicate_labels))],
            &[("", load(&self.series_over_limit))],
            &[("", load(&self.exports))],
            &[
                ("format=\"text\"", load(&self.scrapes_text)),
                ("format=\"openmetrics\"", load(&self.scrapes_openmetrics)),
            ],
            &[("", load(&self.scrapes_unauthorized))],
            &[("", load(&self.family_conflicts))],
            &[("", load(&self.last_render_micros) / 1e6)],
            &[
                ("kind=\"sources\"", load(&self.sources)),
                ("kind=\"series\"", load(&self.series)),
            ],
            &[
                ("reason=\"over_limit\"", load(&self.connections_over_limit)),
                ("reason=\"too_slow\"", load(&self.connections_too_slow)),
                ("reason=\"idle\"", load(&self.connections_idle)),
            ],
        ];
        let openmetrics = matches!(format, Format::OpenMetrics { .. });
        for (metric, values) in SELF_METRICS.iter().zip(values) {
            let base = format!("{PREFIX}{}", metric.name);
            let sample = if metric.counter {
                format!("{base}_total")
            } else {
                base.clone()
            };
            let family = if metric.counter && !openmetrics {
                &sample
            } else {
                &base
            };
            let kind = if metric.counter { "counter" } else { "gauge" };
            out.extend_from_slice(format!("# HELP {family} {}\n", metric.help).as_bytes());
            out.extend_from_slice(format!("# TYPE {family} {kind}\n").as_bytes());
            for (labels, value) in values {
                out.extend_from_slice(sample.as_bytes());
                if !labels.is_empty() {
                    out.extend_from_slice(format!("{{{labels}}}").as_bytes());
                }
                out.push(b' ');
                push_value(out, *value);
                out.push(b'\n');
            }
        }
    }
}

const PREFIX: &str = "periscope_prometheus_exporter_";

struct SelfMetric {
    name: &'static str,
    counter: bool,
    help: &'static str,
}

/// In the order of the values in [`Stats::render`].
const SELF_METRICS: [SelfMetric; 11] = [
    SelfMetric {
        name: "invalid_names",
        counter: true,
        help: "Metric and label names that were invalid and were sanitized.",
    },
    SelfMetric {
        name: "label_values_truncated",
        counter: true,
        help: "Label values cut to max_label_value_length.",
    },
    SelfMetric {
        name: "duplicate_labels_dropped",
        counter: true,
        help: "Labels dropped because the sample already had a label of the same name.",
    },
    SelfMetric {
        name: "series_over_limit_dropped",
        counter: true,
        help: "Series dropped because their family reached max_series_per_family.",
    },
    SelfMetric {
        name: "exports",
        counter: true,
        help: "Batches applied.",
    },
    SelfMetric {
        name: "scrapes",
        counter: true,
        help: "Pages served, by format.",
    },
    SelfMetric {
        name: "scrapes_unauthorized",
        counter: true,
        help: "Requests refused for missing or wrong credentials.",
    },
    SelfMetric {
        name: "family_conflicts",
        counter: false,
        help: "Families left out of the last page because their names collide with another family.",
    },
    SelfMetric {
        name: "last_render_seconds",
        counter: false,
        help: "How long rendering the last page took.",
    },
    SelfMetric {
        name: "state",
        counter: false,
        help: "Sources and series currently held.",
    },
    SelfMetric {
        name: "connections_dropped",
        counter: true,
        help: "Connections closed by the server: over its connection limit, too slow (a response \
               not read within write_timeout), or idle (no request within idle_timeout).",
    },
];
