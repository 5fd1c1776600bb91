//! Checking the `[[resources]]` config and compiling it: every path parsed, every name checked,
//! every key allowed by the metric's type, every family given one type, no Secret's data read.
//! Aggregates and derived metrics are compiled in [`tracked`], the rule for Secrets is in
//! [`secrets`].

mod joins;
mod secrets;
mod tracked;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use periscope_plugin_api::batch::{FamilyKind, Suffix};
use periscope_plugin_api::names::{is_metric_name, is_user_label_name};
use toml::Spanned;

use std::sync::Arc;

use super::labels_from::{self, LabelsFrom};
use super::limits;
use super::reader::Reader;
use super::{CompileError, FamilyDef, LabelSpec, Metric, NumberSpec, Resource, Secrets, ValueSpec};
use crate::config::{LabelConfig, LabelsFromConfig, MetricConfig, MetricType, ResourceConfig};
use crate::expr::{Expr, Scope};
use crate::path::Path;
use crate::selector::{FieldSelector, LabelSelector};
use regex::RegexSet;
use std::sync::Mutex;

/// Compiles every entry, collecting every problem.
pub(super) fn compile(
    configs: &[ResourceConfig],
    kinds: &[super::joins::JoinedKind],
    secrets: Secrets,
) -> Result<Vec<Resource>, Vec<CompileError>> {
    let mut compiler = Compiler {
        joined_kinds: kinds
            .iter()
            .map(|k| (k.group.clone(), k.version.clone(), k.kind.clone()))
            .collect(),
        ..Compiler::default()
    };
    let resources: Vec<Resource> = configs
        .iter()
        .enumerate()
        .map(|(i, config)| compiler.resource(&format!("resources[{i}]"), config))
        .collect();
    compiler.errors.extend(secrets::check(configs, secrets));
    if compiler.errors.is_empty() {
        Ok(resources)
    } else {
        Err(compiler.errors)
    }
}

/// Compiles the metrics of a JSON document that is not a Kubernetes object (a JSON endpoint's
/// answer): `key` names the entry in errors (`endpoints[0]`), `what` names the document in
/// default help texts.
pub(super) fn document(
    key: &str,
    what: &str,
    prefix: Option<&Spanned<String>>,
    metrics: &[MetricConfig],
) -> Result<Resource, Vec<CompileError>> {
    let mut compiler = Compiler::default();
    let (prefix_text, prefix_valid) = compiler.prefix(key, prefix);
    let mut names_in_entry = HashMap::new();
    let metrics = metrics
        .iter()
        .enumerate()
        .filter_map(|(j, metric)| {
            let context = MetricContext {
                key: format!("{key}.metrics[{j}]"),
                prefix: prefix_text,
                prefix_valid,
                api_version: "",
                kind: what,
                resource_labels: &[],
            };
            compiler.metric(&context, metric, &mut names_in_entry)
        })
        .collect();
    if !compiler.errors.is_empty() {
        return Err(compiler.errors);
    }
    Ok(Resource {
        name: key.to_owned(),
        api_version: String::new(),
        kind: String::new(),
        namespaces: Vec::new(),
        label_selector: LabelSelector::default(),
        field_selector: FieldSelector::default(),
        labels: Vec::new(),
        filter: None,
        metrics,
        tracked: Vec::new(),
        budget: None,
        joins: Vec::new(),
    })
}

#[derive(Default)]
struct Compiler {
    errors: Vec<CompileError>,
    /// Every family defined so far.
    families: HashMap<String, Defined>,
    /// How many aggregates and derived metrics were compiled: the next one's slot.
    tracked: usize,
    /// Every joined kind (group, version, kind), in the order of [`super::joins::joined_kinds`].
    joined_kinds: Vec<(String, String, String)>,
    /// The names of the joins of the entry being compiled: what `@name` and `joins.name` may
    /// name.
    entry_joins: Vec<String>,
}

/// A family defined by a metric, an aggregate or a derived metric.
struct Defined {
    kind: FamilyKind,
    /// The key of the name that defined it first.
    key: String,
    /// Whether it is an aggregate or derived family: its own source, which no other entry
    /// may share.
    tracked: bool,
}

impl Compiler {
    fn resource(&mut self, key: &str, config: &ResourceConfig) -> Resource {
        for (field, value) in [("version", &config.version), ("kind", &config.kind)] {
            if value.is_empty() {
                self.push(
                    format!("{key}.{field}"),
                    None,
                    "must not be empty".to_owned(),
                );
            }
        }
        if config.metrics.is_empty() && config.aggregates.is_empty() && config.derived.is_empty() {
            let message = "the entry defines no metrics, aggregates or derived metrics".to_owned();
            self.push(format!("{key}.metrics"), None, message);
        }
        let label_selector = config
            .label_selector
            .as_ref()
            .and_then(|s| {
                let parsed = LabelSelector::parse(s.get_ref());
                self.check(&format!("{key}.label_selector"), s, parsed)
            })
            .unwrap_or_default();
        let field_selector = config
            .field_selector
            .as_ref()
            .and_then(|s| {
                let parsed = FieldSelector::parse(s.get_ref());
                self.check(&format!("{key}.field_selector"), s, parsed)
            })
            .unwrap_or_default();
        let joins = self.joins(key, config);
        let (prefix, prefix_valid) = self.prefix(key, config.prefix.as_ref());
        let labels = self.labels(&format!("{key}.labels"), &config.labels, &[], Scope::Object);
        let resource_labels: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        let api_version = config.api_version();
        let mut names_in_entry = HashMap::new();
        let metrics = config
            .metrics
            .iter()
            .enumerate()
            .filter_map(|(j, metric)| {
                let context = MetricContext {
                    key: format!("{key}.metrics[{j}]"),
                    prefix,
                    prefix_valid,
                    api_version: &api_version,
                    kind: &config.kind,
                    resource_labels: &resource_labels,
                };
                self.metric(&context, metric, &mut names_in_entry)
            })
            .collect();
        let context = tracked::Context {
            key,
            prefix,
            prefix_valid,
            api_version: &api_version,
            kind: &config.kind,
            labels: &labels,
        };
        let tracked = self.tracked(&context, config);
        let filter = config
            .filter
            .as_ref()
            .and_then(|filter| self.expr(&format!("{key}.where"), filter, Scope::Object));
        let caps = limits::Caps {
            max_series: self.at_least_one(&format!("{key}.max_series"), config.max_series.as_ref()),
            max_values: self.at_least_one(&format!("{key}.max_values"), config.max_values.as_ref()),
        };
        self.at_least_one(&format!("{key}.max_objects"), config.max_objects.as_ref());
        let budget = (caps.max_series.is_some() || caps.max_values.is_some())
            .then(|| Mutex::new(limits::Budget::new(key.to_owned(), caps)));
        Resource {
            budget,
            name: config.kind.clone(),
            api_version,
            kind: config.kind.clone(),
            namespaces: config.namespaces.clone(),
            label_selector,
            field_selector,
            labels,
            filter,
            metrics,
            tracked,
            joins,
        }
    }

    /// A cap, which must be at least 1.
    fn at_least_one(&mut self, key: &str, cap: Option<&Spanned<u64>>) -> Option<u64> {
        let cap = cap?;
        if *cap.get_ref() == 0 {
            self.error(
                key,
                Some(cap),
                "must be at least 1 (leave it out for no cap)",
            );
        }
        Some(*cap.get_ref())
    }

    /// The entry's prefix if it is valid, and whether it is (no prefix is valid); a bad prefix
    /// is reported here, once.
    fn prefix<'p>(
        &mut self,
        key: &str,
        prefix: Option<&'p Spanned<String>>,
    ) -> (Option<&'p str>, bool) {
        match prefix {
            Some(prefix) if !is_metric_name(prefix.get_ref()) => {
                let message = format!("{:?} is not a valid metric name prefix", prefix.get_ref());
                self.error(&format!("{key}.prefix"), Some(prefix), &message);
                (None, false)
            }
            Some(prefix) => (Some(prefix.get_ref().as_str()), true),
            None => (None, true),
        }
    }

    fn metric(
        &mut self,
        context: &MetricContext<'_>,
        config: &MetricConfig,
        names_in_entry: &mut HashMap<String, String>,
    ) -> Option<Metric> {
        let key = &context.key;
        let metric_type = *config.metric_type.get_ref();
        self.check_keys_allowed(key, metric_type, config);

        let name = match context.prefix {
            Some(prefix) => format!("{prefix}_{}", config.name.get_ref()),
            None => config.name.get_ref().clone(),
        };
        let (family_name, suffix, kind) = family_of(&name, metric_type);
        let name_key = format!("{key}.name");
        let name_ok = if !is_metric_name(&name) || family_name.is_empty() {
            // A bad prefix is reported once, on the prefix.
            if context.prefix_valid {
                let message = format!("{name:?} is not a valid metric name");
                self.error(&name_key, Some(&config.name), &message);
            }
            false
        } else {
            self.family_is_new(&name_key, &config.name, family_name, kind, names_in_entry)
        };

        let each = config
            .each
            .as_ref()
            .and_then(|each| self.path(&format!("{key}.each"), each));
        let state_label = (metric_type == MetricType::StateSet)
            .then(|| self.state_label(key, config, family_name));
        let scope = scope_of(config);
        let mut taken: Vec<&str> = context.resource_labels.to_vec();
        taken.extend(state_label.as_deref());
        let labels = self.labels(&format!("{key}.labels"), &config.labels, &taken, scope);
        taken.extend(labels.iter().map(|l| l.name.as_str()));
        let each_key = config.each_key.as_ref().map(|name| {
            let label_key = format!("{key}.each_key");
            self.check_label_name(&label_key, name, &taken);
            if !each.as_ref().is_some_and(Path::ends_in_wildcard) {
                let message = "needs an `each` ending in `[*]`, whose map keys it holds";
                self.error(&label_key, Some(name), message);
            }
            name.get_ref().clone()
        });
        taken.extend(each_key.as_deref());
        let labels_from = config
            .labels_from
            .as_ref()
            .and_then(|from| self.labels_from(&format!("{key}.labels_from"), from, &taken));
        let value = self.value_spec(key, metric_type, config, state_label);
        let filter = config
            .filter
            .as_ref()
            .and_then(|filter| self.expr(&format!("{key}.where"), filter, scope));

        let help = config
            .help
            .clone()
            .unwrap_or_else(|| default_help(context, metric_type, config));
        let unit = config
            .unit
            .as_ref()
            .map(|u| u.get_ref().clone())
            .unwrap_or_default();
        let family = FamilyDef {
            name: family_name.to_owned(),
            help,
            unit,
            kind,
        };
        // When anything is wrong, compile() returns the errors and drops what was built.
        if !name_ok {
            return None;
        }
        Some(Metric {
            name,
            family,
            suffix,
            each,
            each_key,
            labels,
            labels_from,
            filter,
            value: value?,
        })
    }

    /// The label carrying a stateset's states: `label`, or the family name.
    fn state_label(&mut self, key: &str, config: &MetricConfig, family_name: &str) -> String {
        let (label_key, span, label) = match &config.label {
            Some(label) => (format!("{key}.label"), label, label.get_ref().as_str()),
            None => (format!("{key}.name"), &config.name, family_name),
        };
        if !is_user_label_name(label) {
            let message = format!("{label:?} is not a valid label name for the states");
            self.error(&label_key, Some(span), &message);
        }
        label.to_owned()
    }

    /// Reports every key the metric's type does not allow, and the keys it needs but lacks.
    fn check_keys_allowed(&mut self, key: &str, metric_type: MetricType, config: &MetricConfig) {
        let type_name = metric_type.as_str();
        let numeric = matches!(metric_type, MetricType::Gauge | MetricType::Counter);
        let present = [
            (
                "path",
                config.path.as_ref().map(Spanned::span),
                metric_type != MetricType::Info,
            ),
            (
                "expr",
                config.expr.as_ref().map(Spanned::span),
                metric_type != MetricType::Info,
            ),
            ("unit", config.unit.as_ref().map(Spanned::span), numeric),
            (
                "convert",
                config.convert.as_ref().map(Spanned::span),
                numeric,
            ),
            (
                "value_map",
                config.value_map.as_ref().map(Spanned::span),
                numeric,
            ),
            (
                "default",
                config.default.as_ref().map(Spanned::span),
                numeric,
            ),
            (
                "states",
                config.states.as_ref().map(Spanned::span),
                metric_type == MetricType::StateSet,
            ),
            (
                "label",
                config.label.as_ref().map(Spanned::span),
                metric_type == MetricType::StateSet,
            ),
        ];
        for (field, span, allowed) in present {
            if let (Some(span), false) = (span, allowed) {
                self.push(
                    format!("{key}.{field}"),
                    Some(span),
                    format!("`{field}` is not allowed for a {type_name} metric"),
                );
            }
        }
        let type_span = Some(config.metric_type.span());
        match (&config.path, &config.expr) {
            (None, None) if metric_type != MetricType::Info => self.push(
                format!("{key}.path"),
                type_span.clone(),
                format!("a {type_name} metric needs a `path` or an `expr`"),
            ),
            (Some(_), Some(expr)) if metric_type != MetricType::Info => self.push(
                format!("{key}.expr"),
                Some(expr.span()),
                "give either `path` or `expr`, not both".to_owned(),
            ),
            _ => {}
        }
        if metric_type == MetricType::StateSet && config.states.is_none() {
            self.push(
                format!("{key}.states"),
                type_span,
                "a stateset metric needs `states`".to_owned(),
            );
        }
        if let Some(unit) = &config.unit {
            self.check_unit(&format!("{key}.unit"), unit);
        }
    }

    fn check_unit(&mut self, key: &str, unit: &Spanned<String>) {
        let valid = unit
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let message = format!(
                "{:?} is not a valid unit (letters, digits, `_`)",
                unit.get_ref()
            );
            self.error(key, Some(unit), &message);
        }
    }

    fn value_spec(
        &mut self,
        key: &str,
        metric_type: MetricType,
        config: &MetricConfig,
        state_label: Option<String>,
    ) -> Option<ValueSpec> {
        let scope = scope_of(config);
        let source = match (&config.path, &config.expr) {
            (Some(path), None) => self.path(&format!("{key}.path"), path).map(Reader::Path),
            (None, Some(expr)) => self
                .expr(&format!("{key}.expr"), expr, scope)
                .map(|expr| Reader::Expr(Arc::new(expr))),
            // Both or neither: reported by check_keys_allowed.
            _ => None,
        };
        match metric_type {
            MetricType::Info => Some(ValueSpec::Info),
            MetricType::Gauge | MetricType::Counter => Some(ValueSpec::Number(number_spec(
                source?,
                config.convert.as_ref(),
                config.value_map.as_ref(),
                config.default.as_ref(),
            ))),
            MetricType::StateSet => {
                let states = config.states.as_ref()?;
                self.check_states(&format!("{key}.states"), states);
                Some(ValueSpec::StateSet {
                    source: source?,
                    states: states.get_ref().clone(),
                    label: state_label?,
                })
            }
        }
    }

    fn check_states(&mut self, key: &str, states: &Spanned<Vec<String>>) {
        if states.get_ref().is_empty() {
            self.error(key, Some(states), "a stateset needs at least one state");
        }
        let mut seen = HashSet::new();
        for state in states.get_ref() {
            if !seen.insert(state) {
                self.error(
                    key,
                    Some(states),
                    &format!("state {state:?} is listed twice"),
                );
            }
        }
    }

    /// Records the family, or reports it defined twice: in the same entry at all, or in another
    /// entry with another type.
    fn family_is_new(
        &mut self,
        key: &str,
        span: &Spanned<String>,
        family: &str,
        kind: FamilyKind,
        names_in_entry: &mut HashMap<String, String>,
    ) -> bool {
        if let Some(first) = names_in_entry.get(family) {
            let message = format!("metric family `{family}` is already defined by {first}");
            self.error(key, Some(span), &message);
            return false;
        }
        names_in_entry.insert(family.to_owned(), key.to_owned());
        self.family_is_free(key, span, family, kind, false)
    }

    /// Records the family, or reports it defined before with another type, or defined before
    /// at all when it or the first definition is an aggregate or derived family (`tracked`).
    fn family_is_free(
        &mut self,
        key: &str,
        span: &Spanned<String>,
        family: &str,
        kind: FamilyKind,
        tracked: bool,
    ) -> bool {
        match self.families.entry(family.to_owned()) {
            Entry::Occupied(first) => {
                let first = first.get();
                let message = if tracked || first.tracked {
                    format!(
                        "metric family `{family}` is already defined by {}; an aggregate or derived family must have a name of its own",
                        first.key
                    )
                } else if first.kind != kind {
                    format!(
                        "metric family `{family}` is a {} in {} but a {} here",
                        first.kind.as_str(),
                        first.key,
                        kind.as_str()
                    )
                } else {
                    return true;
                };
                self.error(key, Some(span), &message);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(Defined {
                    kind,
                    key: key.to_owned(),
                    tracked,
                });
                true
            }
        }
    }

    /// Compiles a `labels` (or `by`) table of paths or expressions; `taken` are label names
    /// already used on the same samples.
    fn labels(
        &mut self,
        key: &str,
        labels: &BTreeMap<Spanned<String>, LabelConfig>,
        taken: &[&str],
        scope: Scope,
    ) -> Vec<LabelSpec> {
        labels
            .iter()
            .filter_map(|(name, value)| {
                let label_key = format!("{key}.{}", name.get_ref());
                self.check_label_name(&label_key, name, taken);
                Some(LabelSpec {
                    name: name.get_ref().clone(),
                    source: self.reader(&label_key, value, scope)?,
                })
            })
            .collect()
    }

    /// Compiles a value written as a path or as an expression.
    fn reader(&mut self, key: &str, value: &LabelConfig, scope: Scope) -> Option<Reader> {
        match value {
            LabelConfig::Path(path) => self.path(key, path).map(Reader::Path),
            LabelConfig::Expr(expr) => self
                .expr(key, expr, scope)
                .map(|expr| Reader::Expr(Arc::new(expr))),
        }
    }

    fn check_label_name(&mut self, label_key: &str, name: &Spanned<String>, taken: &[&str]) {
        if !is_user_label_name(name.get_ref()) {
            let message = format!("{:?} is not a valid label name", name.get_ref());
            self.error(label_key, Some(name), &message);
        } else if taken.contains(&name.get_ref().as_str()) {
            let message = format!(
                "label `{}` is already set on these samples (by the entry's labels or by the metric's type)",
                name.get_ref()
            );
            self.error(label_key, Some(name), &message);
        }
    }

    /// Compiles a `labels_from` table; `taken` are the label names the samples already carry.
    fn labels_from(
        &mut self,
        key: &str,
        config: &Spanned<LabelsFromConfig>,
        taken: &[&str],
    ) -> Option<LabelsFrom> {
        let config = config.get_ref();
        let path = self.path(&format!("{key}.path"), &config.path);
        let merge: Vec<Option<Path>> = config
            .merge
            .iter()
            .flatten()
            .enumerate()
            .map(|(n, text)| self.path(&format!("{key}.merge[{n}]"), text))
            .collect();
        let prefix = match &config.prefix {
            Some(prefix) => {
                let text = prefix.get_ref();
                let starts_with_letter = text.starts_with(|c: char| c.is_ascii_alphabetic());
                if !text.is_empty() && (!starts_with_letter || !is_user_label_name(text)) {
                    let message = format!(
                        "{text:?} is not a valid prefix: it must be empty or start with a letter and hold only letters, digits and `_`"
                    );
                    self.error(&format!("{key}.prefix"), Some(prefix), &message);
                }
                text.clone()
            }
            None => labels_from::DEFAULT_PREFIX.to_owned(),
        };
        let allow = match &config.allow {
            Some(patterns) => {
                let mut valid = true;
                for (n, pattern) in patterns.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(&labels_from::anchored(pattern.get_ref())) {
                        valid = false;
                        let message = format!("not a valid regular expression: {e}");
                        self.error(&format!("{key}.allow[{n}]"), Some(pattern), &message);
                    }
                }
                let anchored = patterns.iter().map(|p| labels_from::anchored(p.get_ref()));
                // Every pattern compiled alone above; the set only fails when one did not.
                Some(valid.then(|| RegexSet::new(anchored).ok()).flatten()?)
            }
            None => None,
        };
        let mut paths = vec![path?];
        for path in merge {
            paths.push(path?);
        }
        Some(LabelsFrom {
            paths,
            prefix,
            names: config
                .names
                .as_ref()
                .map(|n| *n.get_ref())
                .unwrap_or_default(),
            allow,
            taken: taken.iter().map(|t| (*t).to_owned()).collect(),
        })
    }

    fn path(&mut self, key: &str, text: &Spanned<String>) -> Option<Path> {
        let parsed = Path::parse(text.get_ref());
        let path = self.check(key, text, parsed)?;
        if let Some((name, _)) = path.join()
            && !self.entry_joins.iter().any(|join| join == name)
        {
            let message = self.unknown_join(name);
            self.error(key, Some(text), &message);
            return None;
        }
        Some(path)
    }

    /// Compiles a CEL expression; an error points inside the quoted text when it can.
    fn expr(&mut self, key: &str, text: &Spanned<String>, scope: Scope) -> Option<Expr> {
        let expr = Expr::compile(text.get_ref(), scope)
            .map_err(|e| {
                let span = crate::expr::error_span(text.span(), text.get_ref(), e.offset);
                self.push(key.to_owned(), Some(span), e.message);
            })
            .ok()?;
        for (fields, _) in expr.field_reads(crate::expr::JOINS) {
            let known = match fields.first() {
                Some(name) => self.entry_joins.contains(name),
                None => !self.entry_joins.is_empty(),
            };
            if !known {
                let message = match fields.first() {
                    Some(name) => self.unknown_join(name),
                    None => "`joins` is empty: the entry has no `[[resources.joins]]`".to_owned(),
                };
                self.error(key, Some(text), &message);
                return None;
            }
        }
        Some(expr)
    }

    /// What to say of a join name the entry does not declare.
    fn unknown_join(&self, name: &str) -> String {
        if self.entry_joins.is_empty() {
            format!("no join named `{name}`: the entry has no `[[resources.joins]]`")
        } else {
            format!(
                "no join named `{name}` in this entry (its joins: {})",
                self.entry_joins.join(", ")
            )
        }
    }

    fn check<T, E: std::fmt::Display>(
        &mut self,
        key: &str,
        spanned: &Spanned<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        result
            .map_err(|e| self.error(key, Some(spanned), &e.to_string()))
            .ok()
    }

    fn error<T>(&mut self, key: &str, spanned: Option<&Spanned<T>>, message: &str) {
        self.push(
            key.to_owned(),
            spanned.map(Spanned::span),
            message.to_owned(),
        );
    }

    fn push(&mut self, key: String, span: Option<std::ops::Range<usize>>, message: String) {
        self.errors.push(CompileError { key, span, message });
    }
}

/// The names a metric's expressions may use: `item` too inside an `each`.
fn scope_of(config: &MetricConfig) -> Scope {
    if config.each.is_some() {
        Scope::Item
    } else {
        Scope::Object
    }
}

/// How a number is read, from the keys shared by metrics and sums.
fn number_spec(
    source: Reader,
    convert: Option<&Spanned<crate::value::Convert>>,
    value_map: Option<&Spanned<BTreeMap<String, f64>>>,
    default: Option<&Spanned<f64>>,
) -> NumberSpec {
    NumberSpec {
        source,
        convert: convert.map(|c| *c.get_ref()).unwrap_or_default(),
        value_map: value_map
            .map(|m| m.get_ref().clone().into_iter().collect())
            .unwrap_or_default(),
        default: default.map(|d| *d.get_ref()),
    }
}

/// What a metric needs to know about its entry.
struct MetricContext<'c> {
    key: String,
    prefix: Option<&'c str>,
    /// False when the entry has a prefix and it is invalid (reported already).
    prefix_valid: bool,
    api_version: &'c str,
    kind: &'c str,
    resource_labels: &'c [&'c str],
}

/// The family name, sample suffix and family type of a metric named `name` (prefix included).
fn family_of(name: &str, metric_type: MetricType) -> (&str, Suffix, FamilyKind) {
    match metric_type {
        MetricType::Gauge => (name, Suffix::None, FamilyKind::Gauge),
        MetricType::Counter => (
            name.strip_suffix("_total").unwrap_or(name),
            Suffix::Total,
            FamilyKind::Counter,
        ),
        MetricType::Info => (
            name.strip_suffix("_info").unwrap_or(name),
            Suffix::Info,
            FamilyKind::Info,
        ),
        MetricType::StateSet => (name, Suffix::None, FamilyKind::StateSet),
    }
}

fn default_help(
    context: &MetricContext<'_>,
    metric_type: MetricType,
    config: &MetricConfig,
) -> String {
    let object = if context.api_version.is_empty() {
        context.kind.to_owned()
    } else {
        format!("{} ({})", context.kind, context.api_version)
    };
    let path = config.path.as_ref().map_or("", |p| p.get_ref().as_str());
    let each = config
        .each
        .as_ref()
        .map(|e| format!(" of each `{}`", e.get_ref()))
        .unwrap_or_default();
    match metric_type {
        MetricType::Gauge | MetricType::Counter => format!("Field `{path}`{each} of {object}."),
        MetricType::Info => format!("Information about {object}{each}."),
        MetricType::StateSet => format!("State in field `{path}`{each} of {object}."),
    }
}
