//! From Kubernetes objects to source updates: the compiled form of the `[[resources]]` config.
//!
//! [`ObjectPipeline::compile`] checks the whole config at once (paths, names, selectors, which
//! keys each metric type allows, families defined twice with different types) and reports every
//! problem with its key and span. The compiled pipeline then turns any object, as JSON, into the
//! `Replace` of that object's source ([`ObjectPipeline::apply`]) or its `Remove`
//! ([`ObjectPipeline::remove`]). Every input (files, watchers) goes through the same pipeline, so an
//! object yields the same samples wherever it was read.
//!
//! Aggregates (`[[resources.aggregates]]`) and derived metrics (`[[resources.derived]]`) span many
//! objects or time, so they are not part of an object's update: applying or removing an object
//! only records what it contributes, and the host pulls the sources that changed with
//! [`ObjectPipeline::derived_updates`] (the module `tracked` tells how).

mod age;
mod aggregate;
pub(crate) mod compile;
mod durations;
mod extract;
pub mod joins;
pub mod keep;
mod key;
mod label_values;
mod labels_from;
mod limits;
mod reader;
mod series_cap;
mod shared;
mod stats;
mod tracked;
mod transitions;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

use periscope_plugin_api::batch::{FamilyKind, Source, Suffix};
use serde_json::Value;

use crate::config::ResourceConfig;
use crate::event::SourceUpdate;
use crate::expr::{Expr, ExprError};
use crate::path::Path;
use crate::selector::{FieldSelector, LabelSelector};
use crate::value::Convert;
pub(crate) use extract::label_value;
pub use key::ObjectKey;
pub use limits::Caps;
use reader::Reader;
pub use series_cap::SeriesCap;
pub(crate) use series_cap::keep_first;
pub use shared::{Change, Generation, PipelinePublisher, SharedPipeline};
pub use stats::{HeldObjects, HeldWatch, PipelineStats, StatsSnapshot};
use tracked::{Observation, Tracked, Tracker};

/// A problem in the `[[resources]]` config, found while compiling it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    /// The key at fault, such as `resources[0].metrics[2].path`.
    pub key: String,
    /// The byte span of the faulty value in the config text, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// What went wrong while an object's samples were read: messages naming the metric and the path
/// at fault, and the expressions that failed, apart: the host counts those by entry and metric
/// (`periscope_expression_errors_total`) and logs them at most once a minute per metric.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems {
    /// Every problem other than an expression's, as a message to log.
    pub messages: Vec<String>,
    /// The expressions that gave no value, by entry and metric, each with its message.
    pub expressions: Vec<ExpressionFailure>,
    /// The `labels_from` keys left out because their label name was taken, by entry and metric;
    /// [`ObjectPipeline::apply`] has counted them in its [`stats`](ObjectPipeline::stats)
    /// already (`periscope_label_collisions_total`).
    pub collisions: Vec<LabelCollisions>,
}

/// Keys of a `labels_from` map left out for one sample (or set of samples) because another key,
/// or a configured label, had their label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCollisions {
    /// The entry's kind, or the endpoint entry's key.
    pub resource: String,
    /// The metric's name, prefix included.
    pub metric: String,
    /// How many keys were left out.
    pub count: u64,
}

/// An expression that gave no value for an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionFailure {
    /// The entry's kind (`VirtualMachineInstance`), or the endpoint entry's key.
    pub resource: String,
    /// The metric's name, prefix included; `where` or `labels` for the entry's own.
    pub metric: String,
    /// Whether the cost bound refused it ([`crate::expr::ExprError::TooCostly`]) rather than it
    /// failing.
    pub too_costly: bool,
    /// What went wrong, naming the metric and the expression.
    pub message: String,
}

/// Whether `[[resources]]` may name Secrets (`[kubernetes] allow_secrets`). Even when they may,
/// no path may read their `data` or `stringData`, and the watcher drops both before an object
/// reaches the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Secrets {
    /// A `[[resources]]` entry of kind `Secret` is a config error (the default).
    #[default]
    Refused,
    /// Secrets may be watched, their metadata and `type` read.
    Allowed,
}

/// The compiled `[[resources]]` config: turns objects into source updates.
///
/// It is shared by every input (`apply` and `remove` take `&self`): the state of aggregates and
/// derived metrics sits behind a mutex, locked once per object.
#[derive(Debug)]
pub struct ObjectPipeline {
    resources: Vec<Resource>,
    /// The joined objects and who depends on them; `None` without `[[resources.joins]]`.
    joins: Option<joins::Joins>,
    tracker: Mutex<Tracker>,
    stats: std::sync::Arc<PipelineStats>,
    /// Closed by the host above its memory limit: watches take in no object they do not know.
    admission: crate::admission::Admission,
    /// What of its objects the pipeline reads, by `(apiVersion, kind)`: what its entries and the
    /// joins of it read ([`keep`]).
    reads: Vec<((String, String), keep::Keep)>,
}

impl ObjectPipeline {
    /// Compiles the `[[resources]]` entries, reporting every problem found, not only the first.
    /// `secrets` says whether Secrets may be watched at all; their data never may.
    pub fn compile(
        resources: &[ResourceConfig],
        secrets: Secrets,
    ) -> Result<ObjectPipeline, Vec<CompileError>> {
        let kinds = joins::joined_kinds(resources);
        let reads = reads_by_kind(resources, &kinds);
        compile::compile(resources, &kinds, secrets).map(|resources| ObjectPipeline {
            reads,
            tracker: Mutex::new(Tracker::new(&resources)),
            joins: joins::Joins::new(&kinds, &resources),
            resources,
            stats: std::sync::Arc::default(),
            admission: crate::admission::Admission::default(),
        })
    }

    /// Takes over what `previous` counts and whether it admits new objects: a pipeline that
    /// replaces another on a reload goes on counting into the same self-metrics and follows the
    /// same memory limit.
    pub fn carry_on_from(&mut self, previous: &ObjectPipeline) {
        self.stats = previous.stats.clone();
        self.admission = previous.admission.clone();
    }

    /// Whether watches may take in objects they do not know yet, and endpoints new series: the
    /// host closes it above its `memory_limit` (see `core/src/memory.rs`) and opens it again once
    /// memory went down. Endpoint inputs share it.
    pub fn admission(&self) -> &crate::admission::Admission {
        &self.admission
    }

    /// What the pipeline might read of objects of `kind` in `api_version` ([`keep`]): every
    /// input prunes its objects to it before applying them, so that an object yields the same
    /// samples wherever it was read, and a watch holds them so. `None` for a kind the config does
    /// not name.
    pub fn reads(&self, api_version: &str, kind: &str) -> Option<&keep::Keep> {
        self.reads
            .iter()
            .find(|((v, k), _)| v == api_version && k == kind)
            .map(|(_, keep)| keep)
    }

    /// What the pipeline and its inputs held back, for the host's self-metrics.
    pub fn stats(&self) -> &std::sync::Arc<PipelineStats> {
        &self.stats
    }

    /// The update of one object, `key` being its key (read with [`ObjectKey::of`]): a `Replace`
    /// with the samples of every entry matching the object (its apiVersion and kind, namespaces
    /// and selectors), or `None` if no entry matches.
    ///
    /// Alongside come the problems met while extracting (a value that is not a number, a path that
    /// reached several values), each naming the metric and path. The samples they concern are left
    /// out; the others are still there.
    ///
    /// The object's contributions to aggregates and derived metrics are recorded too (and
    /// dropped from the entries that no longer select it); they show in the next
    /// [`derived_updates`](Self::derived_updates). An entry with only aggregates or derived
    /// metrics gives the object an empty `Replace`: `None` keeps meaning "not selected".
    pub fn apply(
        &self,
        key: &ObjectKey,
        object: &Value,
        now_ms: i64,
    ) -> Option<(SourceUpdate, Problems)> {
        let mut problems = Problems::default();
        // With joins: the object as its metrics read it, with what its joins found.
        let joined;
        let object = match &self.joins {
            None => object,
            Some(joins) => {
                joins.observe(key, Some(object));
                match joins.attach(key, object, &self.resources, &mut problems) {
                    Some(with_joins) => {
                        joined = with_joins;
                        &joined
                    }
                    None => object,
                }
            }
        };
        self.track(key, Some(object), &mut problems);
        let mut matching = Vec::new();
        for resource in self.resources.iter().filter(|r| r.is_kind_of(key)) {
            if resource.selects(key, object) {
                matching.push(resource);
            } else if let Some(budget) = &resource.budget {
                // No longer selected: what it held is free again.
                lock(budget).remove(key.source_id(), &self.stats);
            }
        }
        if matching.is_empty() {
            return None;
        }
        // A capped entry writes apart first; its budget copies what it admits.
        let apart: Vec<Option<SourceUpdate>> = matching
            .iter()
            .map(|resource| {
                resource.budget.as_ref().map(|_| {
                    SourceUpdate::replace(Source::from(key), |writer| {
                        resource.write(object, now_ms, writer, &mut problems);
                    })
                })
            })
            .collect();
        let update = SourceUpdate::replace(Source::from(key), |writer| {
            for (resource, apart) in matching.iter().zip(&apart) {
                match (&resource.budget, apart) {
                    (Some(budget), Some(written)) => {
                        lock(budget).admit(key, object, written, writer, &self.stats);
                    }
                    _ => resource.write(object, now_ms, writer, &mut problems),
                }
            }
        });
        self.stats.collisions(&problems.collisions);
        Some((update, problems))
    }

    /// Whether an input holding the object can build its update again with
    /// [`resend`](Self::resend): always, unless an entry of its kind has caps (`max_series`,
    /// `max_values`), whose admission depends on what came before.
    pub fn can_resend(&self, key: &ObjectKey) -> bool {
        !self
            .resources
            .iter()
            .any(|resource| resource.budget.is_some() && resource.is_kind_of(key))
    }

    /// The update of an object [`apply`](Self::apply) was last given, built again for a resync:
    /// the same samples, and nothing recorded or counted (its contributions, problems and label
    /// collisions were when it was applied). `None` if no entry selects it. Only for objects
    /// [`can_resend`](Self::can_resend) allows.
    pub fn resend(&self, key: &ObjectKey, object: &Value, now_ms: i64) -> Option<SourceUpdate> {
        let mut problems = Problems::default();
        let joined;
        let object = match self
            .joins
            .as_ref()
            .and_then(|joins| joins.attach(key, object, &self.resources, &mut problems))
        {
            Some(with_joins) => {
                joined = with_joins;
                &joined
            }
            None => object,
        };
        let matching: Vec<&Resource> = self
            .resources
            .iter()
            .filter(|resource| resource.is_kind_of(key) && resource.selects(key, object))
            .collect();
        if matching.is_empty() {
            return None;
        }
        Some(SourceUpdate::replace(Source::from(key), |writer| {
            for resource in matching {
                resource.write(object, now_ms, writer, &mut problems);
            }
        }))
    }

    /// The `Remove` of an object that is gone, or `None` if no entry is about the object's
    /// apiVersion and kind.
    ///
    /// Namespaces and selectors are not looked at: an object whose labels changed so that it is no
    /// longer selected must be removed too, so a caller for whom [`apply`](Self::apply) returns
    /// `None` for an object it saw before sends this `Remove`.
    ///
    /// Only the object's key is needed, not the object: its contributions to aggregates and
    /// derived metrics are dropped by source id.
    pub fn remove(&self, key: &ObjectKey) -> Option<SourceUpdate> {
        self.forget(key);
        self.track(key, None, &mut Problems::default());
        for resource in &self.resources {
            if let (Some(budget), true) = (&resource.budget, resource.is_kind_of(key)) {
                lock(budget).remove(key.source_id(), &self.stats);
            }
        }
        self.resources
            .iter()
            .any(|resource| resource.is_kind_of(key))
            .then(|| SourceUpdate::remove(Source::from(key)))
    }

    /// The updates of aggregate and derived sources that changed since the last call, and of
    /// ages due for their refresh: one `Replace` per family (source kind `Aggregate`, id
    /// `aggregate:<family>`). Every source is sent at the first call, so aggregates without
    /// labels show their `0` before any object arrived.
    ///
    /// The host calls this every flush interval: objects only record their contributions, and
    /// the sources are rebuilt here, once per call, however many objects changed.
    ///
    /// Objects whose series a cap held back are applied again here, oldest first, once room
    /// was given back: their updates come with the others.
    pub fn derived_updates(&self, now_ms: i64) -> Vec<SourceUpdate> {
        let mut updates = self.lock().updates(&self.resources, now_ms);
        for budget in self.resources.iter().filter_map(|r| r.budget.as_ref()) {
            let mut misses = 0;
            // Taken first: applying locks the budget again.
            let waiting = lock(budget).retry();
            for (key, object) in waiting {
                if lock(budget).full() || misses >= limits::RETRY_MISSES {
                    break;
                }
                // Its problems were reported when it was first applied.
                if let Some((update, _)) = self.apply(&key, &object, now_ms) {
                    updates.push(update);
                }
                if lock(budget).is_waiting(key.source_id()) {
                    misses += 1;
                }
            }
        }
        updates
    }

    /// Whether the config has `[[resources.joins]]`.
    pub fn has_joins(&self) -> bool {
        self.joins.is_some()
    }

    /// Forgets an object that is gone without being a source (an object only joins read, or one
    /// no entry selects): joins stop finding it, and what depended on it is applied again.
    /// [`remove`](Self::remove) does this too. Nothing to do without joins.
    pub fn forget(&self, key: &ObjectKey) {
        if let Some(joins) = &self.joins {
            joins.forget(key);
            joins.observe(key, None);
        }
    }

    /// Tells when objects must be applied again because what their joins find changed, or
    /// `None` when the config has no joins. The value changes each time; take the objects with
    /// [`take_recompute`](Self::take_recompute).
    pub fn recompute_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.joins.as_ref().map(joins::Joins::signal)
    }

    /// The objects of `api_version`/`kind` (in `namespace`, when given) that must be applied
    /// again because what their joins find changed; each is given out once.
    pub fn take_recompute(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Vec<ObjectKey> {
        self.joins
            .as_ref()
            .map(|joins| joins.take(api_version, kind, namespace))
            .unwrap_or_default()
    }

    /// Whether any object must be applied again (and forgets which): the offline input then
    /// reads everything again.
    pub fn take_any_recompute(&self) -> bool {
        self.joins.as_ref().is_some_and(joins::Joins::take_any)
    }

    /// How many joined objects the pipeline holds and their size as compact JSON, in bytes.
    pub fn joined_held(&self) -> (usize, usize) {
        self.joins.as_ref().map_or((0, 0), joins::Joins::held)
    }

    /// Whether the config has any aggregate, derived metric or cap (the host needs to call
    /// [`derived_updates`](Self::derived_updates) only then).
    pub fn has_derived(&self) -> bool {
        self.resources
            .iter()
            .any(|r| !r.tracked.is_empty() || r.budget.is_some())
    }

    /// Records what the object contributes to every aggregate and derived metric of its kind:
    /// `object` is `None` when it is gone; entries that do not select it drop its contributions.
    /// Everything is read from the object first, then the state is locked once.
    fn track(&self, key: &ObjectKey, object: Option<&Value>, problems: &mut Problems) {
        let mut observations = Vec::new();
        // Converted for expressions at the first one, once for every family.
        let input = object.map(crate::expr::Input::new);
        let of_kind = self
            .resources
            .iter()
            .filter(|resource| !resource.tracked.is_empty() && resource.is_kind_of(key));
        for resource in of_kind {
            let selected = input
                .as_ref()
                .filter(|input| resource.selects(key, input.object()));
            for tracked in &resource.tracked {
                let observation = match selected {
                    Some(input) => tracked.observe(input, &resource.name, problems),
                    None => Observation::Gone,
                };
                observations.push((tracked, observation));
            }
        }
        if observations.is_empty() {
            return;
        }
        // Durations are counted once per object for good, so they follow the uid, which a
        // re-created object does not share; without one, the source id.
        let id = key.source_id();
        let object_key = if key.uid().is_empty() { id } else { key.uid() };
        let mut tracker = self.lock();
        for (tracked, observation) in observations {
            tracker.record(tracked, id, object_key, observation);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // A panic while the state was locked leaves it as consistent as any single record.
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the pipeline reads of each kind: the union of what its entries read and what joins read
/// of it.
fn reads_by_kind(
    resources: &[ResourceConfig],
    joined: &[joins::JoinedKind],
) -> Vec<((String, String), keep::Keep)> {
    let mut reads: Vec<((String, String), keep::Keep)> = Vec::new();
    let mut add = |api_version: String, kind: &str, read: &keep::Keep| match reads
        .iter_mut()
        .find(|((v, k), _)| *v == api_version && k == kind)
    {
        Some((_, keep)) => keep.merge(read),
        None => reads.push(((api_version, kind.to_owned()), read.clone())),
    };
    for entry in resources {
        add(entry.api_version(), &entry.kind, &keep::entry_reads(entry));
    }
    for kind in joined {
        add(kind.api_version(), &kind.kind, &kind.keep);
    }
    reads
}

/// Locks a budget; a panic while it was locked leaves it as consistent as any single admission.
fn lock(budget: &Mutex<limits::Budget>) -> MutexGuard<'_, limits::Budget> {
    budget.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The metrics read from a JSON document that is not a Kubernetes object: the answer of a JSON
/// endpoint. The same `[[…metrics]]` entries and path language as objects use; no selectors, no
/// aggregates.
#[derive(Debug)]
pub struct DocumentMetrics {
    resource: Resource,
}

impl DocumentMetrics {
    /// Compiles `metrics`; `key` names the entry in errors (`endpoints[0]`), `what` names the
    /// document in default help texts (`endpoint virt-handler`).
    pub fn compile(
        key: &str,
        what: &str,
        prefix: Option<&toml::Spanned<String>>,
        metrics: &[crate::config::MetricConfig],
    ) -> Result<DocumentMetrics, Vec<CompileError>> {
        compile::document(key, what, prefix, metrics).map(|resource| DocumentMetrics { resource })
    }

    /// Writes the samples of every metric read from `document`; problems met (a value that is
    /// not a number, …) are pushed to `problems` and their samples left out.
    pub fn write(
        &self,
        document: &Value,
        now_ms: i64,
        writer: &mut periscope_plugin_api::batch::ReplaceWriter<'_>,
        problems: &mut Vec<String>,
    ) {
        let mut found = Problems::default();
        self.resource.write(document, now_ms, writer, &mut found);
        problems.append(&mut found.messages);
        problems.extend(found.expressions.into_iter().map(|f| f.message));
    }
}

/// A compiled `[[resources]]` entry.
#[derive(Debug)]
struct Resource {
    /// What expression failures are counted under: the kind, or the endpoint entry's key.
    name: String,
    api_version: String,
    kind: String,
    namespaces: Vec<String>,
    label_selector: LabelSelector,
    field_selector: FieldSelector,
    labels: Vec<LabelSpec>,
    /// The entry's `where`: its metrics are written only for objects it keeps.
    filter: Option<Expr>,
    metrics: Vec<Metric>,
    /// The entry's aggregates and derived metrics.
    tracked: Vec<Tracked>,
    /// What the entry admitted under its `max_series` and `max_values`; `None` without caps.
    budget: Option<Mutex<limits::Budget>>,
    /// The entry's joins.
    joins: Vec<joins::Join>,
}

/// A label of samples: its name and where its value comes from.
#[derive(Debug, Clone)]
struct LabelSpec {
    name: String,
    source: Reader,
}

/// A compiled `[[resources.metrics]]` entry.
#[derive(Debug)]
struct Metric {
    /// The name as configured, prefix included; problems name the metric by it.
    name: String,
    family: FamilyDef,
    suffix: Suffix,
    each: Option<Path>,
    /// The label holding the map key of each item of `each`.
    each_key: Option<String>,
    labels: Vec<LabelSpec>,
    /// Labels from the keys of a map, after `labels`.
    labels_from: Option<labels_from::LabelsFrom>,
    /// The metric's `where`: samples are written only for the objects (or items) it keeps.
    filter: Option<Expr>,
    value: ValueSpec,
}

/// The family of a metric, owned.
#[derive(Debug)]
struct FamilyDef {
    name: String,
    help: String,
    unit: String,
    kind: FamilyKind,
}

/// Where a metric's values come from.
#[derive(Debug)]
enum ValueSpec {
    /// A gauge or counter: one number.
    Number(NumberSpec),
    /// Constant `1`.
    Info,
    /// One sample per state.
    StateSet {
        source: Reader,
        states: Vec<String>,
        label: String,
    },
}

/// How a number is read: a path or an expression, a value map, a conversion and a default.
#[derive(Debug)]
struct NumberSpec {
    source: Reader,
    convert: Convert,
    value_map: HashMap<String, f64>,
    default: Option<f64>,
}

impl Problems {
    /// A problem of a metric (or tracked family) `metric` at a path or expression `at`.
    fn push(&mut self, metric: &str, at: &dyn fmt::Display, error: &dyn fmt::Display) {
        self.messages.push(format!("{metric}: {at}: {error}"));
    }

    /// An expression of the entry `resource` (or of its metric `metric`) that failed.
    fn expression(&mut self, resource: &str, metric: &str, expr: &Expr, error: &ExprError) {
        self.expressions.push(ExpressionFailure {
            resource: resource.to_owned(),
            metric: metric.to_owned(),
            too_costly: matches!(error, ExprError::TooCostly { .. }),
            message: format!("{metric}: {}: {error}", expr.source()),
        });
    }

    /// A reader of `metric` that gave no value: an expression that failed, or a value that is
    /// no number (or several).
    fn read(&mut self, resource: &str, metric: &str, reader: &Reader, error: &ReadError<'_>) {
        match error {
            ReadError::Expr(failed) => {
                self.expression(resource, metric, failed.expr, &failed.error);
            }
            ReadError::Extract(error) => self.push(metric, reader, error),
        }
    }
}

/// Why a reader gave no number.
#[derive(Debug)]
enum ReadError<'r> {
    /// The expression failed.
    Expr(reader::Failed<'r>),
    /// The value is not a number, or there were several.
    Extract(extract::ExtractError),
}

#[cfg(test)]
mod tests;
