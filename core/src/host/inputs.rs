//! The running inputs, reconciled with each plan.
//!
//! An input whose config is unchanged keeps running. A new one starts. A removed one is stopped and
//! retired: the collector removes every source it held. A changed one is replaced: the old input
//! stops, the new one starts, and the old one's sources are retired once the new one has done its
//! first read (or after [`HANDOVER`]), so its series do not blink out in between; sources both
//! report pass from the old to the new without an update reaching the exporters.
//!
//! A changed `[[resources]]` restarts nothing: the new pipeline is published, and every input
//! reading objects applies the objects it holds again (a watch without a new list).

use std::sync::Arc;
use std::time::Duration;

use periscope_scraper::config::{EndpointConfig, FilesConfig};
use periscope_scraper::endpoints::EndpointInput;
use periscope_scraper::files::FilesSource;
use periscope_scraper::kube::{KubeWatch, KubernetesConfig, WatchTarget, watch_targets};
use periscope_scraper::objects::{PipelinePublisher, SharedPipeline};
use periscope_scraper::{ErrorKind, Event, SourceUpdate};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{RunError, Wiring};
use crate::check::Plan;
use crate::collector::{InputId, Intake};
use crate::telemetry::InputMetrics;

/// How long a replaced input keeps its sources while its replacement does its first read.
const HANDOVER: Duration = Duration::from_secs(30);

/// What makes an input the same across a reload.
#[derive(Debug, Clone, PartialEq)]
enum InputKey {
    Files(FilesConfig),
    Watch(WatchTarget),
    Endpoint(Box<EndpointConfig>),
    Derived,
}

impl InputKey {
    /// Whether the input applies objects it holds (and so applies them again with a new
    /// pipeline).
    fn holds_objects(&self) -> bool {
        matches!(self, InputKey::Files(_) | InputKey::Watch(_))
    }

    /// Whether the input talks to the cluster (and must restart when `[kubernetes]` changes).
    fn uses_cluster(&self) -> bool {
        match self {
            InputKey::Watch(_) => true,
            InputKey::Endpoint(config) => config.kubernetes.is_some(),
            InputKey::Files(_) | InputKey::Derived => false,
        }
    }
}

/// One running input.
struct Running {
    key: InputKey,
    id: InputId,
    name: String,
    stop: CancellationToken,
    tasks: [JoinHandle<Option<()>>; 2],
    synced: watch::Receiver<bool>,
}

/// The inputs running now, the pipeline they apply objects with, and the cluster client they
/// share.
pub(super) struct Inputs {
    next_id: InputId,
    running: Vec<Running>,
    /// Shared with the collector, which asks the inputs through it to send their sources again.
    pipeline: Arc<PipelinePublisher>,
    cluster: Option<(KubernetesConfig, kube::Client)>,
}

impl Inputs {
    /// No input yet; objects will go through the pipelines `pipeline` publishes.
    pub(super) fn new(pipeline: Arc<PipelinePublisher>) -> Inputs {
        Inputs {
            next_id: 0,
            running: Vec::new(),
            pipeline,
            cluster: None,
        }
    }

    /// Connects to the cluster `kubernetes` names, unless the inputs are connected to it already:
    /// done before anything changes, so that a reload whose cluster cannot be reached changes
    /// nothing.
    pub(super) async fn connect(
        &self,
        kubernetes: Option<&KubernetesConfig>,
    ) -> Result<Cluster, RunError> {
        let running = self.cluster.as_ref().map(|(config, _)| config.connection());
        if running == kubernetes.map(KubernetesConfig::connection) {
            return Ok(Cluster::Same);
        }
        Ok(Cluster::New(match kubernetes {
            Some(config) => Some((
                config.clone(),
                periscope_scraper::kube::connect(config).await?,
            )),
            None => None,
        }))
    }

    /// The client of the cluster the inputs talk to, if any.
    pub(super) fn client(&self) -> Option<kube::Client> {
        self.cluster.as_ref().map(|(_, client)| client.clone())
    }

    /// Makes the running inputs those `plan` needs, with the cluster from
    /// [`connect`](Self::connect). When `pipeline_changed` (the `[[resources]]` changed),
    /// `plan.pipeline` is published to every input.
    pub(super) async fn reconcile(
        &mut self,
        plan: &Plan,
        cluster: Cluster,
        pipeline_changed: bool,
        wiring: &Wiring,
    ) {
        let cluster_changed = match cluster {
            Cluster::Same => false,
            Cluster::New(cluster) => {
                self.cluster = cluster;
                true
            }
        };
        let wanted = wanted(plan);
        let mut kept = Vec::new();
        let mut leaving = Vec::new();
        for running in std::mem::take(&mut self.running) {
            let restart = cluster_changed && running.key.uses_cluster();
            if !restart && wanted.contains(&running.key) {
                kept.push(running);
            } else {
                leaving.push(running);
            }
        }
        // The leaving inputs stop now (their sources stay until retired below), so that only the
        // kept ones apply their objects with a new pipeline.
        for old in &leaving {
            old.stop.cancel();
        }
        let (leaving, stopping): (Vec<_>, Vec<_>) = leaving
            .into_iter()
            .map(|old| ((old.id, old.name), old.tasks))
            .unzip();
        stop_all(stopping, wiring.grace).await;
        if pipeline_changed {
            let holding = kept.iter().filter(|r| r.key.holds_objects()).count();
            self.pipeline.publish(plan.pipeline.clone(), holding);
        }
        let mut started = Vec::new();
        for key in wanted {
            if !kept.iter().any(|running| running.key == key) {
                started.push(self.start(key, plan, wiring));
            }
        }
        if !leaving.is_empty() {
            let replacements: Vec<_> = started.iter().map(|r| r.synced.clone()).collect();
            let all_synced = async {
                for mut synced in replacements {
                    let _ = synced.wait_for(|done| *done).await;
                }
            };
            if tokio::time::timeout(HANDOVER, all_synced).await.is_err() {
                warn!(
                    "new inputs have not finished their first read within {}s; retiring the old ones anyway",
                    HANDOVER.as_secs()
                );
            }
        }
        self.running = kept;
        self.running.extend(started);
        for (id, name) in leaving {
            info!(input = %name, "input removed or changed: retiring it");
            // Every update the old input sent is already in the channel: this comes after.
            let _ = wiring.intake.send(Intake::Retire(id)).await;
            if !self.running.iter().any(|r| r.name == name) {
                wiring.readiness.remove(&format!("input:{name}"));
            }
        }
    }

    /// Stops every input (at shutdown: their sources stay), aborting the ones still running
    /// after `grace`.
    pub(super) async fn stop(self, grace: Duration) {
        for running in &self.running {
            running.stop.cancel();
        }
        stop_all(self.running.into_iter().map(|r| r.tasks).collect(), grace).await;
    }

    /// Starts the input for `key`.
    fn start(&mut self, key: InputKey, plan: &Plan, wiring: &Wiring) -> Running {
        self.next_id += 1;
        let id = self.next_id;
        let stop = wiring.shutdown.child_token();
        let pipeline = self.pipeline.subscribe();
        let client = self.cluster.as_ref().map(|(_, client)| client.clone());
        let (name, run): (String, StartInput) = match &key {
            InputKey::Files(config) => {
                let source = FilesSource::new(config, pipeline);
                let stop = stop.clone();
                (
                    source.input_name(),
                    Box::new(move |events| Box::pin(source.run(events, stop))),
                )
            }
            InputKey::Watch(target) => {
                let page_size = plan.config.kubernetes.as_ref().map_or(0, |k| k.page_size);
                // A watch exists only with `[kubernetes]`, which `check` requires for it.
                let watch = client.map(|client| {
                    KubeWatch::new(client, target.clone(), pipeline, wiring.shard, page_size)
                });
                let name = target.input_name();
                let stop = stop.clone();
                (
                    name,
                    Box::new(move |events| match watch {
                        Some(watch) => Box::pin(watch.run(events, stop)),
                        None => Box::pin(async {}),
                    }),
                )
            }
            InputKey::Endpoint(config) => {
                // Compiled endpoints are in the order of their entries.
                let endpoint = plan
                    .config
                    .endpoints
                    .iter()
                    .position(|c| c == config.as_ref())
                    .and_then(|i| plan.endpoints.get(i))
                    .cloned();
                if let Some(endpoint) = &endpoint {
                    wiring.telemetry.watch_pipeline(endpoint.stats().clone());
                }
                let admission = plan.pipeline.admission().clone();
                let input =
                    endpoint.map(|e| EndpointInput::new(e, client, wiring.shard, admission));
                let name = input.as_ref().map_or_else(
                    || format!("endpoints:{}", config.name.get_ref()),
                    EndpointInput::input_name,
                );
                let stop = stop.clone();
                (
                    name,
                    Box::new(move |events| match input {
                        Some(input) => Box::pin(input.run(events, stop)),
                        None => Box::pin(async {}),
                    }),
                )
            }
            InputKey::Derived => {
                let interval = plan.config.host.flush_interval.0;
                let stop = stop.clone();
                (
                    "derived".to_owned(),
                    Box::new(move |events| Box::pin(derived(pipeline, interval, events, stop))),
                )
            }
        };
        wiring
            .readiness
            .expect(&format!("input:{name}"), "first read not done");
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (synced_tx, synced) = watch::channel(false);
        let task = format!("input:{name}");
        let tasks = [
            wiring.supervisor.spawn(task.clone(), run(events_tx)),
            wiring.supervisor.spawn(
                task,
                forward(Forward {
                    id,
                    input: name.clone(),
                    events: events_rx,
                    intake: wiring.intake.clone(),
                    metrics: wiring.telemetry.input(&name),
                    readiness: wiring.readiness.clone(),
                    synced: synced_tx,
                }),
            ),
        ];
        Running {
            key,
            id,
            name,
            stop,
            tasks,
            synced,
        }
    }
}

type InputTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The cluster the inputs talk to after a reload.
pub(super) enum Cluster {
    /// The one they talk to now.
    Same,
    /// Another one (`None`: no cluster any more): watches and discovering endpoints restart.
    New(Option<(KubernetesConfig, kube::Client)>),
}
/// Starts an input's task, given the sender of its events.
type StartInput = Box<dyn FnOnce(mpsc::Sender<Event>) -> InputTask>;

/// The inputs `plan` needs, in a stable order.
fn wanted(plan: &Plan) -> Vec<InputKey> {
    let config = &plan.config;
    let mut keys: Vec<InputKey> = config
        .sources
        .files
        .iter()
        .cloned()
        .map(InputKey::Files)
        .collect();
    if config.kubernetes.is_some() {
        keys.extend(
            watch_targets(&config.resources)
                .into_iter()
                .map(InputKey::Watch),
        );
    }
    keys.extend(
        config
            .endpoints
            .iter()
            .map(|e| InputKey::Endpoint(Box::new(e.clone()))),
    );
    if plan.pipeline.has_derived() {
        keys.push(InputKey::Derived);
    }
    keys
}

/// Waits for the tasks to end, at most `timeout` in all; the ones still running then (a read
/// that does not return) are aborted and logged, so that stopping always goes on.
async fn stop_all(tasks: Vec<[JoinHandle<Option<()>>; 2]>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut aborted = 0;
    for mut task in tasks.into_iter().flatten() {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
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
/// stopped, so nothing the other inputs sent is left out.
///
/// With a new pipeline (a reload), it waits until every input has applied its objects with it
/// (at most [`HANDOVER`]), so that no aggregate shows a half-filled state; then it sends every
/// source of the new pipeline, and removes those only the old one had.
async fn derived(
    mut pipeline: SharedPipeline,
    interval: Duration,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let input = "derived".to_owned();
    let _ = events.send(Event::Synced { input }).await;
    let mut current = pipeline.current().pipeline().clone();
    let mut sent = SourceIds::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut replaced = false;
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
            generation = pipeline.changed() => {
                if !generation.all_reapplied(HANDOVER).await {
                    warn!("some inputs have not applied the new pipeline within {}s; computing aggregates anyway", HANDOVER.as_secs());
                }
                current = generation.pipeline().clone();
                replaced = true;
                false
            }
        };
        let updates = current.derived_updates(periscope_plugin_api::now_ms());
        let removes = if replaced {
            sent.all_but(&updates)
        } else {
            Vec::new()
        };
        for update in updates.into_iter().chain(removes) {
            sent.record(&update);
            if events.send(Event::Update(update)).await.is_err() {
                return;
            }
        }
        if stopping {
            return;
        }
    }
}

/// The sources an input has replaced and not removed since, each with its `Remove`.
#[derive(Default)]
struct SourceIds(std::collections::HashMap<String, SourceUpdate>);

impl SourceIds {
    fn record(&mut self, update: &SourceUpdate) {
        if update.is_remove() {
            self.0.remove(update.source_id());
        } else {
            self.0
                .insert(update.source_id().to_owned(), update.to_remove());
        }
    }

    /// The `Remove` of every source recorded that `updates` do not replace.
    fn all_but(&self, updates: &[SourceUpdate]) -> Vec<SourceUpdate> {
        let kept: std::collections::HashSet<&str> =
            updates.iter().map(SourceUpdate::source_id).collect();
        let mut removes: Vec<SourceUpdate> = self
            .0
            .iter()
            .filter(|(id, _)| !kept.contains(id.as_str()))
            .map(|(_, remove)| remove.clone())
            .collect();
        removes.sort_by(|a, b| a.source_id().cmp(b.source_id()));
        removes
    }
}

/// What the task forwarding one input's events needs.
struct Forward {
    id: InputId,
    input: String,
    events: mpsc::Receiver<Event>,
    intake: mpsc::Sender<Intake>,
    metrics: InputMetrics,
    readiness: crate::readiness::Readiness,
    synced: watch::Sender<bool>,
}

/// Counts an input's events into its self-metrics and readiness, and passes updates on.
async fn forward(forward: Forward) {
    let Forward {
        id,
        input,
        mut events,
        intake,
        metrics,
        readiness,
        synced,
    } = forward;
    while let Some(event) = events.recv().await {
        match event {
            Event::Update(update) => {
                metrics.updates.inc();
                if intake.send(Intake::Update(id, update)).await.is_err() {
                    return;
                }
            }
            Event::Resendable(update) => {
                metrics.updates.inc();
                if intake.send(Intake::Resendable(id, update)).await.is_err() {
                    return;
                }
            }
            // Not an update: the source's state again, for a resync.
            Event::Resent(update) => {
                if intake.send(Intake::Resent(id, update)).await.is_err() {
                    return;
                }
            }
            Event::ResendDone { round } => {
                if intake.send(Intake::ResendDone(id, round)).await.is_err() {
                    return;
                }
            }
            Event::Synced { .. } => {
                metrics.synced.set(1);
                readiness.set(&format!("input:{input}"), Ok(()));
                synced.send_replace(true);
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
