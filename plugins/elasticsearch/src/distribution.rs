//! Which server the exporter talks to, read from the root endpoint (`GET /`).
//!
//! Elasticsearch and OpenSearch both answer `GET /` with a `version` object; OpenSearch adds
//! `"distribution": "opensearch"`. The exporter never relies on Elasticsearch's
//! `X-Elastic-Product` response header (the Rust client does not check it either), so a node
//! that does not send it — OpenSearch, or a proxy that drops it — works the same.
//!
//! What differs ([`crate::template`], [`crate::bulk`]):
//!
//! | | Elasticsearch | OpenSearch |
//! | --- | --- | --- |
//! | data stream | time series mode (TSDS) | a plain data stream |
//! | document `_id` in a data stream | derived by the node from the dimensions and `@timestamp` | the exporter's deterministic id |
//! | `labels` (index mode, and data streams on OpenSearch) | `flattened` | `flat_object` |
//! | `retention` | data stream lifecycle `data_retention` | an ISM policy the exporter installs |
//! | `policy` | ILM: `index.lifecycle.name` | ISM: `index.plugins.index_state_management.policy_id` |

use serde::Deserialize;

/// The server's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Elasticsearch (any `GET /` answer without `version.distribution`).
    Elasticsearch,
    /// OpenSearch (`version.distribution` is `opensearch`).
    OpenSearch,
}

/// The parts of the root endpoint's answer the exporter reads.
#[derive(Debug, Deserialize)]
struct Root {
    #[serde(default)]
    version: Version,
}

#[derive(Debug, Default, Deserialize)]
struct Version {
    #[serde(default)]
    distribution: Option<String>,
    #[serde(default)]
    number: Option<String>,
}

/// What `GET /` said: the distribution and its version number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Elasticsearch or OpenSearch.
    pub distribution: Distribution,
    /// `version.number` (`8.19.21`, `2.19.6`), empty when missing.
    pub version: String,
}

/// Why the root endpoint's answer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`GET /` answered something that is not the root endpoint's JSON: {0}")]
pub struct RootError(String);

impl NodeInfo {
    /// Reads the body of `GET /`.
    pub fn from_root(body: &[u8]) -> Result<NodeInfo, RootError> {
        let root: Root = serde_json::from_slice(body).map_err(|e| RootError(e.to_string()))?;
        let distribution = match root.version.distribution.as_deref() {
            Some("opensearch") => Distribution::OpenSearch,
            _ => Distribution::Elasticsearch,
        };
        Ok(NodeInfo {
            distribution,
            version: root.version.number.unwrap_or_default(),
        })
    }
}

impl Distribution {
    /// The product name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensearch_names_itself_in_the_version() {
        let body = br#"{"name":"n","version":{"distribution":"opensearch","number":"2.19.6"},
                        "tagline":"The OpenSearch Project: https://opensearch.org/"}"#;
        assert_eq!(
            NodeInfo::from_root(body).unwrap(),
            NodeInfo {
                distribution: Distribution::OpenSearch,
                version: "2.19.6".into()
            }
        );
    }

    #[test]
    fn anything_else_is_elasticsearch() {
        let body = br#"{"version":{"number":"8.19.21","build_flavor":"default"}}"#;
        let info = NodeInfo::from_root(body).unwrap();
        assert_eq!(info.distribution, Distribution::Elasticsearch);
        assert_eq!(info.version, "8.19.21");
        assert_eq!(
            NodeInfo::from_root(b"{}").unwrap().distribution,
            Distribution::Elasticsearch
        );
        assert!(NodeInfo::from_root(b"<html>").is_err());
    }
}
