//! Reading the objects out of one manifest file: YAML with any number of documents, or JSON, with
//! lists (`kind: List`, `VirtualMachineInstanceList`, …) opened into their items.

use serde::Deserialize;
use serde_json::Value;

/// Why a manifest file holds no objects to read; the message says where the text is broken.
#[derive(Debug, thiserror::Error)]
pub(super) enum ManifestError {
    /// Broken JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A broken YAML document (1-based).
    #[error("YAML document {document}: {source}")]
    Yaml {
        /// Which document of the file.
        document: usize,
        /// Where and what.
        source: serde_yaml_ng::Error,
    },
    /// YAML with flow collections (`[`, `{`) nested deeper than anything readable: the YAML
    /// scanner takes time quadratic in the depth, so it is refused before parsing.
    #[error("YAML nested more than {MAX_FLOW_DEPTH} brackets deep (at line {line})")]
    TooDeep {
        /// The 1-based line where the depth was passed.
        line: usize,
    },
}

/// The deepest nesting of `[` and `{` a YAML manifest may have. Deserializing stops at 128
/// levels anyway; this bound only keeps the scanner from spending minutes on a hostile file (100 000
/// levels took longer than a minute).
const MAX_FLOW_DEPTH: usize = 1000;

/// The objects in the text of a manifest file; `json` says to read it as JSON instead of YAML.
/// Empty documents are skipped.
pub(super) fn objects(text: &str, json: bool) -> Result<Vec<Value>, ManifestError> {
    let mut objects = Vec::new();
    if json {
        let document: Value = serde_json::from_str(text)?;
        open_lists(document, &mut objects);
        return Ok(objects);
    }
    check_flow_depth(text)?;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = Value::deserialize(document).map_err(|source| ManifestError::Yaml {
            document: index + 1,
            source,
        })?;
        open_lists(document, &mut objects);
    }
    Ok(objects)
}

/// Refuses text whose brackets nest deeper than [`MAX_FLOW_DEPTH`]. Brackets in strings and
/// comments count too: a bound this far above what deserializing takes only errs on text no
/// manifest holds.
fn check_flow_depth(text: &str) -> Result<(), ManifestError> {
    let mut depth = 0usize;
    let mut line = 1;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(ManifestError::TooDeep { line });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    Ok(())
}

/// Pushes the document, or its items if it is a list. Items of a typed list (`FooList`) that lack
/// `apiVersion` or `kind` get them from the list, as the API server leaves them out.
fn open_lists(document: Value, out: &mut Vec<Value>) {
    let Some(list_kind) = list_kind(&document) else {
        if !document.is_null() {
            out.push(document);
        }
        return;
    };
    let item_kind = list_kind
        .strip_suffix("List")
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let api_version = document.get("apiVersion").cloned();
    let Value::Object(mut list) = document else {
        return;
    };
    let Some(Value::Array(items)) = list.remove("items") else {
        return;
    };
    for mut item in items {
        if let Value::Object(fields) = &mut item {
            if let (Some(kind), false) = (&item_kind, fields.contains_key("kind")) {
                fields.insert("kind".to_owned(), Value::String(kind.clone()));
            }
            if let (Some(version), false) = (&api_version, fields.contains_key("apiVersion")) {
                fields.insert("apiVersion".to_owned(), version.clone());
            }
        }
        open_lists(item, out);
    }
}

/// The kind of a list document: a kind ending in `List`, with an `items` array.
fn list_kind(document: &Value) -> Option<String> {
    let kind = document.get("kind")?.as_str()?;
    let has_items = document.get("items").is_some_and(Value::is_array);
    (kind.ends_with("List") && has_items).then(|| kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_files_hold_many_documents() {
        let text = "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n---\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata:\n  name: b\n";
        let objects = objects(text, false).unwrap();
        let names: Vec<_> = objects.iter().map(|o| &o["metadata"]["name"]).collect();
        assert_eq!(names, [&json!("a"), &json!("b")]);
    }

    #[test]
    fn lists_contribute_their_items() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}},
            {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "b"}}
        ]}"#;
        let objects = objects(text, true).unwrap();
        let kinds: Vec<_> = objects.iter().map(|o| &o["kind"]).collect();
        assert_eq!(kinds, [&json!("Node"), &json!("VirtualMachine")]);
    }

    #[test]
    fn typed_list_items_get_the_kind_and_version_of_the_list() {
        let text = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceList\nitems:\n\
                    - metadata:\n    name: a\n";
        let objects = objects(text, false).unwrap();
        assert_eq!(
            objects,
            [json!({
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": "a"},
            })]
        );
    }

    #[test]
    fn broken_yaml_says_which_document_and_where() {
        let text = "kind: Node\n---\nkind: [unclosed\n";
        let err = objects(text, false).unwrap_err();
        assert!(
            matches!(err, ManifestError::Yaml { document: 2, .. }),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.starts_with("YAML document 2:"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn yaml_nested_past_the_bound_is_refused_before_parsing() {
        let deep = format!("a:\n  b: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let error = objects(&deep, false).unwrap_err();
        assert!(
            matches!(error, ManifestError::TooDeep { line: 2 }),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // At the bound the scanner is quick, and deserializing refuses it.
        let started = std::time::Instant::now();
        let at_bound = format!("a: {}1{}\n", "[".repeat(1000), "]".repeat(1000));
        let error = objects(&at_bound, false).unwrap_err();
        assert!(
            error.to_string().contains("recursion limit exceeded"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn broken_json_is_an_error() {
        assert!(matches!(
            objects("{\"kind\": ", true),
            Err(ManifestError::Json(_))
        ));
    }
}
