//! The watch loop: one kind's objects through the pipeline, from kube-runtime's watcher to the
//! host's events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::kube::api::{Api, GroupVersionKind};
use ::kube::runtime::WatchStreamExt as _;
use ::kube::runtime::watcher;
use ::kube::{Client, discovery};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WatchTarget;
use super::known::Known;
use super::object::{RawObject, WatchedKind};
use crate::event::{ErrorKind, Event};
use crate::objects::keep::Keep;
use crate::objects::{Change, Generation, HeldObjects, ObjectKey, ObjectPipeline, SharedPipeline};
use crate::shard::Shard;

/// One running watch.
pub struct KubeWatch {
    client: Client,
    target: WatchTarget,
    pipeline: SharedPipeline,
    shard: Shard,
    page_size: u32,
}

/// Why a new object was ignored: the `reason` label.
const MAX_OBJECTS: &str = "max_objects";
/// Why a new object was ignored: the `reason` label.
const MEMORY_LIMIT: &str = "memory_limit";

/// The number of the next watch started.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// How often at most a watch sets what it holds in the self-metrics.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long to wait before looking for a kind that does not exist (yet) again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

impl KubeWatch {
    /// A watch of `target` through `client`, keeping only the objects of `shard`, each pruned to
    /// what the pipeline reads of it ([`ObjectPipeline::reads`]). When `pipeline` changes, the
    /// watch applies every object it holds again, without a new list unless the new pipeline
    /// reads what the held objects were pruned of; when the host asks for a resend, it sends
    /// every source it holds again.
    pub fn new(
        client: Client,
        target: WatchTarget,
        pipeline: SharedPipeline,
        shard: Shard,
        page_size: u32,
    ) -> Self {
        KubeWatch {
            client,
            target,
            pipeline,
            shard,
            page_size,
        }
    }

    /// The input's name (see [`WatchTarget::input_name`]).
    pub fn input_name(&self) -> String {
        self.target.input_name()
    }

    /// Watches until `shutdown`, sending updates, `Synced` after the first complete list, and
    /// errors. A kind that does not exist is looked for again every few seconds.
    pub async fn run(mut self, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
        let pipeline = self.pipeline.current().pipeline().clone();
        let api_version = self.target.api_version();
        let mut state = WatchState {
            input: self.input_name(),
            reads: reads_of(&pipeline, &api_version, &self.target.kind),
            watched: WatchedKind {
                api_version,
                kind: self.target.kind.clone(),
            },
            pipeline,
            shard: self.shard,
            events,
            known: Known::default(),
            scratch: Scratch::default(),
            synced: false,
            max_objects: self.target.max_objects,
            ignoring: None,
            joins_only: self.target.joins_only,
            relisting_for: None,
            reported: None,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            namespace: self.target.namespace.clone(),
        };
        let mut recompute = subscribe(&state.pipeline);
        let gvk =
            GroupVersionKind::gvk(&self.target.group, &self.target.version, &self.target.kind);
        let mut announced_missing = false;
        loop {
            let resolved = tokio::select! {
                _ = shutdown.cancelled() => return,
                change = self.pipeline.next() => {
                    state.follow(change, &mut recompute).await;
                    continue;
                }
                resolved = discovery::pinned_kind(&self.client, &gvk) => resolved,
            };
            let resource = match resolved {
                Ok((resource, _capabilities)) => resource,
                Err(e) => {
                    if !announced_missing {
                        announced_missing = true;
                        state
                            .error(
                                ErrorKind::Read,
                                format!(
                                    "{} is not served (yet): {e}; looking again every {}s",
                                    self.target.kind,
                                    DISCOVERY_RETRY.as_secs()
                                ),
                            )
                            .await;
                        // A kind that does not exist has no objects: the first read is complete.
                        state.synced().await;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        change = self.pipeline.next() => {
                            state.follow(change, &mut recompute).await;
                            continue;
                        }
                        _ = tokio::time::sleep(DISCOVERY_RETRY) => continue,
                    }
                }
            };
            announced_missing = false;
            let api: Api<RawObject> = match &self.target.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            let mut config = watcher::Config::default().page_size(self.page_size);
            if let Some(labels) = &self.target.label_selector {
                config = config.labels(labels);
            }
            if let Some(fields) = &self.target.field_selector {
                config = config.fields(fields);
            }
            let mut stream = ReadAhead::spawn(
                watcher(api, config).default_backoff(),
                self.page_size as usize,
            );
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    change = self.pipeline.next() => {
                        if state.follow(change, &mut recompute).await {
                            // The held objects lack what the new pipeline reads: list again.
                            break;
                        }
                        continue;
                    }
                    () = signalled(&mut recompute) => {
                        state.recompute().await;
                        continue;
                    }
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(event)) => state.handle(event).await,
                    Some(Err(e)) if is_not_found(&e) => {
                        // The kind is gone (its CRD was deleted): drop its sources, wait for it again.
                        state
                            .error(
                                ErrorKind::Read,
                                format!("{} is no longer served: {e}", self.target.kind),
                            )
                            .await;
                        state.remove_all().await;
                        break;
                    }
                    Some(Err(e)) => {
                        state
                            .error(
                                ErrorKind::Read,
                                format!(
                                    "watch of {} failed: {e}; retrying with backoff",
                                    self.target.kind
                                ),
                            )
                            .await
                    }
                    None => break,
                }
            }
        }
    }
}

/// A watcher's stream read ahead on a task of its own, up to a page of events: the next page of
/// a list is asked for and read while the objects of the last one go through the pipeline, rather
/// than after (which made the start the sum of the apiserver's time and the pipeline's). Dropping
/// it stops the task, and with it the watch.
struct ReadAhead<T> {
    events: mpsc::Receiver<T>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Send + 'static> ReadAhead<T> {
    fn spawn<S>(stream: S, ahead: usize) -> Self
    where
        S: futures::Stream<Item = T> + Send + 'static,
    {
        let (sender, events) = mpsc::channel(ahead.max(1));
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if sender.send(event).await.is_err() {
                    return;
                }
            }
        });
        ReadAhead { events, task }
    }

    /// The next event; `None` once the stream ended.
    async fn next(&mut self) -> Option<T> {
        self.events.recv().await
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pipeline's signal of objects to apply again, marked changed: objects marked before the
/// watch subscribed (while other inputs applied theirs with a new pipeline) are taken too.
fn subscribe(pipeline: &ObjectPipeline) -> Option<tokio::sync::watch::Receiver<u64>> {
    let mut receiver = pipeline.recompute_signal()?;
    receiver.mark_changed();
    Some(receiver)
}

/// Waits until the pipeline signals objects to apply again (their joins found something else);
/// pending forever without joins.
async fn signalled(recompute: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let changed = match recompute {
        Some(receiver) => receiver.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// What a watch keeps of its objects under `pipeline`: what the pipeline reads of the kind.
fn reads_of(pipeline: &ObjectPipeline, api_version: &str, kind: &str) -> Keep {
    pipeline
        .reads(api_version, kind)
        .cloned()
        .unwrap_or_else(Keep::everything)
}

fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(::kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(::kube::Error::Api(status))
        | watcher::Error::WatchFailed(::kube::Error::Api(status)) => status.is_not_found(),
        watcher::Error::WatchError(status) => status.is_not_found(),
        _ => false,
    }
}

/// What a watch remembers of each object it was sent: whether it is a source now, and the object
/// itself, pruned to what the pipeline reads, to apply again when the pipeline changes (a config
/// reload) or a join finds something else, without asking the apiserver for it. The object is
/// kept as LZ4-compressed JSON: as a `serde_json::Value` it was a sixth of the host's heap at 10k
/// objects (`bench/`); compressed it is about a fifth of its JSON.
struct Held {
    source: bool,
    object: Box<[u8]>,
}

impl Held {
    fn object(&self) -> Option<serde_json::Value> {
        let json = periscope_plugin_api::lz4::decompress(&self.object).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// The buffers objects are serialized and compressed in, reused for every object so that holding
/// one costs a single allocation of its compressed size.
#[derive(Default)]
struct Scratch {
    json: Vec<u8>,
    compressor: periscope_plugin_api::lz4::Compressor,
}

impl Scratch {
    /// What to hold of `object`: its JSON, compressed.
    fn hold(&mut self, source: bool, object: &serde_json::Value) -> Held {
        self.json.clear();
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.json, object);
        Held {
            source,
            object: self.compressor.compress(&self.json),
        }
    }
}

/// What a watch remembers: every object it was sent (of its shard), to remove the sources a relist
/// no longer shows and to apply them all again with a new pipeline.
struct WatchState {
    input: String,
    watched: WatchedKind,
    pipeline: Arc<ObjectPipeline>,
    shard: Shard,
    events: mpsc::Sender<Event>,
    known: Known<Held>,
    scratch: Scratch,
    synced: bool,
    /// The most objects taken in (`max_objects`).
    max_objects: Option<usize>,
    /// Why objects are being ignored now, if they are (for the log, once per change).
    ignoring: Option<&'static str>,
    /// What the pipeline reads of the kind: each object is pruned to it as it arrives, and held
    /// so.
    reads: Keep,
    /// Whether only joins read the kind: every shard holds its objects.
    joins_only: bool,
    /// The generation a relist is applying the objects with, because the held ones lacked what
    /// it reads: it is told the objects are applied when the relist is complete.
    relisting_for: Option<Arc<Generation>>,
    /// When what the watch holds was last set in the self-metrics.
    reported: Option<Instant>,
    /// This watch's number, apart from any other watch of its name.
    instance: u64,
    /// The namespace watched, if only one.
    namespace: Option<String>,
}

impl WatchState {
    async fn handle(&mut self, event: watcher::Event<RawObject>) {
        match event {
            watcher::Event::Init => self.known.start_relist(),
            watcher::Event::InitApply(object) => {
                if let Some((key, held)) = self.apply(object).await {
                    self.known.relisted(key, held);
                }
            }
            watcher::Event::InitDone => {
                for (key, held) in self.known.finish_relist() {
                    self.gone(&key, held.source).await;
                }
                if let Some(generation) = self.relisting_for.take() {
                    generation.reapplied();
                }
                self.synced().await;
                self.report(true);
            }
            watcher::Event::Apply(object) => {
                if let Some((key, held)) = self.apply(object).await {
                    self.known.insert(key, held);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(key) = self.watched.key_of_deleted(&object)
                    && let Some(held) = self.known.remove(&key)
                {
                    self.gone(&key, held.source).await;
                }
            }
        }
        self.report(false);
    }

    /// Sets what the watch holds in the self-metrics (`periscope_watch_objects`,
    /// `periscope_watch_held_bytes`): at once when `now`, else at most once a second.
    fn report(&mut self, now: bool) {
        if !now && self.reported.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return;
        }
        self.reported = Some(Instant::now());
        let held = HeldObjects {
            objects: self.known.len() as u64,
            bytes: self.known.values().map(|h| h.object.len() as u64).sum(),
        };
        self.pipeline
            .stats()
            .set_held(&self.input, self.instance, held);
    }

    /// Sends the object's update (or the `Remove` of a source it no longer is); returns its key
    /// and what to hold of it, unless it is not this shard's or has no key.
    async fn apply(&mut self, object: RawObject) -> Option<(ObjectKey, Held)> {
        let value = match self.watched.json(&object, &self.reads) {
            Ok(value) => value,
            Err(e) => {
                self.error(ErrorKind::Parse, e.to_string()).await;
                return None;
            }
        };
        let key = ObjectKey::of(&value)?;
        // Objects only joins read are needed by every shard: whichever holds the object that
        // joins them.
        if !self.joins_only && !self.shard.keeps(key.uid()) {
            return None;
        }
        if !self.admits(&key) {
            return None;
        }
        let was_source = self.known.get(&key).is_some_and(|held| held.source);
        let source = self.send(&key, &value, was_source).await;
        Some((key, self.scratch.hold(source, &value)))
    }

    /// Applies the pipeline to one object and sends what it gives: its update, or the `Remove`
    /// of the source it was. Returns whether it is a source now.
    async fn send(&mut self, key: &ObjectKey, value: &serde_json::Value, was_source: bool) -> bool {
        match self
            .pipeline
            .apply(key, value, periscope_plugin_api::now_ms())
        {
            Some((update, problems)) => {
                for problem in problems.messages {
                    self.error(ErrorKind::Value, format!("{}: {problem}", key.source_id()))
                        .await;
                }
                for mut failure in problems.expressions {
                    failure.message = format!("{}: {}", key.source_id(), failure.message);
                    let input = self.input.clone();
                    self.send_event(Event::Expression { input, failure }).await;
                }
                let event = if self.pipeline.can_resend(key) {
                    Event::Resendable(update)
                } else {
                    Event::Update(update)
                };
                self.send_event(event).await;
                true
            }
            None => {
                // Not selected (any more): if it was a source, it is gone.
                if was_source {
                    self.send_remove(key).await;
                }
                false
            }
        }
    }

    /// Does what the pipeline's publisher asks: apply every object again with a new pipeline
    /// (then listen to its recompute signal), or send every source again. Returns whether the
    /// objects must be listed again (see [`WatchState::reapply`]).
    async fn follow(
        &mut self,
        change: Change,
        recompute: &mut Option<tokio::sync::watch::Receiver<u64>>,
    ) -> bool {
        match change {
            Change::Pipeline(generation) => {
                let relist = self.reapply(generation).await;
                *recompute = subscribe(&self.pipeline);
                relist
            }
            Change::Resend(round) => {
                self.resend(round).await;
                false
            }
        }
    }

    /// Sends the update of every source held again, built from the object as it was last
    /// applied ([`ObjectPipeline::resend`]: nothing counted again), then says it is done. Sent in
    /// order with the watch's other updates, so each is the source's state at that point.
    async fn resend(&mut self, round: u64) {
        let now_ms = periscope_plugin_api::now_ms();
        for key in self.known.keys() {
            // A source the host keeps a copy of is not asked for.
            if !self.pipeline.can_resend(&key) {
                continue;
            }
            let Some(value) = self
                .known
                .get(&key)
                .filter(|held| held.source)
                .and_then(Held::object)
            else {
                continue;
            };
            if let Some(update) = self.pipeline.resend(&key, &value, now_ms) {
                self.send_event(Event::Resent(update)).await;
            }
        }
        self.send_event(Event::ResendDone { round }).await;
    }

    /// Applies every held object again with the pipeline of `generation` (a config reload), then
    /// tells the generation so. Returns whether the objects must be listed again instead: the
    /// new pipeline reads what the held objects were pruned of. Then nothing is applied now (the
    /// sources keep their series until the list brings each object), and the generation is told
    /// when the list is complete.
    async fn reapply(&mut self, generation: Arc<Generation>) -> bool {
        self.pipeline = generation.pipeline().clone();
        // A generation still waiting for a list is replaced by this one.
        if let Some(replaced) = self.relisting_for.take() {
            replaced.reapplied();
        }
        let reads = reads_of(
            &self.pipeline,
            &self.watched.api_version,
            &self.watched.kind,
        );
        let narrower = reads != self.reads;
        if !self.reads.covers(&reads) && self.known.len() > 0 {
            self.reads = reads;
            self.relisting_for = Some(generation);
            return true;
        }
        self.reads = reads;
        for key in self.known.keys() {
            let Some((was_source, mut value)) = self
                .known
                .get(&key)
                .and_then(|held| Some((held.source, held.object()?)))
            else {
                continue;
            };
            // The pipeline sees what a new watch would: the object pruned to what it reads.
            if narrower {
                self.reads.prune(&mut value);
            }
            let source = self.send(&key, &value, was_source).await;
            if let Some(held) = self.known.get_mut(&key) {
                if narrower {
                    *held = self.scratch.hold(source, &value);
                } else {
                    held.source = source;
                }
            }
        }
        generation.reapplied();
        self.report(true);
        false
    }

    /// Applies again the objects whose joins found something else since they were applied.
    async fn recompute(&mut self) {
        let keys = self.pipeline.take_recompute(
            &self.watched.api_version,
            &self.watched.kind,
            self.namespace.as_deref(),
        );
        for key in keys {
            let Some((was_source, value)) = self
                .known
                .get(&key)
                .and_then(|held| Some((held.source, held.object()?)))
            else {
                continue;
            };
            let source = self.send(&key, &value, was_source).await;
            if let Some(held) = self.known.get_mut(&key) {
                held.source = source;
            }
        }
    }

    /// Whether the object may be taken in: it is known already, or there is room under
    /// `max_objects` and the host is below its memory limit. An object ignored is counted
    /// (`periscope_watch_objects_ignored_total{watch,reason}`).
    fn admits(&mut self, key: &ObjectKey) -> bool {
        let refused = if self
            .max_objects
            .is_some_and(|max| !self.known.has_room_for(key, max))
        {
            Some(MAX_OBJECTS)
        } else if !self.pipeline.admission().is_open() && !self.known.knows(key) {
            Some(MEMORY_LIMIT)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.pipeline.stats().object_ignored(&self.input, reason);
        }
        // A known object is always admitted: only a new one tells that the cap was left.
        if refused.is_some() || !self.known.knows(key) {
            self.note(refused);
        }
        refused.is_none()
    }

    /// Logs a change between ignoring objects (and why) and taking them in.
    fn note(&mut self, refused: Option<&'static str>) {
        if refused == self.ignoring {
            return;
        }
        self.ignoring = refused;
        match refused {
            Some(reason) => tracing::warn!(
                input = %self.input,
                reason,
                objects = ?self.max_objects,
                "ignoring new objects (counted in periscope_watch_objects_ignored_total)"
            ),
            None => tracing::info!(input = %self.input, "taking in new objects again"),
        }
    }

    /// An object that is gone: the `Remove` of its source if it was one; otherwise only what
    /// joins knew of it goes.
    async fn gone(&mut self, key: &ObjectKey, source: bool) {
        if source {
            self.send_remove(key).await;
        } else {
            self.pipeline.forget(key);
        }
    }

    /// Sends the `Remove` of a source.
    async fn send_remove(&mut self, key: &ObjectKey) {
        if let Some(update) = self.pipeline.remove(key) {
            self.send_event(Event::Update(update)).await;
        }
    }

    async fn remove_all(&mut self) {
        for (key, held) in self.known.take_all() {
            self.gone(&key, held.source).await;
        }
        // Nothing is left to list again for it.
        if let Some(generation) = self.relisting_for.take() {
            generation.reapplied();
        }
        self.report(true);
    }

    async fn synced(&mut self) {
        if !self.synced {
            self.synced = true;
            let input = self.input.clone();
            self.send_event(Event::Synced { input }).await;
        }
    }

    async fn error(&mut self, kind: ErrorKind, message: String) {
        let input = self.input.clone();
        self.send_event(Event::Error {
            input,
            kind,
            message,
        })
        .await;
    }

    async fn send_event(&self, event: Event) {
        // The host stopped listening only at shutdown.
        let _ = self.events.send(event).await;
    }
}

impl Drop for WatchState {
    /// A watch stopped: what it held is gone, and a generation waiting for its list waits no
    /// more.
    fn drop(&mut self) {
        self.pipeline
            .stats()
            .forget_held(&self.input, self.instance);
        if let Some(generation) = self.relisting_for.take() {
            generation.reapplied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_object_comes_back_as_it_was_and_costs_its_compressed_size() {
        let mut scratch = Scratch::default();
        let big = serde_json::json!({
            "metadata": { "name": "a", "labels": { "x": "y".repeat(2000) } },
            "status": { "phase": "Running" },
        });
        let small = serde_json::json!({ "metadata": { "name": "b" } });
        let held = scratch.hold(true, &big);
        assert!(held.source);
        assert!(held.object.len() < 200, "{} bytes", held.object.len());
        assert_eq!(held.object(), Some(big));
        // The scratch buffers are reused: a smaller object after a bigger one is exact too.
        let held = scratch.hold(false, &small);
        assert_eq!(held.object(), Some(small));
    }
}
