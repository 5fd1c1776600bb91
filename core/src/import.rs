//! Configs of other tools, taken as they are and turned into Periscope's own.
//!
//! [`kube_state_metrics`] reads kube-state-metrics' CustomResourceState configs: `periscope
//! import kube-state-metrics crs.yaml` prints the equivalent TOML, and `[[imports]]` in the config
//! reads one in place (see [`crate::config`]).

pub mod kube_state_metrics;
