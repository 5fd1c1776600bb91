//! Items of a batch that an exporter's target refused for good (`RejectItems`, ABI 2): checked
//! against the batch, deduplicated and counted, before they go to the dead-letter file.

use std::collections::BTreeMap;

use periscope_plugin_api::{Batch, RejectedItem, Update};

/// What was refused of one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The whole update (a `Remove`, or every sample of a `Replace`), with the reason.
    Whole(String),
    /// These samples (by position in the update), each with its reason.
    Samples(BTreeMap<usize, String>),
}

/// The refused items of a batch, by update position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusals {
    updates: BTreeMap<usize, Refused>,
    samples: usize,
}

/// An exporter named an item the batch does not have: its account of the batch cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalError {
    /// No update at that position.
    #[error("the exporter refused update {update}, but the batch has {updates} updates")]
    NoSuchUpdate {
        /// The position named.
        update: usize,
        /// How many updates the batch has.
        updates: usize,
    },
    /// No sample at that position of the update (or the update is a `Remove`).
    #[error("the exporter refused sample {sample} of update {update}, which has {samples} samples")]
    NoSuchSample {
        /// The update's position.
        update: usize,
        /// The sample's position named.
        sample: usize,
        /// How many samples the update has.
        samples: usize,
    },
}

impl Refusals {
    /// Checks `items` against `batch`. A sample named twice, or named beside its whole update,
    /// is refused once (with the first reason given for the whole update, else for the sample).
    pub fn resolve(batch: &Batch, items: &[RejectedItem]) -> Result<Refusals, RefusalError> {
        let updates: Vec<Update<'_>> = batch.updates().collect();
        let mut refusals = Refusals::default();
        for item in items {
            let update = Some(item.update).filter(|u| *u < updates.len()).ok_or(
                RefusalError::NoSuchUpdate {
                    update: item.update,
                    updates: updates.len(),
                },
            )?;
            let samples = match updates[update] {
                Update::Replace { samples, .. } => samples.len(),
                Update::Remove { .. } => 0,
            };
            let reason = item.reason.clone();
            match item.sample {
                None => {
                    if !matches!(refusals.updates.get(&update), Some(Refused::Whole(_))) {
                        refusals.updates.insert(update, Refused::Whole(reason));
                    }
                }
                Some(sample) => {
                    let index = Some(sample).filter(|s| *s < samples).ok_or(
                        RefusalError::NoSuchSample {
                            update,
                            sample,
                            samples,
                        },
                    )?;
                    match refusals
                        .updates
                        .entry(update)
                        .or_insert_with(|| Refused::Samples(BTreeMap::new()))
                    {
                        Refused::Whole(_) => {}
                        Refused::Samples(chosen) => {
                            chosen.entry(index).or_insert(reason);
                        }
                    }
                }
            }
        }
        refusals.samples = refusals
            .updates
            .iter()
            .map(|(update, refused)| match refused {
                Refused::Samples(chosen) => chosen.len(),
                Refused::Whole(_) => match updates[*update] {
                    Update::Replace { samples, .. } => samples.len(),
                    Update::Remove { .. } => 0,
                },
            })
            .sum();
        Ok(refusals)
    }

    /// What was refused of update `update`, if anything.
    pub fn of_update(&self, update: usize) -> Option<&Refused> {
        self.updates.get(&update)
    }

    /// How many samples were refused (a refused `Remove` has none).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The first reason, for the log.
    pub fn first_reason(&self) -> Option<&str> {
        self.updates
            .values()
            .next()
            .and_then(|refused| match refused {
                Refused::Whole(reason) => Some(reason.as_str()),
                Refused::Samples(chosen) => chosen.values().next().map(String::as_str),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    /// Update 0: a Replace with 3 samples; update 1: a Remove; update 2: a Replace with 2.
    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "x",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source::new(SourceKind::Object, "a"));
        for v in [1.0, 2.0, 3.0] {
            r.sample(f, Suffix::None, v, 0);
        }
        b.remove(Source::new(SourceKind::Object, "b"));
        let mut r = b.replace(Source::new(SourceKind::Object, "c"));
        for v in [4.0, 5.0] {
            r.sample(f, Suffix::None, v, 0);
        }
        b.build()
    }

    fn item(update: usize, sample: Option<usize>, reason: &str) -> RejectedItem {
        RejectedItem {
            update,
            sample,
            reason: reason.into(),
        }
    }

    #[test]
    fn samples_and_whole_updates_are_counted_by_their_samples() {
        let refusals = Refusals::resolve(
            &batch(),
            &[
                item(0, Some(2), "third"),
                item(1, None, "gone"),
                item(2, None, "all"),
            ],
        )
        .unwrap();
        // One sample of update 0, none for the Remove, both of update 2.
        assert_eq!(refusals.samples(), 3);
        assert_eq!(
            refusals.of_update(0),
            Some(&Refused::Samples(BTreeMap::from([(2, "third".to_owned())])))
        );
        assert_eq!(refusals.of_update(1), Some(&Refused::Whole("gone".into())));
        assert_eq!(refusals.first_reason(), Some("third"));
    }

    #[test]
    fn an_item_named_twice_or_beside_its_whole_update_is_refused_once() {
        let refusals = Refusals::resolve(
            &batch(),
            &[
                item(0, Some(1), "first"),
                item(0, Some(1), "again"),
                item(2, Some(0), "a sample"),
                item(2, None, "the whole"),
                item(2, Some(1), "after the whole"),
            ],
        )
        .unwrap();
        assert_eq!(refusals.samples(), 1 + 2);
        assert_eq!(
            refusals.of_update(0),
            Some(&Refused::Samples(BTreeMap::from([(1, "first".to_owned())])))
        );
        assert_eq!(
            refusals.of_update(2),
            Some(&Refused::Whole("the whole".into()))
        );
    }

    #[test]
    fn an_item_outside_the_batch_is_an_error() {
        assert_eq!(
            Refusals::resolve(&batch(), &[item(3, None, "x")]),
            Err(RefusalError::NoSuchUpdate {
                update: 3,
                updates: 3
            })
        );
        assert_eq!(
            Refusals::resolve(&batch(), &[item(0, Some(3), "x")]),
            Err(RefusalError::NoSuchSample {
                update: 0,
                sample: 3,
                samples: 3
            })
        );
        // A Remove has no samples to name.
        assert!(Refusals::resolve(&batch(), &[item(1, Some(0), "x")]).is_err());
        assert!(Refusals::resolve(&batch(), &[item(usize::MAX, None, "x")]).is_err());
    }

    #[test]
    fn no_items_refuse_nothing() {
        let refusals = Refusals::resolve(&batch(), &[]).unwrap();
        assert!(refusals.is_empty());
        assert_eq!(refusals.samples(), 0);
        assert_eq!(refusals.first_reason(), None);
    }
}
