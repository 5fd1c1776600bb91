//! Counts and sums over objects (`[[resources.aggregates]]`), kept incrementally.
//!
//! Every object contributes to at most one group of an aggregate (the values of its `by`
//! labels) with one value (`1` for a count). The state remembers each object's contribution, so
//! that applying the object again takes the old one back before adding the new, and removing it
//! takes it back: after any sequence of updates, deletes and relists the totals are those of the
//! objects present, exactly. Sums are kept in fixed point (nanounits, [`Fixed`]) so that taking
//! a value back undoes adding it to the last bit, which floating point does not promise.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use periscope_plugin_api::batch::{FamilyId, ReplaceWriter, Suffix};

use super::extract::label_value;
use super::reader::Failed;
use super::tracked::Report;
use super::{LabelSpec, NumberSpec};
use crate::expr::{Expr, Input};
use crate::path::Path;

/// A compiled aggregate.
#[derive(Debug)]
pub(super) struct Aggregate {
    /// The group labels, in name order.
    pub(super) by: Vec<LabelSpec>,
    /// Which objects count.
    pub(super) filter: Option<Filter>,
    /// What is summed; `None` for a count.
    pub(super) sum: Option<NumberSpec>,
}

/// An aggregate's `where`: the objects whose value at `path` is (or, with `keep_listed` false,
/// is not) one of `values`, or for which an expression gives `true`.
#[derive(Debug)]
pub(super) enum Filter {
    Values {
        path: Path,
        values: HashSet<String>,
        keep_listed: bool,
    },
    Expr(Expr),
}

impl Filter {
    /// Whether the object counts; `None` when the expression failed (and was reported).
    fn keeps(&self, input: &Input<'_>, report: &mut Report<'_>) -> Option<bool> {
        match self {
            Filter::Values {
                path,
                values,
                keep_listed,
            } => {
                let object = input.object();
                let value = label_value(path, object, object);
                Some(values.contains(&value) == *keep_listed)
            }
            Filter::Expr(expr) => match expr.keeps(input, None) {
                Ok(keep) => Some(keep),
                Err(error) => {
                    report.failed(&Failed { expr, error });
                    None
                }
            },
        }
    }
}

/// What one object adds to an aggregate: the values of its group labels and its value.
#[derive(Debug, PartialEq)]
pub(super) struct Contribution {
    group: Vec<String>,
    value: Fixed,
}

impl Aggregate {
    /// What the input's object contributes, or `None` when it counts in no group: filtered
    /// out, a sum without a value, or an expression that failed (reported), which leaves the
    /// object out rather than counting what it last gave.
    pub(super) fn observe(
        &self,
        input: &Input<'_>,
        report: &mut Report<'_>,
    ) -> Option<Contribution> {
        if let Some(filter) = &self.filter
            && !filter.keeps(input, report)?
        {
            return None;
        }
        let value = match &self.sum {
            None => Fixed::ONE,
            Some(spec) => {
                let number = match spec.read(input, None) {
                    Ok(number) => number?,
                    Err(error) => {
                        report.read(&spec.source, &error);
                        return None;
                    }
                };
                let fixed = Fixed::from_f64(number);
                if fixed.is_none() {
                    report.problem(&spec.source, &format!("{number} cannot be summed"));
                }
                fixed?
            }
        };
        let group = report.labels(&self.by, input, None)?;
        Some(Contribution { group, value })
    }

    /// Writes one sample per group, in the order of the label values; an aggregate without
    /// labels always has its one sample, `0` when nothing counts.
    pub(super) fn write(
        &self,
        state: &AggregateState,
        writer: &mut ReplaceWriter<'_>,
        family: FamilyId,
        now_ms: i64,
    ) {
        if self.by.is_empty() && state.groups.is_empty() {
            writer.sample(family, Suffix::None, 0.0, now_ms);
            return;
        }
        for (group, totals) in &state.groups {
            let value = match self.sum {
                None => totals.count as f64,
                Some(_) => totals.sum.to_f64(),
            };
            let names = self.by.iter().map(|spec| spec.name.as_str());
            writer
                .sample(family, Suffix::None, value, now_ms)
                .labels(names.zip(group.iter().map(String::as_str)));
        }
    }
}

/// The totals of an aggregate and the contribution of every object to them.
#[derive(Debug, Default)]
pub(super) struct AggregateState {
    groups: BTreeMap<Arc<[String]>, Totals>,
    /// Source id → the group the object counts in (shared with `groups`' key) and its value.
    contributions: HashMap<String, (Arc<[String]>, Fixed)>,
}

#[derive(Debug, Default)]
struct Totals {
    count: u64,
    sum: Fixed,
}

impl AggregateState {
    /// Replaces the contribution of object `id` (`None`: it has none now); whether the totals
    /// changed.
    pub(super) fn record(&mut self, id: &str, new: Option<Contribution>) -> bool {
        let old = self.contributions.get(id);
        let same = match (old, &new) {
            (Some((group, value)), Some(new)) => **group == *new.group && *value == new.value,
            (None, None) => true,
            _ => false,
        };
        if same {
            return false;
        }
        if let Some((group, value)) = self.contributions.remove(id)
            && let Some(totals) = self.groups.get_mut(&group)
        {
            totals.count -= 1;
            totals.sum = totals.sum.minus(value);
            if totals.count == 0 {
                self.groups.remove(&group);
            }
        }
        if let Some(Contribution { group, value }) = new {
            let group: Arc<[String]> = match self.groups.get_key_value(group.as_slice()) {
                Some((shared, _)) => shared.clone(),
                None => group.into(),
            };
            let totals = self.groups.entry(group.clone()).or_default();
            totals.count += 1;
            totals.sum = totals.sum.plus(value);
            self.contributions.insert(id.to_owned(), (group, value));
        }
        true
    }
}

/// A number in nanounits: exact to add and take back, ±1.7e20 units of range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Fixed(i128);

impl Fixed {
    const SCALE: f64 = 1e9;
    const ONE: Fixed = Fixed(1_000_000_000);
    /// The largest magnitude kept, far inside `i128` so that sums of many cannot overflow.
    const LIMIT: f64 = 1e29;

    /// The fixed-point value of `number`, rounded to the nanounit; `None` when it is not finite
    /// or beyond ±1e20.
    fn from_f64(number: f64) -> Option<Fixed> {
        let scaled = (number * Self::SCALE).round();
        // The range check makes the cast exact.
        (scaled.is_finite() && scaled.abs() <= Self::LIMIT).then_some(Fixed(scaled as i128))
    }

    fn to_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE
    }

    fn plus(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(other.0))
    }

    fn minus(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(group: &[&str], value: f64) -> Option<Contribution> {
        Some(Contribution {
            group: group.iter().map(|s| (*s).to_owned()).collect(),
            value: Fixed::from_f64(value).unwrap(),
        })
    }

    fn totals(state: &AggregateState) -> Vec<(Vec<String>, u64, f64)> {
        state
            .groups
            .iter()
            .map(|(g, t)| (g.to_vec(), t.count, t.sum.to_f64()))
            .collect()
    }

    #[test]
    fn fixed_point_takes_back_exactly_what_it_added() {
        let mut sum = Fixed::default();
        for value in [0.1, 0.2, 0.3, 1e-9, 12345.678] {
            sum = sum.plus(Fixed::from_f64(value).unwrap());
        }
        for value in [0.2, 12345.678, 0.1, 1e-9] {
            sum = sum.minus(Fixed::from_f64(value).unwrap());
        }
        assert_eq!(sum.to_f64(), 0.3);
        assert_eq!(Fixed::from_f64(f64::NAN), None);
        assert_eq!(Fixed::from_f64(1e21), None);
        assert_eq!(Fixed::from_f64(-2.5).unwrap().to_f64(), -2.5);
    }

    #[test]
    fn recording_the_same_contribution_again_changes_nothing() {
        let mut state = AggregateState::default();
        assert!(state.record("a", contribution(&["Running"], 2.0)));
        assert!(!state.record("a", contribution(&["Running"], 2.0)));
        assert!(!state.record("b", None));
        assert!(state.record("a", contribution(&["Running"], 3.0)));
        assert_eq!(totals(&state), [(vec!["Running".to_owned()], 1, 3.0)]);
    }

    #[test]
    fn moving_between_groups_empties_the_old_one() {
        let mut state = AggregateState::default();
        state.record("a", contribution(&["Pending"], 1.0));
        state.record("b", contribution(&["Pending"], 1.0));
        state.record("a", contribution(&["Running"], 1.0));
        assert_eq!(
            totals(&state),
            [
                (vec!["Pending".to_owned()], 1, 1.0),
                (vec!["Running".to_owned()], 1, 1.0)
            ]
        );
        state.record("b", None);
        assert_eq!(totals(&state), [(vec!["Running".to_owned()], 1, 1.0)]);
        assert!(state.record("a", None));
        assert!(state.groups.is_empty());
        assert!(state.contributions.is_empty());
    }
}
