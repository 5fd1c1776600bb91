//! Where documents go: daily (or any date-math) indices, or one data stream in time series mode.
//!
//! The two are the exporter's two modes. Everything that differs between them — the bulk action,
//! the document's fields, the templates — asks the [`Target`]; what differs between Elasticsearch
//! and OpenSearch asks the [`crate::distribution::Distribution`] as well.

use serde::Deserialize;

use crate::document::IndexPattern;

/// The `data_stream` option: `metrics-<dataset>-<namespace>`, as Elastic's own agents name theirs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    /// What the data is (`periscope.kubevirt`): dots allowed, no `-`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// Whose it is (`default`, `prod`): no `-`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How long the data stream keeps data (`30d`, `12h`). On Elasticsearch its data stream
    /// lifecycle's `data_retention`, set in the index template; on OpenSearch an ISM policy
    /// `periscope-metrics-<dataset>` the exporter installs (the node needs the Index State
    /// Management plugin). Unset: no lifecycle from Periscope (the cluster's defaults, or a
    /// policy an administrator attaches).
    #[serde(default)]
    pub retention: Option<String>,
    /// A lifecycle policy the user manages, by name, instead of `retention`: an ILM policy on
    /// Elasticsearch (`index.lifecycle.name` in the template), an ISM policy on OpenSearch
    /// (`index.plugins.index_state_management.policy_id`). The exporter does not create it.
    #[serde(default)]
    pub policy: Option<String>,
}

fn default_dataset() -> String {
    "periscope".to_owned()
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// A part of a data stream name that Elasticsearch would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`data_stream.{part}` {value:?} {rule}")]
pub struct DataStreamError {
    /// `dataset`, `namespace` or `retention`.
    pub part: &'static str,
    /// The value given.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The data stream documents go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataStream {
    dataset: String,
    namespace: String,
    retention: Option<String>,
    policy: Option<String>,
}

impl DataStream {
    /// Checks both parts against Elastic's naming scheme: lowercase, no `-` (it separates the
    /// parts), none of `\ / * ? " < > | , # :` or a space, at most 100 bytes.
    pub fn new(config: &DataStreamConfig) -> Result<Self, DataStreamError> {
        check_part("dataset", &config.dataset)?;
        check_part("namespace", &config.namespace)?;
        if let Some(retention) = &config.retention {
            check_retention(retention)?;
        }
        if let Some(policy) = &config.policy {
            if config.retention.is_some() {
                return Err(DataStreamError {
                    part: "policy",
                    value: policy.clone(),
                    rule: "excludes `retention`: set one (`retention` for a lifecycle the \
                           exporter installs, `policy` for an ILM/ISM policy you manage)",
                });
            }
            check_policy(policy)?;
        }
        Ok(DataStream {
            dataset: config.dataset.clone(),
            namespace: config.namespace.clone(),
            retention: config.retention.clone(),
            policy: config.policy.clone(),
        })
    }

    /// `metrics-<dataset>-<namespace>`.
    pub fn name(&self) -> String {
        format!("metrics-{}-{}", self.dataset, self.namespace)
    }

    /// The dataset.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The lifecycle's `data_retention`, if set.
    pub fn retention(&self) -> Option<&str> {
        self.retention.as_deref()
    }

    /// The user's ILM/ISM policy name, if set.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// `metrics-<dataset>-*`: every namespace of the dataset, what the index template matches.
    pub fn pattern(&self) -> String {
        format!("metrics-{}-*", self.dataset)
    }
}

/// Checks `retention` is an Elasticsearch time value of whole units: a positive number followed by
/// `d`, `h`, `m`, `s` or `ms` (`30d`).
fn check_retention(retention: &str) -> Result<(), DataStreamError> {
    let digits = retention.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &retention[digits.len()..];
    let number_ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0);
    if number_ok && matches!(unit, "d" | "h" | "m" | "s" | "ms") {
        return Ok(());
    }
    Err(DataStreamError {
        part: "retention",
        value: retention.to_owned(),
        rule: "must be a positive whole number and a unit: d, h, m, s or ms (\"30d\")",
    })
}

/// Checks a policy name is one a template setting can carry: not empty, no space or control
/// character, at most 255 bytes.
fn check_policy(policy: &str) -> Result<(), DataStreamError> {
    if !policy.is_empty()
        && policy.len() <= 255
        && !policy.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Ok(());
    }
    Err(DataStreamError {
        part: "policy",
        value: policy.to_owned(),
        rule: "must be a policy name: 1 to 255 bytes, no space",
    })
}

fn check_part(part: &'static str, value: &str) -> Result<(), DataStreamError> {
    let rule = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > 100 {
        Some("is longer than 100 bytes")
    } else if value.chars().any(char::is_uppercase) {
        Some("must be lowercase")
    } else if value.contains('-') {
        Some("must not contain '-' (it separates type, dataset and namespace)")
    } else if value.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        Some("must not contain any of \\ / * ? \" < > | , # : or a space")
    } else if value.starts_with(['_', '.', '+']) {
        Some("must not start with '_', '.' or '+'")
    } else {
        None
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(DataStreamError {
            part,
            value: value.to_owned(),
            rule,
        }),
    }
}

/// Where the exporter writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `index`: one document per sample with an `index` action and a deterministic `_id`.
    Index(IndexPattern),
    /// `data_stream`: a time series data stream, `create` actions, `_id` derived by the node.
    DataStream(DataStream),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(dataset: &str, namespace: &str) -> Result<DataStream, DataStreamError> {
        DataStream::new(&DataStreamConfig {
            dataset: dataset.into(),
            namespace: namespace.into(),
            retention: None,
            policy: None,
        })
    }

    #[test]
    fn a_policy_excludes_a_retention() {
        let config = |retention: Option<&str>, policy: &str| DataStreamConfig {
            dataset: "p".into(),
            namespace: "d".into(),
            retention: retention.map(Into::into),
            policy: Some(policy.into()),
        };
        let s = DataStream::new(&config(None, "metrics-90d")).unwrap();
        assert_eq!((s.policy(), s.retention()), (Some("metrics-90d"), None));
        let err = DataStream::new(&config(Some("30d"), "p")).unwrap_err();
        assert_eq!(err.part, "policy");
        assert!(err.rule.contains("excludes `retention`"), "{err}");
        assert!(DataStream::new(&config(None, "")).is_err());
        assert!(DataStream::new(&config(None, "a b")).is_err());
    }

    #[test]
    fn a_retention_is_a_time_value() {
        let with = |retention: &str| {
            DataStream::new(&DataStreamConfig {
                dataset: "p".into(),
                namespace: "d".into(),
                retention: Some(retention.into()),
                policy: None,
            })
        };
        assert_eq!(with("30d").unwrap().retention(), Some("30d"));
        assert!(with("12h").is_ok() && with("500ms").is_ok());
        for bad in ["30", "d", "0d", "-1d", "1.5d", "30 days", "30w"] {
            assert_eq!(with(bad).unwrap_err().part, "retention", "{bad}");
        }
    }

    #[test]
    fn names_follow_the_metrics_dataset_namespace_scheme() {
        let s = stream("periscope.kubevirt", "default").unwrap();
        assert_eq!(s.name(), "metrics-periscope.kubevirt-default");
        assert_eq!(s.pattern(), "metrics-periscope.kubevirt-*");
    }

    #[test]
    fn parts_elasticsearch_would_refuse_are_named() {
        let err = stream("periscope-kubevirt", "default").unwrap_err();
        assert_eq!(err.part, "dataset");
        assert!(err.to_string().contains("'-'"), "{err}");
        assert_eq!(stream("p", "Prod").unwrap_err().rule, "must be lowercase");
        assert_eq!(stream("p", "").unwrap_err().part, "namespace");
        assert!(stream("p", "a b").is_err());
        assert!(stream("_p", "a").is_err());
        assert!(stream(&"x".repeat(101), "a").is_err());
    }
}
