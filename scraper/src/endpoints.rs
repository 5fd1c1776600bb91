//! Endpoint scraping: the `[[endpoints]]` of the config, polled over HTTP.
//!
//! Operators publish values that change too fast to live in etcd (a VM's memory use, say) on an
//! HTTP endpoint; Periscope polls it the way Prometheus would. Each entry ([`Endpoint`], compiled
//! by [`compile`]) has targets — URLs from the config, or Pods and EndpointSlices found through the
//! Kubernetes API ([`discovery`]) — and [`EndpointInput`] keeps one scrape loop per target
//! ([`targets`]): a new pod becomes a target, a deleted one a `Remove` of its source.
//!
//! A scrape ([`scrape`]) fetches the page with a timeout and a cap on its size ([`client`]),
//! parses Prometheus text or OpenMetrics ([`crate::exposition`]) or reads JSON with the same path
//! language objects use, applies `keep`/`drop` and the sample cap, and adds the target's labels.
//! Every target's source also carries Prometheus' own series: `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped` and `scrape_samples_post_metric_relabeling`. A failed scrape (refused
//! connection, timeout, HTTP error, wrong content type, a page too large or malformed, too many
//! samples) is an error event counted under the entry's input and leaves only those series, with
//! `up` 0: the target's samples go stale, as in Prometheus. One target never holds up another.

mod client;
mod compile;
mod discovery;
mod json_answer;
mod scrape;
mod targets;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::auth::Auth;
use regex::RegexSet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, MEMORY_LIMIT};
use crate::config::{EndpointFormat, PortRef, Scheme};
use crate::event::{ErrorKind, Event, SourceUpdate};
use crate::objects::DocumentMetrics;
use crate::path::Path;
use crate::shard::Shard;

pub use compile::compile;

/// A compiled `[[endpoints]]` entry.
#[derive(Debug)]
pub struct Endpoint {
    /// The entry's name (the `job` label).
    name: String,
    /// Targets given by URL.
    urls: Vec<reqwest::Url>,
    /// How targets are discovered, if they are.
    discovery: Option<Discovery>,
    format: EndpointFormat,
    interval: Duration,
    timeout: Duration,
    max_response_bytes: u64,
    max_samples: usize,
    label_limit: usize,
    label_value_length_limit: usize,
    label_name_length_limit: usize,
    keep: Option<RegexSet>,
    drop: Option<RegexSet>,
    /// The entry's `labels`, in name order.
    labels: Vec<(String, String)>,
    /// The credentials sent with every scrape (never an API key).
    auth: Option<Auth>,
    http: reqwest::Client,
    /// The metrics of a JSON answer.
    json: Option<DocumentMetrics>,
    /// The `entry` label of what its caps leave out: `endpoints[i]`.
    entry: String,
    /// `max_series` and `max_values` over every target of the entry.
    cap: Option<std::sync::Mutex<crate::objects::SeriesCap>>,
    /// What the cap left out, for the host's self-metrics.
    stats: Arc<crate::objects::PipelineStats>,
}

impl Endpoint {
    /// What the entry's caps left out, for the host's self-metrics.
    pub fn stats(&self) -> &Arc<crate::objects::PipelineStats> {
        &self.stats
    }

    /// A target's update as it may go on while `admission` is closed: no more series than
    /// `last`, what the target wrote before (and always its report: `up` and the `scrape_*`
    /// series, which come first); the rest is counted.
    fn admitted(&self, update: SourceUpdate, last: usize, admission: &Admission) -> SourceUpdate {
        let keep = last.max(scrape::REPORT_SERIES);
        if admission.is_open() || update.batch().sample_count() <= keep {
            return update;
        }
        let (kept, left_out) = crate::objects::keep_first(update, keep);
        for family in left_out {
            (self.stats).series_limited(&self.entry, &family, MEMORY_LIMIT, 1);
        }
        kept
    }

    /// A target's update as it may go on under the entry's caps.
    fn capped(&self, update: SourceUpdate) -> SourceUpdate {
        match &self.cap {
            // A panic while the cap was locked leaves it as consistent as any single admission.
            Some(cap) => (cap
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner))
            .admit_update(update),
            None => update,
        }
    }

    /// The name of the entry's input in self-metrics and readiness: `endpoints:<name>`.
    pub fn input_name(&self) -> String {
        format!("endpoints:{}", self.name)
    }

    /// Whether a sample named `name` survives `keep` and `drop`.
    fn keeps(&self, name: &str) -> bool {
        self.keep.as_ref().is_none_or(|keep| keep.is_match(name))
            && self.drop.as_ref().is_none_or(|drop| !drop.is_match(name))
    }
}

/// A compiled `[endpoints.kubernetes]`.
#[derive(Debug)]
struct Discovery {
    role: crate::config::DiscoveryRole,
    namespaces: Vec<String>,
    label_selector: Option<String>,
    port: PortRef,
    path: String,
    scheme: Scheme,
    /// Labels read from the discovered object.
    labels: Vec<(String, Path)>,
}

/// The input of one `[[endpoints]]` entry: its targets and their scrape loops.
pub struct EndpointInput {
    endpoint: Arc<Endpoint>,
    client: Option<kube::Client>,
    shard: Shard,
    admission: Admission,
}

impl EndpointInput {
    /// The input of `endpoint`. `client` is needed when the entry discovers targets; `shard`
    /// keeps the targets of this instance (discovered ones by the object's uid, URLs by their
    /// source id), so N sharded replicas scrape every target once. While `admission` is closed,
    /// a target writes no more series than its last scrape did.
    pub fn new(
        endpoint: Arc<Endpoint>,
        client: Option<kube::Client>,
        shard: Shard,
        admission: Admission,
    ) -> Self {
        EndpointInput {
            endpoint,
            client,
            shard,
            admission,
        }
    }

    /// The input's name (see [`Endpoint::input_name`]).
    pub fn input_name(&self) -> String {
        self.endpoint.input_name()
    }

    /// Scrapes every target until `shutdown`, following discovered targets as they come and
    /// go. `Synced` is sent once the first set of targets is known.
    pub async fn run(self, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
        let input = self.input_name();
        let (targets_tx, targets_rx) = tokio::sync::watch::channel(None);
        let statics = targets::static_targets(&self.endpoint, self.shard);
        let discovering = match (&self.endpoint.discovery, self.client) {
            (Some(_), Some(client)) => {
                let watch = discovery::Watch {
                    client,
                    endpoint: self.endpoint.clone(),
                    shard: self.shard,
                    statics,
                    targets: targets_tx,
                    events: events.clone(),
                    input: input.clone(),
                };
                Some(tokio::spawn(watch.run(shutdown.clone())))
            }
            (Some(_), None) => {
                let message = "target discovery needs the [kubernetes] table".to_owned();
                let kind = ErrorKind::Config;
                let _ = events
                    .send(Event::Error {
                        input,
                        kind,
                        message,
                    })
                    .await;
                return;
            }
            (None, _) => {
                let _ = targets_tx.send(Some(statics));
                None
            }
        };
        targets::Scheduler::new(self.endpoint, self.admission, events, shutdown)
            .run(targets_rx)
            .await;
        if let Some(task) = discovering {
            let _ = task.await;
        }
    }
}
