//! The watch loop: one kind's objects through the pipeline, from kube-runtime's watcher to the
//! host's events.

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, DynamicObject, GroupVersionKind};
use ::kube::runtime::WatchStreamExt as _;
use ::kube::runtime::watcher;
use ::kube::{Client, discovery};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WatchTarget;
use super::known::Known;
use super::object::WatchedKind;
use crate::event::{ErrorKind, Event};
use crate::objects::joins::Keep;
use crate::objects::{Change, Generation, ObjectKey, ObjectPipeline, SharedPipeline, bulk};
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

/// How long to wait before looking for a kind that does not exist (yet) again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

impl KubeWatch {
    /// A watch of `target` through `client`, keeping only the objects of `shard`. When
    /// `pipeline` changes, the watch applies every object it holds again, without a new list
    /// unless the new pipeline reads the bulky parts the held objects were stripped of
    /// ([`bulk`]); when the host asks for a resend, it sends every source it holds again.
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
        let mut state = WatchState {
            input: self.input_name(),
            watched: WatchedKind {
                api_version: self.target.api_version(),
                kind: self.target.kind.clone(),
            },
            pipeline: self.pipeline.current().pipeline().clone(),
            shard: self.shard,
            events,
            known: Known::default(),
            scratch: Scratch::default(),
            synced: false,
            max_objects: self.target.max_objects,
            ignoring: None,
            keep: self.target.keep.clone(),
            drop_bulk: false,
            namespace: self.target.namespace.clone(),
        };
        state.drop_bulk = state.drops_bulk();
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
            let api: Api<DynamicObject> = match &self.target.namespace {
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
            let mut stream = watcher(api, config).default_backoff().boxed();
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
/// itself, to apply again when the pipeline changes (a config reload) without asking the
/// apiserver for it. The object is kept as LZ4-compressed JSON: as a `serde_json::Value` it was a
/// sixth of the host's heap at 10k objects (`bench/`); compressed it is about a fifth of its JSON.
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
    /// What of each object to hold and apply when only joins read the kind.
    keep: Option<Keep>,
    /// Whether objects lose their bulky parts as they arrive (see [`bulk`]).
    drop_bulk: bool,
    /// The namespace watched, if only one.
    namespace: Option<String>,
}

impl WatchState {
    async fn handle(&mut self, event: watcher::Event<DynamicObject>) {
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
                self.synced().await;
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
    }

    /// Sends the object's update (or the `Remove` of a source it no longer is); returns its key
    /// and what to hold of it, unless it is not this shard's or has no key.
    async fn apply(&mut self, object: DynamicObject) -> Option<(ObjectKey, Held)> {
        let mut value = match self.watched.json(object) {
            Ok(value) => value,
            Err(e) => {
                self.error(ErrorKind::Parse, e.to_string()).await;
                return None;
            }
        };
        if self.drop_bulk {
            bulk::drop_bulk(&mut value);
        }
        // Only joins read this kind: what they do not read is dropped at once.
        let value = match &self.keep {
            Some(keep) => keep.prune(&value),
            None => value,
        };
        let key = ObjectKey::of(&value)?;
        // Objects only joins read are needed by every shard: whichever holds the object that
        // joins them.
        if self.keep.is_none() && !self.shard.keeps(key.uid()) {
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

    /// Whether objects may lose their bulky parts under the current pipeline: the kind is not
    /// one only joins read (those keep exactly what joins read), and no entry reads them.
    fn drops_bulk(&self) -> bool {
        self.keep.is_none()
            && self
                .pipeline
                .drops_bulk(&self.watched.api_version, &self.watched.kind)
    }

    /// Applies every held object again with the pipeline of `generation` (a config reload), then
    /// tells the generation so. Returns whether the objects must be listed again: the new
    /// pipeline reads the bulky parts the held objects were stripped of (until the list, what
    /// reads them finds nothing).
    async fn reapply(&mut self, generation: Arc<Generation>) -> bool {
        self.pipeline = generation.pipeline().clone();
        let drop_bulk = self.drops_bulk();
        let relist = self.drop_bulk && !drop_bulk;
        self.drop_bulk = drop_bulk;
        for key in self.known.keys() {
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
        generation.reapplied();
        relist
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
