//! What the config says about the scraper: `[[resources]]` (which objects become which metrics) and
//! `[[sources.files]]` (the offline input).
//!
//! These are plain serde structs, parsed strictly (unknown keys are errors). Paths, names and
//! selectors are kept with their byte spans ([`Spanned`]) so that
//! [`ObjectPipeline::compile`](crate::objects::ObjectPipeline::compile), which checks everything
//! the types cannot, can point at the text at fault.

use std::collections::BTreeMap;

use periscope_plugin_api::config::Duration;
use serde::Deserialize;
use toml::Spanned;

use crate::value::Convert;

/// One `[[resources]]` entry: a kind of Kubernetes object and the metrics read from it.
///
/// ```toml
/// [[resources]]
/// group = "kubevirt.io"
/// version = "v1"
/// kind = "VirtualMachineInstance"
/// prefix = "kubevirt_vmi"
/// labels = { name = "metadata.name", node = "status.nodeName" }
///
///   [[resources.metrics]]
///   name = "ready"
///   type = "gauge"
///   path = "status.conditions[type=Ready].status"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The API group; empty for the core group (`Node`, `Pod`).
    #[serde(default)]
    pub group: String,
    /// The API version (`v1`).
    pub version: String,
    /// The kind (`VirtualMachineInstance`).
    pub kind: String,
    /// Only objects in these namespaces; empty means every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A Kubernetes label selector (`app=web,tier in (front,back),!canary`).
    #[serde(default)]
    pub label_selector: Option<Spanned<String>>,
    /// A Kubernetes field selector, handed to the API server by the watcher. Offline, only
    /// `metadata.name` and `metadata.namespace` with `=`, `==` or `!=` are understood.
    #[serde(default)]
    pub field_selector: Option<Spanned<String>>,
    /// Put before every metric name of the entry, joined with `_`.
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// Labels on every sample of the entry: label name to path from the object's root.
    ///
    /// Samples carry these first, in name order, then the metric's own `labels` in name order,
    /// then a stateset's state label.
    #[serde(default)]
    pub labels: BTreeMap<Spanned<String>, Spanned<String>>,
    /// The metrics read from each object.
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
}

impl ResourceConfig {
    /// The `apiVersion` objects of this entry carry: `group/version`, or `version` for the core
    /// group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One `[[resources.metrics]]` entry: one metric family read from every matching object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The metric name, after the entry's prefix.
    pub name: Spanned<String>,
    /// One line of help; by default it says which kind and path the metric comes from.
    #[serde(default)]
    pub help: Option<String>,
    /// The metric type.
    #[serde(rename = "type")]
    pub metric_type: Spanned<MetricType>,
    /// The path of the value (gauge, counter) or of the current state (stateset); not allowed for
    /// info metrics.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// The unit (`bytes`, `seconds`); gauges and counters only.
    #[serde(default)]
    pub unit: Option<Spanned<String>>,
    /// One sample per value this path reaches; `path` and `labels` are then relative to each item.
    #[serde(default)]
    pub each: Option<Spanned<String>>,
    /// Extra labels: label name to path.
    #[serde(default)]
    pub labels: BTreeMap<Spanned<String>, Spanned<String>>,
    /// How the value becomes a number; `auto` by default. Gauges and counters only.
    #[serde(default)]
    pub convert: Option<Spanned<Convert>>,
    /// Numbers for string values, tried before `convert`. Gauges and counters only.
    #[serde(default)]
    pub value_map: Option<Spanned<BTreeMap<String, f64>>>,
    /// The value when the path reaches nothing; without it no sample is written. Gauges and
    /// counters only.
    #[serde(default)]
    pub default: Option<Spanned<f64>>,
    /// The states of a stateset, one sample each. When `path` reaches nothing every state is `0`;
    /// when it reaches a value that is not a state, too, and that is reported as a problem.
    #[serde(default)]
    pub states: Option<Spanned<Vec<String>>>,
    /// The label carrying the state of a stateset; the family name by default.
    #[serde(default)]
    pub label: Option<Spanned<String>>,
}

/// The type of a metric read from objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up; its samples are named `…_total`.
    Counter,
    /// Constant `1` carrying labels; its samples are named `…_info`.
    Info,
    /// One sample per state, `1` for the current one and `0` for the others.
    StateSet,
}

impl MetricType {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

/// One `[[sources.files]]` entry: manifests read from disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// A manifest file, or a directory whose `*.yaml`, `*.yml` and `*.json` files are read (not
    /// recursively).
    pub path: String,
    /// How often the files are read again; `"2s"` by default.
    #[serde(default = "default_interval")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration(std::time::Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        resources: Vec<ResourceConfig>,
        #[serde(default)]
        files: Vec<FilesConfig>,
    }

    #[test]
    fn a_full_resource_entry_parses_with_spans() {
        let text = r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
label_selector = "app=web"
prefix = "kubevirt_vmi"
labels = { node = "status.nodeName" }

  [[resources.metrics]]
  name = "phase"
  type = "stateset"
  path = "status.phase"
  states = ["Pending", "Running"]

  [[resources.metrics]]
  name = "memory"
  type = "gauge"
  path = "status.memory"
  value_map = { Lots = 1 }
  default = 0
  convert = "quantity"
"#;
        let config: Config = parse(text).unwrap();
        let resource = &config.resources[0];
        assert_eq!(resource.api_version(), "kubevirt.io/v1");
        let (name, path) = resource.labels.iter().next().unwrap();
        assert_eq!(name.get_ref(), "node");
        assert_eq!(&text[path.span()], "\"status.nodeName\"");
        let stateset = &resource.metrics[0];
        assert_eq!(*stateset.metric_type.get_ref(), MetricType::StateSet);
        assert_eq!(
            stateset.states.as_ref().unwrap().get_ref(),
            &["Pending", "Running"]
        );
        let gauge = &resource.metrics[1];
        assert_eq!(gauge.value_map.as_ref().unwrap().get_ref()["Lots"], 1.0);
        assert_eq!(*gauge.default.as_ref().unwrap().get_ref(), 0.0);
        assert_eq!(
            *gauge.convert.as_ref().unwrap().get_ref(),
            Convert::Quantity
        );
    }

    #[test]
    fn the_core_group_has_a_bare_api_version() {
        let config: Config = parse("[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n").unwrap();
        assert_eq!(config.resources[0].api_version(), "v1");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
                    [[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npaht = \"a\"\n";
        let err = parse::<Config>(text).unwrap_err();
        assert_eq!(err.key, "resources[0].metrics[0].paht");
    }

    #[test]
    fn unknown_metric_types_are_errors() {
        let text = "[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
                    [[resources.metrics]]\nname = \"x\"\ntype = \"histogram\"\npath = \"a\"\n";
        let err = parse::<Config>(text).unwrap_err();
        assert!(err.key.starts_with("resources[0].metrics[0].type"), "{err}");
    }

    #[test]
    fn files_interval_defaults_to_two_seconds() {
        let config: Config = parse("[[files]]\npath = \"m\"\n").unwrap();
        assert_eq!(config.files[0].interval.0.as_secs(), 2);
        let config: Config = parse("[[files]]\npath = \"m\"\ninterval = \"50ms\"\n").unwrap();
        assert_eq!(config.files[0].interval.0.as_millis(), 50);
    }
}
