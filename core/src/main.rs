//! `periscope`: the command-line front door of the Periscope host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use periscope_core::config::{ConfigErrors, ConfigSource, ConfigText, Problem};
use periscope_core::logging::{self, LogFormat};
use periscope_core::{autoshard, check, host, metrics_config, plugins, rbac};
use periscope_scraper::shard::Shard;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// The host's allocator: jemalloc, as in other long-running Rust agents. The host frees and
/// allocates a batch per object update; with glibc's malloc that was a third of its CPU time and
/// the freed pages stayed with the process. In the 10k-object benchmark (`bench/results/`), jemalloc
/// took the end-of-run RSS from 149 to 110 MiB and the update stream's CPU from 3.8 to 3.5 s.
/// Plugins are not affected: a `.so` keeps its own allocator, and what crosses the boundary
/// carries its own deallocator (`abi_stable`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// External, autonomous monitoring: watch what a cluster exposes, export it through plugins.
#[derive(Parser)]
#[command(name = "periscope", version)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the host until SIGINT or SIGTERM, then delivers what is queued and stops.
    Run {
        /// The config file or directory of `*.toml` files (or `$PERISCOPE_CONFIG`); without either, the embedded quick-start
        /// config.
        #[arg(long, short, env = "PERISCOPE_CONFIG")]
        config: Option<PathBuf>,
        /// This instance's shard: it keeps the watched objects whose uid hashes to it.
        #[arg(long, default_value_t = 0, requires = "total_shards")]
        shard: u32,
        /// How many shards share the watched objects.
        #[arg(long, default_value_t = 1)]
        total_shards: u32,
        /// In a StatefulSet: the shard is the ordinal in the pod's hostname (`periscope-2` → 2),
        /// the total the StatefulSet's replicas, read at start; when they change, the host
        /// drains and exits so the pod restarts with the new total.
        #[arg(long, conflicts_with_all = ["shard", "total_shards"])]
        shard_from_hostname: bool,
        /// The pod's name for `--shard-from-hostname` (default: the system's hostname).
        #[arg(long, env = "HOSTNAME")]
        hostname: Option<String>,
        /// The StatefulSet's namespace for `--shard-from-hostname` (default: the pod's, from
        /// its ServiceAccount mount).
        #[arg(long, env = "POD_NAMESPACE")]
        shard_namespace: Option<String>,
    },
    /// Prints the least-privilege ClusterRole, ServiceAccount and ClusterRoleBinding for a config.
    Rbac {
        /// The config file or directory of `*.toml` files (or `$PERISCOPE_CONFIG`); without either, the embedded quick-start
        /// config.
        #[arg(long, short, env = "PERISCOPE_CONFIG")]
        config: Option<PathBuf>,
        /// The ServiceAccount's (and the role's) name.
        #[arg(long, default_value = "periscope")]
        name: String,
        /// The ServiceAccount's namespace.
        #[arg(long, default_value = "monitoring")]
        namespace: String,
    },
    /// Prints the CustomResourceDefinition of `MetricsConfig` (YAML), generated from the config
    /// types.
    Crd,
    /// Checks a config and the plugins it names; exits 1 with every problem found.
    Check {
        /// The config file or directory of `*.toml` files (or `$PERISCOPE_CONFIG`); without either, the embedded quick-start
        /// config.
        #[arg(long, short, env = "PERISCOPE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Converts another tool's config into Periscope TOML, printed on stdout.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Plugin tools.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// A kube-state-metrics CustomResourceState config (the file given to
    /// `--custom-resource-state-config-file`, or Helm values with `customResourceState.config`):
    /// `periscope import kube-state-metrics crs.yaml > periscope.toml`.
    KubeStateMetrics {
        /// The YAML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Shows a plugin file's name, ABI version, plugin version and compiler.
    Inspect {
        /// The plugin file (`libperiscope_exporter_<name>.so`).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Run {
            config,
            shard_from_hostname: true,
            hostname,
            shard_namespace,
            ..
        } => run(
            config.as_deref(),
            Sharding::FromHostname {
                hostname,
                namespace: shard_namespace,
            },
        ),
        Command::Run {
            config,
            shard,
            total_shards,
            ..
        } => match Shard::new(shard, total_shards) {
            Some(shard) => run(config.as_deref(), Sharding::Fixed(shard)),
            None => {
                eprintln!(
                    "--shard must be below --total-shards ({shard} is not below {total_shards})"
                );
                ExitCode::FAILURE
            }
        },
        Command::Rbac {
            config,
            name,
            namespace,
        } => match read(config.as_deref()).parse() {
            Ok(parsed) => {
                print!(
                    "{}",
                    rbac::manifests(
                        &parsed.resources,
                        &parsed.endpoints,
                        parsed
                            .kubernetes
                            .as_ref()
                            .is_some_and(|k| k.metrics_configs),
                        &name,
                        &namespace
                    )
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Crd => {
            print!("{}", metrics_config::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Check { config } => match check::check(&read(config.as_deref())) {
            Ok(plan) if !plan.refused.is_empty() => {
                let problems = plan.refused.into_iter().map(|r| r.problem).collect();
                eprintln!("{}", ConfigErrors { problems });
                ExitCode::FAILURE
            }
            Ok(plan) => {
                print_warnings(&plan.warnings);
                println!(
                    "config ok: {} resource(s), {} input(s), {} exporter(s)",
                    plan.config.resources.len(),
                    plan.config.sources.files.len(),
                    plan.exporters.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Import {
            command: ImportCommand::KubeStateMetrics { file },
        } => import_kube_state_metrics(&file),
        Command::Plugins {
            command: PluginsCommand::Inspect { file },
        } => inspect(&file),
    }
}

/// Prints the TOML converted from a CustomResourceState config, or every problem in it.
fn import_kube_state_metrics(file: &Path) -> ExitCode {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{name}: cannot read the CustomResourceState config: {e}");
            return ExitCode::FAILURE;
        }
    };
    match periscope_core::import::kube_state_metrics::convert(&name, &text) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// Prints each warning as `warning: file:line:col: `key`: message` to stderr.
fn print_warnings(warnings: &[Problem]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

fn read(config: Option<&Path>) -> ConfigText {
    match config {
        Some(path) => ConfigText::read(path).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        }),
        None => ConfigText::embedded_default(),
    }
}

/// How `run` finds its shard.
enum Sharding {
    /// Given on the command line.
    Fixed(Shard),
    /// From the pod's name and its StatefulSet (`--shard-from-hostname`).
    FromHostname {
        hostname: Option<String>,
        namespace: Option<String>,
    },
}

fn run(config: Option<&Path>, sharding: Sharding) -> ExitCode {
    let source = config.map_or(ConfigSource::Embedded, |p| ConfigSource::Path(p.to_owned()));
    let text = read(config);
    let sha256 = text.sha256();
    let plan = match check::check(&text) {
        Ok(plan) => plan,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    print_warnings(&plan.warnings);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        let shard = match sharding {
            Sharding::Fixed(shard) => shard,
            Sharding::FromHostname {
                hostname,
                namespace,
            } => match autoshard(&plan, hostname, namespace.as_deref()).await {
                Ok(found) => {
                    let shard = found.shard();
                    tokio::spawn(found.watch_replicas(shutdown.clone()));
                    shard
                }
                Err(error) => {
                    error!(%error, "cannot work out the shard");
                    return ExitCode::FAILURE;
                }
            },
        };
        match host::run(source, sha256, plan, shard, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                error!(%error, "the host stopped");
                ExitCode::FAILURE
            }
        }
    });
    // `host::run` has already waited out `shutdown_timeout`; a blocking task still running (a
    // plugin call that never returns) must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// This pod's shard from its hostname and its StatefulSet, through the config's cluster.
async fn autoshard(
    plan: &check::Plan,
    hostname: Option<String>,
    namespace: Option<&str>,
) -> Result<autoshard::Autoshard, autoshard::AutoshardError> {
    let hostname = match hostname {
        Some(name) => name,
        None => autoshard::system_hostname()?,
    };
    let kubernetes = plan.config.kubernetes.clone().unwrap_or_default();
    let found = autoshard::Autoshard::discover(&kubernetes, &hostname, namespace).await?;
    tracing::info!(
        hostname,
        shard = found.ordinal(),
        total = found.total(),
        "sharding from the hostname"
    );
    Ok(found)
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        error!("cannot listen for SIGTERM");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}

/// Prints what a plugin file says about itself. A refused plugin still shows what can be read of it
/// (its sha256, and its self-description when it passed the file checks), then the refusal.
fn inspect(file: &Path) -> ExitCode {
    let loaded = plugins::load(file, None);
    let about = match &loaded {
        Ok(_) | Err(plugins::PluginError::Library { .. }) => plugins::About::read(file),
        Err(_) => None,
    };
    let field = |key: &str| about.as_ref().and_then(|a| a.get(key)).map(str::to_owned);
    let info = loaded.as_ref().ok().map(|plugin| plugin.info());
    let rows = [
        (
            "name",
            info.as_ref()
                .map(|i| i.name.clone())
                .or_else(|| field("name")),
        ),
        (
            "abi version",
            info.as_ref()
                .map(|i| i.abi_version.to_string())
                .or_else(|| field("abi_version")),
        ),
        (
            "plugin version",
            info.as_ref()
                .map(|i| i.plugin_version.clone())
                .or_else(|| field("plugin_version")),
        ),
        ("plugin api", field("plugin_api_version")),
        (
            "rustc",
            info.as_ref()
                .map(|i| i.rustc_version.clone())
                .or_else(|| field("rustc_version")),
        ),
        ("sha256", plugins::file_sha256(file).ok()),
    ];
    for (label, value) in rows {
        if let Some(value) = value {
            println!("{:<16}{value}", format!("{label}:"));
        }
    }
    match loaded {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{:<16}refused", "status:");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
