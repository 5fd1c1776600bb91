//! Reading a JSON answer with a cap on its values.
//!
//! A document held as [`serde_json::Value`] takes 32 bytes and more per value: 16 MiB of `0,` is
//! 8 million values and a quarter of a gigabyte before a single sample is written. The answer is
//! read into the same `Value`, but the parse fails at the first value past
//! [`MAX_VALUES`]; serde_json's own limit of 128 levels of nesting still applies.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The most values (numbers, strings, booleans, nulls, arrays and objects) a JSON answer may
/// hold.
pub(crate) const MAX_VALUES: usize = 1_000_000;

/// Parses `body`, failing past `max_values` values.
pub(crate) fn parse(body: &[u8], max_values: usize) -> Result<Value, serde_json::Error> {
    let mut left = max_values;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Bounded {
        left: &mut left,
        max: max_values,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A value, counted against what is `left` of `max`.
struct Bounded<'c> {
    left: &'c mut usize,
    max: usize,
}

impl Bounded<'_> {
    fn take<E: de::Error>(&mut self) -> Result<(), E> {
        match self.left.checked_sub(1) {
            Some(left) => {
                *self.left = left;
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "more than {} values in the answer",
                self.max
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Bounded {
            left: &mut *self.left,
            max: self.max,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Bounded {
                left: &mut *self.left,
                max: self.max,
            })?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_within_the_cap_reads_as_serde_json_reads_it() {
        let text =
            br#"{"a": [1, -2, 2.5, "x", true, null], "b": {"c": {}}, "d": 18446744073709551615}"#;
        let expected: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(parse(text, 11).unwrap(), expected);
    }

    #[test]
    fn the_value_past_the_cap_fails_the_parse() {
        let text = br#"{"a": [1, -2, 2.5, "x", true, null], "b": {"c": {}}, "d": 1}"#;
        let error = parse(text, 10).unwrap_err().to_string();
        assert!(
            error.starts_with("more than 10 values in the answer"),
            "{error}"
        );
    }

    #[test]
    fn deep_nesting_and_trailing_text_are_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = parse(deep.as_bytes(), MAX_VALUES).unwrap_err().to_string();
        assert!(error.contains("recursion limit exceeded"), "{error}");
        assert!(parse(b"{} x", MAX_VALUES).is_err());
    }
}
