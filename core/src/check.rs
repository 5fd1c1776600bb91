//! Everything `periscope check` verifies, turned into the plan `periscope run` starts from.
//!
//! One pass collects every problem (not just the first): the config's own syntax and types, the
//! `[[resources]]` paths and names, the listen address, and each exporter's plugin (found, vetted,
//! loaded, its config accepted by the plugin's own parser).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use periscope_scraper::endpoints::{self, Endpoint};
use periscope_scraper::kube::KubernetesConfig;
use periscope_scraper::objects::{ObjectPipeline, Secrets};

use crate::config::{
    BatchConfig, Config, ConfigErrors, ConfigText, Problem, QueueConfig, RetryConfig, parse_listen,
};
use crate::plugins::{self, Plugin};
use crate::ranges;

/// A checked config, ready to run.
pub struct Plan {
    /// The parsed config.
    pub config: Config,
    /// Where the host's own HTTP server listens.
    pub listen: SocketAddr,
    /// The compiled `[[resources]]`.
    pub pipeline: Arc<ObjectPipeline>,
    /// The compiled `[[endpoints]]`.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The exporters, with their plugins loaded.
    pub exporters: Vec<PlannedExporter>,
    /// Exporters whose plugin file exists but was refused (another ABI version, writable by others,
    /// a hash mismatch, not a plugin). `check` fails on them; `run` reports each in one line, keeps
    /// them unready and runs the other exporters.
    pub refused: Vec<Refused>,
    /// What works but should change: secrets written inline in an exporter's `auth`.
    pub warnings: Vec<Problem>,
}

/// An exporter left out because its plugin was refused.
pub struct Refused {
    /// The exporter's name.
    pub name: String,
    /// The problem, with its position in the config.
    pub problem: Problem,
}

/// One exporter of a [`Plan`].
pub struct PlannedExporter {
    /// Its name.
    pub name: String,
    /// Its loaded plugin.
    pub plugin: Plugin,
    /// The plugin's name in the config (`file`).
    pub plugin_name: String,
    /// The plugin file.
    pub plugin_path: PathBuf,
    /// The plugin file's version: a reload replaces the exporter when it changes.
    pub plugin_file: plugins::FileVersion,
    /// Its config table as TOML text, for the plugin.
    pub config_text: String,
    /// Its queue.
    pub queue: QueueConfig,
    /// Its merge limits.
    pub batch: BatchConfig,
    /// Its backoff.
    pub retry: RetryConfig,
    /// How long one `export` call may take before it is reported stalled.
    pub export_timeout: std::time::Duration,
    /// The most series the exporter is given (`guards.rs`).
    pub max_series: Option<u64>,
}

/// Checks `text` completely.
pub fn check(text: &ConfigText) -> Result<Plan, ConfigErrors> {
    let config = text.parse()?;
    let mut problems = Vec::new();

    let listen = parse_listen(text, &config.host.listen)
        .map_err(|p| problems.push(p))
        .ok();

    let secrets = config
        .kubernetes
        .as_ref()
        .map_or(Secrets::Refused, KubernetesConfig::secrets);
    let pipeline = match ObjectPipeline::compile(&config.resources, secrets) {
        Ok(pipeline) => Some(pipeline),
        Err(errors) => {
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| text.problem(e.key, e.span, e.message)),
            );
            None
        }
    };

    let endpoints = match endpoints::compile(&config.endpoints) {
        Ok(endpoints) => Some(endpoints),
        Err(errors) => {
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| text.problem(e.key, e.span, e.message)),
            );
            None
        }
    };
    if config.kubernetes.is_none() {
        for (i, endpoint) in config.endpoints.iter().enumerate() {
            if endpoint.kubernetes.is_some() {
                problems.push(text.problem(
                    format!("endpoints[{i}].kubernetes"),
                    None,
                    "discovering targets needs the [kubernetes] table (which cluster to ask)",
                ));
            }
        }
    }

    for (i, files) in config.sources.files.iter().enumerate() {
        let message = match std::fs::metadata(&files.path) {
            Ok(meta) if meta.is_dir() || meta.is_file() => continue,
            Ok(_) => format!(
                "{:?} is neither a regular file nor a directory (a device, FIFO or socket is \
                 never read)",
                files.path
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "{:?} does not exist (relative paths start from the working directory)",
                files.path
            ),
            Err(e) => format!("{:?} cannot be read: {e}", files.path),
        };
        problems.push(text.problem(format!("sources.files[{i}].path"), None, message));
    }

    problems.extend(ranges::check(text, &config));

    let warnings = inline_secrets(text, &config);

    let dirs = plugin_dirs(&config);
    let mut names = HashSet::new();
    let mut exporters = Vec::new();
    let mut refused = Vec::new();
    for (i, exporter) in config.exporters.iter().enumerate() {
        let name = exporter.name.get_ref();
        if name.is_empty() || !names.insert(name.clone()) {
            problems.push(text.problem(
                format!("exporters[{i}].name"),
                Some(exporter.name.span()),
                format!("exporter names must be unique and not empty; {name:?} is not"),
            ));
        }
        let plugin_key = format!("exporters[{i}].plugin");
        let loaded = plugins::find(exporter.plugin.get_ref(), &dirs).and_then(|path| {
            let pin = exporter.sha256.as_ref().map(|s| s.get_ref().as_str());
            let plugin = plugins::load(&path, pin)?;
            let version =
                plugins::FileVersion::of(&path).map_err(|e| plugins::PluginError::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok((plugin, path, version))
        });
        let (plugin, plugin_path, plugin_file) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let span = match (&e, &exporter.sha256) {
                    (plugins::PluginError::HashMismatch { .. }, Some(pin)) => pin.span(),
                    _ => exporter.plugin.span(),
                };
                let problem = text.problem(plugin_key, Some(span), e.to_string());
                if matches!(e, plugins::PluginError::NotFound { .. }) {
                    problems.push(problem);
                } else {
                    refused.push(Refused {
                        name: name.clone(),
                        problem,
                    });
                }
                continue;
            }
        };
        let config_text = match toml::to_string(exporter.config.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                problems.push(text.problem(
                    format!("exporters[{i}].config"),
                    Some(exporter.config.span()),
                    e.to_string(),
                ));
                continue;
            }
        };
        if let Err(refusal) = plugin.check_config(&config_text) {
            // At the key the plugin names, when the file has it (not for a missing key); else at
            // the table; else (no `config` table at all) at the plugin's name.
            let table_key = format!("exporters[{i}].config");
            let key = if refusal.key.is_empty() {
                table_key
            } else {
                format!("{table_key}.{}", refusal.key)
            };
            let span = text
                .key_span(&key)
                .or_else(|| Some(exporter.config.span()).filter(|span| span.end > 0))
                .unwrap_or_else(|| exporter.plugin.span());
            problems.push(text.problem(
                key,
                Some(span),
                format!(
                    "plugin `{}` refuses its config: {}",
                    exporter.plugin.get_ref(),
                    refusal.message
                ),
            ));
            continue;
        }
        exporters.push(PlannedExporter {
            name: name.clone(),
            plugin,
            plugin_name: exporter.plugin.get_ref().clone(),
            plugin_path,
            plugin_file,
            config_text,
            queue: exporter.queue.clone(),
            batch: exporter.batch,
            retry: exporter.retry,
            export_timeout: exporter.export_timeout.0,
            max_series: exporter.max_series,
        });
    }

    match (problems.is_empty(), listen, pipeline, endpoints) {
        (true, Some(listen), Some(pipeline), Some(endpoints)) => Ok(Plan {
            config,
            listen,
            pipeline: Arc::new(pipeline),
            endpoints,
            exporters,
            refused,
            warnings,
        }),
        _ => Err(text.errors(problems)),
    }
}

/// A warning for every secret written inline in an `auth` table of an exporter's config (the
/// tables are plugin-api's `AuthConfig` in every plugin, so the keys are known here).
fn inline_secrets(text: &ConfigText, config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (i, exporter) in config.exporters.iter().enumerate() {
        for key in periscope_plugin_api::auth::inline_secret_keys(exporter.config.get_ref()) {
            let secret = key.rsplit('.').next().unwrap_or_default();
            warnings.push(text.problem(
                format!("exporters[{i}].config.{key}"),
                Some(exporter.config.span()),
                format!(
                    "a secret written in the config: put it in a file and give `{secret}_file` \
                     instead"
                ),
            ));
        }
    }
    warnings
}

/// The configured plugin directories, or the directory of the running executable.
pub fn plugin_dirs(config: &Config) -> Vec<PathBuf> {
    if !config.host.plugin_dirs.is_empty() {
        return config.host.plugin_dirs.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .into_iter()
        .collect()
}
