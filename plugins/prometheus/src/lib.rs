//! # periscope-prometheus
//!
//! The code of Periscope's two Prometheus exporters, each its own plugin with its own delivery
//! worker (queue, retries, dead letters):
//! - [`PrometheusExporter`] (`plugin = "prometheus"`, built by `cdylib/prometheus/`) serves every
//!   current series on a metrics page for Prometheus to scrape (text 0.0.4, or OpenMetrics 1.0
//!   when the scraper asks for it; gzip when accepted; optional TLS and basic or bearer auth);
//! - [`RemoteWriteExporter`] (`plugin = "prometheus-remote-write"`, built by
//!   `cdylib/prometheus-remote-write/`) pushes every batch to a remote-write 1.0 receiver.
//!
//! Both name series the same way (one [`state`], one set of naming options), so configured side
//! by side they show the same series; a receiver refusing a push never keeps a change off the
//! page. This crate is a plain library: the two thin `cdylib` crates only export one exporter
//! each (a plugin library exports one root module).
//!
//! Start with [`PrometheusExporter`] and [`RemoteWriteExporter`]; their options are in
//! [`config`].
//!
//! Modules, in the order data flows through them:
//! - [`config`]: the options of both exporters and their validation;
//! - [`names`]: valid names, sanitizing, escaping, number formatting;
//! - [`block`]: one source's samples rendered once into lines grouped by family;
//! - [`state`]: every source's block and the family table, in persistent collections: a batch is
//!   applied as a transaction, and scrapes read immutable snapshots;
//! - [`page`]: the page exporter;
//! - [`format`]: content negotiation;
//! - [`render`]: a snapshot → a page (why by hand, and not with the `prometheus` crate, is there);
//! - [`server`]: the HTTP(S) server on the page exporter's own tokio runtime;
//! - [`shared_pages`]: one copy of a page for every response that holds it;
//! - [`gzip_pages`]: the gzipped series of the current state, reused by gzip scrapes;
//! - [`write_timeout`]: the server's bound on how long a client may take to read a response;
//! - [`stats`]: the page exporter's own `periscope_prometheus_exporter_*` metrics;
//! - [`push`]: the remote-write exporter: a batch → requests, and what the host hears;
//! - [`remote_write`]: the protobuf messages and the client that sends one request.
//!
//! Semantics: a `Replace` swaps every series of its source at once and a `Remove` drops them; no
//! TTL. Pulled samples carry no timestamps, so Prometheus marks vanished series stale itself; the
//! remote-write exporter sends stale markers for series of removed (or shrunk) sources.
//!
//! Batching: the host's delivery worker merges batches for up to the exporter's `batch.max_wait`
//! (500 ms by default) before calling `export`, which saves requests on a push. A page gains
//! nothing from it: with `batch = { max_wait = "0s" }` the page follows a change within the
//! host's `flush_interval` (0.15 s after the last of a stream of updates in `bench/`, against
//! 0.6 s with the default). Keep the default for `prometheus-remote-write`.

pub mod block;
pub mod config;
pub mod format;
pub mod gzip_pages;
pub mod names;
pub mod page;
pub mod push;
pub mod remote_write;
pub mod render;
pub mod server;
pub mod shared_pages;
pub mod state;
pub mod stats;
pub mod write_timeout;

pub use page::PrometheusExporter;
pub use push::RemoteWriteExporter;

#[cfg(test)]
mod tests;
