//! Ages (`type = "age"`): a gauge per object, the seconds since an RFC 3339 time of it.
//!
//! An age changes with the clock, not with the object, so the state keeps only the time and the
//! labels of every object, and the family's source is built again every `refresh` with the ages
//! at that moment, for every object known then: objects that appeared or went away show at the
//! next refresh too.

use std::collections::BTreeMap;

use periscope_plugin_api::batch::{FamilyId, ReplaceWriter, Suffix};

use super::LabelSpec;
use super::reader::Reader;
use super::tracked::Report;
use crate::expr::Input;

/// A compiled age metric.
#[derive(Debug)]
pub(super) struct Age {
    /// The time the age counts from.
    pub(super) source: Reader,
    /// The entry's labels, then the metric's `by` labels.
    pub(super) labels: Vec<LabelSpec>,
    /// How often the source is built again.
    pub(super) refresh_ms: i64,
}

/// What the state keeps of one object: its label values and the time, in Unix seconds.
#[derive(Debug, PartialEq)]
pub(super) struct Aged {
    labels: Vec<String>,
    since: f64,
}

impl Age {
    /// The object's labels and time; `None` (and maybe a problem) when it has no time.
    pub(super) fn observe(&self, input: &Input<'_>, report: &mut Report<'_>) -> Option<Aged> {
        let (_, since) = report.time(&self.source, input, None)?;
        let labels = report.labels(&self.labels, input, None)?;
        Some(Aged { labels, since })
    }

    /// One sample per object, in source id order: `now - time`.
    pub(super) fn write(
        &self,
        state: &AgeState,
        writer: &mut ReplaceWriter<'_>,
        family: FamilyId,
        now_ms: i64,
    ) {
        let now = now_ms as f64 / 1000.0;
        for aged in state.objects.values() {
            let names = self.labels.iter().map(|spec| spec.name.as_str());
            writer
                .sample(family, Suffix::None, now - aged.since, now_ms)
                .labels(names.zip(aged.labels.iter().map(String::as_str)));
        }
    }
}

/// The time and labels of every object that has one.
#[derive(Debug, Default)]
pub(super) struct AgeState {
    objects: BTreeMap<String, Aged>,
}

impl AgeState {
    /// Records (or, with `None`, drops) object `id`; whether anything changed.
    pub(super) fn record(&mut self, id: &str, aged: Option<Aged>) -> bool {
        match aged {
            Some(aged) if self.objects.get(id) == Some(&aged) => false,
            Some(aged) => {
                self.objects.insert(id.to_owned(), aged);
                true
            }
            None => self.objects.remove(id).is_some(),
        }
    }
}
