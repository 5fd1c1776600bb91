//! Families computed over many objects or over time: aggregates (`[[resources.aggregates]]`) and
//! derived metrics (`[[resources.derived]]`), together "tracked" families.
//!
//! Each tracked family is one source of kind [`SourceKind::Aggregate`], id `aggregate:<family>`,
//! named after the family. Its life has two halves:
//! - reading: [`Tracked::observe`] reads what one object contributes (an [`Observation`]) without
//!   touching any state, so inputs can do it concurrently;
//! - recording: [`Tracker::record`] folds the observation into the family's state (behind the
//!   pipeline's mutex), remembering each object's contribution by source id so that an update
//!   replaces it and a removal takes it back. It only marks the family changed.
//!
//! [`Tracker::updates`] builds the sources of changed families when the host asks, so a list of
//! 100k objects costs 100k small records and one rebuild per family, not 100k rebuilds.

use periscope_plugin_api::batch::{Family, Source, SourceKind};
use serde_json::Value;

use super::age::{Age, AgeState, Aged};
use super::aggregate::{Aggregate, AggregateState, Contribution};
use super::durations::{Durations, DurationsState, Timed};
use super::extract::ExtractError;
use super::reader::{Failed, Reached, Reader};
use super::transitions::{Transitions, TransitionsState, Value as Watched};
use super::{FamilyDef, LabelSpec, Problems, ReadError, Resource};
use crate::event::SourceUpdate;
use crate::expr::Input;
use crate::value::{self, Convert};

/// A compiled aggregate or derived metric.
#[derive(Debug)]
pub(super) struct Tracked {
    /// Its index in the [`Tracker`]'s states.
    pub(super) slot: usize,
    /// `aggregate:<family name>`.
    pub(super) source_id: String,
    pub(super) family: FamilyDef,
    pub(super) kind: TrackedKind,
}

/// What a tracked family computes.
#[derive(Debug)]
pub(super) enum TrackedKind {
    Aggregate(Aggregate),
    Transitions(Transitions),
    Durations(Durations),
    Age(Age),
}

/// What one object contributes to one tracked family, read before the state is locked.
pub(super) enum Observation {
    /// The object is gone, or no longer selected by the entry.
    Gone,
    /// An expression failed: the state keeps what it had for the object.
    Unread,
    /// Its group and value; `None` when it counts in no group (filtered out, no value).
    Aggregate(Option<Contribution>),
    /// The watched value now.
    Transitions(Watched),
    /// Every duration the object shows now.
    Durations(Vec<Timed>),
    /// Its labels and the time its age counts from; `None` when it has no such time.
    Age(Option<Aged>),
}

/// Where the problems met while one tracked family reads an object go, named after the family.
pub(super) struct Report<'p> {
    pub(super) problems: &'p mut Problems,
    /// The entry's name, as expression failures are counted under.
    pub(super) resource: &'p str,
    pub(super) family: &'p str,
}

impl Report<'_> {
    /// A value at `at` (a path or an expression) that is not what the family needs.
    pub(super) fn problem(&mut self, at: &dyn std::fmt::Display, message: &dyn std::fmt::Display) {
        self.problems.push(self.family, at, message);
    }

    /// An expression that failed.
    pub(super) fn failed(&mut self, failed: &Failed<'_>) {
        (self.problems).expression(self.resource, self.family, failed.expr, &failed.error);
    }

    /// A number that could not be read.
    pub(super) fn read(&mut self, reader: &Reader, error: &ReadError<'_>) {
        (self.problems).read(self.resource, self.family, reader, error);
    }

    /// The label values of `specs` from `item` of the input's object; `None` when an expression
    /// failed (and was reported).
    pub(super) fn labels<'j>(
        &mut self,
        specs: &[LabelSpec],
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Option<Vec<String>> {
        let mut values = Vec::with_capacity(specs.len());
        for spec in specs {
            match spec.source.text(input, item) {
                Ok(text) => values.push(text),
                Err(failed) => {
                    self.failed(&failed);
                    return None;
                }
            }
        }
        Some(values)
    }

    /// The time `reader` reaches as text and Unix seconds; `None` (and maybe a problem) when
    /// there is none.
    pub(super) fn time<'j>(
        &mut self,
        reader: &Reader,
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Option<(String, f64)> {
        match reader.reach(input, item) {
            Ok(Reached::None) => None,
            Ok(Reached::One(found)) => match value::to_number(&found, Convert::Timestamp) {
                Ok(seconds) => Some((value::label_text(&found), seconds)),
                Err(e) => {
                    self.problem(reader, &e);
                    None
                }
            },
            Ok(Reached::Many(count)) => {
                self.problem(reader, &ExtractError::TooMany(count));
                None
            }
            Err(failed) => {
                self.failed(&failed);
                None
            }
        }
    }
}

impl Tracked {
    /// Reads what the input's object contributes; problems (a value that is not a number or a
    /// time, an expression that failed) name the family and the path or expression.
    pub(super) fn observe(
        &self,
        input: &Input<'_>,
        resource: &str,
        problems: &mut Problems,
    ) -> Observation {
        let mut report = Report {
            problems,
            resource,
            family: &self.family.name,
        };
        match &self.kind {
            TrackedKind::Aggregate(aggregate) => {
                Observation::Aggregate(aggregate.observe(input, &mut report))
            }
            TrackedKind::Transitions(transitions) => transitions
                .observe(input, &mut report)
                .map_or(Observation::Unread, Observation::Transitions),
            TrackedKind::Durations(durations) => {
                Observation::Durations(durations.observe(input, &mut report))
            }
            TrackedKind::Age(age) => Observation::Age(age.observe(input, &mut report)),
        }
    }
}

/// The state of every tracked family of the pipeline.
#[derive(Debug)]
pub(super) struct Tracker {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    state: State,
    /// Whether the family changed since its source was last built.
    changed: bool,
    /// When its source was last built.
    sent_ms: Option<i64>,
}

#[derive(Debug)]
enum State {
    Aggregate(AggregateState),
    Transitions(TransitionsState),
    Durations(DurationsState),
    Age(AgeState),
}

impl Tracker {
    /// Empty states for the tracked families of `resources`, every one due to be sent.
    pub(super) fn new(resources: &[Resource]) -> Self {
        let mut tracked: Vec<&Tracked> = resources.iter().flat_map(|r| &r.tracked).collect();
        tracked.sort_by_key(|t| t.slot);
        let slots = tracked
            .into_iter()
            .map(|t| Slot {
                state: match &t.kind {
                    TrackedKind::Aggregate(_) => State::Aggregate(AggregateState::default()),
                    TrackedKind::Transitions(_) => State::Transitions(TransitionsState::default()),
                    TrackedKind::Durations(_) => State::Durations(DurationsState::default()),
                    TrackedKind::Age(_) => State::Age(AgeState::default()),
                },
                changed: true,
                sent_ms: None,
            })
            .collect();
        Tracker { slots }
    }

    /// Folds one observation of the object `id` into the family's state. `object_key` is what
    /// durations are counted once by: the uid, or the source id without one.
    pub(super) fn record(
        &mut self,
        tracked: &Tracked,
        id: &str,
        object_key: &str,
        observation: Observation,
    ) {
        let Some(slot) = self.slots.get_mut(tracked.slot) else {
            return;
        };
        let changed = match (&mut slot.state, observation) {
            (State::Aggregate(state), Observation::Aggregate(contribution)) => {
                state.record(id, contribution)
            }
            (State::Aggregate(state), Observation::Gone) => state.record(id, None),
            (State::Transitions(state), Observation::Transitions(value)) => state.record(id, value),
            (State::Transitions(state), Observation::Gone) => state.forget(id),
            (State::Durations(state), Observation::Durations(timed)) => {
                state.record(object_key, timed)
            }
            (State::Durations(state), Observation::Gone) => state.forget(object_key),
            (State::Age(state), Observation::Age(aged)) => state.record(id, aged),
            (State::Age(state), Observation::Gone) => state.record(id, None),
            (_, Observation::Unread) => false,
            // An observation always comes from the family's own kind.
            _ => false,
        };
        slot.changed |= changed;
    }

    /// The sources to send at `now_ms`: those of families that changed, and of ages due for
    /// their refresh.
    pub(super) fn updates(&mut self, resources: &[Resource], now_ms: i64) -> Vec<SourceUpdate> {
        let mut updates = Vec::new();
        for tracked in resources.iter().flat_map(|r| &r.tracked) {
            let Some(slot) = self.slots.get_mut(tracked.slot) else {
                continue;
            };
            if let State::Durations(state) = &mut slot.state {
                state.purge(now_ms);
            }
            let due = match (&tracked.kind, slot.sent_ms) {
                (_, None) => true,
                (TrackedKind::Age(age), Some(sent)) => now_ms - sent >= age.refresh_ms,
                _ => slot.changed,
            };
            if !due {
                continue;
            }
            updates.push(source_update(tracked, &slot.state, now_ms));
            slot.changed = false;
            slot.sent_ms = Some(now_ms);
        }
        updates
    }
}

/// The `Replace` of a tracked family's source with its current samples.
fn source_update(tracked: &Tracked, state: &State, now_ms: i64) -> SourceUpdate {
    let source = Source {
        name: &tracked.family.name,
        ..Source::new(SourceKind::Aggregate, &tracked.source_id)
    };
    SourceUpdate::replace(source, |writer| {
        let family = writer.family(Family {
            name: &tracked.family.name,
            help: &tracked.family.help,
            unit: &tracked.family.unit,
            kind: tracked.family.kind,
        });
        match (&tracked.kind, state) {
            (TrackedKind::Aggregate(def), State::Aggregate(state)) => {
                def.write(state, writer, family, now_ms);
            }
            (TrackedKind::Transitions(def), State::Transitions(state)) => {
                def.write(state, writer, family, now_ms);
            }
            (TrackedKind::Durations(def), State::Durations(state)) => {
                def.write(state, writer, family, now_ms);
            }
            (TrackedKind::Age(def), State::Age(state)) => def.write(state, writer, family, now_ms),
            // Every state is built from its own family's kind.
            _ => {}
        }
    })
}

#[cfg(test)]
mod tests;
