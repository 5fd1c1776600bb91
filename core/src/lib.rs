//! # periscope-core
//!
//! The Periscope host. It reads a TOML config ([`config`]), checks it completely ([`check`]), then
//! runs ([`host`]): inputs from `periscope-scraper` send source updates to the [`collector`], which
//! keeps the current state and fans batches out to one [`delivery`] worker per exporter; each worker
//! queues, merges, retries and calls its plugin ([`plugins`]) from a dedicated thread. The host's own
//! HTTP [`server`] serves self-metrics ([`telemetry`]) and health ([`readiness`]). Two guards
//! keep the host within bounds: an exporter's `max_series` ([`guards`]) and the host's
//! `memory_limit` ([`memory`]).
//!
//! Start reading at [`host::run`]; the binary (`periscope`) is a thin CLI over it.

pub mod allocator;
pub mod autoshard;
pub mod check;
pub mod collector;
pub mod config;
pub mod delivery;
pub mod guards;
pub mod host;
pub mod import;
pub mod logging;
pub mod memory;
pub mod metrics_config;
pub mod plugins;
pub mod ranges;
pub mod rbac;
pub mod readiness;
pub mod server;
pub mod supervise;
pub mod telemetry;
