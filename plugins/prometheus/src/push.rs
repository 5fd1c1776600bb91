//! The remote-write exporter (`plugin = "prometheus-remote-write"`): every batch goes out as
//! remote-write 1.0 requests of at most `max_samples_per_request` samples, in order.
//!
//! A batch's series are those of its samples, plus stale markers (stamped when the batch is
//! first seen) for the series of removed sources and the series a `Replace` no longer has. The
//! exporter keeps the last series of every source in a [`State`] to know those; the state changes
//! only once the receiver answered for every request of the batch.
//!
//! What the receiver answers, request by request (a request is all or nothing at the receiver:
//! Prometheus rolls back the whole request on its first refused sample):
//! - 2xx: the request's samples are stored; on to the next request;
//! - another 4xx than 429: the request is refused for good and, as remote write 1.0 requires,
//!   never sent again; its samples are reported to the host as refused items
//!   ([`Export::RejectItems`]: the host dead-letters exactly those) and the next requests go out;
//! - 429, 5xx, a timeout or a connection error: the exporter answers [`Export::Retry`] and keeps
//!   the requests not yet answered. The host retries the same batch, and the exporter sends only
//!   those: a request that was stored or refused is not sent again.
//!
//! Stale markers of series that left a `Replace` stand for no item of the batch: when their
//! request is refused they are only logged (Prometheus then drops those series after its
//! lookback of 5 minutes instead of at once). A refused stale marker of a `Remove` reports that
//! `Remove` as refused.

use std::collections::VecDeque;

use periscope_plugin_api::{
    Batch, BoxError, Context, Export, Exporter, Health, RejectedItem, now_ms,
};

use crate::config::RemoteWriteConfig;
use crate::remote_write::{Outcome, RemoteWriter, TimeSeries, encode};
use crate::state::{Ingest, Item, Options, Pushed, State};

/// The remote-write exporter.
#[derive(Debug)]
pub struct RemoteWriteExporter {
    state: State,
    options: Options,
    writer: RemoteWriter,
    max_samples: usize,
    /// The batch being retried: what is left of it.
    pending: Option<Pending>,
    last_error: Option<String>,
}

/// What identifies the batch of an `export`. After a `Retry` the host calls again with the same
/// batch (the plugin guide promises it), so its address and sizes tell the retry from another
/// batch, which starts over from the last applied state: a guard, not a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMark {
    address: usize,
    updates: usize,
    samples: usize,
    bytes: usize,
}

impl BatchMark {
    fn of(batch: &Batch) -> Self {
        BatchMark {
            address: std::ptr::from_ref(batch).addr(),
            updates: batch.update_count(),
            samples: batch.sample_count(),
            bytes: batch.byte_size(),
        }
    }
}

/// A batch on its way out: the state it leads to, the requests not yet answered, and the items
/// refused so far.
#[derive(Debug)]
struct Pending {
    mark: BatchMark,
    next: State,
    requests: VecDeque<Request>,
    refused: Vec<RejectedItem>,
    /// Stale markers of vanished series in refused requests (no item to report them by).
    refused_vanished: usize,
}

/// One request: its body and the items its series stand for.
#[derive(Debug)]
struct Request {
    body: Vec<u8>,
    items: Vec<Item>,
}

impl RemoteWriteExporter {
    /// Splits `pushed` into requests of at most `max_samples` series (one sample each).
    fn requests(&self, pushed: Vec<Pushed>) -> (VecDeque<Request>, Vec<RejectedItem>) {
        let mut requests = VecDeque::new();
        let mut refused = Vec::new();
        let mut pushed = pushed.into_iter().peekable();
        while pushed.peek().is_some() {
            let (series, items): (Vec<TimeSeries>, Vec<Item>) = pushed
                .by_ref()
                .take(self.max_samples)
                .map(|p| (p.series, p.item))
                .unzip();
            match encode(series) {
                Ok(body) => requests.push_back(Request { body, items }),
                Err(e) => {
                    let reason = format!("cannot compress the request: {e}");
                    refused.extend(refused_items(&items, &reason).0);
                }
            }
        }
        (requests, refused)
    }

    /// The batch ingested into a copy of the state, as requests.
    fn prepare(&self, batch: &Batch) -> Pending {
        let mut next = self.state.clone();
        let mut ingest = Ingest::new(&self.options, true, now_ms());
        next.apply(batch, &mut ingest);
        let (delta, pushed) = ingest.finish();
        if delta.series_over_limit > 0 {
            tracing::warn!(
                series = delta.series_over_limit,
                "series over max_series_per_family are not pushed"
            );
        }
        let (requests, refused) = self.requests(pushed);
        Pending {
            mark: BatchMark::of(batch),
            next,
            requests,
            refused,
            refused_vanished: 0,
        }
    }
}

/// The items of a refused request, each with `reason` (a `Remove` once), and how many stale
/// markers of vanished series it held.
fn refused_items(items: &[Item], reason: &str) -> (Vec<RejectedItem>, usize) {
    let mut refused = Vec::new();
    let mut vanished = 0;
    let mut last_removal = None;
    for item in items {
        match *item {
            Item::Sample { update, sample } => {
                refused.push(RejectedItem::sample(update, sample, reason));
            }
            Item::Removal { update } if last_removal != Some(update) => {
                last_removal = Some(update);
                refused.push(RejectedItem::update(update, reason));
            }
            Item::Removal { .. } => {}
            Item::Vanished => vanished += 1,
        }
    }
    (refused, vanished)
}

impl Exporter for RemoteWriteExporter {
    type Config = RemoteWriteConfig;

    fn validate(config: &RemoteWriteConfig) -> Result<(), BoxError> {
        Ok(config.validate()?)
    }

    fn new(config: RemoteWriteConfig, context: Context<'_>) -> Result<Self, BoxError> {
        Self::validate(&config)?;
        let writer = RemoteWriter::new(&config)?;
        tracing::info!(
            exporter = context.exporter,
            url = %config.url,
            "prometheus remote-write exporter started"
        );
        Ok(RemoteWriteExporter {
            state: State::default(),
            options: config.options(),
            writer,
            max_samples: config.max_samples_per_request.max(1),
            pending: None,
            last_error: None,
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let mut pending = match self.pending.take() {
            Some(pending) if pending.mark == BatchMark::of(batch) => pending,
            _ => self.prepare(batch),
        };
        while let Some(request) = pending.requests.front() {
            match self.writer.post(&request.body) {
                Outcome::Ok => {}
                Outcome::Reject { reason } => {
                    tracing::warn!(%reason, "remote write refused a request");
                    let (items, vanished) = refused_items(&request.items, &reason);
                    pending.refused.extend(items);
                    pending.refused_vanished += vanished;
                    self.last_error = Some(reason);
                }
                Outcome::Retry { after, reason } => {
                    tracing::warn!(
                        %reason,
                        requests_left = pending.requests.len(),
                        "remote write failed; the host will retry what is left of the batch"
                    );
                    self.last_error = Some(reason.clone());
                    self.pending = Some(pending);
                    return Ok(Export::Retry { after, reason });
                }
            }
            pending.requests.pop_front();
        }
        if pending.refused_vanished > 0 {
            tracing::warn!(
                stale_markers = pending.refused_vanished,
                "remote write refused stale markers of series a source no longer has"
            );
        }
        self.state = pending.next;
        // A `Remove` whose stale markers filled several refused requests is named once.
        pending
            .refused
            .dedup_by(|a, b| (a.update, a.sample) == (b.update, b.sample));
        if pending.refused.is_empty() && pending.refused_vanished == 0 {
            self.last_error = None;
        }
        if pending.refused.is_empty() {
            Ok(Export::Ok)
        } else {
            Ok(Export::RejectItems {
                items: pending.refused,
            })
        }
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some(reason) => Health::Degraded(reason.clone()),
        }
    }
}
