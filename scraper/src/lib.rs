//! # periscope-scraper
//!
//! Reads what a cluster exposes publicly and turns it into Periscope updates.
//!
//! Start with [`objects::ObjectPipeline`]: compiled from the `[[resources]]` of the config, it turns a
//! Kubernetes object (as JSON) into the [`SourceUpdate`] of that object. Inputs feed objects through
//! it and send [`Event`]s to the host:
//! - [`files`]: the offline input, manifests read from disk;
//! - [`kube`]: the watcher of a live cluster;
//! - [`endpoints`]: HTTP endpoints polled for metrics (Prometheus text, OpenMetrics, parsed by
//!   [`exposition`], or JSON), given by URL or discovered from Pods and EndpointSlices.
//!
//! Aggregates over many objects (`[[resources.aggregates]]`: counts and sums by labels) and
//! metrics derived over time (`[[resources.derived]]`: transitions, duration histograms, ages)
//! are kept by the same pipeline; the host pulls their sources with
//! [`ObjectPipeline::derived_updates`](objects::ObjectPipeline::derived_updates).
//!
//! The pieces of the config language: [`config`] (what the TOML says), [`path`] (field paths such as
//! `status.conditions[type=Ready].status`), [`value`] (turning field values into numbers and labels),
//! [`selector`] (Kubernetes label and field selectors), [`expr`] (CEL expressions where a path is
//! not enough).

pub mod admission;
pub mod config;
pub mod endpoints;
mod event;
pub mod exposition;
pub mod expr;
pub mod files;
pub mod kube;
pub mod objects;
pub mod path;
pub mod selector;
pub mod shard;
pub mod value;

pub use event::{ErrorKind, Event, SourceUpdate};
