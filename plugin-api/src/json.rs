//! Samples and sources as JSON, the same way in every writer: the file exporter's lines, the
//! Elasticsearch exporter's documents and the host's dead-letter file all use these pieces.
//!
//! A sample becomes the fields
//!
//! ```json
//! {"family":"vm_memory","metric":"vm_memory_bytes","type":"gauge","unit":"bytes",
//!  "labels":{"node":"n1"},"value":2.5}
//! ```
//!
//! and a source the object `{"kind":"object","id":"…","api_version":"…","object_kind":"…",
//! "namespace":"…","name":"…","uid":"…"}` without its empty fields.
//!
//! # NaN and infinities
//!
//! JSON has no NaN or infinities. A value that is one is written as `"value": null` beside
//! `"value_text": "NaN"` (or `"+Inf"`, `"-Inf"`, the Prometheus spelling); a finite value is a
//! plain number and has no `value_text`. Why this and not the alternatives:
//!
//! - `value` keeps one type, number (or null). Elasticsearch maps it as `double` and refuses a
//!   whole document whose `value` is the string `"NaN"` or `"+Inf"` (a `double` field holds finite
//!   numbers only), while it indexes `null` as "no value" and keeps the document; `jq`, Vector's
//!   `to_float` and every typed reader treat `null` as missing rather than failing on a string.
//! - Prometheus' HTTP API writes *every* value as a string (`"2.5"`, `"+Inf"`). That suits a
//!   reader that parses each value anyway, but makes every value unusable as a number in
//!   Elasticsearch or a JSON query; mixing the two (numbers, and strings only for NaN and ±Inf)
//!   gives a field of two types, the worst of both.
//! - `value_text` keeps what the value was, in the spelling of the Prometheus text format and
//!   HTTP API (`NaN`, `+Inf`, `-Inf`), so nothing is lost: a `+Inf` sample stays distinguishable
//!   from a missing one.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::batch::{Sample, Source};

/// The Prometheus spelling of a value JSON cannot hold (`"NaN"`, `"+Inf"`, `"-Inf"`); `None` for a
/// finite value.
pub fn non_finite_text(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("+Inf")
    } else if value == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Writes the `value` entry of `value` into `map`, and for NaN or ±Inf the `value_text` entry
/// (see the module docs).
pub fn serialize_value<M: SerializeMap>(map: &mut M, value: f64) -> Result<(), M::Error> {
    match non_finite_text(value) {
        None => map.serialize_entry("value", &value),
        Some(text) => {
            map.serialize_entry("value", &())?;
            map.serialize_entry("value_text", text)
        }
    }
}

/// A source as a JSON object: `kind`, `id`, then each of `api_version`, `object_kind`,
/// `namespace`, `name` and `uid` that is not empty.
#[derive(Clone, Copy, Debug)]
pub struct SourceJson<'a>(pub Source<'a>);

impl Serialize for SourceJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let source = &self.0;
        let optional = [
            ("api_version", source.api_version),
            ("object_kind", source.object_kind),
            ("namespace", source.namespace),
            ("name", source.name),
            ("uid", source.uid),
        ];
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", source.kind.as_str())?;
        map.serialize_entry("id", source.id)?;
        for (key, value) in optional.into_iter().filter(|(_, v)| !v.is_empty()) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A sample's labels as a JSON object, in the sample's order.
#[derive(Clone, Copy, Debug)]
pub struct LabelsJson<'a>(pub Sample<'a>);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.labels())
    }
}

/// The fields of a sample: `family`, `metric`, `type`, `unit` (when not empty), `labels`,
/// `value` and, for NaN or ±Inf, `value_text`.
///
/// Serialized alone it is a JSON object; a writer that puts the fields into a record of its own
/// calls [`SampleJson::serialize_fields`] on its map (or uses `#[serde(flatten)]`).
#[derive(Clone, Copy, Debug)]
pub struct SampleJson<'a>(pub Sample<'a>);

impl SampleJson<'_> {
    /// Writes the sample's fields into `map`.
    pub fn serialize_fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        let sample = self.0;
        let family = sample.family();
        map.serialize_entry("family", family.name)?;
        map.serialize_entry("metric", &sample.metric_name())?;
        map.serialize_entry("type", family.kind.as_str())?;
        if !family.unit.is_empty() {
            map.serialize_entry("unit", family.unit)?;
        }
        map.serialize_entry("labels", &LabelsJson(sample))?;
        serialize_value(map, sample.value())
    }
}

impl Serialize for SampleJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.serialize_fields(&mut map)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, BatchBuilder, Family, FamilyKind, SourceKind, Suffix, Update};
    use serde_json::{Value, json};

    fn batch(values: &[f64]) -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "vm_memory",
            help: "Memory.",
            unit: "bytes",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source {
            kind: SourceKind::Object,
            id: "kubevirt.io/v1/VirtualMachineInstance/default/vm1",
            api_version: "kubevirt.io/v1",
            object_kind: "VirtualMachineInstance",
            namespace: "default",
            name: "vm1",
            uid: "",
        });
        for value in values {
            r.sample(f, Suffix::None, *value, 0)
                .label("node", "n1")
                .label("zone", "a");
        }
        b.build()
    }

    fn samples(batch: &Batch) -> Vec<Value> {
        let Some(Update::Replace { samples, .. }) = batch.updates().next() else {
            panic!("expected a replace");
        };
        samples
            .iter()
            .map(|s| serde_json::to_value(SampleJson(s)).unwrap())
            .collect()
    }

    #[test]
    fn a_sample_has_its_family_metric_type_unit_labels_and_value() {
        assert_eq!(
            samples(&batch(&[2.5])),
            [json!({
                "family": "vm_memory", "metric": "vm_memory", "type": "gauge", "unit": "bytes",
                "labels": {"node": "n1", "zone": "a"}, "value": 2.5
            })]
        );
    }

    #[test]
    fn nan_and_infinities_are_null_with_the_prometheus_spelling_beside() {
        let values: Vec<(Value, Value)> =
            samples(&batch(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5]))
                .into_iter()
                .map(|s| {
                    (
                        s["value"].clone(),
                        s.get("value_text").cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
        assert_eq!(
            values,
            [
                (Value::Null, json!("NaN")),
                (Value::Null, json!("+Inf")),
                (Value::Null, json!("-Inf")),
                (json!(-0.5), Value::Null),
            ]
        );
    }

    #[test]
    fn a_source_leaves_out_its_empty_fields() {
        let batch = batch(&[]);
        let source = batch.updates().next().unwrap().source();
        assert_eq!(
            serde_json::to_value(SourceJson(source)).unwrap(),
            json!({"kind": "object", "id": "kubevirt.io/v1/VirtualMachineInstance/default/vm1",
                   "api_version": "kubevirt.io/v1", "object_kind": "VirtualMachineInstance",
                   "namespace": "default", "name": "vm1"})
        );
        assert_eq!(
            serde_json::to_value(SourceJson(Source::new(SourceKind::Endpoint, "http://a/m")))
                .unwrap(),
            json!({"kind": "endpoint", "id": "http://a/m"})
        );
    }

    #[test]
    fn the_text_of_a_finite_value_is_none() {
        assert_eq!(non_finite_text(1e308), None);
        assert_eq!(non_finite_text(-0.0), None);
        assert_eq!(non_finite_text(-f64::NAN), Some("NaN"));
    }
}
