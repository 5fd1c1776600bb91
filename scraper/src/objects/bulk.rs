//! The bulky parts of an object that metrics almost never read, dropped by a watch as an object
//! arrives: `metadata.managedFields` (the field managers' record, often as large as the rest of
//! the object) and the `kubectl.kubernetes.io/last-applied-configuration` annotation (a whole copy
//! of the object as last applied). Neither the pipeline nor the copy a watch holds carries them.
//!
//! A kind keeps them when some `[[resources]]` entry about it might read them: a path or an
//! expression that reaches into one of them, or reads something that holds one whole
//! (`metadata`, `metadata.annotations` as a map for `labels_from`, the object itself), or names
//! one in its text. The test errs on keeping.

use serde_json::Value;

use crate::config::ResourceConfig;
use crate::expr::{ANY_FIELD, Expr, OBJECT, Scope};
use crate::path::Path;

/// The annotation `kubectl apply` writes.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Where the bulky parts are, as fields from the object's root.
const BULK: [&[&str]; 2] = [
    &["metadata", "managedFields"],
    &["metadata", "annotations", LAST_APPLIED],
];

/// Whether `entry` might read a bulky part of its objects.
pub fn reads_bulk(entry: &ResourceConfig) -> bool {
    let named = |text: &str| text.contains("managedFields") || text.contains(LAST_APPLIED);
    let paths = entry.paths();
    let expressions = entry.expressions();
    if paths
        .iter()
        .chain(&expressions)
        .any(|(_, text)| named(text.get_ref()))
    {
        return true;
    }
    // Paths inside an `each` are read from its items, which its own path covers.
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
    let path_reads = paths
        .iter()
        .any(|(key, text)| match Path::parse(text.get_ref()) {
            Ok(path) if path.join().is_some() => false,
            Ok(path) if of_item(key) && !path.is_anchored() => false,
            Ok(path) => overlaps(&path.leading_fields()),
            Err(_) => true,
        });
    // In expressions, `item` is inside an `each` too; `object` is the object.
    path_reads
        || expressions.iter().any(|(_, text)| {
            let Ok(expr) = Expr::compile(text.get_ref(), Scope::Item) else {
                return true;
            };
            expr.field_reads(OBJECT).iter().any(|(fields, presence)| {
                let fields: Vec<&str> = fields
                    .iter()
                    .map(String::as_str)
                    .take_while(|f| *f != ANY_FIELD)
                    .collect();
                // Whether a field is there, or what type it is (`has`, `in`, `type`), changes
                // only for a bulky part itself or what is inside one: a key named after one
                // is in the expression's text.
                if *presence {
                    BULK.iter().any(|bulk| fields.starts_with(bulk))
                } else {
                    overlaps(&fields)
                }
            })
        })
}

/// Whether reading from `fields` on may reach a bulky part: they lead into one, or to something
/// that holds one.
fn overlaps(fields: &[&str]) -> bool {
    BULK.iter()
        .any(|bulk| bulk.starts_with(fields) || fields.starts_with(bulk))
}

/// Drops the bulky parts of `object`.
pub fn drop_bulk(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    metadata.remove("managedFields");
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(body: &str) -> ResourceConfig {
        let text = format!("group = \"\"\nversion = \"v1\"\nkind = \"Pod\"\n{body}");
        toml::from_str(&text).expect("an entry")
    }

    #[test]
    fn only_entries_that_might_read_a_bulky_part_keep_it() {
        let plain = entry(
            "labels = { node = \"spec.nodeName\" }\n\
             [[metrics]]\nname = \"up\"\ntype = \"gauge\"\npath = \"status.phase\"\n\
             value_map = { Running = 1 }\n\
             [[metrics]]\nname = \"ready\"\ntype = \"gauge\"\n\
             expr = \"object.status.conditions.exists(c, c.type == 'Ready') ? 1 : 0\"\n\
             [[metrics]]\nname = \"info\"\ntype = \"info\"\n\
             labels_from = { path = \"metadata.labels\" }\n\
             [[metrics]]\nname = \"c\"\ntype = \"gauge\"\neach = \"status.conditions[*]\"\n\
             path = \".\"\nconvert = \"bool\"\nlabels = { type = \"type\" }",
        );
        assert!(!reads_bulk(&plain));
        // Presence and type tests of what holds a bulky part do not need the part.
        let tests = entry(
            "where = 'type(object) == map && \"metadata\" in object && type(object[\"metadata\"]) == map && \"annotations\" in object.metadata && has(object.metadata.labels)'\n\
             [[metrics]]\nname = \"up\"\ntype = \"gauge\"\npath = \"status.phase\"\nvalue_map = { Running = 1 }",
        );
        assert!(!reads_bulk(&tests));
        for reading in [
            "[[metrics]]\nname = \"m\"\ntype = \"gauge\"\npath = \"metadata.managedFields[0].time\"\nconvert = \"timestamp\"",
            "[[metrics]]\nname = \"a\"\ntype = \"info\"\nlabels_from = { path = \"metadata.annotations\" }",
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels = { all = { expr = \"string(object.metadata)\" } }",
            "[[metrics]]\nname = \"m\"\ntype = \"info\"\nlabels = { k = { expr = \"object.metadata.annotations[object.spec.key]\" } }",
            "[[metrics]]\nname = \"m\"\ntype = \"gauge\"\nexpr = \"size(object)\"",
            "[[metrics]]\nname = \"m\"\ntype = \"gauge\"\neach = \"metadata.managedFields\"\npath = \"operation\"\nvalue_map = { Apply = 1 }",
        ] {
            assert!(reads_bulk(&entry(reading)), "{reading}");
        }
    }

    #[test]
    fn dropping_takes_the_bulky_parts_only() {
        let mut object = json!({
            "metadata": {
                "name": "a",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{...}", "team": "x"},
            },
            "spec": {"managedFields": "a field of the spec is not metadata's"},
        });
        drop_bulk(&mut object);
        assert_eq!(
            object,
            json!({
                "metadata": {"name": "a", "annotations": {"team": "x"}},
                "spec": {"managedFields": "a field of the spec is not metadata's"},
            })
        );
        let mut bare = json!({"kind": "Pod"});
        drop_bulk(&mut bare);
        assert_eq!(bare, json!({"kind": "Pod"}));
    }
}
