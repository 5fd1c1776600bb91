//! The templates the exporter installs so its indices get sane mappings.
//!
//! # Index mode
//!
//! One index template. `labels` is a `flattened` field: one field in the mapping whatever labels samples carry (no
//! mapping explosion, dots in label names such as `app.kubernetes.io/name` are no problem), every
//! value a keyword. `flattened` is part of the server (no x-pack needed; checked on 8.19.21).

//!
//! # Data-stream mode
//!
//! A component template `periscope-metrics-<dataset>@mappings` (settings and mappings) and an
//! index template `periscope-metrics-<dataset>` for `metrics-<dataset>-*` that turns it into a data
//! stream in time series mode (TSDS):
//!
//! - dimensions: `metric`, `source.id`, and every label. `labels` is a `passthrough` object with
//!   `time_series_dimension: true`, and a dynamic template maps each label that appears as a
//!   `keyword` dimension, whatever its name (`app.kubernetes.io/name` stays one field). A
//!   `flattened` field cannot do that: its dimensions must be listed by key in the mapping
//!   (`time_series_dimensions`), and the exporter does not know the label names in advance.
//!   The cost: each distinct label name is one mapped field, counted against
//!   `index.mapping.total_fields.limit` (default 1000), and a label value may be at most 32766
//!   bytes (Lucene's term limit; a longer one is refused and dead-lettered; 8.19 has no
//!   smaller limit for keyword dimensions). The number of
//!   dimensions has no practical limit since 8.13 (`index.mapping.dimension_fields.limit` is
//!   32768 on 8.19: the `_tsid` is a hash).
//!   A `passthrough` object also makes each label queryable by its bare name; the document's
//!   own fields (`metric`, `value`, `source`) win over labels of the same name.
//! - `routing_path`: `metric`, `source.id`, `labels.*` (the dimensions, so one series stays on
//!   one shard).
//! - metrics: `value` is a `gauge`, `counter` a `counter` ([`crate::document`] puts a counter's
//!   sample in `counter`, every other sample in `value`).
//! - `retention` becomes the index template's data stream lifecycle (`data_retention`).
//! - the `_id` is derived by the node from the dimensions and `@timestamp`: a sample sent twice
//!   is answered `409 version_conflict_engine_exception`, which the exporter counts as stored.

use serde_json::{Value, json};

use crate::target::DataStream;

/// The priority of the data stream's index template: above the built-in `metrics` template
/// (`metrics-*-*`, priority 100) and the index mode's template.
pub const DATA_STREAM_PRIORITY: u32 = 200;

/// What kind of template a name and body are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `_component_template`.
    Component,
    /// `_index_template`.
    Index,
}

impl Kind {
    /// The API path segment.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::Component => "_component_template",
            Kind::Index => "_index_template",
        }
    }
}

/// A template to install: components first, then the index template composed of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Component or index template.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its body.
    pub body: Value,
}

/// The templates of index mode for indices matching `pattern`.
pub fn for_indices(pattern: &str, number_of_replicas: Option<u32>) -> Vec<Template> {
    vec![Template {
        kind: Kind::Index,
        name: name(pattern),
        body: body(pattern, number_of_replicas),
    }]
}

/// The templates of data-stream mode: the component, then the index template.
pub fn for_data_stream(stream: &DataStream, number_of_replicas: Option<u32>) -> Vec<Template> {
    let base = format!("periscope-metrics-{}", stream.dataset());
    let component = format!("{base}@mappings");
    let keyword = json!({"type": "keyword"});
    let dimension = json!({"type": "keyword", "time_series_dimension": true});
    let mut settings = json!({
        "index.mode": "time_series",
        "index.routing_path": ["metric", "source.id", "labels.*"],
    });
    if let Some(replicas) = number_of_replicas {
        settings["index.number_of_replicas"] = json!(replicas);
    }
    let meta = json!({"managed_by": "periscope-exporter-elasticsearch"});
    let component_body = json!({
        "_meta": meta,
        "template": {
            "settings": settings,
            "mappings": {
                "dynamic": true,
                "dynamic_templates": [{"labels_as_dimensions": {
                    "path_match": "labels.*",
                    "mapping": dimension,
                }}],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "op": keyword,
                    "metric": dimension,
                    "family": keyword,
                    "type": keyword,
                    "unit": keyword,
                    "value": {"type": "double", "time_series_metric": "gauge"},
                    "counter": {"type": "double", "time_series_metric": "counter"},
                    "value_text": keyword,
                    "labels": {"type": "passthrough", "time_series_dimension": true, "priority": 10},
                    "source": {"properties": {
                        "kind": keyword, "id": dimension, "api_version": keyword,
                        "object_kind": keyword, "namespace": keyword, "name": keyword, "uid": keyword,
                    }},
                },
            },
        },
    });
    let mut index_body = json!({
        "index_patterns": [stream.pattern()],
        "data_stream": {},
        "priority": DATA_STREAM_PRIORITY,
        "composed_of": [component],
        "_meta": meta,
    });
    if let Some(retention) = stream.retention() {
        index_body["template"] = json!({"lifecycle": {"data_retention": retention}});
    }
    vec![
        Template {
            kind: Kind::Component,
            name: component,
            body: component_body,
        },
        Template {
            kind: Kind::Index,
            name: base,
            body: index_body,
        },
    ]
}

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
    fn a_data_stream_gets_a_time_series_component_and_an_index_template() {
        let stream = DataStream::new(&crate::target::DataStreamConfig {
            dataset: "periscope.kubevirt".into(),
            namespace: "default".into(),
            retention: Some("30d".into()),
        })
        .unwrap();
        let templates = for_data_stream(&stream, Some(0));
        assert_eq!(templates.len(), 2);
        let (component, index) = (&templates[0], &templates[1]);
        assert_eq!(component.kind, Kind::Component);
        assert_eq!(
            component.name,
            "periscope-metrics-periscope.kubevirt@mappings"
        );
        let settings = &component.body["template"]["settings"];
        assert_eq!(settings["index.mode"], "time_series");
        assert_eq!(settings["index.number_of_replicas"], 0);
        let properties = &component.body["template"]["mappings"]["properties"];
        assert_eq!(properties["metric"]["time_series_dimension"], true);
        assert_eq!(
            properties["source"]["properties"]["id"]["time_series_dimension"],
            true
        );
        assert_eq!(properties["labels"]["type"], "passthrough");
        assert_eq!(properties["value"]["time_series_metric"], "gauge");
        assert_eq!(properties["counter"]["time_series_metric"], "counter");
        assert_eq!(index.kind, Kind::Index);
        assert_eq!(index.name, "periscope-metrics-periscope.kubevirt");
        assert_eq!(
            index.body["index_patterns"],
            json!(["metrics-periscope.kubevirt-*"])
        );
        assert_eq!(index.body["data_stream"], json!({}));
        assert_eq!(index.body["composed_of"], json!([component.name]));
        assert_eq!(
            index.body["template"]["lifecycle"],
            json!({"data_retention": "30d"})
        );
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
