//! # periscope-exporter-prometheus
//!
//! A Periscope exporter plugin (`plugin = "prometheus"`) that serves every current series on a
//! metrics page for Prometheus to scrape (text 0.0.4, or OpenMetrics 1.0 when the scraper asks for
//! it; gzip when accepted; optional TLS and basic or bearer auth), and can push every export to a
//! remote-write 1.0 receiver.
//!
//! Start with [`PrometheusExporter`]; its options are in [`config::PrometheusConfig`].
//!
//! Modules, in the order data flows through them:
//! - [`config`]: the options and their validation;
//! - [`names`]: valid names, sanitizing, escaping, number formatting;
//! - [`block`]: one source's samples rendered once into lines grouped by family;
//! - [`state`]: every source's block and the family table, in persistent collections: a batch is
//!   applied as a transaction, and scrapes read immutable snapshots;
//! - [`remote_write`]: the protobuf messages and the client of the push side;
//! - [`format`]: content negotiation;
//! - [`render`]: a snapshot → a page (why by hand, and not with the `prometheus` crate, is there);
//! - [`server`]: the HTTP(S) server on the exporter's own tokio runtime;
//! - [`stats`]: the exporter's own `periscope_prometheus_exporter_*` metrics.
//!
//! Semantics: a `Replace` swaps every series of its source at once and a `Remove` drops them; no
//! TTL. Pulled samples carry no timestamps, so Prometheus marks vanished series stale itself; on
//! the push side the exporter sends stale markers for series of removed (or shrunk) sources. When
//! both sides are configured the page changes only after the push succeeded, so a batch the host
//! retries is never half applied.
//!
//! Batching: the host's delivery worker merges batches for up to the exporter's `batch.max_wait`
//! (500 ms by default) before calling `export`, which saves requests on a push. A page that is
//! only scraped gains nothing from it: with `batch = { max_wait = "0s" }` the page follows a
//! change within the host's `flush_interval` (0.15 s after the last of a stream of updates in
//! `bench/`, against 0.6 s with the default). Keep the default when `remote_write` is set.

pub mod block;
pub mod config;
pub mod format;
pub mod names;
pub mod remote_write;
pub mod render;
pub mod server;
pub mod state;
pub mod stats;

use std::sync::Arc;

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter, Health, now_ms};

use crate::block::LineOptions;
use crate::config::PrometheusConfig;
use crate::remote_write::{Outcome, RemoteWriter};
use crate::server::{Server, ServerOptions};
use crate::state::{Ingest, Options, Published, State};
use crate::stats::Stats;

/// The Prometheus exporter: a metrics page and/or a remote-write client over one state.
#[derive(Debug)]
pub struct PrometheusExporter {
    state: State,
    options: Options,
    published: Arc<Published>,
    stats: Arc<Stats>,
    server: Option<Server>,
    remote: Option<RemoteWriter>,
    last_error: Option<String>,
}

impl PrometheusExporter {
    /// The address the metrics page is served on, if any (the bound one, also with port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(Server::local_addr)
    }

    /// The state scrapes currently see.
    pub fn published(&self) -> Arc<State> {
        self.published.get()
    }

    /// The exporter's own counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Exporter for PrometheusExporter {
    type Config = PrometheusConfig;

    fn new(config: PrometheusConfig, context: Context<'_>) -> Result<Self, BoxError> {
        config.validate()?;
        let stats = Arc::new(Stats::default());
        let published = Arc::new(Published::default());
        let auth = config
            .auth
            .as_ref()
            .map(|auth| config::credentials("auth", auth))
            .transpose()?;
        let server = match config.listen {
            Some(listen) => Some(Server::start(
                &ServerOptions {
                    listen,
                    path: config.path.clone(),
                    tls: config.tls.clone(),
                    auth,
                },
                published.clone(),
                stats.clone(),
            )?),
            None => None,
        };
        let remote = config
            .remote_write
            .as_ref()
            .map(|rw| RemoteWriter::new(rw, stats.clone()))
            .transpose()?;
        tracing::info!(
            exporter = context.exporter,
            listen = ?server.as_ref().map(Server::local_addr),
            path = %config.path,
            tls = config.tls.is_some(),
            remote_write = ?config.remote_write.as_ref().map(|rw| &rw.url),
            "prometheus exporter started"
        );
        Ok(PrometheusExporter {
            state: State::default(),
            options: Options {
                metric_prefix: config.metric_prefix,
                line: LineOptions {
                    max_label_value_length: config.max_label_value_length,
                    const_labels: config.const_labels.into_iter().collect(),
                },
                max_series_per_family: config.max_series_per_family,
            },
            published,
            stats,
            server,
            remote,
            last_error: None,
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let mut next = self.state.clone();
        let mut ingest = Ingest::new(&self.options, self.remote.is_some(), now_ms());
        for update in batch.updates() {
            next.apply(update, &mut ingest);
        }
        let (delta, push) = ingest.finish();
        if let Some(remote) = &self.remote
            && !push.is_empty()
        {
            match remote.send(push) {
                Outcome::Ok => {}
                Outcome::Retry { after, reason } => {
                    tracing::warn!(%reason, "remote write failed; the host will retry the batch");
                    self.last_error = Some(reason.clone());
                    return Ok(Export::Retry { after, reason });
                }
                Outcome::Reject { reason } => {
                    tracing::warn!(%reason, "remote write refused the batch");
                    self.last_error = Some(reason.clone());
                    return Ok(Export::Reject { reason });
                }
            }
        }
        self.last_error = None;
        self.state = next;
        self.stats
            .commit(&delta, self.state.source_count(), self.state.series_count());
        self.published.set(Arc::new(self.state.clone()));
        Ok(Export::Ok)
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some(reason) => Health::Degraded(reason.clone()),
        }
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        if let Some(server) = &mut self.server {
            server.shutdown();
        }
        Ok(())
    }
}

periscope_plugin_api::export_exporter!(name = "prometheus", exporter = PrometheusExporter);

#[cfg(test)]
mod tests;
