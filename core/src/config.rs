//! The host's config file: typed, strict, and with errors that name file, line, column and key.
//!
//! Parsing (serde, unknown keys refused) happens here; checks that need more than the TOML itself
//! (paths in `[[resources]]`, plugins on disk) happen in [`crate::check`], which reports through the
//! same [`ConfigErrors`] so every mistake reads the same way.

mod files;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use files::{ConfigErrors, ConfigFile, ConfigText, Problem};
use periscope_plugin_api::config::{ByteSize, Duration};
use periscope_scraper::config::{EndpointConfig, FilesConfig, ResourceConfig};
use periscope_scraper::kube::KubernetesConfig;
use serde::Deserialize;
use toml::Spanned;

/// The config used when `periscope run` is given no `--config`: the quick start, reading the
/// KubeVirt-like manifests in `examples/quickstart/manifests` (no cluster needed).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/quickstart/periscope.toml");

/// The name under which [`EMBEDDED_DEFAULT`] appears in errors.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default config>";

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// [`EMBEDDED_DEFAULT`].
    Embedded,
    /// A file, or a directory of `*.toml` files.
    Path(PathBuf),
}

impl ConfigSource {
    /// Reads the config as it is now.
    pub fn read(&self) -> Result<ConfigText, ConfigErrors> {
        match self {
            ConfigSource::Embedded => Ok(ConfigText::embedded_default()),
            ConfigSource::Path(path) => ConfigText::read(path),
        }
    }

    /// The file or directory, if there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ConfigSource::Embedded => None,
            ConfigSource::Path(path) => Some(path),
        }
    }
}

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The host itself: listen address, plugin directories, timings.
    #[serde(default)]
    pub host: HostConfig,
    /// The cluster to watch; without this table, no watcher runs.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// Where objects come from besides a cluster.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Which objects become which metrics.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    /// HTTP endpoints polled for metrics.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// Where the metrics go.
    #[serde(default)]
    pub exporters: Vec<ExporterConfig>,
    /// Other tools' configs read in place; [`ConfigText::read`] adds what they convert to as
    /// files of the config, so their entries join this file's.
    #[serde(default)]
    pub imports: Vec<ImportConfig>,
}

/// One `[[imports]]` entry: another tool's config taken as it is.
///
/// ```toml
/// [[imports]]
/// kube_state_metrics_crs = "crs.yaml"   # relative to this config file
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// A kube-state-metrics CustomResourceState config (see
    /// [`crate::import::kube_state_metrics`]): its resources join the config's.
    pub kube_state_metrics_crs: Spanned<String>,
}

/// `[host]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Address of the host's own `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Directories plugins are loaded from; none given means the directory of the `periscope`
    /// executable. Relative paths are relative to the working directory.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Where batches that an exporter rejects are written, one NDJSON file per exporter.
    #[serde(default = "default_dead_letter_dir")]
    pub dead_letter_dir: PathBuf,
    /// How long the collector gathers updates into one batch before fanning it out (1ms to 1h).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// How many batches the fan-out channel holds for a slow exporter before it lags (and resyncs).
    #[serde(default = "default_fanout_capacity")]
    pub fanout_capacity: usize,
    /// How long shutdown waits for exporters to deliver what they hold (1ms to 1h).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Whether `POST /-/reload` on `listen` reloads the config (off: anyone reaching the port
    /// could).
    #[serde(default)]
    pub reload_endpoint: bool,
    /// Above 90 % of this resident memory watches stop taking in new objects (`memory.rs`); the
    /// cgroup v2 limit by default, none outside a container.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen: default_listen(),
            plugin_dirs: Vec::new(),
            dead_letter_dir: default_dead_letter_dir(),
            flush_interval: default_flush_interval(),
            fanout_capacity: default_fanout_capacity(),
            shutdown_timeout: default_shutdown_timeout(),
            reload_endpoint: false,
            memory_limit: None,
        }
    }
}

/// `[sources]`: inputs other than the Kubernetes API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[[sources.files]]`: manifests read from disk.
    #[serde(default)]
    pub files: Vec<FilesConfig>,
}

/// One `[[exporters]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// A name unique among exporters, used in logs, self-metrics and the dead-letter file name.
    pub name: Spanned<String>,
    /// The plugin: `file` finds `libperiscope_exporter_file.so` in the plugin directories.
    pub plugin: Spanned<String>,
    /// If set, the plugin file's SHA-256 (hex) must match.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
    /// The delivery queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// How queued batches are merged before one `export` call.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Backoff between retries and restarts.
    #[serde(default)]
    pub retry: RetryConfig,
    /// How long one `export` call may take before the host reports the exporter stalled
    /// (unhealthy, unready, `periscope_exporter_stalled_exports_total`). The host cannot interrupt
    /// the call; it keeps queueing meanwhile.
    #[serde(default = "default_export_timeout")]
    pub export_timeout: Duration,
    /// The most series the exporter is given at any time, whatever its plugin (`guards.rs`);
    /// the newest beyond it are left out and counted. No cap by default.
    #[serde(default)]
    pub max_series: Option<u64>,
    /// The plugin's own config, handed to it as TOML text.
    #[serde(default = "empty_table")]
    pub config: Spanned<toml::Table>,
}

/// `queue = { … }` of an exporter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum QueueConfig {
    /// A bounded queue in memory.
    Memory {
        /// How many batches it holds.
        #[serde(default = "default_capacity")]
        capacity: usize,
        /// What happens when it is full.
        #[serde(default)]
        when_full: WhenFull,
    },
    /// Segment files on disk: what the exporter has not delivered survives a crash and is
    /// replayed on start. Delivery is at least once: a crash delivers again at most the batches
    /// of the one export in flight (merged up to the exporter's `batch.max_samples` and
    /// `batch.max_bytes`). Nothing the queue accepted is lost uncounted: a batch it could not
    /// write (`write_failed`), dropped for room (`queue_full`) or found torn or corrupt on start
    /// (`periscope_exporter_queue_corrupt_records_total`, and `corrupt` dropped samples) is
    /// counted.
    Disk {
        /// The queue's directory (one per exporter).
        path: PathBuf,
        /// The most the segment files may hold (at least 64 KiB). Exceeded by at most one
        /// segment (an eighth of it, 64 KiB to 64 MiB) and the export in flight, which stay on
        /// disk until delivered.
        #[serde(default = "default_disk_max_bytes")]
        max_bytes: ByteSize,
        /// When writes are synced.
        #[serde(default)]
        fsync: DiskFsync,
        /// What happens when it is full.
        #[serde(default)]
        when_full: WhenFull,
    },
}

fn default_disk_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

/// When the disk queue syncs what it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFsync {
    /// Every batch before `push` returns, every delivery recorded, and the directory after a
    /// segment is created or the `ack` file replaced: survives a power loss.
    #[default]
    Always,
    /// Leave it to the operating system: survives a crash of the host process, not of the machine.
    Never,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::Memory {
            capacity: default_capacity(),
            when_full: WhenFull::default(),
        }
    }
}

/// What a full queue (memory or disk) does with a new batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room; the fan-out may then lag, which triggers a resync.
    #[default]
    Block,
    /// Drop the oldest queued batch not yet handed to the exporter, counting its samples as
    /// dropped (`queue_full`).
    DropOldest,
}

/// `batch = { … }` of an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Stop merging once this many samples are gathered.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Stop merging once the batch is this large.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Wait at most this long for more batches to merge (1ms to 1h; `"0s"` exports at once).
    #[serde(default = "default_max_wait")]
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_samples: default_max_samples(),
            max_bytes: default_max_bytes(),
            max_wait: default_max_wait(),
        }
    }
}

/// `retry = { … }` of an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first backoff.
    #[serde(default = "default_initial_backoff")]
    pub initial: Duration,
    /// The longest backoff.
    #[serde(default = "default_max_backoff")]
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: default_initial_backoff(),
            max: default_max_backoff(),
        }
    }
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9464".to_owned())
}
fn default_dead_letter_dir() -> PathBuf {
    PathBuf::from("dead-letter")
}
fn default_flush_interval() -> Duration {
    Duration(std::time::Duration::from_millis(200))
}
fn default_fanout_capacity() -> usize {
    1024
}
fn default_export_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}
fn default_shutdown_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_capacity() -> usize {
    1024
}
fn default_max_samples() -> usize {
    10_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_max_wait() -> Duration {
    Duration(std::time::Duration::from_millis(500))
}
fn default_initial_backoff() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}
fn default_max_backoff() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}
fn empty_table() -> Spanned<toml::Table> {
    Spanned::new(0..0, toml::Table::new())
}

/// Parses `listen`, reporting a problem at its position.
pub fn parse_listen(text: &ConfigText, listen: &Spanned<String>) -> Result<SocketAddr, Problem> {
    listen.get_ref().parse().map_err(|e| {
        text.problem(
            "host.listen",
            Some(listen.span()),
            format!(
                "{:?} is not an address like \"127.0.0.1:9464\": {e}",
                listen.get_ref()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        ConfigText::one("test.toml", text).parse()
    }

    #[test]
    fn a_spanned_value_is_named_by_its_own_key() {
        let err = parse("[[resources]]\nversion = \"v1\"\nkind = \"ConfigMap\"\n[[resources.metrics]]\nname = \"v\"\ntype = \"gaugee\"\npath = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("serde_spanned"), "{text}");
        assert!(text.contains("`resources[0].metrics[0].type`"), "{text}");
    }

    #[test]
    fn embedded_default_parses() {
        let config = ConfigText::embedded_default()
            .parse()
            .expect("embedded default parses");
        assert!(!config.exporters.is_empty());
        assert!(!config.resources.is_empty());
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let err = parse("[host]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:3:1: `host.lisen`: unknown field `lisen`, expected one of `listen`, \
             `plugin_dirs`, `dead_letter_dir`, `flush_interval`, `fanout_capacity`, `shutdown_timeout`, \
             `reload_endpoint`, `memory_limit`"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[[exporters]]\nname = \"a\"\nplugin = \"file\"\nqueue = { type = \"memory\", capacity = \"big\" }\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("test.toml:4:"), "{text}");
        assert!(text.contains("exporters[0].queue"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn queue_defaults_to_a_blocking_memory_queue() {
        let config = parse("[[exporters]]\nname = \"a\"\nplugin = \"file\"\n").unwrap();
        let QueueConfig::Memory {
            capacity,
            when_full,
        } = config.exporters[0].queue.clone()
        else {
            panic!("a memory queue by default");
        };
        assert_eq!((capacity, when_full), (1024, WhenFull::Block));
    }
}
