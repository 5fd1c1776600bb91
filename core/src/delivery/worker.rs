//! One delivery worker per exporter: an async intake that moves fanned-out batches into the queue
//! at once, and a dedicated thread that merges queued batches and calls the plugin.
//!
//! The thread owns the plugin instance. `Retry` waits with backoff and tries the same batch again;
//! `Reject` sends the batch to the dead-letter file, `RejectItems` only the items it names (the
//! rest counts as sent); a failure or panic drops the instance, waits
//! with backoff, starts a new one, asks for a resync (the new instance starts empty) and retries the
//! batch. Nothing leaves the queue uncounted.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use periscope_plugin_api::host::{Instance, Outcome};
use periscope_plugin_api::{Batch, BatchBuilder, Health, RejectedItem};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn};

use super::backoff::{Backoff, Stop};
use super::dead_letter::DeadLetter;
use super::queue::Queue;
use super::refusal::Refusals;
use super::watchdog::Watchdog;
use crate::collector::{ResyncRequest, Snapshot, Stamped};
use crate::config::{BatchConfig, RetryConfig};
use crate::guards::ExporterCap;
use crate::plugins::Plugin;
use crate::readiness::Readiness;
use crate::supervise::Supervisor;
use crate::telemetry::{ExporterHealth, ExporterMetrics};

/// Everything a worker needs, gathered by the host at start-up.
pub struct WorkerSpec {
    /// The exporter's name.
    pub name: String,
    /// The loaded plugin.
    pub plugin: Plugin,
    /// The exporter's own config, as TOML text.
    pub config_text: String,
    /// The queue between intake and delivery.
    pub queue: Queue,
    /// Merge limits.
    pub batch: BatchConfig,
    /// Backoff limits.
    pub retry: RetryConfig,
    /// How long one `export` call may take before it is reported stalled.
    pub export_timeout: std::time::Duration,
    /// The most series the exporter is given (`crate::guards`).
    pub max_series: Option<u64>,
    /// Where the cap counts what it leaves out.
    pub guard_stats: Arc<periscope_scraper::objects::PipelineStats>,
    /// Where rejected batches go.
    pub dead_letter: DeadLetter,
    /// Self-metrics.
    pub metrics: ExporterMetrics,
    /// Readiness board.
    pub readiness: Readiness,
}

impl WorkerSpec {
    fn set_ready(&self, state: Result<(), String>) {
        self.readiness
            .set(&format!("exporter:{}", self.name), state);
    }
}

/// A running worker.
pub struct Worker {
    name: String,
    intake: tokio::task::JoinHandle<Option<()>>,
    watch: tokio::task::JoinHandle<()>,
    thread: JoinHandle<()>,
    stop: Arc<Stop>,
    /// Ends the intake while the fan-out goes on (the exporter was removed or changed).
    retire: CancellationToken,
}

impl Worker {
    /// Starts the intake task and the delivery thread; `supervisor` reports either if it panics
    /// (`intake:<name>`, `delivery:<name>`). A worker started while the host runs (`catch_up`,
    /// on a reload) first asks for a snapshot of the current state; one started with the host
    /// sees every batch from the first.
    pub fn start(
        spec: WorkerSpec,
        fanout: broadcast::Receiver<Stamped>,
        resyncs: mpsc::UnboundedSender<ResyncRequest>,
        supervisor: &Supervisor,
        catch_up: bool,
    ) -> std::io::Result<Worker> {
        let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(Stop::default());
        let retire = CancellationToken::new();
        let link = ResyncLink {
            requests: resyncs.clone(),
            reply: snapshot_tx.clone(),
        };
        if catch_up {
            link.request();
        }
        let name = spec.name.clone();
        let watchdog = Arc::new(Watchdog::new(spec.export_timeout));
        let watch = tokio::spawn(watch(
            watchdog.clone(),
            spec.metrics.clone(),
            spec.readiness.clone(),
            name.clone(),
        ));
        let intake = supervisor.spawn(
            format!("intake:{name}"),
            intake(
                fanout,
                snapshot_rx,
                link,
                spec.queue.clone(),
                spec.metrics.clone(),
                retire.clone(),
                spec.max_series
                    .map(|max| ExporterCap::new(&name, max, spec.guard_stats.clone())),
            ),
        );
        let delivery = Delivery {
            spec,
            resync: ResyncLink {
                requests: resyncs,
                reply: snapshot_tx,
            },
            stop: stop.clone(),
            watchdog,
            instance: None,
            health: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("export-{name}"))
            .spawn({
                let supervisor = supervisor.clone();
                let task = format!("delivery:{name}");
                move || {
                    let run = std::panic::AssertUnwindSafe(|| delivery.run());
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        supervisor.failed(&task, &*panic);
                    }
                }
            })?;
        Ok(Worker {
            name,
            intake,
            watch,
            thread,
            stop,
            retire,
        })
    }

    /// Stops a worker while the host goes on (its exporter was removed or changed): the intake
    /// stops taking batches, and the worker delivers what it holds, as [`finish`](Self::finish)
    /// does. A disk queue keeps what is left for the next worker opening it.
    pub async fn retire(self, grace: std::time::Duration) {
        self.retire.cancel();
        self.finish(grace).await;
    }

    /// Waits for the worker to deliver what it holds (the fan-out must be closed first, which ends
    /// the intake), giving up on undelivered batches after `grace`. A delivery thread stuck in an
    /// `export` call that never returns is left behind a second after `grace`, so that shutdown
    /// always ends.
    pub async fn finish(self, grace: std::time::Duration) {
        if let Err(e) = self.intake.await {
            error!(exporter = %self.name, error = %e, "intake task failed");
        }
        self.stop.begin(grace);
        let name = self.name;
        let thread = self.thread;
        let joining = tokio::task::spawn_blocking(move || thread.join());
        let patience = grace.saturating_add(std::time::Duration::from_secs(1));
        match tokio::time::timeout(patience, joining).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => error!(exporter = %name, "delivery thread ended abnormally"),
            Err(_) => error!(
                exporter = %name,
                "an export call has not returned by the end of shutdown_timeout; leaving it behind"
            ),
        }
        self.watch.abort();
    }
}

/// Looks at the delivery thread's `export` call in flight every so often, and reports it once when
/// it passes the exporter's `export_timeout`: unhealthy, unready, counted, logged.
async fn watch(
    watchdog: Arc<Watchdog>,
    metrics: ExporterMetrics,
    readiness: Readiness,
    name: String,
) {
    let mut ticks = tokio::time::interval(watchdog.period());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(elapsed) = watchdog.check(Instant::now()) {
            metrics.stalled_exports.inc();
            metrics.health.set(Some(ExporterHealth::Unhealthy));
            let seconds = elapsed.as_secs_f64();
            readiness.set(
                &format!("exporter:{name}"),
                Err(format!(
                    "an export call has not returned for {seconds:.0} s"
                )),
            );
            error!(exporter = %name, elapsed_s = seconds, "an export call has not returned within export_timeout; the exporter is stalled (the host cannot interrupt it and keeps queueing)");
        }
    }
}

/// How a worker asks the collector for a snapshot, and where the answer goes.
#[derive(Clone)]
struct ResyncLink {
    requests: mpsc::UnboundedSender<ResyncRequest>,
    reply: mpsc::UnboundedSender<Snapshot>,
}

impl ResyncLink {
    fn request(&self) {
        // The collector is gone only at shutdown, when a snapshot no longer matters.
        let _ = self.requests.send(ResyncRequest {
            reply: self.reply.clone(),
        });
    }
}

/// Moves batches from the fan-out (and snapshots) into the queue, never doing I/O itself;
/// with a `max_series`, through the exporter's [`ExporterCap`].
async fn intake(
    mut fanout: broadcast::Receiver<Stamped>,
    mut snapshots: mpsc::UnboundedReceiver<Snapshot>,
    resync: ResyncLink,
    queue: Queue,
    metrics: ExporterMetrics,
    retire: CancellationToken,
    mut cap: Option<ExporterCap>,
) {
    // Batches numbered up to `covered` are already part of a queued snapshot.
    let mut covered = 0u64;
    let mut awaiting_snapshot = false;
    loop {
        tokio::select! {
            biased;
            () = retire.cancelled() => break,
            Some(snapshot) = snapshots.recv() => {
                covered = covered.max(snapshot.seq);
                awaiting_snapshot = false;
                metrics.resyncs.inc();
                if let Some(cap) = &mut cap {
                    cap.reset();
                }
                for batch in snapshot.batches {
                    queue.push(admit(batch, &mut cap)).await;
                }
            }
            received = fanout.recv() => match received {
                Ok((seq, batch)) => {
                    if seq > covered {
                        queue.push(admit(batch, &mut cap)).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics.lagged.inc_by(missed);
                    warn!(missed, "exporter fell behind the fan-out; asking for a resync");
                    if !awaiting_snapshot {
                        awaiting_snapshot = true;
                        resync.request();
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
        // Room given back while series are left out: a snapshot brings them back.
        if !awaiting_snapshot
            && cap
                .as_mut()
                .is_some_and(|cap| cap.wants_resync(Instant::now()))
        {
            awaiting_snapshot = true;
            resync.request();
        }
    }
    // Snapshots answered before the collector stopped still belong in the queue.
    while let Ok(snapshot) = snapshots.try_recv() {
        metrics.resyncs.inc();
        if let Some(cap) = &mut cap {
            cap.reset();
        }
        for batch in snapshot.batches {
            queue.push(admit(batch, &mut cap)).await;
        }
    }
    queue.close();
}

/// The batch as the exporter may see it under its cap, if it has one.
fn admit(batch: Arc<Batch>, cap: &mut Option<ExporterCap>) -> Arc<Batch> {
    match cap {
        Some(cap) => cap.admit(batch),
        None => batch,
    }
}

/// The delivery thread's state.
struct Delivery {
    spec: WorkerSpec,
    resync: ResyncLink,
    stop: Arc<Stop>,
    watchdog: Arc<Watchdog>,
    instance: Option<Instance>,
    /// What the running instance last said of its target.
    health: Option<(ExporterHealth, String)>,
}

impl Delivery {
    fn run(mut self) {
        let span = info_span!("exporter", name = %self.spec.name);
        let _entered = span.enter();
        let mut backoff = Backoff::new(&self.spec.retry);
        // Start at once, so readiness and start-up errors show before the first batch.
        let _ = self.instance_or_start(&mut backoff);
        while let Some(batch) = self.next_batch() {
            if self.deliver(&batch, &mut backoff) {
                self.spec.queue.commit();
            } else if self.spec.queue.is_durable() {
                // Shutdown's deadline came first: the batch stays on disk for the next run.
                break;
            } else {
                self.drop_on_shutdown(&batch);
                for rest in self.spec.queue.drain() {
                    self.drop_on_shutdown(&rest);
                }
            }
        }
        self.close_instance();
    }

    /// The next batch to export: the queue's head merged with whatever follows it within the
    /// exporter's `batch` limits. `None` once the queue is closed and empty.
    fn next_batch(&self) -> Option<Arc<Batch>> {
        let limits = &self.spec.batch;
        let first = self.spec.queue.pop(None)?;
        if first.sample_count() >= limits.max_samples
            || first.byte_size() as u64 >= limits.max_bytes.0
        {
            return Some(first);
        }
        let deadline = Instant::now() + limits.max_wait.0;
        let mut merged: Option<BatchBuilder> = None;
        let (mut samples, mut bytes) = (first.sample_count(), first.byte_size() as u64);
        while samples < limits.max_samples && bytes < limits.max_bytes.0 {
            let wait = if self.spec.queue.is_closed() {
                Instant::now()
            } else {
                deadline
            };
            let Some(next) = self.spec.queue.pop(Some(wait)) else {
                break;
            };
            samples += next.sample_count();
            bytes += next.byte_size() as u64;
            merged
                .get_or_insert_with(|| {
                    let mut b = BatchBuilder::new();
                    b.append(&first);
                    b
                })
                .append(&next);
        }
        Some(merged.map_or(first, |b| Arc::new(b.build())))
    }

    /// Exports `batch` until it is accepted or rejected. Returns false if shutdown's deadline came
    /// first (the batch was not delivered).
    fn deliver(&mut self, batch: &Batch, backoff: &mut Backoff) -> bool {
        let metrics = self.spec.metrics.clone();
        let watchdog = self.watchdog.clone();
        loop {
            if self.stop.expired() {
                return false;
            }
            let Some(instance) = self.instance_or_start(backoff) else {
                continue;
            };
            let started = Instant::now();
            watchdog.begin(started);
            let result = instance.export(batch);
            metrics.latency.observe(started.elapsed().as_secs_f64());
            if let Some(took) = watchdog.end(Instant::now()) {
                warn!(
                    took_s = took.as_secs_f64(),
                    "the stalled export call returned"
                );
                self.spec.set_ready(Ok(()));
            }
            if !matches!(result, Outcome::Failed { .. }) {
                self.observe_health();
            }
            match result {
                Outcome::Delivered => {
                    metrics.exports.inc();
                    metrics.sent.inc_by(batch.sample_count() as u64);
                    backoff.reset();
                    return true;
                }
                Outcome::Retry { after, reason } => {
                    metrics.retries.inc();
                    let wait = backoff.next_wait().max(after);
                    warn!(%reason, wait_ms = wait.as_millis() as u64, "export will be retried");
                    self.stop.sleep(wait);
                }
                Outcome::Rejected { reason } => {
                    backoff.reset();
                    self.dead_letter(batch, &reason);
                    return true;
                }
                Outcome::RejectedItems(items) => {
                    backoff.reset();
                    self.reject_items(batch, &items);
                    return true;
                }
                Outcome::Failed { reason } => {
                    error!(%reason, "exporter failed; restarting it");
                    self.spec.set_ready(Err(format!("failed: {reason}")));
                    self.discard_instance();
                    metrics.retries.inc();
                    metrics.restarts.inc();
                    self.stop.sleep(backoff.next_wait());
                }
            }
        }
    }

    /// The exporter delivered `batch` except `items`: those go to the dead-letter file, each with
    /// its reason, and count as rejected; the rest counts as sent. Items the batch does not have
    /// make the exporter's account untrustworthy: then the whole batch is dead-lettered, as a
    /// `Reject` would.
    fn reject_items(&self, batch: &Batch, items: &[RejectedItem]) {
        let refusals = match Refusals::resolve(batch, items) {
            Ok(refusals) => refusals,
            Err(problem) => {
                let first = items.first().map_or("", |item| item.reason.as_str());
                error!(%problem, "the exporter's refused items do not match the batch; dead-lettering all of it");
                self.dead_letter(
                    batch,
                    &format!("{problem}; the whole batch is dead-lettered (first reason: {first})"),
                );
                return;
            }
        };
        let metrics = &self.spec.metrics;
        metrics.exports.inc();
        let total = batch.sample_count();
        metrics
            .sent
            .inc_by(total.saturating_sub(refusals.samples()) as u64);
        if refusals.is_empty() {
            return;
        }
        let samples = refusals.samples() as u64;
        let first = refusals.first_reason().unwrap_or_default();
        let file = self.spec.dead_letter.path().display();
        match self.spec.dead_letter.write_items(batch, &refusals) {
            Ok(()) => {
                metrics.rejected.inc_by(samples);
                warn!(reason = %first, samples, of = total, %file, "items rejected; written to the dead-letter file (the rest is delivered)");
            }
            Err(e) => {
                metrics.dropped_dead_letter.inc_by(samples);
                error!(reason = %first, samples, error = %e, "items rejected and the dead-letter file cannot be written");
            }
        }
    }

    /// Asks the running instance how its target is, records it in the self-metrics and logs a
    /// change (with the exporter's reason).
    fn observe_health(&mut self) {
        let Some(instance) = self.instance.as_ref() else {
            return;
        };
        let (state, reason) = match instance.health() {
            Health::Healthy => (ExporterHealth::Healthy, String::new()),
            Health::Degraded(reason) => (ExporterHealth::Degraded, reason),
            Health::Unhealthy(reason) => (ExporterHealth::Unhealthy, reason),
        };
        self.spec.metrics.health.set(Some(state));
        let changed = self.health.as_ref().is_none_or(|(s, _)| *s != state);
        if changed {
            match state {
                ExporterHealth::Healthy if self.health.is_some() => {
                    info!("exporter reports its target healthy again");
                }
                ExporterHealth::Healthy => {}
                _ => {
                    warn!(state = state.as_str(), %reason, "exporter reports a problem with its target")
                }
            }
        }
        self.health = Some((state, reason));
    }

    /// The running instance, starting one if there is none. A start that fails is counted as a
    /// restart and waits out a backoff before returning `None`.
    fn instance_or_start(&mut self, backoff: &mut Backoff) -> Option<&mut Instance> {
        if self.instance.is_none() {
            let spec = &self.spec;
            match spec.plugin.start(&spec.name, &spec.config_text) {
                Ok(instance) => {
                    info!(plugin = %spec.plugin.info().name, "exporter started");
                    spec.metrics.up.set(1);
                    spec.set_ready(Ok(()));
                    let restarted = spec.metrics.restarts.get() > 0;
                    self.instance = Some(instance);
                    if restarted {
                        // A new instance starts empty: give it the whole current state.
                        self.resync.request();
                    }
                }
                Err(reason) => {
                    error!(%reason, "exporter could not start");
                    spec.set_ready(Err(format!("cannot start: {reason}")));
                    spec.metrics.restarts.inc();
                    self.stop.sleep(backoff.next_wait());
                    return None;
                }
            }
        }
        self.instance.as_mut()
    }

    fn dead_letter(&self, batch: &Batch, reason: &str) {
        let metrics = &self.spec.metrics;
        let samples = batch.sample_count() as u64;
        match self.spec.dead_letter.write(reason, batch) {
            Ok(()) => {
                metrics.rejected.inc_by(samples);
                warn!(%reason, samples, file = %self.spec.dead_letter.path().display(), "batch rejected; written to the dead-letter file");
            }
            Err(e) => {
                metrics.dropped_dead_letter.inc_by(samples);
                error!(%reason, samples, error = %e, "batch rejected and the dead-letter file cannot be written");
            }
        }
    }

    fn drop_on_shutdown(&self, batch: &Batch) {
        let samples = batch.sample_count() as u64;
        self.spec.metrics.dropped_shutdown.inc_by(samples);
        error!(
            samples,
            "shutdown deadline passed before the batch was delivered; dropped"
        );
    }

    fn discard_instance(&mut self) {
        self.instance = None;
        self.health = None;
        self.spec.metrics.up.set(0);
        self.spec.metrics.health.set(None);
    }

    fn close_instance(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            if let Err(error) = instance.flush() {
                error!(%error, "flush at shutdown failed");
            }
            if let Err(error) = instance.shutdown() {
                error!(%error, "shutdown failed");
            }
            info!("exporter stopped");
        }
        self.health = None;
        self.spec.metrics.up.set(0);
        self.spec.metrics.health.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WhenFull;
    use crate::delivery::{DeadLetter, MemoryQueue};
    use crate::telemetry::Telemetry;
    use periscope_plugin_api::{
        BoxError, Context, Export, Exporter, Family, FamilyKind, RejectedItem, Source, SourceKind,
        Suffix,
    };
    use serde::Deserialize;
    use serde_json::Value;

    /// Accepts every batch except what its config refuses: the whole batch (`reject`) or items.
    struct Scripted(ScriptConfig);

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScriptConfig {
        #[serde(default)]
        reject: Option<String>,
        #[serde(default)]
        reject_items: Vec<ItemConfig>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ItemConfig {
        update: usize,
        sample: Option<usize>,
        reason: String,
    }

    impl Exporter for Scripted {
        type Config = ScriptConfig;

        fn new(config: ScriptConfig, _: Context<'_>) -> Result<Self, BoxError> {
            Ok(Scripted(config))
        }

        fn export(&mut self, _: &Batch) -> Result<Export, BoxError> {
            if let Some(reason) = &self.0.reject {
                return Ok(Export::Reject {
                    reason: reason.clone(),
                });
            }
            Ok(Export::RejectItems {
                items: self
                    .0
                    .reject_items
                    .iter()
                    .map(|i| RejectedItem {
                        update: i.update,
                        sample: i.sample,
                        reason: i.reason.clone(),
                    })
                    .collect(),
            })
        }
    }

    /// Replace `a` (values 1, 2, 3), Remove `b`, Replace `c` (value 4): four samples.
    fn batch() -> Arc<Batch> {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "x",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut a = b.replace(Source::new(SourceKind::Object, "a"));
        for v in [1.0, 2.0, 3.0] {
            a.sample(f, Suffix::None, v, 7);
        }
        b.remove(Source::new(SourceKind::Object, "b"));
        b.replace(Source::new(SourceKind::Object, "c"))
            .sample(f, Suffix::None, 4.0, 7);
        Arc::new(b.build())
    }

    /// Runs a delivery thread's loop on this thread over `batches` (queued first, then the queue is
    /// closed) with the scripted exporter configured by `config`; the exporter's self-metrics and
    /// the dead-letter file's lines.
    fn deliver_all(config: &str, batches: &[Arc<Batch>]) -> (ExporterMetrics, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("t");
        let queue = Queue::Memory(Arc::new(MemoryQueue::new(
            16,
            WhenFull::Block,
            metrics.clone(),
        )));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for batch in batches {
            runtime.block_on(queue.push(batch.clone()));
        }
        queue.close();
        let (requests, _) = mpsc::unbounded_channel();
        let (reply, _) = mpsc::unbounded_channel();
        let delivery = Delivery {
            spec: WorkerSpec {
                name: "t".into(),
                plugin: Plugin::in_process::<Scripted>("scripted", "0.0.0"),
                config_text: config.into(),
                queue,
                batch: BatchConfig::default(),
                retry: RetryConfig::default(),
                export_timeout: std::time::Duration::from_secs(60),
                max_series: None,
                guard_stats: Arc::default(),
                dead_letter: DeadLetter::new(dir.path(), "t"),
                metrics: metrics.clone(),
                readiness: Readiness::default(),
            },
            resync: ResyncLink { requests, reply },
            stop: Arc::new(Stop::default()),
            watchdog: Arc::new(Watchdog::new(std::time::Duration::from_secs(60))),
            instance: None,
            health: None,
        };
        delivery.run();
        let lines = std::fs::read_to_string(dir.path().join("t.ndjson"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (metrics, lines)
    }

    /// Source, value (null for a removal) and reason of each dead-letter line.
    fn summary(lines: &[Value]) -> Vec<(String, Value, String)> {
        lines
            .iter()
            .map(|l| {
                (
                    l["source"].as_str().unwrap().to_owned(),
                    l.get("value").cloned().unwrap_or(Value::Null),
                    l["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn refused_items_alone_are_dead_lettered_and_the_rest_counts_as_sent() {
        let (metrics, lines) = deliver_all(
            r#"reject_items = [
                { update = 0, sample = 1, reason = "a's second is bad" },
                { update = 1, reason = "b's removal is bad" },
            ]"#,
            &[batch()],
        );
        assert_eq!(
            summary(&lines),
            [
                ("a".into(), 2.0.into(), "a's second is bad".into()),
                ("b".into(), Value::Null, "b's removal is bad".into()),
            ]
        );
        assert_eq!(lines[0]["op"], "replace");
        assert_eq!(lines[1]["op"], "remove");
        // One sample refused (a removal has none), the other three delivered, nothing retried.
        assert_eq!(metrics.rejected.get(), 1);
        assert_eq!(metrics.sent.get(), 3);
        assert_eq!(metrics.exports.get(), 1);
        assert_eq!(metrics.retries.get(), 0);
        assert_eq!(metrics.dropped_dead_letter.get(), 0);
    }

    #[test]
    fn a_whole_update_refused_dead_letters_each_of_its_samples() {
        let (metrics, lines) = deliver_all(
            r#"reject_items = [{ update = 0, reason = "a is bad" }]"#,
            &[batch()],
        );
        let values: Vec<Value> = summary(&lines).into_iter().map(|s| s.1).collect();
        assert_eq!(values, [1.0, 2.0, 3.0]);
        assert_eq!((metrics.rejected.get(), metrics.sent.get()), (3, 1));
    }

    #[test]
    fn no_refused_items_is_a_plain_delivery() {
        let (metrics, lines) = deliver_all("", &[batch()]);
        assert!(lines.is_empty());
        assert_eq!((metrics.rejected.get(), metrics.sent.get()), (0, 4));
        assert_eq!(metrics.exports.get(), 1);
    }

    #[test]
    fn a_whole_batch_reject_dead_letters_all_of_it() {
        let (metrics, lines) = deliver_all(r#"reject = "all bad""#, &[batch()]);
        assert_eq!(lines.len(), 5, "four samples and a removal: {lines:?}");
        assert!(lines.iter().all(|l| l["reason"] == "all bad"));
        assert_eq!((metrics.rejected.get(), metrics.sent.get()), (4, 0));
        assert_eq!(metrics.exports.get(), 0);
    }

    #[test]
    fn refused_items_the_batch_does_not_have_dead_letter_all_of_it() {
        let (metrics, lines) = deliver_all(
            r#"reject_items = [{ update = 0, sample = 0, reason = "fine" }, { update = 9, reason = "where?" }]"#,
            &[batch()],
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        let reason = lines[0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("the exporter refused update 9, but the batch has 3 updates"),
            "{reason}"
        );
        assert!(reason.contains("whole batch"), "{reason}");
        assert_eq!((metrics.rejected.get(), metrics.sent.get()), (4, 0));
    }

    #[test]
    fn positions_refer_to_the_merged_batch_the_exporter_saw() {
        // Two queued batches are merged into one export of six updates: update 3 is the second
        // batch's Replace of `a`.
        let (metrics, lines) = deliver_all(
            r#"reject_items = [{ update = 3, sample = 2, reason = "the second a's third" }]"#,
            &[batch(), batch()],
        );
        assert_eq!(
            summary(&lines),
            [("a".into(), 3.0.into(), "the second a's third".into())]
        );
        assert_eq!((metrics.rejected.get(), metrics.sent.get()), (1, 7));
        assert_eq!(metrics.exports.get(), 1);
    }
}
