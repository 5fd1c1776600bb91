//! `periscope run`: wires inputs, collector, delivery workers and the HTTP server together, and
//! shuts them down in order so every exporter delivers what it holds.
//!
//! Shutdown order: inputs stop → the collector flushes and closes the fan-out → each worker's intake
//! drains into its queue → each delivery thread exports what is queued (until the shutdown timeout),
//! flushes and shuts its exporter down → the HTTP server stops last.

use std::sync::Arc;

use periscope_scraper::endpoints::EndpointInput;
use periscope_scraper::files::FilesSource;
use periscope_scraper::kube::{KubeWatch, watch_targets};
use periscope_scraper::objects::ObjectPipeline;
use periscope_scraper::shard::Shard;
use periscope_scraper::{ErrorKind, Event, SourceUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::check::Plan;
use crate::collector::Collector;
use crate::config::QueueConfig;
use crate::delivery::{DeadLetter, DiskQueue, MemoryQueue, Queue, Worker, WorkerSpec};
use crate::readiness::Readiness;
use crate::server;
use crate::supervise::Supervisor;
use crate::telemetry::{InputMetrics, Telemetry};

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

/// Runs `plan` until `shutdown` is cancelled, then shuts down in order. `shard` selects the share
/// of watched objects this instance keeps.
pub async fn run(plan: Plan, shard: Shard, shutdown: CancellationToken) -> Result<(), RunError> {
    let telemetry = Telemetry::new();
    let readiness = Readiness::default();
    let supervisor = Supervisor::new(readiness.clone(), telemetry.clone());
    let host = &plan.config.host;

    let server_stop = CancellationToken::new();
    let (addr, serve) = server::bind(
        plan.listen,
        telemetry.clone(),
        readiness.clone(),
        server_stop.clone(),
    )
    .await
    .map_err(|source| RunError::Listen {
        addr: plan.listen,
        source,
    })?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(serve);

    for refused in &plan.refused {
        error!(exporter = %refused.name, problem = %refused.problem.message, "exporter disabled, its plugin was refused");
        readiness.set(
            &format!("exporter:{}", refused.name),
            Err(format!("plugin refused: {}", refused.problem.message)),
        );
        telemetry.exporter(&refused.name).up.set(0);
    }

    let collector = Collector::new(
        host.flush_interval.0,
        host.fanout_capacity,
        telemetry.clone(),
    );
    let (resync_tx, resync_rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for exporter in plan.exporters {
        let metrics = telemetry.exporter(&exporter.name);
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
        readiness.expect(&format!("exporter:{}", exporter.name), "starting");
        let spec = WorkerSpec {
            dead_letter: DeadLetter::new(&host.dead_letter_dir, &exporter.name),
            name: exporter.name.clone(),
            plugin: exporter.plugin,
            config_text: exporter.config_text,
            queue,
            batch: exporter.batch,
            retry: exporter.retry,
            export_timeout: exporter.export_timeout,
            max_series: exporter.max_series,
            guard_stats: telemetry.guard_stats(),
            metrics,
            readiness: readiness.clone(),
        };
        let worker = Worker::start(spec, collector.subscribe(), resync_tx.clone(), &supervisor)
            .map_err(|source| RunError::Thread {
                name: exporter.name,
                source,
            })?;
        workers.push(worker);
    }
    drop(resync_tx);

    telemetry.watch_pipeline(plan.pipeline.stats().clone());
    for endpoint in &plan.endpoints {
        telemetry.watch_pipeline(endpoint.stats().clone());
    }
    if let Some(limit) = crate::memory::limit(host.memory_limit.map(|b| b.0)) {
        tokio::spawn(crate::memory::watch(
            limit,
            plan.pipeline.clone(),
            shutdown.clone(),
        ));
    }
    let (updates_tx, updates_rx) = mpsc::channel::<SourceUpdate>(4096);
    let mut inputs = Vec::new();
    for files in &plan.config.sources.files {
        let source = FilesSource::new(files, plan.pipeline.clone());
        inputs.extend(spawn_input(
            source.input_name(),
            &supervisor,
            &readiness,
            &telemetry,
            &updates_tx,
            |events| source.run(events, shutdown.clone()),
        ));
    }
    let client = match &plan.config.kubernetes {
        Some(kubernetes) => Some(periscope_scraper::kube::connect(kubernetes).await?),
        None => None,
    };
    if let (Some(kubernetes), Some(client)) = (&plan.config.kubernetes, &client) {
        for target in watch_targets(&plan.config.resources) {
            let watch = KubeWatch::new(
                client.clone(),
                target,
                plan.pipeline.clone(),
                shard,
                kubernetes.page_size,
            );
            inputs.extend(spawn_input(
                watch.input_name(),
                &supervisor,
                &readiness,
                &telemetry,
                &updates_tx,
                |events| watch.run(events, shutdown.clone()),
            ));
        }
    }
    for endpoint in &plan.endpoints {
        let input = EndpointInput::new(endpoint.clone(), client.clone(), shard);
        inputs.extend(spawn_input(
            input.input_name(),
            &supervisor,
            &readiness,
            &telemetry,
            &updates_tx,
            |events| input.run(events, shutdown.clone()),
        ));
    }
    if plan.pipeline.has_derived() {
        let pipeline = plan.pipeline.clone();
        let interval = host.flush_interval.0;
        inputs.extend(spawn_input(
            "derived".to_owned(),
            &supervisor,
            &readiness,
            &telemetry,
            &updates_tx,
            |events| derived(pipeline, interval, events, shutdown.clone()),
        ));
    }
    drop(updates_tx);
    readiness.set("collector", Ok(()));
    let mut collector =
        supervisor.spawn("collector".to_owned(), collector.run(updates_rx, resync_rx));

    // The collector ends on its own only when every input has ended, or when it panics: then
    // nothing reaches the exporters any more, so the host stops and exits non-zero.
    let mut collector_ended = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        ended = &mut collector => collector_ended = Some(matches!(ended, Ok(Some(())))),
    }
    if collector_ended == Some(false) {
        error!("the collector ended abnormally: stopping the host");
        shutdown.cancel();
    }
    shutdown.cancelled().await;
    info!("shutting down: stopping inputs, then delivering what is queued");
    stop_inputs(inputs, host.shutdown_timeout.0).await;
    if collector_ended.is_none() {
        collector_ended = Some(matches!(collector.await, Ok(Some(()))));
    }
    for worker in workers {
        worker.finish(host.shutdown_timeout.0).await;
    }
    server_stop.cancel();
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "HTTP server ended with an error");
    }
    info!("stopped");
    match collector_ended {
        Some(false) => Err(RunError::CollectorDied),
        _ => Ok(()),
    }
}

/// Waits for the inputs to stop, at most `timeout`; the ones still running then (a read that does
/// not return) are aborted and logged, so that shutdown always goes on.
async fn stop_inputs(
    inputs: Vec<tokio::task::JoinHandle<Option<()>>>,
    timeout: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut aborted = 0;
    for mut input in inputs {
        if tokio::time::timeout_at(deadline, &mut input).await.is_err() {
            input.abort();
            aborted += 1;
        }
    }
    if aborted > 0 {
        error!(
            aborted,
            "inputs did not stop within shutdown_timeout; aborted them"
        );
    }
}

/// The input of aggregates and derived metrics: every `interval`, what changed since the last time
/// (computed by the pipeline from what the other inputs fed it). It ends with one last round once
/// the other inputs have stopped, so nothing they sent is left out.
async fn derived(
    pipeline: Arc<ObjectPipeline>,
    interval: std::time::Duration,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let input = "derived".to_owned();
    let _ = events.send(Event::Synced { input }).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        for update in pipeline.derived_updates(periscope_plugin_api::now_ms()) {
            if events.send(Event::Update(update)).await.is_err() {
                return;
            }
        }
        if stopping {
            return;
        }
    }
}

/// Starts an input (`run` gets the sender of its events) and the task that forwards them.
fn spawn_input<F>(
    name: String,
    supervisor: &Supervisor,
    readiness: &Readiness,
    telemetry: &Telemetry,
    updates: &mpsc::Sender<SourceUpdate>,
    run: impl FnOnce(mpsc::Sender<Event>) -> F,
) -> [tokio::task::JoinHandle<Option<()>>; 2]
where
    F: Future<Output = ()> + Send + 'static,
{
    readiness.expect(&format!("input:{name}"), "first read not done");
    let (events_tx, events_rx) = mpsc::channel(1024);
    let task = format!("input:{name}");
    [
        supervisor.spawn(task.clone(), run(events_tx)),
        supervisor.spawn(
            task,
            forward(
                name.clone(),
                events_rx,
                updates.clone(),
                telemetry.input(&name),
                readiness.clone(),
            ),
        ),
    ]
}

/// Counts an input's events into its self-metrics and readiness, and passes updates on.
async fn forward(
    input: String,
    mut events: mpsc::Receiver<Event>,
    updates: mpsc::Sender<SourceUpdate>,
    metrics: InputMetrics,
    readiness: Readiness,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Update(update) => {
                metrics.updates.inc();
                if updates.send(update).await.is_err() {
                    return;
                }
            }
            Event::Synced { .. } => {
                metrics.synced.set(1);
                readiness.set(&format!("input:{input}"), Ok(()));
                info!(%input, "first read complete");
            }
            Event::Error { kind, message, .. } => {
                metrics.errors.inc(kind);
                warn!(%input, kind = kind.as_str(), error = %message, "input error");
            }
            Event::Expression { failure, .. } => {
                metrics.errors.inc(ErrorKind::Value);
                if metrics.expressions.inc(&failure, std::time::Instant::now()) {
                    warn!(
                        %input,
                        resource = %failure.resource,
                        metric = %failure.metric,
                        error = %failure.message,
                        "expression failed (logged at most once a minute per metric)"
                    );
                }
            }
        }
    }
}
