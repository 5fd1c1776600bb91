//! Transitions (`type = "transitions"`): a counter of the changes of a value, what only a
//! watcher sees.
//!
//! The state remembers the last value of every object. When the next observation of the same
//! object shows another value, the counter labelled with the `by` labels (read from the new
//! object), `from` (the old value) and `to` (the new one) goes up by one. The first sighting of
//! an object counts nothing (its history is unknown), and neither does its deletion. A value the
//! path does not reach is the empty text, so a phase appearing counts as a change from `""`.
//! Counters only go up, for the life of the process.

use std::collections::{BTreeMap, HashMap};

use periscope_plugin_api::batch::{FamilyId, ReplaceWriter, Suffix};

use super::LabelSpec;
use super::reader::Reader;
use super::tracked::Report;
use crate::expr::Input;

/// A compiled transitions metric.
#[derive(Debug)]
pub(super) struct Transitions {
    /// The watched value.
    pub(super) source: Reader,
    /// Extra labels, in name order, read from the object at the change.
    pub(super) by: Vec<LabelSpec>,
}

/// The watched value of an object, with its `by` labels.
pub(super) struct Value {
    value: String,
    by: Vec<String>,
}

impl Transitions {
    /// The watched value and the labels; `None` when an expression failed (reported): the
    /// state keeps the last value, so the next one read is compared with it.
    pub(super) fn observe(&self, input: &Input<'_>, report: &mut Report<'_>) -> Option<Value> {
        let value = match self.source.text(input, None) {
            Ok(value) => value,
            Err(failed) => {
                report.failed(&failed);
                return None;
            }
        };
        let by = report.labels(&self.by, input, None)?;
        Some(Value { value, by })
    }

    /// One counter sample per series seen so far: `by` labels, then `from` and `to`.
    pub(super) fn write(
        &self,
        state: &TransitionsState,
        writer: &mut ReplaceWriter<'_>,
        family: FamilyId,
        now_ms: i64,
    ) {
        let names: Vec<&str> = self
            .by
            .iter()
            .map(|spec| spec.name.as_str())
            .chain(["from", "to"])
            .collect();
        for (labels, count) in &state.counts {
            writer
                .sample(family, Suffix::Total, *count as f64, now_ms)
                .labels(names.iter().copied().zip(labels.iter().map(String::as_str)));
        }
    }
}

/// The last value of every object and the counters.
#[derive(Debug, Default)]
pub(super) struct TransitionsState {
    last: HashMap<String, String>,
    /// `by` label values, then from and to → how many times.
    counts: BTreeMap<Vec<String>, u64>,
}

impl TransitionsState {
    /// Records the value of object `id`; whether a counter went up.
    pub(super) fn record(&mut self, id: &str, observed: Value) -> bool {
        let Value { value, by } = observed;
        let previous = match self.last.get_mut(id) {
            Some(last) if *last == value => return false,
            Some(last) => std::mem::replace(last, value.clone()),
            None => {
                self.last.insert(id.to_owned(), value);
                return false;
            }
        };
        let mut series = by;
        series.push(previous);
        series.push(value);
        *self.counts.entry(series).or_default() += 1;
        true
    }

    /// Forgets object `id`: it is gone, or no longer selected (seen again, it is a first
    /// sighting). The counters stay.
    pub(super) fn forget(&mut self, id: &str) -> bool {
        self.last.remove(id);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(value: &str) -> Value {
        Value {
            value: value.to_owned(),
            by: vec!["node-1".to_owned()],
        }
    }

    fn counts(state: &TransitionsState) -> Vec<(Vec<&str>, u64)> {
        state
            .counts
            .iter()
            .map(|(k, v)| (k.iter().map(String::as_str).collect(), *v))
            .collect()
    }

    #[test]
    fn first_sighting_and_repeats_count_nothing() {
        let mut state = TransitionsState::default();
        assert!(!state.record("a", phase("Pending")));
        assert!(!state.record("a", phase("Pending")));
        assert!(state.counts.is_empty());
    }

    #[test]
    fn each_change_counts_once_with_from_and_to() {
        let mut state = TransitionsState::default();
        state.record("a", phase("Pending"));
        assert!(state.record("a", phase("Running")));
        state.record("b", phase("Pending"));
        state.record("b", phase("Running"));
        state.record("a", phase("Succeeded"));
        assert_eq!(
            counts(&state),
            [
                (vec!["node-1", "Pending", "Running"], 2),
                (vec!["node-1", "Running", "Succeeded"], 1)
            ]
        );
    }

    #[test]
    fn a_forgotten_object_starts_over_and_keeps_the_counts() {
        let mut state = TransitionsState::default();
        state.record("a", phase("Pending"));
        state.record("a", phase("Running"));
        assert!(!state.forget("a"));
        assert!(!state.record("a", phase("Failed")));
        assert_eq!(counts(&state), [(vec!["node-1", "Pending", "Running"], 1)]);
    }
}
