//! How each CustomResourceState construct becomes Periscope config, and the TOML written for it.
//!
//! kube-state-metrics v2.16 (`pkg/customresourcestate/registry_factory.go`) reads a family as:
//! the value at the metric's `path`; a list there gives one sample per item, anything else one
//! sample (a map of a gauge or info is walked entry by entry, see below). Here:
//! - a gauge's `valueFrom` or a state set's or info's `path` that reaches a list becomes
//!   `each = "<path>[*]"` with `path`/`labels` relative to the item; a `path` ending in a
//!   `[key=value]` selector (one item) or empty (the object) becomes `each = "<path>"`;
//! - labels: the resource's `commonLabels` and `labelsFromPath` go on `[[resources]] labels`
//!   (constants as CEL string literals), the metric's own on the metric, read from the object
//!   (`$.…` inside an `each`), `each.*.labelsFromPath` from the item;
//! - values read as kube-state-metrics' `toFloat64` does: `convert = "auto"` plus the condition
//!   status `Unknown` as `0`; `nilIsZero` is `default = 0` and `null` as `0`;
//! - the `customresource_group`, `customresource_version` and `customresource_kind` labels
//!   kube-state-metrics adds are constants on the entry.
//!
//! A gauge's `labelFromKey` walks the map at its `path` with `each = "<path>[*]"` and
//! `each_key`. What has no equivalent with the same series is refused with its YAML path: an
//! info's `labelFromKey`, more than one map copied into labels (`"*"` keys; one becomes
//! `labels_from` with `names = "sanitized"`), `version: "*"` / `kind: "*"`, a label given at
//! two levels (kube-state-metrics falls back from one to the other when the first is missing),
//! and paths Periscope's path language cannot say.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::crs::{Config, Gauge, Generator, Info, Resource, StateSet};
use super::locate::{self, KeyPath};

/// A problem at a key path.
type Problem = (KeyPath, String);

/// The TOML fields of a metric, key and rendered value, in writing order.
type Fields = Vec<(String, String)>;

/// The prefix kube-state-metrics uses when `metricNamePrefix` is absent.
const DEFAULT_PREFIX: &str = "kube_customresource";

/// The TOML for `config`, or every construct that has no equivalent.
pub(super) fn render(
    file: &str,
    text: &str,
    config: &Config,
    base: &KeyPath,
) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    if let Some(kind) = &config.kind
        && kind != "CustomResourceStateMetrics"
    {
        problems.push((
            base.key("kind"),
            format!("the kind is {kind:?}, not \"CustomResourceStateMetrics\""),
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Converted by `periscope import kube-state-metrics` from the CustomResourceState config\n\
         # {file}. Each entry names the YAML it comes from. The series are those\n\
         # kube-state-metrics v2.16 writes (docs/kube-state-metrics.md lists the differences)."
    );
    let spec = base.key("spec").key("resources");
    for (i, resource) in config.spec.resources.iter().enumerate() {
        let at = spec.index(i);
        match resource_toml(text, resource, &at) {
            Ok(toml) => out.push_str(&toml),
            Err(mut more) => problems.append(&mut more),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// `# <path> (line N)`.
fn origin(text: &str, at: &KeyPath) -> String {
    match locate::line_of(text, at) {
        Some((line, _)) => format!("{at} (line {line})"),
        None => at.to_string(),
    }
}

/// A label's source: a constant or a KSM path, with where it was written.
#[derive(Debug, Clone)]
enum Source {
    Constant(String),
    Path(Vec<String>, KeyPath),
}

/// One `[[resources]]` entry.
fn resource_toml(text: &str, resource: &Resource, at: &KeyPath) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    let gvk = &resource.group_version_kind;
    let gvk_at = at.key("groupVersionKind");
    for (field, value) in [("version", &gvk.version), ("kind", &gvk.kind)] {
        if value == "*" || value.is_empty() {
            problems.push((
                gvk_at.key(field),
                format!(
                    "`{field}: {value:?}`: kube-state-metrics resolves it through discovery to every \
                     served {field}; Periscope needs each kind written out (one entry per version and kind)"
                ),
            ));
        }
    }
    // The resource's own labels, with kube-state-metrics' group/version/kind labels over its
    // `commonLabels` (it sets them after reading the config).
    let mut common: BTreeMap<String, Source> = resource
        .common_labels
        .iter()
        .map(|(k, v)| (k.clone(), Source::Constant(v.clone())))
        .collect();
    for (suffix, value) in [
        ("group", &gvk.group),
        ("version", &gvk.version),
        ("kind", &gvk.kind),
    ] {
        common.insert(
            format!("customresource_{suffix}"),
            Source::Constant(value.clone()),
        );
    }
    let mut resource_stars = Vec::new();
    let paths = path_labels(
        &resource.labels_from_path,
        &at.key("labelsFromPath"),
        &mut resource_stars,
    );
    let resource_labels = merge_levels(common, paths, at, &mut problems);

    let prefix = resource
        .metric_name_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n# {}: {}",
        origin(text, at),
        if gvk.group.is_empty() {
            format!("{} {}", gvk.version, gvk.kind)
        } else {
            format!("{}/{} {}", gvk.group, gvk.version, gvk.kind)
        }
    );
    out.push_str("[[resources]]\n");
    let _ = writeln!(out, "group = {}", string(&gvk.group));
    let _ = writeln!(out, "version = {}", string(&gvk.version));
    let _ = writeln!(out, "kind = {}", string(&gvk.kind));
    if !prefix.is_empty() {
        let _ = writeln!(out, "prefix = {}", string(&prefix));
    }
    if let Some(plural) = &resource.resource_plural {
        let _ = writeln!(
            out,
            "# resourcePlural {plural:?}: Periscope finds the plural through discovery."
        );
    }
    if resource.error_log_v.is_some() || resource.metrics.iter().any(|m| m.error_log_v.is_some()) {
        out.push_str(
            "# errorLogV: Periscope counts the values it cannot read (periscope_input_errors_total{kind=\"value\"}) instead of logging each one.\n",
        );
    }
    let mut rendered = BTreeMap::new();
    for (name, source) in &resource_labels {
        match label_value(source, false) {
            Ok(value) => {
                rendered.insert(name.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    let _ = writeln!(out, "labels = {}", inline_table(&rendered));

    for (j, generator) in resource.metrics.iter().enumerate() {
        let metric_at = at.key("metrics").index(j);
        let full_name = if prefix.is_empty() {
            generator.name.clone()
        } else {
            format!("{prefix}_{}", generator.name)
        };
        let context = Context {
            labels: &resource_labels,
            stars: &resource_stars,
        };
        match metric_toml(text, generator, &full_name, &metric_at, &context) {
            Ok(toml) => out.push_str(&toml),
            Err(mut more) => problems.append(&mut more),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A `labelsFromPath` key starting or ending with `*`: every key of the map at the path as a
/// label, the part before the `*` in front.
#[derive(Debug, Clone)]
struct Star {
    /// The key as written.
    key: String,
    /// What goes before each map key.
    prefix: String,
    path: Vec<String>,
    at: KeyPath,
}

/// `labelsFromPath` as label sources, names sanitized as kube-state-metrics does; the `*` keys
/// (whole maps copied into labels) go to `stars`.
fn path_labels(
    paths: &BTreeMap<String, Vec<String>>,
    at: &KeyPath,
    stars: &mut Vec<Star>,
) -> BTreeMap<String, Source> {
    let mut out = BTreeMap::new();
    for (name, path) in paths {
        let key_at = at.key(name);
        if name.starts_with('*') || name.ends_with('*') {
            let prefix = match name.strip_suffix('*') {
                Some(prefix) => sanitize(prefix),
                None => String::new(),
            };
            stars.push(Star {
                key: name.clone(),
                prefix,
                path: path.clone(),
                at: key_at,
            });
            continue;
        }
        out.insert(sanitize(name), Source::Path(path.clone(), key_at));
    }
    out
}

/// kube-state-metrics' `SanitizeLabelName`: every character other than an ASCII letter, digit
/// or `_` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Constants and paths of one level merged; a name that is both is refused, because
/// kube-state-metrics takes the path's value and falls back to the constant when the path
/// reaches nothing, which Periscope does not do.
fn merge_levels(
    common: BTreeMap<String, Source>,
    paths: BTreeMap<String, Source>,
    at: &KeyPath,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Source> {
    let mut out = common;
    for (name, source) in paths {
        if out.contains_key(&name) {
            problems.push((
                at.key("labelsFromPath").key(&name),
                format!(
                    "label `{name}` is also a constant label (commonLabels or kube-state-metrics' own \
                     customresource_* label): kube-state-metrics falls back from the path to the \
                     constant, Periscope has no fallback; rename one"
                ),
            ));
            continue;
        }
        out.insert(name, source);
    }
    out
}

/// How the metric reads its items.
enum Shape {
    /// Read from the object itself (no `each`).
    Object,
    /// One item: the value at the path (`each = "<path>"`).
    One(String),
    /// One item per element of the list at the path (`each = "<path>[*]"`).
    List(String),
    /// One item per entry of the map at the path, as written (`each = "<path>[*]"`).
    Keyed(String),
}

impl Shape {
    /// From the KSM `path`: empty is the object; ending in a selector is one item; `one` says
    /// that the value is read whole (a gauge without `valueFrom`); anything else is a list.
    fn of(path: &[String], at: &KeyPath, one: bool) -> Result<Shape, Problem> {
        if path.is_empty() {
            return Ok(Shape::Object);
        }
        let text = periscope_path(path, at)?;
        let selects = path
            .last()
            .is_some_and(|p| p.starts_with('[') && p.ends_with(']'));
        Ok(if one || selects {
            Shape::One(text)
        } else {
            Shape::List(text)
        })
    }

    fn each(&self) -> Option<String> {
        match self {
            Shape::Object => None,
            Shape::One(path) => Some(path.clone()),
            Shape::List(path) => Some(format!("{path}[*]")),
            Shape::Keyed(each) => Some(each.clone()),
        }
    }
}

/// What a resource gives each of its metrics.
struct Context<'r> {
    /// Its labels.
    labels: &'r BTreeMap<String, Source>,
    /// Its `*` labels.
    stars: &'r [Star],
}

/// One `[[resources.metrics]]` entry.
fn metric_toml(
    text: &str,
    generator: &Generator,
    full_name: &str,
    at: &KeyPath,
    context: &Context<'_>,
) -> Result<String, Vec<Problem>> {
    let resource_labels = context.labels;
    let mut problems = Vec::new();
    let mut item_stars = Vec::new();
    let each_at = at.key("each");
    let kind = generator.each.metric_type.to_ascii_lowercase();
    let fields: Fields;
    let own_labels: BTreeMap<String, Source>;
    let shape;
    let mut state_label = None;
    match kind.as_str() {
        "gauge" => {
            let gauge_at = each_at.key("gauge");
            let Some(gauge) = &generator.each.gauge else {
                return Err(vec![(
                    each_at,
                    "`type: Gauge` needs `each.gauge`".to_owned(),
                )]);
            };
            let flat;
            match gauge_fields(gauge, &gauge_at) {
                Ok((s, f, flattened)) => {
                    shape = s;
                    fields = f;
                    flat = flattened;
                }
                Err(problem) => return Err(vec![problem]),
            }
            // A single item read from the object: its labels' paths start at the object.
            let relative: BTreeMap<String, Vec<String>> = gauge
                .labels_from_path
                .iter()
                .map(|(name, path)| {
                    let mut parts = if flat { gauge.path.clone() } else { Vec::new() };
                    parts.extend(path.iter().cloned());
                    (name.clone(), parts)
                })
                .collect();
            own_labels = path_labels(&relative, &gauge_at.key("labelsFromPath"), &mut item_stars);
        }
        "stateset" => {
            let set_at = each_at.key("stateSet");
            let Some(set) = &generator.each.state_set else {
                return Err(vec![(
                    each_at,
                    "`type: StateSet` needs `each.stateSet`".to_owned(),
                )]);
            };
            match state_set_fields(set, &set_at) {
                Ok((s, f)) => {
                    shape = s;
                    fields = f;
                }
                Err(problem) => return Err(vec![problem]),
            }
            state_label = Some(set.label_name.clone());
            own_labels = path_labels(
                &set.labels_from_path,
                &set_at.key("labelsFromPath"),
                &mut item_stars,
            );
        }
        "info" => {
            let info_at = each_at.key("info");
            let Some(info) = &generator.each.info else {
                return Err(vec![(each_at, "`type: Info` needs `each.info`".to_owned())]);
            };
            match info_fields(full_name, info, &info_at) {
                Ok((s, f)) => {
                    shape = s;
                    fields = f;
                }
                Err(problem) => return Err(vec![problem]),
            }
            own_labels = path_labels(
                &info.labels_from_path,
                &info_at.key("labelsFromPath"),
                &mut item_stars,
            );
        }
        other => {
            return Err(vec![(
                each_at.key("type"),
                format!("unknown metric type {other:?}: Gauge, StateSet or Info"),
            )]);
        }
    }

    // The family's own labels over the resource's (kube-state-metrics merges the two maps),
    // then the item's over both, with a fallback this side cannot express.
    let common: BTreeMap<String, Source> = generator
        .common_labels
        .iter()
        .map(|(k, v)| (k.clone(), Source::Constant(v.clone())))
        .collect();
    let mut family_stars = Vec::new();
    let paths = path_labels(
        &generator.labels_from_path,
        &at.key("labelsFromPath"),
        &mut family_stars,
    );
    let family = merge_levels(common, paths, at, &mut problems);
    // The family's `*` keys over the resource's of the same key, then the item's.
    let mut stars: Vec<(Star, bool)> = context
        .stars
        .iter()
        .filter(|star| !family_stars.iter().any(|f| f.key == star.key))
        .chain(&family_stars)
        .map(|star| (star.clone(), false))
        .collect();
    stars.extend(item_stars.iter().map(|star| (star.clone(), true)));
    if kind == "info" && !item_stars.is_empty() {
        problems.push((
            item_stars[0].at.clone(),
            "a `*` label of an Info's own `labelsFromPath` is not converted; put it on the metric"
                .to_owned(),
        ));
    }
    let labels_from = match stars.as_slice() {
        [] => None,
        [(star, relative)] => match labels_from_value(star, *relative, &shape) {
            Ok(value) => Some(value),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        [_, (second, _), ..] => {
            problems.push((
                second.at.clone(),
                "a second `*` label for this metric: Periscope takes one map as labels per metric"
                    .to_owned(),
            ));
            None
        }
    };
    for name in family.keys() {
        if resource_labels.contains_key(name) {
            problems.push((
                at.key("labelsFromPath").key(name),
                format!(
                    "label `{name}` is also a label of the resource: kube-state-metrics lets the \
                     metric's win, which Periscope does not; rename one"
                ),
            ));
        }
    }
    for name in own_labels.keys().chain(state_label.iter()) {
        if family.contains_key(name) || resource_labels.contains_key(name) {
            problems.push((
                each_at.clone(),
                format!(
                    "label `{name}` is read from the item and also given for the whole family: \
                     kube-state-metrics falls back from one to the other, Periscope does not; rename one"
                ),
            ));
        }
    }
    let inside = shape.each().is_some();
    let mut labels = BTreeMap::new();
    for (name, source) in family.iter() {
        match label_value(source, inside) {
            Ok(value) => {
                labels.insert(name.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    for (name, source) in own_labels.iter() {
        match label_value(source, false) {
            Ok(value) => {
                labels.insert(name.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut out = String::new();
    let _ = writeln!(out, "\n  # {}", origin(text, at));
    out.push_str("  [[resources.metrics]]\n");
    for (key, value) in [("name", &generator.name), ("help", &generator.help)] {
        let _ = writeln!(out, "  {key} = {}", string(value));
    }
    if let Some(each) = shape.each() {
        let _ = writeln!(out, "  each = {}", string(&each));
    }
    for (key, value) in fields {
        let why = match (key.as_str(), kind.as_str()) {
            ("where", "info") => {
                Some("kube-state-metrics writes an item only when one of its labels is there")
            }
            ("where", "stateset") => {
                Some("kube-state-metrics writes no state when the value is not a string")
            }
            ("value_map", _) => Some("kube-state-metrics reads a condition's Unknown as 0"),
            _ => None,
        };
        if let Some(why) = why {
            let _ = writeln!(out, "  # {why}");
        }
        let _ = writeln!(out, "  {key} = {value}");
    }
    if !labels.is_empty() {
        let _ = writeln!(out, "  labels = {}", inline_table(&labels));
    }
    if let Some(labels_from) = labels_from {
        let _ = writeln!(out, "  labels_from = {labels_from}");
    }
    Ok(out)
}

/// The fields of a gauge: its shape, then `type`, `path`, the conversion; and whether the
/// `path` was folded into the value's path (a single item read from the object, so that a
/// missing one still gives `nilIsZero`'s `0`).
fn gauge_fields(gauge: &Gauge, at: &KeyPath) -> Result<(Shape, Fields, bool), Problem> {
    if !gauge.label_from_key.is_empty() {
        return label_from_key_fields(gauge, at);
    }
    if gauge.value_from.is_empty() && gauge.path.is_empty() {
        return Err((
            at.key("path"),
            "a gauge without `path` and `valueFrom` reads the whole object".to_owned(),
        ));
    }
    let (shape, value, flat) =
        match Shape::of(&gauge.path, &at.key("path"), gauge.value_from.is_empty())? {
            Shape::List(_) if !gauge.value_from.is_empty() => {
                let shape = Shape::of(&gauge.path, &at.key("path"), false)?;
                (
                    shape,
                    periscope_path(&gauge.value_from, &at.key("valueFrom"))?,
                    false,
                )
            }
            _ => {
                let mut parts = gauge.path.clone();
                parts.extend(gauge.value_from.iter().cloned());
                (
                    Shape::Object,
                    periscope_path(&parts, &at.key("valueFrom"))?,
                    true,
                )
            }
        };
    let mut fields = vec![
        ("type".to_owned(), string("gauge")),
        ("path".to_owned(), string(&value)),
    ];
    fields.extend(conversion(gauge.nil_is_zero));
    Ok((shape, fields, flat))
}

/// The fields of a gauge with `labelFromKey`: one sample per entry of the map at `path`, its key
/// the label (`each = "<path>[*]"`, `each_key`), the value at `valueFrom` in the entry.
fn label_from_key_fields(gauge: &Gauge, at: &KeyPath) -> Result<(Shape, Fields, bool), Problem> {
    let key = &gauge.label_from_key;
    if gauge.labels_from_path.contains_key(key) {
        return Err((
            at.key("labelFromKey"),
            format!(
                "`labelFromKey: {key}` is also a label of `labelsFromPath`: kube-state-metrics \
                 writes no series then"
            ),
        ));
    }
    let each = if gauge.path.is_empty() {
        "[*]".to_owned()
    } else {
        format!("{}[*]", periscope_path(&gauge.path, &at.key("path"))?)
    };
    let value = if gauge.value_from.is_empty() {
        ".".to_owned()
    } else {
        periscope_path(&gauge.value_from, &at.key("valueFrom"))?
    };
    let mut fields = vec![
        ("each_key".to_owned(), string(key)),
        ("type".to_owned(), string("gauge")),
        ("path".to_owned(), string(&value)),
    ];
    fields.extend(conversion(gauge.nil_is_zero));
    Ok((Shape::Keyed(each), fields, false))
}

/// How a gauge's value becomes a number, as kube-state-metrics' `toFloat64`: `Unknown` is `0`;
/// with `nilIsZero` a missing or null value is `0` too.
fn conversion(nil_is_zero: bool) -> Fields {
    if nil_is_zero {
        vec![
            ("default".to_owned(), "0".to_owned()),
            (
                "value_map".to_owned(),
                "{ \"\" = 0, Unknown = 0, unknown = 0 }".to_owned(),
            ),
        ]
    } else {
        vec![(
            "value_map".to_owned(),
            "{ Unknown = 0, unknown = 0 }".to_owned(),
        )]
    }
}

/// The fields of a state set.
fn state_set_fields(set: &StateSet, at: &KeyPath) -> Result<(Shape, Fields), Problem> {
    if set.label_name.is_empty() {
        return Err((
            at.key("labelName"),
            "a state set needs `labelName`".to_owned(),
        ));
    }
    if set.list.is_empty() {
        return Err((at.key("list"), "a state set needs `list`".to_owned()));
    }
    if set.path.is_empty() && set.value_from.is_empty() {
        return Err((
            at.key("path"),
            "a state set without `path` and `valueFrom` compares the whole object".to_owned(),
        ));
    }
    let shape = Shape::of(&set.path, &at.key("path"), set.value_from.is_empty())?;
    let value = if set.value_from.is_empty() {
        ".".to_owned()
    } else {
        periscope_path(&set.value_from, &at.key("valueFrom"))?
    };
    // kube-state-metrics writes no state when the value is not a string.
    let subject = if shape.each().is_some() {
        "item"
    } else {
        "object"
    };
    let check = cel_path(subject, &set.value_from)
        .map(|value| format!("type({value}) == string"))
        .ok_or_else(|| {
            (
                at.key("valueFrom"),
                "a state set's `valueFrom` with selectors or indexes cannot be checked for a \
                 string value as kube-state-metrics does; use field names only"
                    .to_owned(),
            )
        })?;
    let states: Vec<String> = set.list.iter().map(|s| string(s)).collect();
    Ok((
        shape,
        vec![
            ("type".to_owned(), string("stateset")),
            ("path".to_owned(), string(&value)),
            ("where".to_owned(), string(&check)),
            ("states".to_owned(), format!("[{}]", states.join(", "))),
            ("label".to_owned(), string(&set.label_name)),
        ],
    ))
}

/// The fields of an info metric: `info` when the full name ends in `_info` (Periscope adds the
/// suffix), a constant `1` gauge otherwise.
fn info_fields(full_name: &str, info: &Info, at: &KeyPath) -> Result<(Shape, Fields), Problem> {
    if !info.label_from_key.is_empty() {
        return Err((
            at.key("labelFromKey"),
            "`labelFromKey` (one sample per entry of a map, its key a label) has no Periscope \
             equivalent yet"
                .to_owned(),
        ));
    }
    if info.labels_from_path.is_empty() {
        return Err((
            at.key("labelsFromPath"),
            "an Info metric without `labelsFromPath` writes no series in kube-state-metrics"
                .to_owned(),
        ));
    }
    let shape = Shape::of(&info.path, &at.key("path"), false)?;
    let mut fields = Vec::new();
    if full_name.ends_with("_info") {
        fields.push(("type".to_owned(), string("info")));
    } else {
        fields.push(("type".to_owned(), string("gauge")));
        fields.push(("expr".to_owned(), string("1")));
    }
    // kube-state-metrics writes an item only when one of its own labels is there.
    let subject = if shape.each().is_some() {
        "item"
    } else {
        "object"
    };
    // Not needed when one of them is on every object.
    let surely = subject == "object" && info.labels_from_path.values().any(|p| always_there(p));
    let checks: Option<Vec<String>> = info
        .labels_from_path
        .values()
        .map(|path| cel_has(subject, path))
        .collect();
    if let Some(checks) = checks
        && !surely
    {
        fields.push(("where".to_owned(), string(&checks.join(" || "))));
    }
    Ok((shape, fields))
}

/// The `labels_from` table of a `*` label: read from the object (`$…` inside an `each`) unless
/// `relative`, names sanitized with their case kept.
fn labels_from_value(star: &Star, relative: bool, shape: &Shape) -> Result<String, Problem> {
    if !star.prefix.is_empty() && !star.prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err((
            star.at.clone(),
            format!(
                "`{}`: the labels' prefix {:?} does not start with a letter",
                star.key, star.prefix
            ),
        ));
    }
    let source = Source::Path(star.path.clone(), star.at.clone());
    let path = label_value(&source, !relative && shape.each().is_some())?;
    Ok(format!(
        "{{ path = {path}, prefix = {}, names = \"sanitized\" }}",
        string(&star.prefix)
    ))
}

/// A label's TOML value: a path (anchored at the object with `$` inside an `each`) or a CEL
/// string constant.
fn label_value(source: &Source, anchored: bool) -> Result<String, Problem> {
    match source {
        Source::Constant(value) => Ok(format!("{{ expr = {} }}", string(&cel_string(value)))),
        Source::Path(path, at) => {
            let text = periscope_path(path, at)?;
            let text = match (anchored, text.as_str()) {
                (false, _) => text,
                (true, ".") => "$".to_owned(),
                (true, _) if text.starts_with('[') => format!("${text}"),
                (true, _) => format!("$.{text}"),
            };
            Ok(string(&text))
        }
    }
}

/// A KSM path (a list of parts) in Periscope's path language.
fn periscope_path(parts: &[String], at: &KeyPath) -> Result<String, Problem> {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let part_at = at.index(i);
        if let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            let Some((key, value)) = inner.split_once('=') else {
                return Err((part_at, format!("{part:?} is not a `[key=value]` selector")));
            };
            if key.is_empty() || !key.chars().all(is_plain) {
                return Err((
                    part_at,
                    format!("the selector key {key:?} is not a plain field name"),
                ));
            }
            let _ = write!(out, "[{key}={}]", quoted(value));
        } else if part.parse::<i64>().is_ok() {
            let _ = write!(out, "[{part}]");
        } else if part.contains('=') {
            return Err((
                part_at,
                format!(
                    "{part:?}: kube-state-metrics reads `key=value` outside brackets in its own way \
                     (the value when it matches, else the field named {part:?}); write `[key=value]` \
                     or the field name"
                ),
            ));
        } else if !part.is_empty() && part.chars().all(is_plain) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        } else {
            let _ = write!(out, "[{}]", quoted(part));
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    Ok(out)
}

/// A character that needs no quoting in a Periscope field name (kept plain for readability).
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A CEL expression for the value at `parts` from `subject`, `null` when a step is missing or
/// no map (as kube-state-metrics' paths give `nil`), when the parts are field names:
/// `object.?status.?phase.orValue(null)`. Optional selection names each field it reads, so the
/// expression converts only those fields of the object (`scraper/src/expr.rs`).
fn cel_path(subject: &str, parts: &[String]) -> Option<String> {
    if parts.is_empty() {
        return Some(subject.to_owned());
    }
    let mut out = subject.to_owned();
    for part in parts {
        if part.starts_with('[') || part.parse::<i64>().is_ok() || part.contains('=') {
            return None;
        }
        if is_cel_identifier(part) {
            let _ = write!(out, ".?{part}");
        } else {
            let _ = write!(out, "[?{}]", cel_string(part));
        }
    }
    out.push_str(".orValue(null)");
    Some(out)
}

/// Whether `name` can follow `.?` in CEL: an identifier that is no reserved word.
fn is_cel_identifier(name: &str) -> bool {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
}

/// A CEL test that the value at `parts` from `subject` is there and not null.
fn cel_has(subject: &str, parts: &[String]) -> Option<String> {
    Some(format!("{} != null", cel_path(subject, parts)?))
}

/// Whether the value at `parts` of an object is there for every object the API server serves
/// (it sets them all on create).
fn always_there(parts: &[String]) -> bool {
    matches!(
        parts,
        [metadata, field] if metadata == "metadata"
            && matches!(field.as_str(), "name" | "uid" | "creationTimestamp")
    )
}

/// A CEL string literal.
fn cel_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A quoted path string (`"a.b/c"`) for Periscope's path language.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A TOML string.
fn string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A TOML inline table of already rendered values.
fn inline_table(entries: &BTreeMap<String, String>) -> String {
    if entries.is_empty() {
        return "{}".to_owned();
    }
    let body: Vec<String> = entries
        .iter()
        .map(|(key, value)| {
            let bare = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let key = if bare { key.clone() } else { string(key) };
            format!("{key} = {value}")
        })
        .collect();
    format!("{{ {} }}", body.join(", "))
}
