//! The templates the exporter installs so its indices get sane mappings.
//!
//! # Index mode
//!
//! One index template. `labels` is a `flattened` field: one field in the mapping whatever labels samples carry (no
//! mapping explosion, dots in label names such as `app.kubernetes.io/name` are no problem), every
//! value a keyword. `flattened` is part of the server (no x-pack needed; checked on 8.19.21).
//! OpenSearch's equivalent is `flat_object` (since 2.7; checked on 2.19.6).

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
//! - `retention` becomes the index template's data stream lifecycle (`data_retention`); a
//!   `policy` becomes `index.lifecycle.name` (ILM, an x-pack feature: a node without it refuses
//!   the template with `unknown setting [index.lifecycle.name]`).
//! - the `_id` is derived by the node from the dimensions and `@timestamp`: a sample sent twice
//!   is answered `409 version_conflict_engine_exception`, which the exporter counts as stored.
//!
//! # Data-stream mode on OpenSearch
//!
//! OpenSearch has data streams but no time series mode: the same two templates, without
//! `index.mode`, `routing_path`, dimensions or metric types; `labels` is a `flat_object`. The
//! exporter gives every document its deterministic `_id` ([`crate::document::Document::id`]), so a
//! sample sent twice meets its first copy (409) as in a TSDS — within one backing index: after a
//! rollover a late retry would be stored again. Retention is Index State Management's (ISM, a
//! plugin): `retention` installs an ISM policy `periscope-metrics-<dataset>` that deletes a backing
//! index once it is that old, attached to new backing indices by its `ism_template`; `policy` sets
//! `index.plugins.index_state_management.policy_id`. Without the ISM plugin the node answers the
//! first with `no handler found for uri [/_plugins/_ism/policies/…]` and refuses the second as an
//! unknown setting; the exporter reports both as such.

use serde_json::{Value, json};

use crate::distribution::Distribution;
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
    /// An OpenSearch ISM policy (`_plugins/_ism/policies`): put once, never overwritten (an
    /// existing one, maybe edited by an administrator, is kept).
    IsmPolicy,
}

impl Kind {
    /// The API path segment.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::Component => "_component_template",
            Kind::Index => "_index_template",
            Kind::IsmPolicy => "_plugins/_ism/policies",
        }
    }

    /// The privilege that putting one needs, for the message of a 403.
    pub fn privilege(self) -> &'static str {
        match self {
            Kind::Component | Kind::Index => {
                "the cluster privilege `manage_index_templates` (OpenSearch security: \
                 `cluster:admin/component_template/put` and `indices:admin/index_template/put`)"
            }
            Kind::IsmPolicy => {
                "the ISM permission `cluster:admin/opendistro/ism/policy/write` (role \
                 `ism_full_access`)"
            }
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
pub fn for_indices(
    pattern: &str,
    distribution: Distribution,
    number_of_replicas: Option<u32>,
) -> Vec<Template> {
    vec![Template {
        kind: Kind::Index,
        name: name(pattern),
        body: body(pattern, distribution, number_of_replicas),
    }]
}

/// The mapping of `labels` outside a time series: one field whatever the label names.
fn flat_labels(distribution: Distribution) -> Value {
    match distribution {
        Distribution::Elasticsearch => json!({"type": "flattened"}),
        Distribution::OpenSearch => json!({"type": "flat_object"}),
    }
}

/// The templates of data-stream mode: the component, then the index template (on OpenSearch
/// with `retention`, the ISM policy first).
pub fn for_data_stream(
    stream: &DataStream,
    distribution: Distribution,
    number_of_replicas: Option<u32>,
) -> Vec<Template> {
    match distribution {
        Distribution::Elasticsearch => time_series(stream, number_of_replicas),
        Distribution::OpenSearch => plain_data_stream(stream, number_of_replicas),
    }
}

/// The `_meta` of everything the exporter installs.
fn meta() -> Value {
    json!({"managed_by": "periscope-exporter-elasticsearch"})
}

/// Elasticsearch: a time series data stream.
fn time_series(stream: &DataStream, number_of_replicas: Option<u32>) -> Vec<Template> {
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
    if let Some(policy) = stream.policy() {
        settings["index.lifecycle.name"] = json!(policy);
    }
    let meta = meta();
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

/// OpenSearch: a data stream without time series mode, and its ISM policy for `retention`.
fn plain_data_stream(stream: &DataStream, number_of_replicas: Option<u32>) -> Vec<Template> {
    let base = format!("periscope-metrics-{}", stream.dataset());
    let component = format!("{base}@mappings");
    let keyword = json!({"type": "keyword"});
    let double = json!({"type": "double"});
    let mut settings = json!({});
    if let Some(replicas) = number_of_replicas {
        settings["index.number_of_replicas"] = json!(replicas);
    }
    if let Some(policy) = stream.policy() {
        settings["index.plugins.index_state_management.policy_id"] = json!(policy);
    }
    let mut templates = Vec::with_capacity(3);
    if let Some(retention) = stream.retention() {
        templates.push(Template {
            kind: Kind::IsmPolicy,
            name: base.clone(),
            body: ism_policy(stream, retention),
        });
    }
    templates.push(Template {
        kind: Kind::Component,
        name: component.clone(),
        body: json!({
            "_meta": meta(),
            "template": {
                "settings": settings,
                "mappings": {
                    "dynamic": true,
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "op": keyword, "metric": keyword, "family": keyword, "type": keyword,
                        "unit": keyword, "value": double, "counter": double, "value_text": keyword,
                        "labels": flat_labels(Distribution::OpenSearch),
                        "source": {"properties": {
                            "kind": keyword, "id": keyword, "api_version": keyword,
                            "object_kind": keyword, "namespace": keyword, "name": keyword,
                            "uid": keyword,
                        }},
                    },
                },
            },
        }),
    });
    templates.push(Template {
        kind: Kind::Index,
        name: base,
        body: json!({
            "index_patterns": [stream.pattern()],
            "data_stream": {},
            "priority": DATA_STREAM_PRIORITY,
            "composed_of": [component],
            "_meta": meta(),
        }),
    });
    templates
}

/// An ISM policy that deletes a backing index of the data stream once it is `retention` old,
/// attached by its `ism_template` to every new backing index of `metrics-<dataset>-*`.
fn ism_policy(stream: &DataStream, retention: &str) -> Value {
    json!({"policy": {
        "description": format!(
            "Periscope: delete the backing indices of {} after {retention} \
             (managed by periscope-exporter-elasticsearch)",
            stream.pattern()
        ),
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [], "transitions": [
                {"state_name": "delete", "conditions": {"min_index_age": retention}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [stream.pattern()], "priority": DATA_STREAM_PRIORITY}],
    }})
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
pub fn body(pattern: &str, distribution: Distribution, number_of_replicas: Option<u32>) -> Value {
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
                    "labels": flat_labels(distribution),
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
            policy: None,
        })
        .unwrap();
        let templates = for_data_stream(&stream, Distribution::Elasticsearch, Some(0));
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

    fn stream(retention: Option<&str>, policy: Option<&str>) -> DataStream {
        DataStream::new(&crate::target::DataStreamConfig {
            dataset: "periscope.kubevirt".into(),
            namespace: "default".into(),
            retention: retention.map(Into::into),
            policy: policy.map(Into::into),
        })
        .unwrap()
    }

    #[test]
    fn an_ilm_policy_goes_into_the_component_template_and_no_lifecycle_is_set() {
        let templates = for_data_stream(
            &stream(None, Some("metrics-90d")),
            Distribution::Elasticsearch,
            None,
        );
        let settings = &templates[0].body["template"]["settings"];
        assert_eq!(settings["index.lifecycle.name"], "metrics-90d");
        assert_eq!(templates[1].body.get("template"), None);
    }

    #[test]
    fn on_opensearch_a_data_stream_has_no_time_series_settings() {
        let templates = for_data_stream(&stream(None, None), Distribution::OpenSearch, Some(0));
        assert_eq!(templates.len(), 2);
        let component = &templates[0].body["template"];
        assert_eq!(
            component["settings"],
            json!({"index.number_of_replicas": 0})
        );
        let text = component.to_string();
        assert!(!text.contains("time_series"), "{text}");
        assert!(!text.contains("passthrough"), "{text}");
        assert_eq!(
            component["mappings"]["properties"]["labels"]["type"],
            "flat_object"
        );
        assert_eq!(templates[1].body["data_stream"], json!({}));
        assert_eq!(templates[1].body.get("template"), None);
    }

    #[test]
    fn on_opensearch_a_retention_is_an_ism_policy_and_a_policy_an_ism_setting() {
        let templates = for_data_stream(&stream(Some("30d"), None), Distribution::OpenSearch, None);
        let policy = &templates[0];
        assert_eq!(policy.kind, Kind::IsmPolicy);
        assert_eq!(policy.name, "periscope-metrics-periscope.kubevirt");
        let body = &policy.body["policy"];
        assert_eq!(
            body["states"][0]["transitions"][0]["conditions"]["min_index_age"],
            "30d"
        );
        assert_eq!(body["states"][1]["actions"][0], json!({"delete": {}}));
        assert_eq!(
            body["ism_template"][0]["index_patterns"],
            json!(["metrics-periscope.kubevirt-*"])
        );
        assert_eq!(
            [templates[1].kind, templates[2].kind],
            [Kind::Component, Kind::Index]
        );
        let templates = for_data_stream(&stream(None, Some("p1")), Distribution::OpenSearch, None);
        assert_eq!(templates.len(), 2);
        assert_eq!(
            templates[0].body["template"]["settings"]["index.plugins.index_state_management.policy_id"],
            "p1"
        );
    }

    #[test]
    fn replicas_are_set_only_when_configured() {
        let b = body("p-*", Distribution::Elasticsearch, Some(0));
        assert_eq!(b["template"]["settings"]["number_of_replicas"], 0);
        assert_eq!(b["index_patterns"][0], "p-*");
        assert_eq!(
            b["template"]["mappings"]["properties"]["labels"]["type"],
            "flattened"
        );
        assert_eq!(
            body("p-*", Distribution::Elasticsearch, None)["template"]["settings"],
            json!({})
        );
        assert_eq!(
            body("p-*", Distribution::OpenSearch, None)["template"]["mappings"]["properties"]["labels"]
                ["type"],
            "flat_object"
        );
    }
}
