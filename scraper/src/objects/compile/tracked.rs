//! Checking and compiling `[[resources.aggregates]]` and `[[resources.derived]]`: which keys each
//! type allows and needs, valid names of their own, label names that do not clash with the ones
//! the type adds, ascending buckets.

use std::ops::Range;

use periscope_plugin_api::batch::FamilyKind;
use periscope_plugin_api::names::is_metric_name;
use toml::Spanned;

use super::{Compiler, number_spec};
use crate::config::{
    AggregateConfig, AggregateFilter, AggregateType, DerivedConfig, DerivedType, FilterConfig,
    LabelConfig, ResourceConfig,
};
use crate::expr::Scope;
use crate::objects::age::Age;
use crate::objects::aggregate::{Aggregate, Filter};
use crate::objects::durations::Durations;
use crate::objects::tracked::{Tracked, TrackedKind};
use crate::objects::transitions::Transitions;
use crate::objects::{FamilyDef, LabelSpec};

/// How often ages are computed again when `refresh` is not given.
const DEFAULT_REFRESH_MS: i64 = 15_000;

/// What aggregates and derived metrics need to know about their entry.
pub(super) struct Context<'c> {
    /// The entry's key, `resources[i]`.
    pub(super) key: &'c str,
    pub(super) prefix: Option<&'c str>,
    /// False when the entry has a prefix and it is invalid (reported already).
    pub(super) prefix_valid: bool,
    pub(super) api_version: &'c str,
    pub(super) kind: &'c str,
    /// The entry's labels, which ages carry.
    pub(super) labels: &'c [LabelSpec],
}

impl Context<'_> {
    fn object(&self) -> String {
        format!("{} ({})", self.kind, self.api_version)
    }
}

/// A key of a table: its name, its span when present, and whether the type allows it.
type Key<'k> = (&'k str, Option<Range<usize>>, bool);

impl Compiler {
    /// Compiles the aggregates and derived metrics of an entry.
    pub(super) fn tracked(
        &mut self,
        context: &Context<'_>,
        config: &ResourceConfig,
    ) -> Vec<Tracked> {
        let mut tracked = Vec::new();
        for (j, aggregate) in config.aggregates.iter().enumerate() {
            let key = format!("{}.aggregates[{j}]", context.key);
            tracked.extend(self.aggregate(context, &key, aggregate));
        }
        for (j, derived) in config.derived.iter().enumerate() {
            let key = format!("{}.derived[{j}]", context.key);
            tracked.extend(self.derived(context, &key, derived));
        }
        tracked
    }

    fn aggregate(
        &mut self,
        context: &Context<'_>,
        key: &str,
        config: &AggregateConfig,
    ) -> Option<Tracked> {
        let aggregate_type = *config.aggregate_type.get_ref();
        let sum = aggregate_type == AggregateType::Sum;
        let type_name = format!("{} aggregate", aggregate_type.as_str());
        self.keys_allowed(
            key,
            &type_name,
            [
                ("path", config.path.as_ref().map(value_span), sum),
                ("unit", config.unit.as_ref().map(Spanned::span), sum),
                ("convert", config.convert.as_ref().map(Spanned::span), sum),
                (
                    "value_map",
                    config.value_map.as_ref().map(Spanned::span),
                    sum,
                ),
                ("default", config.default.as_ref().map(Spanned::span), sum),
            ],
        );
        if sum && config.path.is_none() {
            let span = Some(config.aggregate_type.span());
            let message = format!("a {type_name} needs a `path`");
            self.push(format!("{key}.path"), span, message);
        }
        if let Some(unit) = &config.unit {
            self.check_unit(&format!("{key}.unit"), unit);
        }
        let family = self.tracked_family(context, key, &config.name, None, FamilyKind::Gauge);
        let by = self.labels(&format!("{key}.by"), &config.by, &[], Scope::Object);
        let filter = config
            .filter
            .as_ref()
            .map(|filter| self.filter(&format!("{key}.where"), filter));
        let path = config
            .path
            .as_ref()
            .map(|path| self.reader(&format!("{key}.path"), path, Scope::Object));

        let family = family?;
        let sum = match (sum, path) {
            (false, _) => None,
            (true, Some(path)) => Some(number_spec(
                path?,
                config.convert.as_ref(),
                config.value_map.as_ref(),
                config.default.as_ref(),
            )),
            (true, None) => return None,
        };
        let filter = match filter {
            Some(filter) => Some(filter?),
            None => None,
        };
        let help = config.help.clone().unwrap_or_else(|| {
            let what = match &config.path {
                Some(path) if sum.is_some() => format!("Sum of field `{}`", path.text()),
                _ => "Number".to_owned(),
            };
            format!("{what} of {}{}.", context.object(), by_text(&by))
        });
        let unit = config.unit.as_ref().map(|u| u.get_ref().clone());
        let kind = TrackedKind::Aggregate(Aggregate { by, filter, sum });
        Some(self.tracked_def(
            family,
            help,
            unit.unwrap_or_default(),
            FamilyKind::Gauge,
            kind,
        ))
    }

    fn filter(&mut self, key: &str, config: &AggregateFilter) -> Option<Filter> {
        let config = match config {
            AggregateFilter::Values(values) => values,
            AggregateFilter::Expr(expr) => {
                return self.expr(key, expr, Scope::Object).map(Filter::Expr);
            }
        };
        let filter: &FilterConfig = config.get_ref();
        let path = self.path(&format!("{key}.path"), &filter.path);
        let (values, keep_listed, field) = match (&filter.any_of, &filter.not_in) {
            (Some(values), None) => (values, true, "in"),
            (None, Some(values)) => (values, false, "not_in"),
            _ => {
                let message = "`where` needs exactly one of `in` and `not_in`";
                self.error(key, Some(config), message);
                return None;
            }
        };
        if keep_listed && values.get_ref().is_empty() {
            let message = "`in` lists no value, so nothing would count";
            self.error(&format!("{key}.{field}"), Some(values), message);
        }
        Some(Filter::Values {
            path: path?,
            values: values.get_ref().iter().cloned().collect(),
            keep_listed,
        })
    }

    fn derived(
        &mut self,
        context: &Context<'_>,
        key: &str,
        config: &DerivedConfig,
    ) -> Option<Tracked> {
        let derived_type = *config.derived_type.get_ref();
        let type_name = derived_type.as_str();
        let transitions = derived_type == DerivedType::Transitions;
        let histogram = derived_type == DerivedType::DurationHistogram;
        let age = derived_type == DerivedType::Age;
        let span = |value: &Option<LabelConfig>| value.as_ref().map(value_span);
        self.keys_allowed(
            key,
            type_name,
            [
                ("path", span(&config.path), transitions || age),
                ("each", config.each.as_ref().map(Spanned::span), histogram),
                ("start", span(&config.start), histogram),
                ("end", span(&config.end), histogram),
                (
                    "buckets",
                    config.buckets.as_ref().map(Spanned::span),
                    histogram,
                ),
                ("refresh", config.refresh.as_ref().map(Spanned::span), age),
            ],
        );
        let type_span = config.derived_type.span();
        let needed = [
            ("path", config.path.is_some() || histogram),
            ("start", config.start.is_some() || !histogram),
            ("end", config.end.is_some() || !histogram),
            ("buckets", config.buckets.is_some() || !histogram),
        ];
        for (field, present) in needed {
            if !present {
                let message = format!("a {type_name} metric needs `{field}`");
                self.push(format!("{key}.{field}"), Some(type_span.clone()), message);
            }
        }

        let (strip, kind) = match derived_type {
            DerivedType::Transitions => (Some("_total"), FamilyKind::Counter),
            DerivedType::DurationHistogram => (None, FamilyKind::Histogram),
            DerivedType::Age => (None, FamilyKind::Gauge),
        };
        let family = self.tracked_family(context, key, &config.name, strip, kind);
        let resource_labels: Vec<&str> = context.labels.iter().map(|l| l.name.as_str()).collect();
        let taken: &[&str] = match derived_type {
            DerivedType::Transitions => &["from", "to"],
            DerivedType::DurationHistogram => &["le"],
            DerivedType::Age => &resource_labels,
        };
        // Inside a histogram's `each`, `start`, `end` and `by` read each item.
        let scope = if histogram && config.each.is_some() {
            Scope::Item
        } else {
            Scope::Object
        };
        let by = self.labels(&format!("{key}.by"), &config.by, taken, scope);
        let each = config
            .each
            .as_ref()
            .and_then(|each| self.path(&format!("{key}.each"), each));
        let mut reader = |field: &str, value: &Option<LabelConfig>| {
            value
                .as_ref()
                .and_then(|v| self.reader(&format!("{key}.{field}"), v, scope))
        };
        let (path_, start, end) = (
            reader("path", &config.path),
            reader("start", &config.start),
            reader("end", &config.end),
        );
        let buckets = config
            .buckets
            .as_ref()
            .filter(|_| histogram)
            .map(|buckets| self.buckets(&format!("{key}.buckets"), buckets));
        let refresh_ms = self.refresh(key, config);

        let family = family?;
        let object = context.object();
        let (tracked, help, unit) = match derived_type {
            DerivedType::Transitions => {
                let help = format!(
                    "Changes of field `{}` of {object}, from one value to another{}.",
                    text(&config.path),
                    by_text(&by)
                );
                let kind = TrackedKind::Transitions(Transitions { source: path_?, by });
                (kind, help, "")
            }
            DerivedType::DurationHistogram => {
                let each_text = config
                    .each
                    .as_ref()
                    .map(|e| format!(" of each `{}`", e.get_ref()))
                    .unwrap_or_default();
                let help = format!(
                    "Seconds from `{}` to `{}`{each_text} of {object}{}.",
                    text(&config.start),
                    text(&config.end),
                    by_text(&by)
                );
                let kind = TrackedKind::Durations(Durations {
                    each: match &config.each {
                        Some(_) => Some(each?),
                        None => None,
                    },
                    start: start?,
                    end: end?,
                    by,
                    buckets: buckets??,
                });
                (kind, help, "seconds")
            }
            DerivedType::Age => {
                let help = format!(
                    "Seconds since the time in field `{}` of {object}.",
                    text(&config.path)
                );
                let mut labels = context.labels.to_vec();
                labels.extend(by);
                let kind = TrackedKind::Age(Age {
                    source: path_?,
                    labels,
                    refresh_ms: refresh_ms?,
                });
                (kind, help, "seconds")
            }
        };
        let help = config.help.clone().unwrap_or(help);
        Some(self.tracked_def(family, help, unit.to_owned(), kind, tracked))
    }

    /// Bucket bounds: at least one, finite, strictly ascending.
    fn buckets(&mut self, key: &str, buckets: &Spanned<Vec<f64>>) -> Option<Vec<f64>> {
        let bounds = buckets.get_ref();
        let problem = if bounds.is_empty() {
            Some("a histogram needs at least one bucket".to_owned())
        } else if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
            Some(format!(
                "bucket {bad} is not a finite number (`+Inf` is always added)"
            ))
        } else {
            bounds
                .windows(2)
                .find(|pair| pair[0] >= pair[1])
                .map(|pair| {
                    format!(
                        "buckets must be strictly ascending, but {} comes after {}",
                        pair[1], pair[0]
                    )
                })
        };
        match problem {
            Some(message) => {
                self.error(key, Some(buckets), &message);
                None
            }
            None => Some(bounds.clone()),
        }
    }

    /// The refresh of an age in milliseconds: `refresh`, at least 1 ms, or 15 s.
    fn refresh(&mut self, key: &str, config: &DerivedConfig) -> Option<i64> {
        let Some(refresh) = &config.refresh else {
            return Some(DEFAULT_REFRESH_MS);
        };
        match i64::try_from(refresh.get_ref().0.as_millis()) {
            Ok(ms) if ms > 0 => Some(ms),
            _ => {
                let message = "`refresh` must be at least 1ms";
                self.error(&format!("{key}.refresh"), Some(refresh), message);
                None
            }
        }
    }

    /// The family name of an aggregate or derived metric (prefix joined, `strip` removed),
    /// checked and recorded as a family of its own.
    fn tracked_family(
        &mut self,
        context: &Context<'_>,
        key: &str,
        name: &Spanned<String>,
        strip: Option<&str>,
        kind: FamilyKind,
    ) -> Option<String> {
        let full = match context.prefix {
            Some(prefix) => format!("{prefix}_{}", name.get_ref()),
            None => name.get_ref().clone(),
        };
        let family = strip
            .and_then(|suffix| full.strip_suffix(suffix))
            .unwrap_or(&full);
        let name_key = format!("{key}.name");
        if !is_metric_name(&full) || family.is_empty() {
            // A bad prefix is reported once, on the prefix.
            if context.prefix_valid {
                let message = format!("{full:?} is not a valid metric name");
                self.error(&name_key, Some(name), &message);
            }
            return None;
        }
        self.family_is_free(&name_key, name, family, kind, true)
            .then(|| family.to_owned())
    }

    fn tracked_def(
        &mut self,
        family: String,
        help: String,
        unit: String,
        kind: FamilyKind,
        tracked: TrackedKind,
    ) -> Tracked {
        let slot = self.tracked;
        self.tracked += 1;
        Tracked {
            slot,
            source_id: format!("aggregate:{family}"),
            family: FamilyDef {
                name: family,
                help,
                unit,
                kind,
            },
            kind: tracked,
        }
    }

    /// Reports every key present that the type does not allow.
    fn keys_allowed<const N: usize>(&mut self, key: &str, type_name: &str, keys: [Key<'_>; N]) {
        for (field, span, allowed) in keys {
            if let (Some(span), false) = (span, allowed) {
                let message = format!("`{field}` is not allowed for a {type_name}");
                self.push(format!("{key}.{field}"), Some(span), message);
            }
        }
    }
}

/// The text of an optional path or expression, for help texts.
fn text(value: &Option<LabelConfig>) -> &str {
    value.as_ref().map_or("", LabelConfig::text)
}

/// The span of a value written as a path or an expression.
fn value_span(value: &LabelConfig) -> Range<usize> {
    match value {
        LabelConfig::Path(text) | LabelConfig::Expr(text) => text.span(),
    }
}

/// ` by a, b` for the help text, or nothing without labels.
fn by_text(by: &[LabelSpec]) -> String {
    if by.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = by.iter().map(|l| l.name.as_str()).collect();
    format!(" by {}", names.join(", "))
}
