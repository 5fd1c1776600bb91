//! What the config says about the scraper: `[[resources]]` (which objects become which metrics,
//! with their `[[resources.aggregates]]` over many objects and `[[resources.derived]]` over time),
//! `[[endpoints]]` (HTTP endpoints polled for metrics) and `[[sources.files]]` (the offline input).
//!
//! These are plain serde structs, parsed strictly (unknown keys are errors). Paths, names and
//! selectors are kept with their byte spans ([`Spanned`]) so that
//! [`ObjectPipeline::compile`](crate::objects::ObjectPipeline::compile), which checks everything
//! the types cannot, can point at the text at fault.

mod endpoints;
mod schema;

use std::collections::BTreeMap;

use periscope_plugin_api::config::{ByteSize, Duration};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::value::Convert;

pub use endpoints::{
    DiscoveryConfig, DiscoveryRole, EndpointConfig, EndpointFormat, PortRef, Scheme,
};

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
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
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
    #[schemars(with = "Option<String>")]
    pub label_selector: Option<Spanned<String>>,
    /// A Kubernetes field selector, handed to the API server by the watcher. Offline, only
    /// `metadata.name` and `metadata.namespace` with `=`, `==` or `!=` are understood.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub field_selector: Option<Spanned<String>>,
    /// Put before every metric name of the entry, joined with `_`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// Labels on every sample of the entry: label name to path from the object's root.
    ///
    /// Samples carry these first, in name order, then the metric's own `labels` in name order,
    /// then a stateset's state label.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, LabelConfig>")]
    pub labels: BTreeMap<Spanned<String>, LabelConfig>,
    /// A CEL expression (see [`crate::expr`]) that must give `true` for an object's metrics to be
    /// written: `where = "object.metadata.namespace.startsWith('prod-')"`. Aggregates and derived
    /// metrics do not look at it.
    #[serde(default, rename = "where")]
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
    /// The most series the entry's metrics write over all its objects (at least 1); the
    /// newest beyond it are held back until there is room again. No cap by default.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_series: Option<Spanned<u64>>,
    /// The most distinct values one label takes within one metric of the entry (at least 1);
    /// series bringing a new value beyond it are held back. No cap by default.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_values: Option<Spanned<u64>>,
    /// The most objects the watch of this kind takes in (at least 1): beyond it the watch keeps
    /// running, but objects it does not know yet are ignored and counted
    /// (`periscope_watch_objects_ignored_total`). When entries of one kind disagree, the
    /// smallest holds. No cap by default.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_objects: Option<Spanned<u64>>,
    /// The metrics read from each object.
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
    /// Counts and sums over every selected object, by labels.
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Metrics derived from how objects change over time.
    #[serde(default)]
    pub derived: Vec<DerivedConfig>,
    /// Other objects found from this one, whose fields the entry's metrics, labels and filters
    /// read (`@name.spec.x` in paths, `joins.name.spec.x` in expressions).
    #[serde(default)]
    pub joins: Vec<JoinConfig>,
}

/// One `[[resources.joins]]` entry: another object, found by a key computed from this one,
/// whose fields the entry may read as `@<name>.<path>` in paths and `joins.<name>.<field>` in
/// expressions. A join that finds nothing reads as a missing field.
///
/// The key is one of: `name_from` (the joined object's name, in the namespace `namespace_from`,
/// by default this object's), `uid_from` (its uid, in any namespace), or `label` with
/// `label_from` (the value its label `label` must have, in the same namespace as for names).
/// `cluster = true` says the joined kind is cluster-scoped: names and labels are then looked up
/// without a namespace. `where` keeps only the candidates for which it is `true`, with the
/// candidate bound as `joined`; of several, the first by namespace and name is joined. With
/// `many = true` the key reads several values and the join maps each to what it found.
///
/// ```toml
/// [[resources.joins]]
/// name = "claim"
/// version = "v1"
/// kind = "PersistentVolumeClaim"
/// name_from = "spec.volumes[0].persistentVolumeClaim.claimName"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// What paths and expressions call the joined object: letters, digits and `_`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The joined kind's API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The joined kind's API version.
    pub version: String,
    /// The joined kind.
    pub kind: String,
    /// Whether the joined kind is cluster-scoped (names and labels looked up without a
    /// namespace).
    #[serde(default)]
    pub cluster: bool,
    /// The joined object's name, read from this object.
    #[serde(default)]
    pub name_from: Option<LabelConfig>,
    /// The joined object's namespace, read from this object; this object's own by default.
    #[serde(default)]
    pub namespace_from: Option<LabelConfig>,
    /// The joined object's uid, read from this object.
    #[serde(default)]
    pub uid_from: Option<LabelConfig>,
    /// A label the joined object carries, whose value must be `label_from`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
    /// The value the joined object's `label` must have, read from this object.
    #[serde(default)]
    pub label_from: Option<LabelConfig>,
    /// A CEL expression every candidate must make `true`: this object is `object`, the
    /// candidate `joined`.
    #[serde(default, rename = "where")]
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
    /// Whether the key reads several values (a path through a list, an expression giving a
    /// list): the join is then a map from each value to the object it found, read in
    /// expressions as `joins.name[value]` (`value in joins.name` when it found one).
    #[serde(default)]
    pub many: bool,
}

impl JoinConfig {
    /// The values the key is read from, with their keys.
    pub fn key_values(&self) -> [(&'static str, Option<&LabelConfig>); 4] {
        [
            ("name_from", self.name_from.as_ref()),
            ("namespace_from", self.namespace_from.as_ref()),
            ("uid_from", self.uid_from.as_ref()),
            ("label_from", self.label_from.as_ref()),
        ]
    }

    /// The joined objects' `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
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

    /// Every field path of the entry with its key (`metrics[0].labels.node`, without the
    /// `resources[i].` in front), for checks that look at what a config may read.
    pub fn paths(&self) -> Vec<(String, &Spanned<String>)> {
        let mut out = Paths::default();
        out.object_labels("labels", &self.labels);
        for (j, metric) in self.metrics.iter().enumerate() {
            let key = format!("metrics[{j}]");
            out.optional(&key, "path", &metric.path);
            out.optional(&key, "each", &metric.each);
            out.object_labels(&format!("{key}.labels"), &metric.labels);
            if let Some(from) = &metric.labels_from {
                let from = from.get_ref();
                out.0.push((format!("{key}.labels_from.path"), &from.path));
                for (n, path) in from.merge.iter().flatten().enumerate() {
                    out.0.push((format!("{key}.labels_from.merge[{n}]"), path));
                }
            }
        }
        for (j, aggregate) in self.aggregates.iter().enumerate() {
            let key = format!("aggregates[{j}]");
            out.value(&format!("{key}.path"), aggregate.path.as_ref());
            if let Some(AggregateFilter::Values(filter)) = &aggregate.filter {
                out.0
                    .push((format!("{key}.where.path"), &filter.get_ref().path));
            }
            out.object_labels(&format!("{key}.by"), &aggregate.by);
        }
        for (j, derived) in self.derived.iter().enumerate() {
            let key = format!("derived[{j}]");
            out.value(&format!("{key}.path"), derived.path.as_ref());
            out.optional(&key, "each", &derived.each);
            out.value(&format!("{key}.start"), derived.start.as_ref());
            out.value(&format!("{key}.end"), derived.end.as_ref());
            out.object_labels(&format!("{key}.by"), &derived.by);
        }
        for (j, join) in self.joins.iter().enumerate() {
            for (field, value) in join.key_values() {
                out.value(&format!("joins[{j}].{field}"), value);
            }
        }
        out.0
    }

    /// Every CEL expression of the entry with its key, as [`paths`](Self::paths) lists paths.
    pub fn expressions(&self) -> Vec<(String, &Spanned<String>)> {
        let mut out: Vec<(String, &Spanned<String>)> = Vec::new();
        out.extend(self.filter.iter().map(|e| ("where".to_owned(), e)));
        out.extend(label_expressions("labels", &self.labels));
        for (j, metric) in self.metrics.iter().enumerate() {
            out.extend(
                metric
                    .expr
                    .iter()
                    .map(|e| (format!("metrics[{j}].expr"), e)),
            );
            out.extend(
                metric
                    .filter
                    .iter()
                    .map(|e| (format!("metrics[{j}].where"), e)),
            );
            out.extend(label_expressions(
                &format!("metrics[{j}].labels"),
                &metric.labels,
            ));
        }
        for (j, aggregate) in self.aggregates.iter().enumerate() {
            let key = format!("aggregates[{j}]");
            out.extend(value_expression(
                &format!("{key}.path"),
                aggregate.path.as_ref(),
            ));
            if let Some(AggregateFilter::Expr(expr)) = &aggregate.filter {
                out.push((format!("{key}.where"), expr));
            }
            out.extend(label_expressions(&format!("{key}.by"), &aggregate.by));
        }
        for (j, derived) in self.derived.iter().enumerate() {
            let key = format!("derived[{j}]");
            for (field, value) in [
                ("path", &derived.path),
                ("start", &derived.start),
                ("end", &derived.end),
            ] {
                out.extend(value_expression(&format!("{key}.{field}"), value.as_ref()));
            }
            out.extend(label_expressions(&format!("{key}.by"), &derived.by));
        }
        for (j, join) in self.joins.iter().enumerate() {
            for (field, value) in join.key_values() {
                out.extend(value_expression(&format!("joins[{j}].{field}"), value));
            }
            out.extend(join.filter.iter().map(|e| (format!("joins[{j}].where"), e)));
        }
        out
    }
}

/// The paths of an entry being listed, with their keys.
#[derive(Default)]
struct Paths<'c>(Vec<(String, &'c Spanned<String>)>);

impl<'c> Paths<'c> {
    fn optional(&mut self, key: &str, field: &str, path: &'c Option<Spanned<String>>) {
        self.0
            .extend(path.iter().map(|path| (format!("{key}.{field}"), path)));
    }

    fn object_labels(&mut self, key: &str, labels: &'c BTreeMap<Spanned<String>, LabelConfig>) {
        self.0
            .extend(labels.iter().filter_map(|(name, value)| match value {
                LabelConfig::Path(path) => Some((format!("{key}.{}", name.get_ref()), path)),
                LabelConfig::Expr(_) => None,
            }));
    }

    fn value(&mut self, key: &str, value: Option<&'c LabelConfig>) {
        if let Some(LabelConfig::Path(path)) = value {
            self.0.push((key.to_owned(), path));
        }
    }
}

/// The expression of a value written as a path or an expression, with its key.
fn value_expression<'c>(
    key: &str,
    value: Option<&'c LabelConfig>,
) -> Option<(String, &'c Spanned<String>)> {
    match value {
        Some(LabelConfig::Expr(expr)) => Some((key.to_owned(), expr)),
        _ => None,
    }
}

/// The expressions among label values, with their keys.
fn label_expressions<'c>(
    key: &str,
    labels: &'c BTreeMap<Spanned<String>, LabelConfig>,
) -> Vec<(String, &'c Spanned<String>)> {
    labels
        .iter()
        .filter_map(|(name, value)| match value {
            LabelConfig::Expr(expr) => Some((format!("{key}.{}", name.get_ref()), expr)),
            LabelConfig::Path(_) => None,
        })
        .collect()
}

/// A value or label written as a path (`node = "status.nodeName"`) or as a CEL expression in a
/// table (`interfaces = { expr = "size(object.status.interfaces)" }`): the value of a label in
/// `labels` and `by`, and the `path`, `start` and `end` of aggregates and derived metrics.
///
/// An expression is a table, not a string, because most paths are valid CEL too
/// (`metadata.name` parses as both) and mean something else in each: the table says which
/// language the text is in, and a path written before expressions existed keeps its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelConfig {
    /// A path from the object (or from the item of an `each`).
    Path(Spanned<String>),
    /// A CEL expression (see [`crate::expr`]).
    Expr(Spanned<String>),
}

impl LabelConfig {
    /// The text, path or expression, as written.
    pub fn text(&self) -> &str {
        match self {
            LabelConfig::Path(text) | LabelConfig::Expr(text) => text.get_ref(),
        }
    }
}

impl<'de> Deserialize<'de> for LabelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<RawLabel>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(match spanned.into_inner() {
            RawLabel::Path(path) => LabelConfig::Path(Spanned::new(span, path)),
            RawLabel::Expr(expr) => LabelConfig::Expr(expr),
        })
    }
}

/// A label value as written, before its span is put back on a path.
enum RawLabel {
    Path(String),
    Expr(Spanned<String>),
}

impl<'de> Deserialize<'de> for RawLabel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawLabelVisitor)
    }
}

struct RawLabelVisitor;

impl<'de> serde::de::Visitor<'de> for RawLabelVisitor {
    type Value = RawLabel;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a path string or a table `{ expr = \"…\" }`")
    }

    fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<RawLabel, E> {
        Ok(RawLabel::Path(path.to_owned()))
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<RawLabel, M::Error> {
        let mut expr = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "expr" || expr.is_some() {
                return Err(serde::de::Error::unknown_field(&key, &["expr"]));
            }
            expr = Some(map.next_value::<Spanned<String>>()?);
        }
        expr.map(RawLabel::Expr)
            .ok_or_else(|| serde::de::Error::missing_field("expr"))
    }
}

/// One `[[resources.metrics]]` entry: one metric family read from every matching object.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The metric name, after the entry's prefix.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// One line of help; by default it says which kind and path the metric comes from.
    #[serde(default)]
    pub help: Option<String>,
    /// The metric type.
    #[serde(rename = "type")]
    #[schemars(with = "MetricType")]
    pub metric_type: Spanned<MetricType>,
    /// The path of the value (gauge, counter) or of the current state (stateset); not allowed for
    /// info metrics.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// A CEL expression giving the value (gauges and counters) or the current state (statesets)
    /// instead of `path`: the object is `object`, the element of `each` is `item` (see
    /// [`crate::expr`]).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expr: Option<Spanned<String>>,
    /// A CEL expression that must give `true` for a sample to be written (for each item, inside
    /// an `each`).
    #[serde(default, rename = "where")]
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
    /// The unit (`bytes`, `seconds`); gauges and counters only.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub unit: Option<Spanned<String>>,
    /// One sample per value this path reaches; `path` and `labels` are then relative to each item.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub each: Option<Spanned<String>>,
    /// With an `each` ending in `[*]`: a label holding the key of each item when the `[*]` walks
    /// a map (`each = "status.sub[*]"`, `each_key = "type"`); empty for the items of a list.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub each_key: Option<Spanned<String>>,
    /// Extra labels: label name to path (or expression).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, LabelConfig>")]
    pub labels: BTreeMap<Spanned<String>, LabelConfig>,
    /// Labels taken from a whole map of the object (or of the item, inside `each`), such as
    /// `metadata.labels`: one label per key, the key made a label name.
    #[serde(default)]
    #[schemars(with = "Option<LabelsFromConfig>")]
    pub labels_from: Option<Spanned<LabelsFromConfig>>,
    /// How the value becomes a number; `auto` by default. Gauges and counters only.
    #[serde(default)]
    #[schemars(with = "Option<Convert>")]
    pub convert: Option<Spanned<Convert>>,
    /// Numbers for string values, tried before `convert`. Gauges and counters only.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, f64>>")]
    pub value_map: Option<Spanned<BTreeMap<String, f64>>>,
    /// The value when the path reaches nothing; without it no sample is written. Gauges and
    /// counters only.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub default: Option<Spanned<f64>>,
    /// The states of a stateset, one sample each. When `path` reaches nothing every state is `0`;
    /// when it reaches a value that is not a state, too, and that is reported as a problem.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub states: Option<Spanned<Vec<String>>>,
    /// The label carrying the state of a stateset; the family name by default.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
}

/// A `labels_from` table: `{ path = "metadata.labels", prefix = "label_", allow = ["app\\.kubernetes\\.io/.*"] }`.
///
/// Each key of the map the path reaches becomes `prefix` followed by the key sanitized as
/// kube-state-metrics does for `kube_pod_labels`: every character other than an ASCII letter,
/// digit or `_` becomes `_`, an `_` goes between a lower-case letter or digit and the upper-case
/// letter after it, and the whole is lower-cased (`app.kubernetes.io/managedBy` →
/// `label_app_kubernetes_io_managed_by`). The value is the map's value as label text.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelsFromConfig {
    /// The path of the map, from the object's root (from the item inside `each`).
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Paths of further maps merged over the first, in order: a key in a later map wins (a
    /// VirtualMachine's labels with its template's, `merge = ["spec.template.metadata.labels"]`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub merge: Option<Vec<Spanned<String>>>,
    /// Put before every sanitized key; empty, or starting with a letter. `"label_"` by
    /// default. A key whose name would not start with a letter or `_` is left out and counted.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// How a key becomes a name: `snake_case` (the default, as `kube_pod_labels`) or `sanitized`
    /// (only the characters other than ASCII letters, digits and `_` become `_`, case kept, as
    /// kube-state-metrics' CustomResourceState names the labels of a `"*"` key).
    #[serde(default)]
    #[schemars(with = "Option<LabelNames>")]
    pub names: Option<Spanned<LabelNames>>,
    /// Regular expressions, each matching a whole original key (`app\\.kubernetes\\.io/.*`):
    /// only the keys one of them matches become labels. Without `allow`, every key does.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Vec<Spanned<String>>>,
}

/// How `labels_from` turns a key into a label name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelNames {
    /// Sanitized, camelCase made snake_case, lower-cased (`app.kubernetes.io/managedBy` →
    /// `app_kubernetes_io_managed_by`).
    #[default]
    SnakeCase,
    /// Sanitized only, case kept (`app.kubernetes.io/managedBy` → `app_kubernetes_io_managedBy`).
    Sanitized,
}

/// The type of a metric read from objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
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

/// One `[[resources.aggregates]]` entry: one gauge family computed over every selected object,
/// one sample per group of objects sharing the values of the `by` labels.
///
/// ```toml
/// [[resources.aggregates]]
/// name = "phase_count"
/// type = "count"
/// by = { phase = "status.phase", node = "status.nodeName" }
///
/// [[resources.aggregates]]
/// name = "cpu_cores"
/// type = "sum"
/// path = "spec.domain.cpu.cores"
/// by = { node = "status.nodeName" }
/// where = { path = "status.phase", in = ["Running"] }
/// ```
///
/// Groups whose last object went away disappear; an aggregate without `by` has one sample, `0`
/// when no object counts.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The family name, after the entry's prefix.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// One line of help; by default it says what is counted or summed.
    #[serde(default)]
    pub help: Option<String>,
    /// `count` (objects per group) or `sum` (of `path` per group).
    #[serde(rename = "type")]
    #[schemars(with = "AggregateType")]
    pub aggregate_type: Spanned<AggregateType>,
    /// The path (or `{ expr = "…" }`) of the value summed; `sum` only. Objects where it reaches
    /// nothing (and that have no `default`) are left out of the sum.
    #[serde(default)]
    pub path: Option<LabelConfig>,
    /// The unit of the sum (`bytes`, `cores`); `sum` only.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub unit: Option<Spanned<String>>,
    /// How the value becomes a number, as for metrics; `sum` only.
    #[serde(default)]
    #[schemars(with = "Option<Convert>")]
    pub convert: Option<Spanned<Convert>>,
    /// Numbers for string values, tried before `convert`; `sum` only.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, f64>>")]
    pub value_map: Option<Spanned<BTreeMap<String, f64>>>,
    /// The value when `path` reaches nothing; `sum` only.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub default: Option<Spanned<f64>>,
    /// The group labels: label name to path (or expression) from the object's root. A path
    /// that reaches nothing gives the empty value.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, LabelConfig>")]
    pub by: BTreeMap<Spanned<String>, LabelConfig>,
    /// Only objects whose value at a path is (or is not) one of a list, or for which a CEL
    /// expression gives `true`.
    #[serde(default, rename = "where")]
    pub filter: Option<AggregateFilter>,
}

/// An aggregate's `where`: a table of values, or a CEL expression
/// (`where = "object.status.phase != 'Succeeded'"`).
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateFilter {
    /// `{ path = "…", in = […] }` or `{ path = "…", not_in = […] }`.
    Values(Spanned<FilterConfig>),
    /// An expression that must give `true` for an object to count.
    Expr(Spanned<String>),
}

impl<'de> Deserialize<'de> for AggregateFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<RawFilter>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(match spanned.into_inner() {
            RawFilter::Values(values) => AggregateFilter::Values(Spanned::new(span, values)),
            RawFilter::Expr(expr) => AggregateFilter::Expr(Spanned::new(span, expr)),
        })
    }
}

/// An aggregate's `where` as written, before its span is put back.
enum RawFilter {
    Values(FilterConfig),
    Expr(String),
}

impl<'de> Deserialize<'de> for RawFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawFilterVisitor)
    }
}

struct RawFilterVisitor;

impl<'de> serde::de::Visitor<'de> for RawFilterVisitor {
    type Value = RawFilter;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an expression string or a table `{ path = \"…\", in = […] }`")
    }

    fn visit_str<E: serde::de::Error>(self, expr: &str) -> Result<RawFilter, E> {
        Ok(RawFilter::Expr(expr.to_owned()))
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<RawFilter, M::Error> {
        FilterConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(RawFilter::Values)
    }
}

/// What an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    /// The number of objects in each group.
    Count,
    /// The sum of a field over the objects of each group.
    Sum,
}

impl AggregateType {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::Count => "count",
            AggregateType::Sum => "sum",
        }
    }
}

/// A `where` table: keeps the objects whose value at `path` (as label text; empty when the path
/// reaches nothing) is one of `in`, or none of `not_in`. Exactly one of the two is given.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The path of the value compared, from the object's root.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// The values that keep an object.
    #[serde(default, rename = "in")]
    #[schemars(with = "Option<Vec<String>>")]
    pub any_of: Option<Spanned<Vec<String>>>,
    /// The values that leave an object out.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub not_in: Option<Spanned<Vec<String>>>,
}

/// One `[[resources.derived]]` entry: a metric only a watcher can compute, from how objects change.
///
/// ```toml
/// [[resources.derived]]
/// name = "phase_transitions_total"
/// type = "transitions"
/// path = "status.phase"
///
/// [[resources.derived]]
/// name = "phase_transition_time_from_creation_seconds"
/// type = "duration_histogram"
/// each = "status.phaseTransitionTimestamps[*]"
/// start = "$.metadata.creationTimestamp"
/// end = "phaseTransitionTimestamp"
/// by = { phase = "phase" }
/// buckets = [1, 5, 10, 30, 60]
///
/// [[resources.derived]]
/// name = "age_seconds"
/// type = "age"
/// path = "metadata.creationTimestamp"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DerivedConfig {
    /// The metric name, after the entry's prefix (a `_total` of transitions is the counter's).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// One line of help; by default it says what is derived from which fields.
    #[serde(default)]
    pub help: Option<String>,
    /// What is derived.
    #[serde(rename = "type")]
    #[schemars(with = "DerivedType")]
    pub derived_type: Spanned<DerivedType>,
    /// The watched value (`transitions`) or the time counted from (`age`); a path or `{ expr = "…" }`.
    #[serde(default)]
    pub path: Option<LabelConfig>,
    /// One observation per value this path reaches (`duration_histogram`); `start`, `end` and
    /// `by` are then relative to each item, `$.…` reaching the object.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub each: Option<Spanned<String>>,
    /// The RFC 3339 time a duration starts at (`duration_histogram`); a path or `{ expr = "…" }`.
    #[serde(default)]
    pub start: Option<LabelConfig>,
    /// The RFC 3339 time a duration ends at (`duration_histogram`); a path or `{ expr = "…" }`.
    #[serde(default)]
    pub end: Option<LabelConfig>,
    /// The upper bounds of the histogram buckets in seconds, ascending (`duration_histogram`);
    /// the `+Inf` bucket is added.
    #[serde(default)]
    #[schemars(with = "Option<Vec<f64>>")]
    pub buckets: Option<Spanned<Vec<f64>>>,
    /// Extra labels: label name to path (or expression). For transitions and ages they are read
    /// from the object; for histograms from each item.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, LabelConfig>")]
    pub by: BTreeMap<Spanned<String>, LabelConfig>,
    /// How often ages are computed again (`age`); `"15s"` by default.
    #[serde(default)]
    #[schemars(with = "Option<schema::DurationText>")]
    pub refresh: Option<Spanned<Duration>>,
}

/// What a derived metric computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DerivedType {
    /// A counter of changes of a value, labelled `from` and `to`.
    Transitions,
    /// A histogram of the seconds between two times, each observation counted once.
    DurationHistogram,
    /// A gauge per object: the seconds since a time.
    Age,
}

impl DerivedType {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            DerivedType::Transitions => "transitions",
            DerivedType::DurationHistogram => "duration_histogram",
            DerivedType::Age => "age",
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
    /// The largest file read (1 KiB to 1 GiB); a larger one is refused and counted as a read
    /// error. `"16MiB"` by default.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: ByteSize,
}

fn default_interval() -> Duration {
    Duration(std::time::Duration::from_secs(2))
}

fn default_max_file_bytes() -> ByteSize {
    ByteSize(16 << 20)
}

/// The `[[resources]]` entries of a config text, for the crate's tests.
#[cfg(test)]
pub(crate) fn test_resources(text: &str) -> Vec<ResourceConfig> {
    #[derive(Deserialize)]
    struct Doc {
        resources: Vec<ResourceConfig>,
    }
    periscope_plugin_api::config::parse::<Doc>(text)
        .expect("a valid test config")
        .resources
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
        let (name, label) = resource.labels.iter().next().unwrap();
        assert_eq!(name.get_ref(), "node");
        let LabelConfig::Path(path) = label else {
            panic!("{label:?} is a path");
        };
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
    fn aggregates_and_derived_metrics_parse() {
        let text = r#"
[[resources]]
version = "v1"
kind = "Pod"

  [[resources.aggregates]]
  name = "phase_count"
  type = "count"
  by = { phase = "status.phase" }
  where = { path = "status.phase", not_in = ["Succeeded"] }

  [[resources.derived]]
  name = "phase_transitions_total"
  type = "transitions"
  path = "status.phase"

  [[resources.derived]]
  name = "ready_seconds"
  type = "duration_histogram"
  start = "metadata.creationTimestamp"
  end = "status.conditions[type=Ready].lastTransitionTime"
  buckets = [1, 2.5, 10]

  [[resources.derived]]
  name = "age_seconds"
  type = "age"
  path = "metadata.creationTimestamp"
  refresh = "1m"
"#;
        let config: Config = parse(text).unwrap();
        let resource = &config.resources[0];
        let aggregate = &resource.aggregates[0];
        assert_eq!(*aggregate.aggregate_type.get_ref(), AggregateType::Count);
        let Some(AggregateFilter::Values(filter)) = &aggregate.filter else {
            panic!("a table `where`");
        };
        let filter = filter.get_ref();
        assert_eq!(filter.not_in.as_ref().unwrap().get_ref(), &["Succeeded"]);
        assert!(filter.any_of.is_none());
        let types: Vec<_> = resource
            .derived
            .iter()
            .map(|d| *d.derived_type.get_ref())
            .collect();
        assert_eq!(
            types,
            [
                DerivedType::Transitions,
                DerivedType::DurationHistogram,
                DerivedType::Age
            ]
        );
        assert_eq!(
            resource.derived[1].buckets.as_ref().unwrap().get_ref(),
            &[1.0, 2.5, 10.0]
        );
        let refresh = resource.derived[2].refresh.as_ref().unwrap();
        assert_eq!(refresh.get_ref().0.as_secs(), 60);
        let keys: Vec<String> = resource.paths().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "aggregates[0].where.path",
                "aggregates[0].by.phase",
                "derived[0].path",
                "derived[1].start",
                "derived[1].end",
                "derived[2].path",
            ]
        );
    }

    #[test]
    fn unknown_derived_types_are_errors() {
        let text = "[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
                    [[resources.derived]]\nname = \"x\"\ntype = \"rate\"\npath = \"a\"\n";
        let err = parse::<Config>(text).unwrap_err();
        assert!(err.key.starts_with("resources[0].derived[0].type"), "{err}");
    }

    #[test]
    fn files_interval_defaults_to_two_seconds() {
        let config: Config = parse("[[files]]\npath = \"m\"\n").unwrap();
        assert_eq!(config.files[0].interval.0.as_secs(), 2);
        let config: Config = parse("[[files]]\npath = \"m\"\ninterval = \"50ms\"\n").unwrap();
        assert_eq!(config.files[0].interval.0.as_millis(), 50);
    }
}
