//! The CustomResourceState config as kube-state-metrics v2.16 reads it
//! (`pkg/customresourcestate/config.go`), parsed strictly: a key kube-state-metrics would ignore
//! is an error here.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The chart values around a config.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HelmValues {
    /// `customResourceState: { enabled, config }`.
    pub custom_resource_state: HelmCustomResourceState,
}

/// `customResourceState` of the chart's values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HelmCustomResourceState {
    /// Whether the chart turns the feature on; the config is converted either way.
    #[serde(default)]
    #[allow(dead_code)]
    pub enabled: bool,
    /// The config itself.
    pub config: Config,
}

/// `kind: CustomResourceStateMetrics` and its `spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    /// `CustomResourceStateMetrics`; kube-state-metrics does not read it.
    #[serde(default)]
    pub kind: Option<String>,
    /// kube-state-metrics does not read it either.
    #[serde(default, rename = "apiVersion")]
    #[allow(dead_code)]
    pub api_version: Option<String>,
    /// The resources.
    pub spec: Spec,
}

/// `spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Spec {
    /// One entry per kind of object (a kind may come twice).
    #[serde(default)]
    pub resources: Vec<Resource>,
}

/// One of `spec.resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Resource {
    /// The kind of object.
    pub group_version_kind: GroupVersionKind,
    /// Put before every metric name with `_`; `kube_customresource` when absent, none when empty.
    #[serde(default)]
    pub metric_name_prefix: Option<String>,
    /// The resource's plural; Periscope finds it by discovery.
    #[serde(default)]
    pub resource_plural: Option<String>,
    /// Labels with a constant value on every metric of the resource.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Labels read from the object on every metric of the resource.
    #[serde(default)]
    pub labels_from_path: BTreeMap<String, Vec<String>>,
    /// The metrics.
    #[serde(default)]
    pub metrics: Vec<Generator>,
    /// How verbose kube-state-metrics' log of a value it could not read is.
    #[serde(default)]
    pub error_log_v: Option<i32>,
}

/// `groupVersionKind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupVersionKind {
    /// The API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The version, or `*` in kube-state-metrics.
    pub version: String,
    /// The kind, or `*` in kube-state-metrics.
    pub kind: String,
}

/// One of a resource's `metrics`: one family.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Generator {
    /// The name after the prefix.
    pub name: String,
    /// The HELP text.
    #[serde(default)]
    pub help: String,
    /// What the family reads.
    pub each: Each,
    /// Constant labels of this family, over the resource's.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Labels read from the object for this family, over the resource's.
    #[serde(default)]
    pub labels_from_path: BTreeMap<String, Vec<String>>,
    /// As the resource's, for this family.
    #[serde(default)]
    pub error_log_v: Option<i32>,
}

/// `each`: the type and the table of that type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Each {
    /// `Gauge`, `StateSet` or `Info`, in any case.
    #[serde(rename = "type")]
    pub metric_type: String,
    /// `gauge`.
    #[serde(default)]
    pub gauge: Option<Gauge>,
    /// `stateSet`.
    #[serde(default)]
    pub state_set: Option<StateSet>,
    /// `info`.
    #[serde(default)]
    pub info: Option<Info>,
}

/// `each.gauge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Gauge {
    /// Where the value (or the list or map of values) is.
    #[serde(default)]
    pub path: Vec<String>,
    /// Labels read from the value at `path` (from each item of a list).
    #[serde(default)]
    pub labels_from_path: BTreeMap<String, Vec<String>>,
    /// The value, from the value at `path` (from each item).
    #[serde(default)]
    pub value_from: Vec<String>,
    /// A label holding the key of each entry when `path` reaches a map.
    #[serde(default)]
    pub label_from_key: String,
    /// `null` and missing values are `0` instead of no sample.
    #[serde(default)]
    pub nil_is_zero: bool,
}

/// `each.stateSet`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StateSet {
    /// Where the value (or the list of them) is.
    #[serde(default)]
    pub path: Vec<String>,
    /// Labels read from the value at `path` (from each item).
    #[serde(default)]
    pub labels_from_path: BTreeMap<String, Vec<String>>,
    /// The states.
    #[serde(default)]
    pub list: Vec<String>,
    /// The label carrying the state.
    #[serde(default)]
    pub label_name: String,
    /// The current state, from the value at `path` (from each item).
    #[serde(default)]
    pub value_from: Vec<String>,
}

/// `each.info`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Info {
    /// Where the value (or the list of them) is.
    #[serde(default)]
    pub path: Vec<String>,
    /// Labels read from the value at `path` (from each item).
    #[serde(default)]
    pub labels_from_path: BTreeMap<String, Vec<String>>,
    /// A label holding the key of each entry when `path` reaches a map.
    #[serde(default)]
    pub label_from_key: String,
}
