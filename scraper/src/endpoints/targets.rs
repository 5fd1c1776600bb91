//! Targets and their scrape loops: one task per target, started when the target appears,
//! stopped (and its source removed) when it goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::batch::{Source, SourceKind};
use periscope_plugin_api::hash::fnv1a_64;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Endpoint;
use super::scrape::scrape;
use crate::admission::Admission;
use crate::event::{ErrorKind, Event, SourceUpdate};
use crate::objects::ObjectKey;
use crate::shard::Shard;

/// One thing to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// What is fetched.
    pub(crate) url: reqwest::Url,
    /// `host:port`, the `instance` label.
    pub(crate) instance: String,
    /// Labels from the discovered object (none for URLs from the config).
    pub(crate) labels: Vec<(String, String)>,
    /// The object the target was discovered from.
    pub(crate) object: Option<ObjectKey>,
}

/// The targets of an entry, by source id.
pub(crate) type Targets = BTreeMap<String, Arc<Target>>;

impl Target {
    /// A target for `url`, optionally discovered from `object` with `labels`.
    pub(crate) fn new(
        url: reqwest::Url,
        labels: Vec<(String, String)>,
        object: Option<ObjectKey>,
    ) -> Self {
        // `host_str` keeps the brackets of an IPv6 address.
        let host = url.host_str().unwrap_or_default();
        let instance = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Target {
            url,
            instance,
            labels,
            object,
        }
    }

    /// The target's source id: `endpoint:<entry>:<url>`.
    pub(crate) fn source_id(&self, endpoint: &Endpoint) -> String {
        format!("endpoint:{}:{}", endpoint.name, self.url)
    }

    /// The target's source: kind `Endpoint`, named by its URL, with the discovered object's
    /// identity.
    pub(crate) fn source<'s>(&'s self, id: &'s str) -> Source<'s> {
        let mut source = Source::new(SourceKind::Endpoint, id);
        source.name = self.url.as_str();
        if let Some(object) = &self.object {
            source.api_version = object.api_version();
            source.object_kind = object.kind();
            source.namespace = object.namespace();
            source.uid = object.uid();
        }
        source
    }

    /// Whether this instance scrapes the target: by the object's uid, or by the source id.
    pub(crate) fn in_shard(&self, shard: Shard, id: &str) -> bool {
        match &self.object {
            Some(object) => shard.keeps(object.uid()),
            None => shard.keeps(id),
        }
    }
}

/// The targets given by URL in the config, of this shard.
pub(crate) fn static_targets(endpoint: &Endpoint, shard: Shard) -> Targets {
    endpoint
        .urls
        .iter()
        .map(|url| Target::new(url.clone(), Vec::new(), None))
        .map(|target| (target.source_id(endpoint), Arc::new(target)))
        .filter(|(id, target)| target.in_shard(shard, id))
        .collect()
}

/// Keeps one scrape loop per target of the latest target set.
pub(crate) struct Scheduler {
    endpoint: Arc<Endpoint>,
    admission: Admission,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    running: BTreeMap<String, Running>,
}

struct Running {
    target: Arc<Target>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Scheduler {
    pub(crate) fn new(
        endpoint: Arc<Endpoint>,
        admission: Admission,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) -> Self {
        Scheduler {
            endpoint,
            admission,
            events,
            shutdown,
            running: BTreeMap::new(),
        }
    }

    /// Follows the target sets sent on `targets` (`None` until the first is known) until
    /// shutdown; `Synced` goes out once the first set runs.
    pub(crate) async fn run(mut self, mut targets: watch::Receiver<Option<Targets>>) {
        let input = self.endpoint.input_name();
        let mut synced = false;
        loop {
            let next = targets.borrow_and_update().clone();
            if let Some(next) = next {
                self.reconcile(next).await;
                if !synced {
                    synced = true;
                    let input = input.clone();
                    if self.events.send(Event::Synced { input }).await.is_err() {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                changed = targets.changed() => if changed.is_err() {
                    // Discovery ended (only at shutdown): keep scraping until then.
                    self.shutdown.cancelled().await;
                    break;
                },
            }
        }
        for running in std::mem::take(&mut self.running).into_values() {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }

    /// Stops the loops of targets that are gone or changed (removing the sources of those that
    /// are gone) and starts loops for new and changed ones.
    async fn reconcile(&mut self, next: Targets) {
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, running)| next.get(*id) != Some(&running.target))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            let Some(running) = self.running.remove(&id) else {
                continue;
            };
            running.stop.cancel();
            // The loop may be sending a scrape: wait for it, so the Remove comes last.
            let _ = running.task.await;
            if !next.contains_key(&id) {
                let update = SourceUpdate::remove(running.target.source(&id));
                let update = self.endpoint.capped(update);
                let _ = self.events.send(Event::Update(update)).await;
            }
        }
        for (id, target) in next {
            if self.running.contains_key(&id) {
                continue;
            }
            let stop = self.shutdown.child_token();
            let task = tokio::spawn(scrape_loop(
                self.endpoint.clone(),
                self.admission.clone(),
                target.clone(),
                self.events.clone(),
                stop.clone(),
            ));
            self.running.insert(id, Running { target, stop, task });
        }
    }
}

/// Scrapes `target` every interval, at a fixed offset within it derived from the target's
/// source id (so targets of an entry are spread over the interval, and a target keeps its
/// rhythm across restarts), until `stop`. While `admission` is closed, a scrape writes no more
/// series than the one before.
async fn scrape_loop(
    endpoint: Arc<Endpoint>,
    admission: Admission,
    target: Arc<Target>,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let input = endpoint.input_name();
    let id = target.source_id(&endpoint);
    let offset = offset(&id, endpoint.interval);
    let start = tokio::time::Instant::now() + offset;
    let mut tick = tokio::time::interval_at(start, endpoint.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = scrape(&endpoint, &target, &id) => outcome,
        };
        let mut errors = Vec::new();
        if let Some(error) = outcome.error {
            let message = format!("scrape of {} failed: {error}", target.url);
            errors.push((ErrorKind::Scrape, message));
        }
        errors.extend(outcome.problems.into_iter().map(|problem| {
            let message = format!("scrape of {}: {problem}", target.url);
            (ErrorKind::Value, message)
        }));
        for (kind, message) in errors {
            let input = input.clone();
            let error = Event::Error {
                input,
                kind,
                message,
            };
            if events.send(error).await.is_err() {
                return;
            }
        }
        let update = endpoint.admitted(outcome.update, last, &admission);
        last = update.batch().sample_count();
        let update = endpoint.capped(update);
        if events.send(Event::Update(update)).await.is_err() {
            return;
        }
    }
}

/// Where in each interval a target is scraped.
fn offset(id: &str, interval: Duration) -> Duration {
    let millis = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(fnv1a_64(id.as_bytes()) % millis)
}
