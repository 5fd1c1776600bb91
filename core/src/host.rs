//! `periscope run`: the host that runs a plan, changes it while it runs, and stops in order so
//! every exporter delivers what it holds.
//!
//! Starting is a reload from nothing: the HTTP server and the collector start once, then the plan's
//! inputs and exporters are reconciled with what runs (nothing, at the start). A reload reads and
//! checks the whole config first (plugins included), and changes nothing if anything is wrong; a
//! good config is applied as a diff ([`inputs`], [`exporters`]).
//!
//! Shutdown order: inputs stop → the collector flushes and closes the fan-out → each worker's intake
//! drains into its queue → each delivery thread exports what is queued (until the shutdown timeout),
//! flushes and shuts its exporter down → the HTTP server stops last.

mod exporters;
mod inputs;
mod metrics_configs;
mod reload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use periscope_scraper::kube::KubernetesConfig;
use periscope_scraper::objects::{PipelinePublisher, Secrets};
use periscope_scraper::shard::Shard;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use reload::{ReloadRequest, Trigger};

use crate::check::{self, Plan};
use crate::collector::{Collector, Fanout, Intake, ResyncRequest};
use crate::config::{ConfigSource, Problem};
use crate::readiness::Readiness;
use crate::server::{self, ReloadRoute};
use crate::supervise::Supervisor;
use crate::telemetry::Telemetry;
use exporters::Exporters;
use inputs::Inputs;
use metrics_configs::MetricsConfigs;

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP server could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Kubernetes client could not be set up.
    #[error("{0}")]
    Kubernetes(#[from] periscope_scraper::kube::ConnectError),
    /// A disk queue could not be opened.
    #[error("cannot open the disk queue of exporter `{name}` in {}: {source}", path.display())]
    Queue {
        /// The exporter.
        name: String,
        /// The queue's directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The collector ended abnormally; the host stopped everything else and delivered what was
    /// queued.
    #[error("the collector ended abnormally (see the log); the host stopped")]
    CollectorDied,
    /// A delivery thread could not be spawned.
    #[error("cannot start the delivery thread of exporter `{name}`: {source}")]
    Thread {
        /// The exporter.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What inputs and exporters are wired to, for the life of the host.
struct Wiring {
    telemetry: Telemetry,
    readiness: Readiness,
    supervisor: Supervisor,
    shard: Shard,
    intake: mpsc::Sender<Intake>,
    fanout: Fanout,
    resyncs: mpsc::UnboundedSender<ResyncRequest>,
    /// Cancelled at shutdown; each input stops on a child of it.
    shutdown: CancellationToken,
    /// `[host] shutdown_timeout` of the running config: how long a stopping input or exporter
    /// gets.
    grace: std::time::Duration,
}

/// The settings that cannot change while the host runs: the listener, and the collector's
/// timing and fan-out size.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listen: std::net::SocketAddr,
    flush_interval: std::time::Duration,
    fanout_capacity: usize,
}

impl Fixed {
    fn of(plan: &Plan) -> Fixed {
        Fixed {
            listen: plan.listen,
            flush_interval: plan.config.host.flush_interval.0,
            fanout_capacity: plan.config.host.fanout_capacity,
        }
    }

    /// Why `new` cannot be applied to a host running with `self`, one line per setting.
    fn refusals(&self, new: &Fixed) -> Vec<String> {
        let mut refusals = Vec::new();
        let mut differ = |key: &str, old: String, new: String| {
            if old != new {
                refusals.push(format!(
                    "`host.{key}` cannot change while the host runs ({old} → {new}); restart to apply it"
                ));
            }
        };
        differ("listen", self.listen.to_string(), new.listen.to_string());
        differ(
            "flush_interval",
            format!("{:?}", self.flush_interval),
            format!("{:?}", new.flush_interval),
        );
        differ(
            "fanout_capacity",
            self.fanout_capacity.to_string(),
            new.fanout_capacity.to_string(),
        );
        refusals
    }
}

/// The running config: what the next reload is compared with.
struct Current {
    sha256: String,
    fixed: Fixed,
    resources: Vec<periscope_scraper::config::ResourceConfig>,
    secrets: Secrets,
    /// The pipeline applied now.
    pipeline: Arc<periscope_scraper::objects::ObjectPipeline>,
    inputs: Inputs,
    exporters: Exporters,
    /// The MetricsConfigs watched, applied with the host's own files.
    tenants: MetricsConfigs,
}

/// Runs `plan` (read from `source`, whose files hash to `sha256`) until `shutdown` is
/// cancelled, reloading it from `source` when asked, then shuts down in order. `shard` selects
/// the share of watched objects this instance keeps.
pub async fn run(
    source: ConfigSource,
    sha256: String,
    plan: Plan,
    shard: Shard,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let telemetry = Telemetry::new();
    let readiness = Readiness::default();
    let supervisor = Supervisor::new(readiness.clone(), telemetry.clone());
    let (reload_tx, mut reload_rx) = mpsc::channel(8);
    let reload_route = ReloadRoute {
        enabled: Arc::new(AtomicBool::new(plan.config.host.reload_endpoint)),
        requests: reload_tx.clone(),
    };

    let server_stop = CancellationToken::new();
    let (addr, serve) = server::bind(
        plan.listen,
        telemetry.clone(),
        readiness.clone(),
        reload_route.clone(),
        server_stop.clone(),
    )
    .await
    .map_err(|source| RunError::Listen {
        addr: plan.listen,
        source,
    })?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(serve);

    let host = &plan.config.host;
    let watches_metrics_configs = plan
        .config
        .kubernetes
        .as_ref()
        .is_some_and(|k| k.metrics_configs);
    let pipelines = Arc::new(PipelinePublisher::new(plan.pipeline.clone()));
    let collector = Collector::new(
        host.flush_interval.0,
        host.fanout_capacity,
        telemetry.clone(),
        pipelines.clone(),
    );
    let (intake_tx, intake_rx) = mpsc::channel::<Intake>(4096);
    let (resync_tx, resync_rx) = mpsc::unbounded_channel();
    let mut wiring = Wiring {
        telemetry: telemetry.clone(),
        readiness: readiness.clone(),
        supervisor: supervisor.clone(),
        shard,
        intake: intake_tx,
        fanout: collector.fanout(),
        resyncs: resync_tx,
        shutdown: shutdown.clone(),
        grace: host.shutdown_timeout.0,
    };
    if watches_metrics_configs {
        metrics_configs::expect_first_list(&readiness);
    }
    readiness.set("collector", Ok(()));
    let mut collector =
        supervisor.spawn("collector".to_owned(), collector.run(intake_rx, resync_rx));

    telemetry.watch_pipeline(plan.pipeline.stats().clone());
    if let Some(limit) = crate::memory::limit(host.memory_limit.map(|b| b.0)) {
        // Every later pipeline shares this one's admission (`carry_on_from`).
        tokio::spawn(crate::memory::watch(
            limit,
            plan.pipeline.admission().clone(),
            shutdown.clone(),
        ));
    }
    let mut current = Current {
        sha256: sha256.clone(),
        fixed: Fixed::of(&plan),
        resources: plan.config.resources.clone(),
        secrets: secrets(plan.config.kubernetes.as_ref()),
        pipeline: plan.pipeline.clone(),
        inputs: Inputs::new(pipelines),
        exporters: Exporters::default(),
        tenants: MetricsConfigs::default(),
    };
    let dead_letter_dir = plan.config.host.dead_letter_dir.clone();
    let planned = plan.exporters;
    let plan = Plan {
        exporters: Vec::new(),
        ..plan
    };
    if let Some(failed) = current
        .exporters
        .reconcile(planned, &plan.refused, &dead_letter_dir, &wiring, false)
        .await
        .into_iter()
        .next()
    {
        return Err(failed);
    }
    let cluster = current
        .inputs
        .connect(plan.config.kubernetes.as_ref())
        .await?;
    current
        .inputs
        .reconcile(&plan, cluster, false, &wiring)
        .await;
    telemetry.reloads.applied(&sha256, false);
    current.tenants.reconcile(
        plan.config.kubernetes.as_ref(),
        current.inputs.client(),
        &reload_tx,
        &shutdown,
        &readiness,
    );
    reload::watch(source.path(), reload_tx, shutdown.clone());

    // The collector ends on its own only when it panics: then nothing reaches the exporters any
    // more, so the host stops and exits non-zero.
    let mut collector_died = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut collector => {
                collector_died = true;
                break;
            }
            Some(request) = reload_rx.recv() => {
                let outcome = reload(&source, request.trigger, &mut current, &mut wiring, &reload_route).await;
                current.tenants.reloaded(outcome.is_ok(), &readiness);
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    if collector_died {
        error!("the collector ended abnormally: stopping the host");
        shutdown.cancel();
    }
    info!("shutting down: stopping inputs, then delivering what is queued");
    let grace = wiring.grace;
    current.inputs.stop(grace).await;
    // With the inputs and the wiring gone, the collector flushes, ends and closes the fan-out.
    drop(wiring);
    if !collector_died {
        collector_died = !matches!(collector.await, Ok(Some(())));
    }
    current.exporters.finish(grace).await;
    server_stop.cancel();
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "HTTP server ended with an error");
    }
    info!("stopped");
    if collector_died {
        Err(RunError::CollectorDied)
    } else {
        Ok(())
    }
}

/// Reads, checks and applies the config from `source`; on any problem the running config stays
/// and the problems are returned (and logged, and counted).
async fn reload(
    source: &ConfigSource,
    trigger: Trigger,
    current: &mut Current,
    wiring: &mut Wiring,
    route: &ReloadRoute,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let refuse = |problems: Vec<String>| {
        for problem in &problems {
            error!(trigger = trigger.as_str(), %problem, "config reload refused; the running config stays");
        }
        wiring.telemetry.reloads.refused();
        Err(problems.join("\n"))
    };
    let own = match source.read() {
        Ok(text) => text,
        Err(errors) => return refuse(lines(&errors.problems)),
    };
    // The host's own files, then one per MetricsConfig: with `[kubernetes]` as the new files
    // say (whether to apply them, and their cap).
    let own_config = own.parse().ok();
    let kubernetes = own_config.as_ref().and_then(|c| c.kubernetes.clone());
    let own_entries = own_config.map_or((0, 0), |c| (c.resources.len(), c.endpoints.len()));
    let mut merged = current
        .tenants
        .merge(&own, kubernetes.as_ref(), &Default::default());
    let sha256 = merged.text.sha256();
    // A file or MetricsConfig event with the config as it runs changes nothing (unless the last
    // reload was refused: then the files are back to the running config, a success). An
    // explicit reload goes on even so: a plugin file may have been replaced.
    let event = matches!(trigger, Trigger::FilesChanged | Trigger::MetricsConfigs);
    if event && sha256 == current.sha256 {
        if wiring.telemetry.reloads.last_successful.get() == 0 {
            wiring.telemetry.reloads.applied(&sha256, true);
        }
        return Ok(());
    }
    let text = merged.text.clone();
    let checked = tokio::task::spawn_blocking(move || check::check(&text)).await;
    let mut plan = match checked {
        Ok(Ok(plan)) => plan,
        Ok(Err(errors)) => {
            // Problems in MetricsConfigs only: those are left out (their last accepted version
            // stays), the rest goes through.
            let refused = current.tenants.problems_by_tenant(&errors.problems);
            let theirs = refused.len();
            let only_theirs = errors.problems.iter().all(|p| {
                p.file
                    .starts_with(crate::metrics_config::tenancy::FILE_PREFIX)
            });
            if theirs == 0 || !only_theirs {
                return refuse(lines(&errors.problems));
            }
            for ((namespace, name), problem) in &refused {
                warn!(%namespace, %name, %problem, "MetricsConfig refused");
            }
            merged = current.tenants.merge(&own, kubernetes.as_ref(), &refused);
            let text = merged.text.clone();
            match tokio::task::spawn_blocking(move || check::check(&text)).await {
                Ok(Ok(plan)) => plan,
                Ok(Err(errors)) => return refuse(lines(&errors.problems)),
                Err(e) => return refuse(vec![format!("checking the config failed: {e}")]),
            }
        }
        Err(e) => return refuse(vec![format!("checking the config failed: {e}")]),
    };
    let sha256 = merged.text.sha256();
    let fixed = Fixed::of(&plan);
    let refusals = current.fixed.refusals(&fixed);
    if !refusals.is_empty() {
        return refuse(refusals);
    }
    for warning in &plan.warnings {
        warn!(%warning, "config warning");
    }

    let secrets = secrets(plan.config.kubernetes.as_ref());
    // An unchanged pipeline is kept, and with it what aggregates hold.
    let pipeline_changed = plan.config.resources != current.resources || secrets != current.secrets;
    if pipeline_changed {
        // Only the plan holds the new pipeline yet.
        if let Some(pipeline) = Arc::get_mut(&mut plan.pipeline) {
            pipeline.carry_on_from(&current.pipeline);
        }
    }
    let cluster = match current
        .inputs
        .connect(plan.config.kubernetes.as_ref())
        .await
    {
        Ok(cluster) => cluster,
        Err(e) => return refuse(vec![e.to_string()]),
    };
    wiring.grace = plan.config.host.shutdown_timeout.0;
    route
        .enabled
        .store(plan.config.host.reload_endpoint, Ordering::Relaxed);
    let dead_letter_dir = plan.config.host.dead_letter_dir.clone();
    let planned = std::mem::take(&mut plan.exporters);
    let failed = current
        .exporters
        .reconcile(planned, &plan.refused, &dead_letter_dir, wiring, true)
        .await;
    current
        .inputs
        .reconcile(&plan, cluster, pipeline_changed, wiring)
        .await;
    let endpoint_stats: Vec<_> = plan.endpoints.iter().map(|e| e.stats().clone()).collect();
    current
        .tenants
        .applied(&merged, own_entries, plan.pipeline.stats(), &endpoint_stats);
    current.tenants.reconcile(
        plan.config.kubernetes.as_ref(),
        current.inputs.client(),
        &route.requests,
        &wiring.shutdown,
        &wiring.readiness,
    );
    let problems: Vec<String> = failed.iter().map(ToString::to_string).collect();
    current.sha256 = sha256.clone();
    current.resources = plan.config.resources.clone();
    current.secrets = secrets;
    if pipeline_changed {
        current.pipeline = plan.pipeline.clone();
    }
    if !problems.is_empty() {
        // Applied, but not all of it runs: said as a failure, with what does not run.
        return refuse(problems);
    }
    wiring.telemetry.reloads.applied(&sha256, true);
    info!(
        trigger = trigger.as_str(),
        took_ms = started.elapsed().as_millis() as u64,
        pipeline_changed,
        "config reloaded"
    );
    Ok(())
}

/// Whether the config may watch Secrets, which the pipeline is compiled with.
fn secrets(kubernetes: Option<&KubernetesConfig>) -> Secrets {
    kubernetes.map_or(Secrets::Refused, KubernetesConfig::secrets)
}

fn lines(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}
