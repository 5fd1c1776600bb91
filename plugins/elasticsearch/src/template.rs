//! The index template the exporter installs so its indices get sane mappings.
//!
//! `labels` is a `flattened` field: one field in the mapping whatever labels samples carry (no
//! mapping explosion, dots in label names such as `app.kubernetes.io/name` are no problem), every
//! value a keyword. `flattened` is part of the server (no x-pack needed; checked on 8.19.21).

use serde_json::{Value, json};

/// The template's priority: above Elasticsearch's built-in templates (100), so it wins for the
/// indices it names.
pub const PRIORITY: u32 = 150;

/// The template's name for the index pattern `pattern` (`periscope-*` → `periscope`).
pub fn name(pattern: &str) -> String {
    let base = pattern.trim_end_matches(['*', '-', '.', '_']);
    if base.starts_with("periscope") {
        base.to_owned()
    } else {
        format!("periscope-{base}")
    }
}

/// The template body for indices matching `pattern`.
pub fn body(pattern: &str, number_of_replicas: Option<u32>) -> Value {
    let keyword = json!({"type": "keyword"});
    let mut settings = json!({});
    if let Some(replicas) = number_of_replicas {
        settings["number_of_replicas"] = json!(replicas);
    }
    json!({
        "index_patterns": [pattern],
        "priority": PRIORITY,
        "_meta": {"managed_by": "periscope-exporter-elasticsearch"},
        "template": {
            "settings": settings,
            "mappings": {
                "dynamic": true,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "op": keyword,
                    "metric": keyword,
                    "family": keyword,
                    "type": keyword,
                    "unit": keyword,
                    "value": {"type": "double"},
                    "value_text": keyword,
                    "labels": {"type": "flattened"},
                    "source": {"properties": {
                        "kind": keyword, "id": keyword, "api_version": keyword,
                        "object_kind": keyword, "namespace": keyword, "name": keyword, "uid": keyword,
                    }},
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        assert_eq!(name("periscope-*"), "periscope");
        assert_eq!(name("metrics-*"), "periscope-metrics");
        assert_eq!(name("fixed"), "periscope-fixed");
    }

    #[test]
    fn replicas_are_set_only_when_configured() {
        let b = body("p-*", Some(0));
        assert_eq!(b["template"]["settings"]["number_of_replicas"], 0);
        assert_eq!(b["index_patterns"][0], "p-*");
        assert_eq!(
            b["template"]["mappings"]["properties"]["labels"]["type"],
            "flattened"
        );
        assert_eq!(body("p-*", None)["template"]["settings"], json!({}));
    }
}
