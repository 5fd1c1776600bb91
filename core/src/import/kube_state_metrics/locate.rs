//! The line of a construct of a YAML file, from its key path (`spec.resources[1].metrics[0].each`).
//!
//! serde_yaml_ng keeps no positions in the values it builds, but it places every error at the
//! node being read when the error is raised. So the file is read once more with a probe that walks
//! the key path and fails on arriving: the error's position is the node's.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A map key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A key path into the YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(pub(super) Vec<Step>);

impl KeyPath {
    /// The path with `key` added.
    pub(super) fn key(&self, key: &str) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_owned()));
        KeyPath(steps)
    }

    /// The path with `index` added.
    pub(super) fn index(&self, index: usize) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        KeyPath(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => write!(f, "{key}")?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The 1-based line and column of the node at `path` in `text`, when the path is there.
pub(super) fn line_of(text: &str, path: &KeyPath) -> Option<(usize, usize)> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let error = match (Probe { steps: &path.0 }).deserialize(deserializer) {
        Ok(()) => return None,
        Err(error) => error,
    };
    if !error.to_string().contains(ARRIVED) {
        return None;
    }
    error.location().map(|l| (l.line(), l.column()))
}

/// The message the probe fails with on arriving.
const ARRIVED: &str = "periscope: arrived";

/// Walks `steps`, then fails.
struct Probe<'p> {
    steps: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let Some((Step::Key(wanted), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        while let Some(key) = map.next_key::<String>()? {
            if &key == wanted {
                return map.next_value_seed(Probe { steps: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let Some((Step::Index(wanted), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe { steps: rest }).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(ARRIVED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_path_is_found_at_its_line() {
        let text =
            "spec:\n  resources:\n    - a: 1\n    - a: 2\n      each:\n        type: Gauge\n";
        let path = KeyPath::default()
            .key("spec")
            .key("resources")
            .index(1)
            .key("each")
            .key("type");
        assert_eq!(line_of(text, &path).map(|p| p.0), Some(6));
        assert_eq!(path.to_string(), "spec.resources[1].each.type");
        let map = KeyPath::default()
            .key("spec")
            .key("resources")
            .index(1)
            .key("each");
        assert_eq!(line_of(text, &map).map(|p| p.0), Some(6));
        assert_eq!(line_of(text, &KeyPath::default().key("nope")), None);
    }
}
