//! What of an object the pipeline reads, found from the config text, and the pruning of an object
//! down to it.
//!
//! A watch holds every object it was sent, to apply it again on a reload or a join's change and
//! to send it again on a resync. Most configs read a handful of fields of objects of several
//! kilobytes (a VMI's spec, status and managed fields), so a watch prunes each object as it
//! arrives to what some entry of its kind, or some join of it, might read ([`Keep`]): the object
//! the pipeline sees and the one held are the same, and what no path or expression names is never
//! stored. [`entry_reads`] errs on keeping: a path or expression it cannot read keeps the whole
//! object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::config::ResourceConfig;
use crate::expr::{ANY_FIELD, Expr, OBJECT, Scope};
use crate::path::Path;
use crate::selector::LabelSelector;

/// The fields of an object to keep: a tree of field names, where a field kept `whole` keeps
/// everything below it.
///
/// A field in the tree that is neither whole nor has fields of its own is kept for its presence
/// and type only: a map there keeps none of its fields, any other value is kept as it is. Pruning
/// walks maps only: a list or a scalar where the tree goes on is kept whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Keep {
    whole: bool,
    fields: BTreeMap<String, Keep>,
}

impl Keep {
    /// Keeps everything.
    pub fn everything() -> Keep {
        Keep {
            whole: true,
            fields: BTreeMap::new(),
        }
    }

    /// Keeps the field at `path` and all below it; an empty path keeps everything, and so does a
    /// field [`ANY_FIELD`] (known only at run time) at its level.
    pub fn add<S: AsRef<str>>(&mut self, path: &[S]) {
        self.insert(path, true);
    }

    /// Keeps the field at `path` for its presence and type (`has(…)`, `type(…)`), not what is
    /// inside it.
    pub fn add_presence<S: AsRef<str>>(&mut self, path: &[S]) {
        self.insert(path, false);
    }

    /// Keeps what an expression reads of a variable, as [`Expr::field_reads`] lists it.
    pub fn add_reads(&mut self, reads: Vec<(Vec<String>, bool)>) {
        for (fields, presence) in reads {
            if presence {
                self.add_presence(&fields);
            } else {
                self.add(&fields);
            }
        }
    }

    fn insert<S: AsRef<str>>(&mut self, path: &[S], whole: bool) {
        if self.whole {
            return;
        }
        match path.split_first() {
            Some((first, _)) if first.as_ref() == ANY_FIELD => self.keep_whole(),
            None if whole => self.keep_whole(),
            None => {}
            Some((first, rest)) => self
                .fields
                .entry(first.as_ref().to_owned())
                .or_default()
                .insert(rest, whole),
        }
    }

    fn keep_whole(&mut self) {
        self.whole = true;
        self.fields.clear();
    }

    /// Keeps what `other` keeps too.
    pub fn merge(&mut self, other: &Keep) {
        if self.whole {
            return;
        }
        if other.whole {
            self.keep_whole();
            return;
        }
        for (field, keep) in &other.fields {
            self.fields.entry(field.clone()).or_default().merge(keep);
        }
    }

    /// Whether everything `other` keeps is kept here too: an object pruned by `self` reads the
    /// same as one pruned by `other` wherever `other`'s fields are read.
    pub fn covers(&self, other: &Keep) -> bool {
        self.whole
            || (!other.whole
                && other.fields.iter().all(|(field, keep)| {
                    self.fields.get(field).is_some_and(|mine| mine.covers(keep))
                }))
    }

    /// Whether everything is kept.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The fields kept, each with what is kept of it (none when everything is).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Keep)> {
        self.fields.iter().map(|(name, keep)| (name.as_str(), keep))
    }

    /// Drops from `value`, in place, what is not kept.
    pub fn prune(&self, value: &mut Value) {
        if self.whole {
            return;
        }
        if let Value::Object(map) = value {
            map.retain(|field, inner| match self.fields.get(field) {
                Some(keep) => {
                    keep.prune(inner);
                    true
                }
                None => false,
            });
        }
    }

    /// A copy of `value` with only what is kept.
    pub fn pruned(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if !self.whole => Value::Object(
                self.fields
                    .iter()
                    .filter_map(|(field, keep)| Some((field.clone(), keep.pruned(map.get(field)?))))
                    .collect(),
            ),
            _ => value.clone(),
        }
    }
}

/// Reads JSON text as [`Keep::pruned`] would leave it, without building what is not kept: the
/// fields it drops are only scanned. `keep` whole reads the value whole.
pub struct Pruning<'k>(pub &'k Keep);

impl<'de> DeserializeSeed<'de> for Pruning<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0.whole {
            Value::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

/// A map is read field by field, the others whole: pruning walks maps only.
impl<'de> Visitor<'de> for Pruning<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(FieldName(name)) = map.next_key()? {
            match self.0.fields.get(name.as_ref()) {
                Some(keep) => {
                    let value = map.next_value_seed(Pruning(keep))?;
                    fields.insert(name.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A field name, borrowed from the text when it has no escapes: a field dropped costs no
/// allocation.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// What every entry reads of its objects: the object's key.
const KEY_FIELDS: [&[&str]; 5] = [
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
];

/// What `entry` might read of the objects it selects: their key, the labels its selector tests,
/// the fields its paths walk up to their first list index, wildcard or selector, and the fields
/// its expressions select from `object`. What joins read of *other* objects is not in it (see
/// [`super::joins::joined_kinds`]).
pub fn entry_reads(entry: &ResourceConfig) -> Keep {
    let mut keep = Keep::default();
    for fields in KEY_FIELDS {
        keep.add(fields);
    }
    if let Some(selector) = &entry.label_selector {
        match LabelSelector::parse(selector.get_ref()) {
            Ok(selector) => {
                for key in selector.keys() {
                    keep.add(&["metadata", "labels", key]);
                }
            }
            Err(_) => keep.add(&["metadata", "labels"]),
        }
    }
    // Paths inside an `each` are read from its items, which its own path keeps whole.
    let mut per_item: Vec<String> = Vec::new();
    for (j, metric) in entry.metrics.iter().enumerate() {
        if metric.each.is_some() {
            per_item.push(format!("metrics[{j}]."));
        }
    }
    for (j, derived) in entry.derived.iter().enumerate() {
        if derived.each.is_some() {
            per_item.push(format!("derived[{j}]."));
        }
    }
    let of_item = |key: &str| {
        per_item
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()) && !key.ends_with(".each"))
    };
    for (key, text) in entry.paths() {
        match Path::parse(text.get_ref()) {
            // What a join reads is kept by the joined kind's watch.
            Ok(path) if path.join().is_some() => {}
            Ok(path) if of_item(&key) && !path.is_anchored() => {}
            Ok(path) => keep.add(&path.leading_fields()),
            Err(_) => keep.add::<&str>(&[]),
        }
    }
    for (key, text) in entry.expressions() {
        // A join's `where` reads `joined` beside `object`.
        let scope = if key.starts_with("joins[") && key.ends_with(".where") {
            Scope::Joined
        } else {
            Scope::Item
        };
        let Ok(expr) = Expr::compile(text.get_ref(), scope) else {
            keep.add::<&str>(&[]);
            continue;
        };
        keep.add_reads(expr.field_reads(OBJECT));
    }
    keep
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(body: &str) -> ResourceConfig {
        let text = format!("group = \"\"\nversion = \"v1\"\nkind = \"Pod\"\n{body}");
        toml::from_str(&text).expect("an entry")
    }

    fn keep_of(paths: &[&[&str]]) -> Keep {
        let mut keep = Keep::default();
        for path in paths {
            keep.add(path);
        }
        keep
    }

    #[test]
    fn pruning_keeps_only_the_fields_read_and_what_is_not_a_map_whole() {
        let mut keep = keep_of(&[
            &["metadata", "name"],
            &["spec", "resources"],
            &["spec", "ports", "x"],
        ]);
        keep.add_presence(&["status"]);
        let object = json!({
            "metadata": {"name": "a", "annotations": {"big": "x".repeat(100)}},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}, "other": 1, "ports": [1, 2]},
            "status": {"phase": "Bound"},
        });
        let expected = json!({
            "metadata": {"name": "a"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}, "ports": [1, 2]},
            "status": {},
        });
        assert_eq!(keep.pruned(&object), expected);
        let mut in_place = object.clone();
        keep.prune(&mut in_place);
        assert_eq!(in_place, expected);
        keep.add::<&str>(&["spec"]);
        keep.add::<&str>(&[]);
        assert!(keep.is_whole());
        assert_eq!(keep.pruned(&object), object);
    }

    #[test]
    fn reading_pruned_gives_what_pruning_leaves() {
        let mut keep = keep_of(&[
            &["metadata", "name"],
            &["metadata", "labels"],
            &["spec", "ports", "x"],
            &["status", "phase"],
        ]);
        keep.add_presence(&["status", "conditions"]);
        keep.add_presence(&["spec", "replicas"]);
        let text = r#"{
            "metadata": {"name": "a\u00e9", "labels": {"app": "web", "n": 3}, "managedFields": [{"a": {"b": [1, 2.5, null]}}]},
            "spec": {"ports": [{"x": 1}, 2, "three"], "replicas": 3, "big": {"deep": [true, false]}},
            "status": {"phase": null, "conditions": {"Ready": {"status": "True"}}, "p\u0068ase": "escaped key"},
            "kind": "Pod"
        }"#;
        let whole: Value = serde_json::from_str(text).expect("JSON");
        let read =
            |keep: &Keep| Pruning(keep).deserialize(&mut serde_json::Deserializer::from_str(text));
        assert_eq!(read(&keep).expect("JSON"), keep.pruned(&whole));
        assert_eq!(read(&Keep::everything()).expect("JSON"), whole);
        assert_eq!(read(&Keep::default()).expect("JSON"), serde_json::json!({}));
        // Not an object at the top: read as it is, as pruning leaves it.
        let list =
            Pruning(&keep).deserialize(&mut serde_json::Deserializer::from_str("[1, {\"a\": 2}]"));
        assert_eq!(list.expect("JSON"), serde_json::json!([1, {"a": 2}]));
        // What is dropped must still be JSON.
        let broken = Pruning(&keep).deserialize(&mut serde_json::Deserializer::from_str(
            r#"{"metadata": {"name": "a"}, "spec": {"big": [1, }}"#,
        ));
        assert!(broken.is_err());
    }

    #[test]
    fn a_keep_covers_what_keeps_less() {
        let narrow = keep_of(&[&["metadata", "name"], &["status", "phase"]]);
        let mut presence = Keep::default();
        presence.add_presence(&["status"]);
        let wide = keep_of(&[&["metadata"], &["status"]]);
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        assert!(narrow.covers(&presence));
        assert!(!presence.covers(&narrow));
        assert!(Keep::everything().covers(&wide));
        assert!(!wide.covers(&Keep::everything()));
        let mut merged = narrow.clone();
        merged.merge(&keep_of(&[&["spec", "x"]]));
        assert!(merged.covers(&narrow));
        assert!(merged.covers(&keep_of(&[&["spec", "x", "y"]])));
        merged.merge(&Keep::everything());
        assert!(merged.is_whole());
    }

    #[test]
    fn an_entry_reads_its_key_selector_paths_and_expressions() {
        let read = entry_reads(&entry(
            "label_selector = \"app in (web), !legacy\"\n\
             labels = { node = \"spec.nodeName\" }\n\
             where = \"has(object.status.podIP)\"\n\
             [[metrics]]\nname = \"up\"\ntype = \"gauge\"\npath = \"status.phase\"\n\
             value_map = { Running = 1 }\n\
             [[metrics]]\nname = \"ready\"\ntype = \"gauge\"\n\
             expr = \"object.status.conditions.exists(c, c.type == 'Ready') ? 1 : 0\"\n\
             [[metrics]]\nname = \"info\"\ntype = \"info\"\n\
             labels_from = { path = \"metadata.labels\" }\n\
             [[metrics]]\nname = \"c\"\ntype = \"gauge\"\neach = \"spec.containers[*]\"\n\
             path = \"restarts\"\nlabels = { c = \"name\", host = \"$.spec.hostname\" }",
        ));
        let mut expected = keep_of(&[
            &["apiVersion"],
            &["kind"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "uid"],
            &["metadata", "labels"],
            &["spec", "nodeName"],
            &["spec", "hostname"],
            &["spec", "containers"],
            &["status", "phase"],
            &["status", "conditions"],
        ]);
        expected.add_presence(&["status", "podIP"]);
        assert_eq!(read, expected);
    }

    #[test]
    fn what_cannot_be_read_narrowly_keeps_everything() {
        for reading in [
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels = { all = { expr = \"string(object)\" } }",
            "[[metrics]]\nname = \"m\"\ntype = \"gauge\"\nexpr = \"size(object)\"",
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels = { k = { expr = \"object[object.kind]\" } }",
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels_from = { path = \".\" }",
        ] {
            assert!(entry_reads(&entry(reading)).is_whole(), "{reading}");
        }
        // A computed key keeps its map whole, no more.
        let read = entry_reads(&entry(
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels = { k = { expr = \"object.metadata.annotations[object.spec.key]\" } }",
        ));
        assert!(!read.is_whole());
        assert!(read.covers(&keep_of(&[&["metadata", "annotations"], &["spec", "key"]])));
        assert!(!read.covers(&keep_of(&[&["metadata", "managedFields"]])));
    }

    #[test]
    fn the_bulky_parts_go_unless_read() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "a",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "x"},
            },
        });
        let plain = entry_reads(&entry(
            "[[metrics]]\nname = \"a\"\ntype = \"info\"\nlabels = { team = \"metadata.annotations.team\" }",
        ));
        assert_eq!(
            plain.pruned(&object),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "annotations": {"team": "x"}}})
        );
        let managers = entry_reads(&entry(
            "[[metrics]]\nname = \"m\"\ntype = \"gauge\"\neach = \"metadata.managedFields\"\npath = \"operation\"\nvalue_map = { Apply = 1 }",
        ));
        assert_eq!(
            managers.pruned(&object)["metadata"]["managedFields"],
            object["metadata"]["managedFields"]
        );
    }
}
