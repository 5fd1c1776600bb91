//! `max_values`: the most distinct values one label takes within one metric. Shared by a
//! `[[resources]]` entry's budget (`limits.rs`) and an `[[endpoints]]` entry's series cap
//! (`series_cap.rs`): both admit series one by one, ask here whether a series would bring a value
//! beyond the cap, and give a source's values back when it is replaced or removed.

use std::collections::HashMap;

/// The values one admitted series holds: (family, label name, value) of each of its labels.
pub(crate) type HeldValues = Vec<(String, String, String)>;

/// Every value admitted per (family, label name), with how many admitted series carry it.
#[derive(Debug)]
pub(crate) struct LabelValues {
    max: u64,
    values: HashMap<(String, String), HashMap<String, u32>>,
}

impl LabelValues {
    /// At most `max` distinct values per label of each family.
    pub(crate) fn new(max: u64) -> LabelValues {
        LabelValues {
            max,
            values: HashMap::new(),
        }
    }

    /// The cap.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Whether a series of `family` with `labels` would bring a value beyond the cap.
    pub(crate) fn refuses<'l>(
        &self,
        family: &str,
        labels: impl Iterator<Item = (&'l str, &'l str)>,
    ) -> bool {
        // Two labels of one sample never share a name, so each is checked on its own.
        labels.into_iter().any(|(name, value)| {
            let key = (family.to_owned(), name.to_owned());
            let known = self.values.get(&key);
            let present = known.is_some_and(|v| v.contains_key(value));
            let distinct = known.map_or(0, |v| v.len() as u64);
            !present && distinct >= self.max
        })
    }

    /// Counts an admitted series of `family` with `labels`, recording its values in `held`.
    pub(crate) fn add<'l>(
        &mut self,
        family: &str,
        labels: impl Iterator<Item = (&'l str, &'l str)>,
        held: &mut HeldValues,
    ) {
        for (name, value) in labels {
            let counts = (self.values)
                .entry((family.to_owned(), name.to_owned()))
                .or_default();
            *counts.entry(value.to_owned()).or_default() += 1;
            held.push((family.to_owned(), name.to_owned(), value.to_owned()));
        }
    }

    /// Gives back the values a source held.
    pub(crate) fn give_back(&mut self, held: HeldValues) {
        for (family, name, value) in held {
            let key = (family, name);
            let Some(counts) = self.values.get_mut(&key) else {
                continue;
            };
            if let Some(count) = counts.get_mut(&value) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&value);
                }
            }
            if counts.is_empty() {
                self.values.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_comes_back_when_the_series_holding_it_go() {
        let mut values = LabelValues::new(2);
        let (mut a, mut b) = (HeldValues::new(), HeldValues::new());
        values.add("m", [("l", "1")].into_iter(), &mut a);
        values.add("m", [("l", "2")].into_iter(), &mut b);
        assert!(values.refuses("m", [("l", "3")].into_iter()));
        assert!(
            !values.refuses("m", [("l", "2")].into_iter()),
            "known value"
        );
        assert!(
            !values.refuses("other", [("l", "3")].into_iter()),
            "per family"
        );
        values.give_back(b);
        assert!(!values.refuses("m", [("l", "3")].into_iter()));
    }
}
