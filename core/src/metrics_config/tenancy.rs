//! What a MetricsConfig may do, and the config file it becomes.
//!
//! A MetricsConfig in namespace N is one team's: its entries read the objects of N and nothing
//! else, and its series cannot be mistaken for another team's. So, before the host checks it
//! like any config file:
//! - a `[[resources]]` entry watches N only: `namespaces` is set to `[N]` (naming another
//!   namespace is refused), a cluster-scoped kind or a kind the API server does not serve is
//!   refused, and so are Secrets and `joins` (a joined kind is watched in every namespace);
//! - an `[[endpoints]]` entry discovers Pods or EndpointSlices of N only (`kubernetes.namespaces`
//!   as above); static `urls` are refused (nothing says where a URL leads), and so are `auth` and
//!   `tls` (they name files of the host); its name becomes `N/<config>/<name>`, so that two teams'
//!   entries never share a name;
//! - every series carries `config_namespace` and `config_name` (the entry's `labels`, each
//!   aggregate's and derived metric's `by`, an endpoint's `labels`); an entry may not set them;
//! - the operator's `metrics_configs_max_series` is shared evenly between the config's entries,
//!   each getting `max_series` (or its own, when smaller): their sum never exceeds it. (Without
//!   it, each entry is capped by the largest number a config holds, so that its series are
//!   counted for the status.)

use std::fmt;

use serde_json::{Map, Value};

use super::MetricsConfigSpec;
use crate::config::ConfigFile;

/// The labels every series of a MetricsConfig carries.
pub const LABELS: [&str; 2] = ["config_namespace", "config_name"];

/// Why a MetricsConfig is refused, at a field of its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key under `spec` (`resources[0].namespaces`), as in a config file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "spec.{}: {}", self.key, self.message)
        }
    }
}

/// Whether the API server serves a kind, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindScope {
    /// Its objects live in namespaces.
    Namespaced,
    /// Its objects are cluster-scoped.
    Cluster,
    /// The API server does not serve it.
    Unknown,
}

/// One MetricsConfig as the host reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a MetricsConfigSpec,
    /// The scope of each `resources` entry's kind, in order.
    pub scopes: &'a [KindScope],
}

/// How the name of a MetricsConfig's config file starts.
pub const FILE_PREFIX: &str = "MetricsConfig ";

/// The name of the config file a MetricsConfig becomes (problems found in it carry it).
pub fn file_name(namespace: &str, name: &str) -> String {
    format!("{FILE_PREFIX}{namespace}/{name}")
}

/// The config file `tenant` becomes, each entry bounded to its namespace; `max_series` is the
/// operator's cap for the whole MetricsConfig.
pub fn config_file(tenant: &Tenant<'_>, max_series: Option<u64>) -> Result<ConfigFile, Refusal> {
    let spec = tenant.spec;
    let entries = (spec.resources.len() + spec.endpoints.len()).max(1) as u64;
    // Every entry is capped, so that the pipeline counts its series for the status; without an
    // operator's cap, by the largest a config file can write.
    let max = max_series.unwrap_or(i64::MAX as u64);
    let share = Some((max / entries).max(1));
    let mut resources = Vec::new();
    for (i, entry) in spec.resources.iter().enumerate() {
        let key = format!("resources[{i}]");
        let scope = tenant.scopes.get(i).copied().unwrap_or(KindScope::Unknown);
        resources.push(resource(tenant, &key, entry, scope, share)?);
    }
    let mut endpoints = Vec::new();
    for (i, entry) in spec.endpoints.iter().enumerate() {
        endpoints.push(endpoint(tenant, &format!("endpoints[{i}]"), entry, share)?);
    }
    let mut table = Map::new();
    table.insert("resources".to_owned(), Value::Array(resources));
    table.insert("endpoints".to_owned(), Value::Array(endpoints));
    let text = toml::Value::try_from(without_nulls(Value::Object(table)))
        .and_then(|value| toml::to_string(&value))
        .map_err(|e| refuse("", format!("cannot be written as a config: {e}")))?;
    Ok(ConfigFile {
        name: file_name(tenant.namespace, tenant.name),
        text,
    })
}

fn resource(
    tenant: &Tenant<'_>,
    key: &str,
    entry: &Value,
    scope: KindScope,
    share: Option<u64>,
) -> Result<Value, Refusal> {
    let mut entry = table(key, entry)?;
    let kind = text_at(&entry, "kind");
    let group = text_at(&entry, "group");
    if group.is_empty() && kind == "Secret" {
        return Err(refuse(
            &format!("{key}.kind"),
            "a MetricsConfig may not read Secrets".to_owned(),
        ));
    }
    match scope {
        KindScope::Namespaced => {}
        KindScope::Cluster => {
            return Err(refuse(
                &format!("{key}.kind"),
                format!(
                    "`{kind}` is cluster-scoped: a MetricsConfig reads the objects of its own \
                     namespace only"
                ),
            ));
        }
        KindScope::Unknown => {
            let version = text_at(&entry, "version");
            let api_version = if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            };
            return Err(refuse(
                &format!("{key}.kind"),
                format!("the API server does not serve `{kind}` in `{api_version}`"),
            ));
        }
    }
    if entry
        .get("joins")
        .is_some_and(|joins| joins.as_array().is_none_or(|joins| !joins.is_empty()))
    {
        return Err(refuse(
            &format!("{key}.joins"),
            "a MetricsConfig may not join: a joined kind is watched in every namespace".to_owned(),
        ));
    }
    own_namespace(&mut entry, key, tenant.namespace)?;
    let labels = config_labels(tenant, true);
    add_labels(&mut entry, key, "labels", &labels)?;
    for list in ["aggregates", "derived"] {
        if let Some(Value::Array(items)) = entry.get_mut(list) {
            for (j, item) in items.iter_mut().enumerate() {
                let item_key = format!("{key}.{list}[{j}]");
                let Value::Object(item) = item else {
                    return Err(refuse(&item_key, "must be a table".to_owned()));
                };
                add_labels(item, &item_key, "by", &labels)?;
            }
        }
    }
    cap(&mut entry, share);
    Ok(Value::Object(entry))
}

fn endpoint(
    tenant: &Tenant<'_>,
    key: &str,
    entry: &Value,
    share: Option<u64>,
) -> Result<Value, Refusal> {
    let mut entry = table(key, entry)?;
    if entry
        .get("urls")
        .is_some_and(|urls| urls.as_array().is_none_or(|urls| !urls.is_empty()))
    {
        return Err(refuse(
            &format!("{key}.urls"),
            "a MetricsConfig's endpoints are discovered in its namespace (`kubernetes`), not \
             given by URL"
                .to_owned(),
        ));
    }
    for files in ["auth", "tls"] {
        if entry.contains_key(files) {
            return Err(refuse(
                &format!("{key}.{files}"),
                format!("`{files}` names files of the host: only the host's own config holds it"),
            ));
        }
    }
    let discovery_key = format!("{key}.kubernetes");
    let Some(Value::Object(discovery)) = entry.get_mut("kubernetes") else {
        return Err(refuse(
            &discovery_key,
            "a MetricsConfig's endpoints are discovered among the Pods or EndpointSlices of its \
             namespace: give `kubernetes`"
                .to_owned(),
        ));
    };
    own_namespace(discovery, &discovery_key, tenant.namespace)?;
    if let Some(Value::String(name)) = entry.get_mut("name") {
        *name = format!("{}/{}/{name}", tenant.namespace, tenant.name);
    }
    add_labels(&mut entry, key, "labels", &config_labels(tenant, false))?;
    cap(&mut entry, share);
    Ok(Value::Object(entry))
}

/// The entry as a table, or why not.
fn table(key: &str, entry: &Value) -> Result<Map<String, Value>, Refusal> {
    match entry {
        Value::Object(entry) => Ok(entry.clone()),
        _ => Err(refuse(key, "must be a table".to_owned())),
    }
}

fn text_at(entry: &Map<String, Value>, key: &str) -> String {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Sets `namespaces` to `[namespace]`, refusing any other.
fn own_namespace(
    entry: &mut Map<String, Value>,
    key: &str,
    namespace: &str,
) -> Result<(), Refusal> {
    if let Some(given) = entry.get("namespaces") {
        let others: Vec<&Value> = given
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter(|n| n.as_str() != Some(namespace))
                    .collect()
            })
            .unwrap_or_default();
        if !given.is_array() || !others.is_empty() {
            return Err(refuse(
                &format!("{key}.namespaces"),
                format!(
                    "a MetricsConfig in namespace `{namespace}` reads objects of `{namespace}` \
                     only"
                ),
            ));
        }
    }
    entry.insert(
        "namespaces".to_owned(),
        Value::Array(vec![Value::String(namespace.to_owned())]),
    );
    Ok(())
}

/// The config labels: constant CEL expressions for object entries, plain values for endpoints.
fn config_labels(tenant: &Tenant<'_>, expressions: bool) -> [(&'static str, Value); 2] {
    let value = |text: &str| {
        if expressions {
            // Kubernetes names hold no quote, so the literal needs no escaping.
            serde_json::json!({ "expr": format!("'{text}'") })
        } else {
            Value::String(text.to_owned())
        }
    };
    [
        (LABELS[0], value(tenant.namespace)),
        (LABELS[1], value(tenant.name)),
    ]
}

/// Adds `labels` to the label table `field` of `entry`, refusing an entry that sets one itself.
fn add_labels(
    entry: &mut Map<String, Value>,
    key: &str,
    field: &str,
    labels: &[(&'static str, Value)],
) -> Result<(), Refusal> {
    let table = entry
        .entry(field.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(table) = table else {
        return Err(refuse(
            &format!("{key}.{field}"),
            "must be a table".to_owned(),
        ));
    };
    for (name, value) in labels {
        if table.contains_key(*name) {
            return Err(refuse(
                &format!("{key}.{field}.{name}"),
                format!("`{name}` is set by the host on every series of a MetricsConfig"),
            ));
        }
        table.insert((*name).to_owned(), value.clone());
    }
    Ok(())
}

/// Bounds the entry's `max_series` by its share of the MetricsConfig's cap.
fn cap(entry: &mut Map<String, Value>, share: Option<u64>) {
    let Some(share) = share else {
        return;
    };
    let own = entry.get("max_series").and_then(Value::as_u64);
    let max = own.map_or(share, |own| own.min(share));
    entry.insert("max_series".to_owned(), Value::from(max));
}

/// The value without its `null`s (TOML has none; a null field means the field left out).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !v.is_null())
                .map(without_nulls)
                .collect(),
        ),
        other => other,
    }
}

fn refuse(key: &str, message: String) -> Refusal {
    Refusal {
        key: key.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigText;

    fn spec(json: serde_json::Value) -> MetricsConfigSpec {
        serde_json::from_value(json).expect("a spec")
    }

    fn file(spec: &MetricsConfigSpec, max: Option<u64>) -> Result<ConfigFile, Refusal> {
        let scopes = vec![KindScope::Namespaced; spec.resources.len()];
        let tenant = Tenant {
            namespace: "team-a",
            name: "pods",
            spec,
            scopes: &scopes,
        };
        config_file(&tenant, max)
    }

    #[test]
    fn an_entry_is_bounded_to_its_namespace_and_labelled() {
        let spec = spec(serde_json::json!({
            "resources": [{
                "version": "v1", "kind": "Pod",
                "metrics": [{ "name": "phase", "type": "stateset", "path": "status.phase",
                              "states": ["Running"] }],
                "aggregates": [{ "name": "count", "type": "count" }]
            }]
        }));
        let file = file(&spec, Some(10)).expect("accepted");
        let config = ConfigText::new(vec![file]).parse().expect("parses");
        let entry = &config.resources[0];
        assert_eq!(entry.namespaces, ["team-a"]);
        assert_eq!(entry.max_series.as_ref().map(|m| *m.get_ref()), Some(10));
        let labels: Vec<(&str, &str)> = entry
            .labels
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.text()))
            .collect();
        assert_eq!(
            labels,
            [("config_name", "'pods'"), ("config_namespace", "'team-a'")]
        );
        assert_eq!(entry.aggregates[0].by.len(), 2);
    }

    #[test]
    fn another_namespace_is_refused_at_its_field() {
        let spec = spec(serde_json::json!({
            "resources": [{ "version": "v1", "kind": "Pod", "namespaces": ["team-b"] }]
        }));
        let refusal = file(&spec, None).expect_err("refused");
        assert_eq!(refusal.key, "resources[0].namespaces");
    }

    #[test]
    fn joins_are_refused() {
        let spec = spec(serde_json::json!({
            "resources": [{ "version": "v1", "kind": "Pod", "joins": [
                { "name": "node", "version": "v1", "kind": "Node", "cluster": true,
                  "name_from": "spec.nodeName" }
            ] }]
        }));
        assert_eq!(
            file(&spec, None).expect_err("refused").key,
            "resources[0].joins"
        );
    }

    #[test]
    fn cluster_scoped_kinds_and_secrets_are_refused() {
        let spec = spec(serde_json::json!({
            "resources": [{ "version": "v1", "kind": "Node" }]
        }));
        let tenant = Tenant {
            namespace: "team-a",
            name: "nodes",
            spec: &spec,
            scopes: &[KindScope::Cluster],
        };
        assert_eq!(
            config_file(&tenant, None).expect_err("refused").key,
            "resources[0].kind"
        );
        let spec = super::super::MetricsConfigSpec {
            resources: vec![serde_json::json!({ "version": "v1", "kind": "Secret" })],
            endpoints: Vec::new(),
        };
        assert_eq!(
            file(&spec, None).expect_err("refused").key,
            "resources[0].kind"
        );
    }

    #[test]
    fn endpoints_are_discovered_in_the_namespace_under_their_own_name() {
        let spec = spec(serde_json::json!({
            "endpoints": [{ "name": "web",
                            "kubernetes": { "role": "pod", "port": 8080 } }]
        }));
        let config = ConfigText::new(vec![file(&spec, Some(7)).expect("accepted")])
            .parse()
            .expect("parses");
        let endpoint = &config.endpoints[0];
        assert_eq!(endpoint.name.get_ref(), "team-a/pods/web");
        let discovery = endpoint.kubernetes.as_ref().expect("discovery");
        assert_eq!(discovery.namespaces, ["team-a"]);
        assert_eq!(endpoint.labels.len(), 2);
        let urls = spec_with_urls();
        assert_eq!(
            file(&urls, None).expect_err("refused").key,
            "endpoints[0].urls"
        );
    }

    fn spec_with_urls() -> MetricsConfigSpec {
        spec(serde_json::json!({
            "endpoints": [{ "name": "x", "urls": ["http://10.0.0.1/metrics"] }]
        }))
    }

    #[test]
    fn the_cap_is_shared_between_entries() {
        let spec = spec(serde_json::json!({
            "resources": [
                { "version": "v1", "kind": "Pod", "max_series": 3 },
                { "version": "v1", "kind": "Service" }
            ]
        }));
        let config = ConfigText::new(vec![file(&spec, Some(10)).expect("accepted")])
            .parse()
            .expect("parses");
        let caps: Vec<u64> = config
            .resources
            .iter()
            .map(|r| *r.max_series.as_ref().expect("capped").get_ref())
            .collect();
        assert_eq!(caps, [3, 5]);
    }

    #[test]
    fn a_label_the_host_sets_is_refused() {
        let spec = spec(serde_json::json!({
            "resources": [{ "version": "v1", "kind": "Pod",
                            "labels": { "config_name": "metadata.name" } }]
        }));
        assert_eq!(
            file(&spec, None).expect_err("refused").key,
            "resources[0].labels.config_name"
        );
    }
}
