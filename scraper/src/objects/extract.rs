//! Reading the samples of one object: which entries select it, and what each metric writes.

use periscope_plugin_api::batch::{Family, FamilyId, ReplaceWriter};
use serde_json::Value;

use super::reader::Reached;
use super::{
    LabelCollisions, LabelSpec, Metric, NumberSpec, ObjectKey, Problems, ReadError, Resource,
    ValueSpec,
};
use crate::expr::{Expr, ExprError, Input};
use crate::path::Path;
use crate::value::{self, Convert, ValueError};

/// Why a value of an object did not become a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// A value path reached more than one value.
    #[error(
        "reached {0} values; a value path must reach at most one (use `each` for one sample per item)"
    )]
    TooMany(usize),
    /// A state set's value that is none of its states.
    #[error("{value} is not one of the states {states:?}")]
    NotAState {
        /// The value, as JSON.
        value: String,
        /// The states the set knows.
        states: Vec<String>,
    },
    /// A value that is not a number of the expected kind.
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl Resource {
    /// Whether the entry is about objects of this apiVersion and kind.
    pub(super) fn is_kind_of(&self, key: &ObjectKey) -> bool {
        self.api_version == key.api_version() && self.kind == key.kind()
    }

    /// Whether the entry selects the object: kind, namespaces, label and field selectors.
    pub(super) fn selects(&self, key: &ObjectKey, object: &Value) -> bool {
        self.is_kind_of(key)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == key.namespace()))
            && self.label_selector.matches(
                object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object),
            )
            && self.field_selector.matches(object)
    }

    /// Writes the samples of every metric of the entry for `object`.
    pub(super) fn write(
        &self,
        object: &Value,
        now_ms: i64,
        writer: &mut ReplaceWriter<'_>,
        problems: &mut Problems,
    ) {
        // Converted for expressions at the first one, once for all of them.
        let input = Input::new(object);
        if let Some(filter) = &self.filter {
            match filter.keeps(&input, None) {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    self.expr_problem(problems, "where", filter, &error);
                    return;
                }
            }
        }
        let common = match label_values(&self.labels, &input, None) {
            Ok(common) => common,
            Err((expr, error)) => {
                self.expr_problem(problems, "labels", expr, &error);
                return;
            }
        };
        for metric in &self.metrics {
            let family = writer.family(Family {
                name: &metric.family.name,
                help: &metric.family.help,
                unit: &metric.family.unit,
                kind: metric.family.kind,
            });
            let mut out = Out {
                resource: self,
                writer: &mut *writer,
                input: &input,
                object,
                family,
                metric,
                common: &common,
                now_ms,
                problems: &mut *problems,
            };
            match &metric.each {
                Some(each) => each.visit_keyed(object, &mut |key, item| out.item(key, item)),
                None => out.item(None, object),
            }
        }
    }
}

impl Resource {
    /// Reports an expression of the entry or of one of its metrics (`metric`) that failed.
    fn expr_problem(&self, problems: &mut Problems, metric: &str, expr: &Expr, error: &ExprError) {
        problems.expression(&self.name, metric, expr, error);
    }
}

/// Label names and values read from `item` of the input's object (`None` outside an `each`);
/// the expression that failed, if one did.
pub(super) fn label_values<'s, 'j>(
    specs: &'s [LabelSpec],
    input: &Input<'j>,
    item: Option<&'j Value>,
) -> Result<Vec<(&'s str, String)>, (&'s Expr, ExprError)> {
    specs
        .iter()
        .map(|spec| {
            let text = spec
                .source
                .text(input, item)
                .map_err(|failed| (failed.expr, failed.error))?;
            Ok((spec.name.as_str(), text))
        })
        .collect()
}

/// Every value the path reaches from `item` of `object`, as label text joined with `,`; empty
/// when it reaches nothing.
pub(crate) fn label_value(path: &Path, object: &Value, item: &Value) -> String {
    let mut text = String::new();
    let mut first = true;
    path.visit_in(object, item, &mut |value| {
        if !first {
            text.push(',');
        }
        first = false;
        value::write_label(value, &mut text);
    });
    text
}

/// Writes the samples of one metric, for the object or for one item of its `each`.
struct Out<'w, 'b, 'm, 'j> {
    resource: &'m Resource,
    writer: &'w mut ReplaceWriter<'b>,
    input: &'w Input<'j>,
    object: &'j Value,
    family: FamilyId,
    metric: &'m Metric,
    common: &'w [(&'m str, String)],
    now_ms: i64,
    problems: &'w mut Problems,
}

impl<'j> Out<'_, '_, '_, 'j> {
    /// Writes the samples for `item`; `key` is its map key, for the metric's `each_key`.
    fn item(&mut self, key: Option<&str>, item: &'j Value) {
        if let Some(filter) = &self.metric.filter {
            let within = self.metric.each.is_some().then_some(item);
            match filter.keeps(self.input, within) {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    self.expr_problem(filter, &error);
                    return;
                }
            }
        }
        let within = self.metric.each.is_some().then_some(item);
        let own = match label_values(&self.metric.labels, self.input, within) {
            Ok(own) => own,
            Err((expr, error)) => {
                self.expr_problem(expr, &error);
                return;
            }
        };
        let from = match &self.metric.labels_from {
            Some(from) => match from.read(self.object, item) {
                Ok(read) => {
                    if read.collisions > 0 {
                        self.problems.collisions.push(LabelCollisions {
                            resource: self.resource.name.clone(),
                            metric: self.metric.name.clone(),
                            count: read.collisions,
                        });
                    }
                    read.labels
                }
                Err((path, error)) => {
                    self.problems.push(&self.metric.name, path, &error);
                    return;
                }
            },
            None => Vec::new(),
        };
        let labels = || {
            self.common
                .iter()
                .chain(&own)
                .map(|(name, value)| (*name, value.as_str()))
                .chain(
                    self.metric
                        .each_key
                        .as_deref()
                        .map(|name| (name, key.unwrap_or_default())),
                )
                .chain(
                    from.iter()
                        .map(|(name, value)| (name.as_str(), value.as_str())),
                )
        };
        match &self.metric.value {
            ValueSpec::Info => {
                self.writer
                    .sample(self.family, self.metric.suffix, 1.0, self.now_ms)
                    .labels(labels());
            }
            ValueSpec::Number(spec) => match spec.read(self.input, within) {
                Ok(Some(number)) => {
                    self.writer
                        .sample(self.family, self.metric.suffix, number, self.now_ms)
                        .labels(labels());
                }
                Ok(None) => {}
                Err(error) => {
                    let resource = &self.resource.name;
                    (self.problems).read(resource, &self.metric.name, &spec.source, &error);
                }
            },
            ValueSpec::StateSet {
                source,
                states,
                label,
            } => {
                let current = match source.reach(self.input, within) {
                    Ok(Reached::None) => None,
                    Ok(Reached::One(value)) => {
                        let text = value::label_text(&value);
                        if !states.contains(&text) {
                            let error = ExtractError::NotAState {
                                value: value.to_string(),
                                states: states.clone(),
                            };
                            self.problems.push(&self.metric.name, source, &error);
                        }
                        Some(text)
                    }
                    Ok(Reached::Many(count)) => {
                        let error = ExtractError::TooMany(count);
                        self.problems.push(&self.metric.name, source, &error);
                        return;
                    }
                    Err(failed) => {
                        self.expr_problem(failed.expr, &failed.error);
                        return;
                    }
                };
                for state in states {
                    let value = if current.as_ref() == Some(state) {
                        1.0
                    } else {
                        0.0
                    };
                    self.writer
                        .sample(self.family, self.metric.suffix, value, self.now_ms)
                        .labels(labels())
                        .label(label, state);
                }
            }
        }
    }

    fn expr_problem(&mut self, expr: &Expr, error: &ExprError) {
        self.resource
            .expr_problem(self.problems, &self.metric.name, expr, error);
    }
}

impl NumberSpec {
    /// The number read from `item` of the input's object (`None` outside an `each`): the
    /// default (or `None`) when nothing is reached; an error saying why when the value is not a
    /// number, not one value, or the expression failed.
    pub(super) fn read<'j>(
        &self,
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Result<Option<f64>, ReadError<'_>> {
        match self.source.reach(input, item).map_err(ReadError::Expr)? {
            Reached::None => Ok(self.default),
            Reached::One(value) => mapped(&value, &self.value_map, self.convert)
                .map(Some)
                .map_err(|e| ReadError::Extract(e.into())),
            Reached::Many(count) => Err(ReadError::Extract(ExtractError::TooMany(count))),
        }
    }
}

/// What a value path reached.
pub(super) enum Single<'a> {
    None,
    One(&'a Value),
    Many(usize),
}

/// The value a path reaches from `item` of `object`, if it reaches exactly one.
pub(super) fn single<'a>(path: &Path, object: &'a Value, item: &'a Value) -> Single<'a> {
    let mut first = None;
    let mut count = 0;
    path.visit_in(object, item, &mut |value| {
        count += 1;
        first.get_or_insert(value);
    });
    match (first, count) {
        (Some(value), 1) => Single::One(value),
        (Some(_), _) => Single::Many(count),
        (None, _) => Single::None,
    }
}

/// The number for `value`: from the value map when it has the value's text, converted otherwise.
pub(super) fn mapped(
    value: &Value,
    value_map: &std::collections::HashMap<String, f64>,
    convert: Convert,
) -> Result<f64, ValueError> {
    if !value_map.is_empty() {
        let found = match value {
            Value::String(s) => value_map.get(s),
            other => value_map.get(&value::label_text(other)),
        };
        if let Some(number) = found {
            return Ok(*number);
        }
    }
    value::to_number(value, convert)
}
