//! The range of every duration, size and count in the host's config, checked by `periscope check`
//! with the position of the key.
//!
//! A zero timer period panics the task that owns it, a centuries-long wait overflows an instant,
//! and a nanosecond interval burns a core while idle: none of them may reach `run`. The only
//! zero accepted is the one documented as "off" (`batch.max_wait = "0s"`: export at once).

use std::time::Duration as StdDuration;

use periscope_plugin_api::config::{ByteSize, Duration};

use crate::config::{Config, ConfigText, Problem, QueueConfig};

const MS: StdDuration = StdDuration::from_millis(1);
const HOUR: StdDuration = StdDuration::from_secs(3600);
const DAY: StdDuration = StdDuration::from_secs(24 * 3600);

/// `host.flush_interval`.
pub const FLUSH_INTERVAL: (StdDuration, StdDuration) = (MS, HOUR);
/// `host.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: (StdDuration, StdDuration) = (MS, HOUR);
/// `exporters[].export_timeout`.
pub const EXPORT_TIMEOUT: (StdDuration, StdDuration) = (MS, DAY);
/// `exporters[].batch.max_wait`, besides `"0s"` (export at once).
pub const MAX_WAIT: (StdDuration, StdDuration) = (MS, HOUR);
/// `exporters[].retry.initial`; `retry.max` goes from `retry.initial` to a day.
pub const RETRY_INITIAL: (StdDuration, StdDuration) = (MS, HOUR);
/// `sources.files[].interval`: re-reading a directory more often than this is a busy loop.
pub const FILES_INTERVAL: (StdDuration, StdDuration) = (StdDuration::from_millis(10), DAY);

/// Every problem of range in `config`.
pub fn check(text: &ConfigText, config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut duration = |key: String, value: Duration, (min, max): (StdDuration, StdDuration)| {
        if let Err(message) = value.check_range(min, max) {
            problems.push(text.problem(key, None, message));
        }
    };
    let host = &config.host;
    duration(
        "host.flush_interval".into(),
        host.flush_interval,
        FLUSH_INTERVAL,
    );
    duration(
        "host.shutdown_timeout".into(),
        host.shutdown_timeout,
        SHUTDOWN_TIMEOUT,
    );
    for (i, files) in config.sources.files.iter().enumerate() {
        duration(
            format!("sources.files[{i}].interval"),
            files.interval,
            FILES_INTERVAL,
        );
    }
    for (i, exporter) in config.exporters.iter().enumerate() {
        let key = format!("exporters[{i}]");
        duration(
            format!("{key}.export_timeout"),
            exporter.export_timeout,
            EXPORT_TIMEOUT,
        );
        if !exporter.batch.max_wait.0.is_zero() {
            duration(
                format!("{key}.batch.max_wait"),
                exporter.batch.max_wait,
                MAX_WAIT,
            );
        }
        duration(
            format!("{key}.retry.initial"),
            exporter.retry.initial,
            RETRY_INITIAL,
        );
        let initial = exporter
            .retry
            .initial
            .0
            .clamp(RETRY_INITIAL.0, RETRY_INITIAL.1);
        duration(
            format!("{key}.retry.max"),
            exporter.retry.max,
            (initial, DAY),
        );
    }

    let mut count = |key: String, value: u64, min: u64, max: u64| {
        if !(min..=max).contains(&value) {
            problems.push(text.problem(
                key,
                None,
                format!("{value} is out of range: write a number from {min} to {max}"),
            ));
        }
    };
    count(
        "host.fanout_capacity".into(),
        host.fanout_capacity as u64,
        1,
        1 << 20,
    );
    for (i, exporter) in config.exporters.iter().enumerate() {
        let key = format!("exporters[{i}]");
        if let QueueConfig::Memory { capacity, .. } = exporter.queue {
            count(format!("{key}.queue.capacity"), capacity as u64, 1, 1 << 20);
        }
        if let Some(max_series) = exporter.max_series {
            count(format!("{key}.max_series"), max_series, 1, 1 << 40);
        }
        count(
            format!("{key}.batch.max_samples"),
            exporter.batch.max_samples as u64,
            1,
            10_000_000,
        );
    }

    let mut size = |key: String, value: ByteSize, min: u64, max: u64| {
        if let Err(message) = value.check_range(min, max) {
            problems.push(text.problem(key, None, message));
        }
    };
    if let Some(limit) = host.memory_limit {
        size("host.memory_limit".into(), limit, 16 << 20, 1 << 44);
    }
    for (i, files) in config.sources.files.iter().enumerate() {
        let key = format!("sources.files[{i}].max_file_bytes");
        size(key, files.max_file_bytes, 1 << 10, 1 << 30);
    }
    for (i, exporter) in config.exporters.iter().enumerate() {
        let key = format!("exporters[{i}]");
        size(
            format!("{key}.batch.max_bytes"),
            exporter.batch.max_bytes,
            1 << 10,
            1 << 30,
        );
        if let QueueConfig::Disk { max_bytes, .. } = exporter.queue {
            size(
                format!("{key}.queue.max_bytes"),
                max_bytes,
                1 << 16,
                1 << 44,
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigText;

    fn problems(extra: &str) -> Vec<String> {
        let text = ConfigText::one("t.toml", extra);
        let config = text.parse().expect("parses");
        super::check(&text, &config)
            .into_iter()
            .map(|p| format!("{}:{}:{}: {}", p.line, p.column, p.key, p.message))
            .collect()
    }

    #[test]
    fn zero_sub_millisecond_and_overflowing_durations_are_refused_with_position() {
        let found = problems(
            "[host]\nflush_interval = \"0s\"\nshutdown_timeout = \"400000000000y\"\n\n\
             [[exporters]]\nname = \"a\"\nplugin = \"file\"\nbatch = { max_wait = \"400000000000y\" }\n\
             retry = { initial = \"1ns\" }\n",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with("2:1:host.flush_interval: \"0s\" is out of range"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("3:1:host.shutdown_timeout: "),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("8:11:exporters[0].batch.max_wait: "),
            "{found:?}"
        );
        assert!(
            found[3].starts_with("9:11:exporters[0].retry.initial: \"1ns\""),
            "{found:?}"
        );
    }

    #[test]
    fn a_zero_max_wait_means_export_at_once_and_defaults_are_in_range() {
        assert!(
            problems(
                "[[exporters]]\nname = \"a\"\nplugin = \"file\"\nbatch = { max_wait = \"0s\" }\n"
            )
            .is_empty()
        );
        assert!(problems("").is_empty());
    }

    #[test]
    fn a_memory_limit_below_sixteen_mebibytes_is_refused() {
        let found = problems("[host]\nmemory_limit = \"1MiB\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("2:1:host.memory_limit: "), "{found:?}");
        assert!(problems("[host]\nmemory_limit = \"512MiB\"\n").is_empty());
    }

    #[test]
    fn counts_and_sizes_have_ranges() {
        let found = problems(
            "[host]\nfanout_capacity = 0\n[[exporters]]\nname = \"a\"\nplugin = \"file\"\n\
             queue = { type = \"memory\", capacity = 0 }\nbatch = { max_samples = 0, max_bytes = 1 }\n",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("6:28:exporters[0].queue.capacity")),
            "{found:?}"
        );
    }
}
