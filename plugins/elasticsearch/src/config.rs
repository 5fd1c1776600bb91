//! The Elasticsearch exporter's options: the `config` table of its `[[exporters]]` entry.
//!
//! ```toml
//! config = { url = "https://es.example:9200",
//!            data_stream = { dataset = "periscope.kubevirt", namespace = "default" },
//!            auth = { api_key_file = "/run/secrets/es-api-key" }, tls = { ca_file = "ca.pem" } }
//! ```
//!
//! `data_stream` and `index` choose the mode and exclude each other; with neither, the exporter
//! keeps its first behaviour, daily indices `periscope-%Y.%m.%d` (so configs written before data
//! streams work unchanged).
//!
//! `auth` and `tls` are plugin-api's [`AuthConfig`] and [`TlsConfig`], the same tables the
//! scraper's endpoints and the Prometheus exporter take.

use periscope_plugin_api::auth::{Auth, AuthConfig, AuthError};
use periscope_plugin_api::config::Duration;
use periscope_plugin_api::tls::{TlsConfig, TlsError};
use serde::Deserialize;

use crate::document::{IndexError, IndexPattern};
use crate::target::{DataStream, DataStreamConfig, DataStreamError, Target};

/// Options of the Elasticsearch exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// The node's base URL (`http://` or `https://`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Index mode: the index every document goes to, with `strftime` date math over the
    /// document's timestamp in UTC: `periscope-%Y.%m.%d` writes one index per day. The default
    /// when `data_stream` is not set either.
    #[serde(default)]
    pub index: Option<String>,
    /// Data-stream mode: a data stream `metrics-<dataset>-<namespace>`, in time series mode on
    /// Elasticsearch, a plain one on OpenSearch (see [`crate::template`] for its mappings and
    /// [`crate::document`] for its documents).
    #[serde(default)]
    pub data_stream: Option<DataStreamConfig>,
    /// Whether to install the templates: in index mode an index template for the indices `index`
    /// names, in data-stream mode a component and an index template (at start, and again before
    /// the first export if the node was not reachable then).
    #[serde(default = "default_true")]
    pub template: bool,
    /// `index.number_of_replicas` in the template; unset leaves the cluster's default (1), which a
    /// single-node cluster can never allocate (it stays yellow but works): set `0` there.
    #[serde(default)]
    pub number_of_replicas: Option<u32>,
    /// How long one request may take before the export is retried.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Credentials: basic auth, a bearer token, or an API key (base64 of `id:api_key`, the
    /// `encoded` form Elasticsearch returns).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS towards an `https://` node: `ca_file` (the hostname is checked too) or
    /// `insecure_skip_verify`. A client certificate and `server_name` are refused.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_url() -> String {
    "http://127.0.0.1:9200".to_owned()
}

/// The index pattern of index mode when neither `index` nor `data_stream` is set.
pub const DEFAULT_INDEX: &str = "periscope-%Y.%m.%d";

fn default_true() -> bool {
    true
}

/// The range of `timeout`.
const TIMEOUT_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(1),
    std::time::Duration::from_secs(3600),
);

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

/// What is wrong with the options.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A URL that does not parse.
    #[error("`url` {url:?}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// A URL that is not HTTP.
    #[error("`url` {0:?} must start with http:// or https://")]
    Scheme(String),
    /// An index pattern that cannot name an index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A data stream name Elasticsearch would refuse.
    #[error(transparent)]
    DataStream(#[from] DataStreamError),
    /// Both modes at once.
    #[error(
        "`index` and `data_stream` exclude each other: set one (`data_stream` for time series data streams, `index` for date-math indices)"
    )]
    BothModes,
    /// An index pattern a template cannot cover.
    #[error(
        "`index` {0:?} starts with date math, so an index template would match every \
         index: give it a fixed prefix (\"periscope-%Y.%m.%d\") or set `template = false`"
    )]
    TemplateForEveryIndex(String),
    /// A timeout out of its range (1ms to 1h).
    #[error("`timeout`: {0}")]
    Timeout(String),
    /// The `auth` table is wrong or its secret cannot be read.
    #[error("`{key}`: {error}", key = key_in("auth", .0.key()), error = .0)]
    Auth(#[from] AuthError),
    /// The `tls` table is wrong or its files cannot be read.
    #[error("`{key}`: {error}", key = key_in("tls", .0.key()), error = .0)]
    Tls(#[from] TlsError),
    /// `tls` with a plain HTTP URL.
    #[error("`tls` needs an https:// `url`, not {0:?}")]
    TlsNeedsHttps(String),
}

/// `table.key`, or `table` for an empty key.
fn key_in(table: &str, key: &str) -> String {
    if key.is_empty() {
        table.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

impl ElasticsearchConfig {
    /// Checks what serde cannot: a usable URL, index pattern, credentials and TLS options; reads
    /// no file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url).map_err(|source| ConfigError::Url {
            url: self.url.clone(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::Scheme(self.url.clone()));
        }
        if let Target::Index(pattern) = self.target()?
            && self.template
            && pattern.template_pattern().is_none()
        {
            return Err(ConfigError::TemplateForEveryIndex(
                self.index.clone().unwrap_or_default(),
            ));
        }
        self.timeout
            .check_range(TIMEOUT_RANGE.0, TIMEOUT_RANGE.1)
            .map_err(ConfigError::Timeout)?;
        if let Some(auth) = &self.auth {
            auth.auth()?;
        }
        if let Some(tls) = &self.tls {
            tls.check()?;
            tls.refuse(
                &["cert_file", "key_file", "server_name"],
                "by the Elasticsearch exporter",
            )?;
            if url.scheme() != "https" {
                return Err(ConfigError::TlsNeedsHttps(self.url.clone()));
            }
        }
        Ok(())
    }

    /// Where documents go: the data stream, the `index` pattern, or the default daily indices.
    pub fn target(&self) -> Result<Target, ConfigError> {
        match (&self.index, &self.data_stream) {
            (Some(_), Some(_)) => Err(ConfigError::BothModes),
            (None, Some(stream)) => Ok(Target::DataStream(DataStream::new(stream)?)),
            (Some(index), None) => Ok(Target::Index(IndexPattern::new(index)?)),
            (None, None) => Ok(Target::Index(IndexPattern::new(DEFAULT_INDEX)?)),
        }
    }

    /// The credentials the options describe, not read yet.
    pub fn auth(&self) -> Result<Option<Auth>, ConfigError> {
        Ok(self.auth.as_ref().map(AuthConfig::auth).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::auth::Secret;
    use periscope_plugin_api::config::parse;

    #[test]
    fn everything_has_a_default() {
        let config: ElasticsearchConfig = parse("").unwrap();
        assert_eq!(config.url, "http://127.0.0.1:9200");
        assert_eq!(config.index, None);
        assert_eq!(config.data_stream, None);
        assert_eq!(
            config.target().unwrap(),
            Target::Index(IndexPattern::new("periscope-%Y.%m.%d").unwrap())
        );
        assert!(config.template);
        assert_eq!(config.number_of_replicas, None);
        assert_eq!(config.timeout.0.as_secs(), 30);
        assert_eq!(config.auth().unwrap(), None);
        assert_eq!(config.tls, None);
        config.validate().unwrap();
    }

    #[test]
    fn every_option_can_be_set() {
        let config: ElasticsearchConfig = parse(
            "url = \"https://es:9200\"\nindex = \"m-%Y\"\ntemplate = false\nnumber_of_replicas = 0\n\
             timeout = \"5s\"\nauth = { username = \"u\", password_file = \"p\" }\n\
             tls = { ca_file = \"ca.pem\" }",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.number_of_replicas, Some(0));
        assert_eq!(
            config.auth().unwrap(),
            Some(Auth::Basic {
                username: "u".into(),
                password: Secret::File {
                    key: "password_file",
                    path: "p".into()
                }
            })
        );
    }

    #[test]
    fn a_data_stream_has_defaults_for_both_parts() {
        let config: ElasticsearchConfig = parse("data_stream = {}").unwrap();
        config.validate().unwrap();
        match config.target().unwrap() {
            Target::DataStream(s) => assert_eq!(s.name(), "metrics-periscope-default"),
            other => panic!("{other:?}"),
        }
        let config: ElasticsearchConfig =
            parse("data_stream = { dataset = \"periscope.kubevirt\", namespace = \"prod\" }")
                .unwrap();
        match config.target().unwrap() {
            Target::DataStream(s) => assert_eq!(s.name(), "metrics-periscope.kubevirt-prod"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse::<ElasticsearchConfig>("data_stream = { type = \"logs\" }")
                .unwrap_err()
                .key,
            "data_stream.type"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse::<ElasticsearchConfig>("indx = \"a\"").unwrap_err();
        assert_eq!(err.key, "indx");
        let err = parse::<ElasticsearchConfig>("api_key = \"k\"").unwrap_err();
        assert_eq!(err.key, "api_key");
    }

    #[test]
    fn validation_names_the_bad_option() {
        let bad = |toml: &str| {
            parse::<ElasticsearchConfig>(toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("url = \"es:9200\"").contains("url"));
        assert!(bad("url = \"ftp://es\"").contains("http"));
        assert!(bad("index = \"Periscope\"").contains("lowercase"));
        assert!(bad("index = \"%Y-periscope\"").contains("template"));
        assert_eq!(
            bad("auth = { username = \"u\" }"),
            "`auth.username`: `username` needs `password_file`"
        );
        assert!(
            bad("auth = { api_key = \"k\", username = \"u\", password = \"p\" }")
                .contains("one kind")
        );
        assert!(bad("timeout = \"0s\"").contains("timeout"));
        assert!(bad("index = \"x\"\ndata_stream = {}").contains("exclude each other"));
        assert!(bad("data_stream = { dataset = \"a-b\" }").contains("`data_stream.dataset`"));
        assert!(bad("tls = { ca_file = \"x\" }").contains("https"));
        assert_eq!(
            bad("url = \"https://a\"\ntls = { ca_file = \"x\", insecure_skip_verify = true }"),
            "`tls.insecure_skip_verify`: `ca_file` and `insecure_skip_verify` exclude each other"
        );
        assert!(
            bad("url = \"https://a\"\ntls = { cert_file = \"c\", key_file = \"k\" }").contains(
                "`tls.cert_file`: `cert_file` is not supported by the Elasticsearch exporter"
            )
        );
    }
}
