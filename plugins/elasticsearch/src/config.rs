//! The Elasticsearch exporter's options: the `config` table of its `[[exporters]]` entry.
//!
//! ```toml
//! config = { url = "https://es.example:9200", index = "periscope-%Y.%m.%d", api_key = "…", ca_file = "ca.pem" }
//! ```

use std::path::PathBuf;

use periscope_plugin_api::config::Duration;
use serde::Deserialize;

use crate::document::IndexPattern;

/// Options of the Elasticsearch exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// The node's base URL (`http://` or `https://`).
    #[serde(default = "default_url")]
    pub url: String,
    /// The index every document goes to, with `strftime` date math over the document's timestamp
    /// in UTC: `periscope-%Y.%m.%d` writes one index per day.
    #[serde(default = "default_index")]
    pub index: String,
    /// Whether to install an index template for the indices `index` names (at start, and again
    /// before the first export if the node was not reachable then).
    #[serde(default = "default_true")]
    pub template: bool,
    /// `index.number_of_replicas` in the template; unset leaves the cluster's default (1), which a
    /// single-node cluster can never allocate (it stays yellow but works): set `0` there.
    #[serde(default)]
    pub number_of_replicas: Option<u32>,
    /// How long one request may take before the export is retried.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// User name for basic authentication (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic authentication (with `username`).
    #[serde(default)]
    pub password: Option<String>,
    /// An API key, base64-encoded `id:api_key` as Elasticsearch returns it in `encoded`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// A PEM file of the CA that signed the node's certificate (hostname checked too).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. For tests only: it gives up what TLS is for.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_url() -> String {
    "http://127.0.0.1:9200".to_owned()
}

fn default_index() -> String {
    "periscope-%Y.%m.%d".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

/// How the exporter authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An encoded API key.
    ApiKey(String),
}

impl ElasticsearchConfig {
    /// Checks what serde cannot: a usable URL, index pattern, credentials and TLS options.
    pub fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("`url` {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`url` {:?} must start with http:// or https://",
                self.url
            ));
        }
        let pattern = IndexPattern::new(&self.index)?;
        if self.template && pattern.template_pattern().is_none() {
            return Err(format!(
                "`index` {:?} starts with date math, so an index template would match every \
                 index: give it a fixed prefix (\"periscope-%Y.%m.%d\") or set `template = false`",
                self.index
            ));
        }
        if self.timeout.0.is_zero() {
            return Err("`timeout` must be greater than 0".to_owned());
        }
        self.auth()?;
        if self.ca_file.is_some() && self.insecure_skip_verify {
            return Err("`ca_file` and `insecure_skip_verify` exclude each other".to_owned());
        }
        if (self.ca_file.is_some() || self.insecure_skip_verify) && url.scheme() != "https" {
            return Err(format!(
                "`ca_file`/`insecure_skip_verify` need an https:// `url`, not {:?}",
                self.url
            ));
        }
        Ok(())
    }

    /// The credentials the options describe.
    pub fn auth(&self) -> Result<Auth, String> {
        match (&self.username, &self.password, &self.api_key) {
            (None, None, None) => Ok(Auth::None),
            (Some(username), Some(password), None) => Ok(Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None, Some(key)) if !key.is_empty() => Ok(Auth::ApiKey(key.clone())),
            (None, None, Some(_)) => Err("`api_key` is empty".to_owned()),
            (_, _, Some(_)) => {
                Err("use either `api_key` or `username` and `password`, not both".to_owned())
            }
            _ => Err("`username` and `password` go together".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[test]
    fn everything_has_a_default() {
        let config: ElasticsearchConfig = parse("").unwrap();
        assert_eq!(config.url, "http://127.0.0.1:9200");
        assert_eq!(config.index, "periscope-%Y.%m.%d");
        assert!(config.template);
        assert_eq!(config.number_of_replicas, None);
        assert_eq!(config.timeout.0.as_secs(), 30);
        assert_eq!(config.auth(), Ok(Auth::None));
        assert!(!config.insecure_skip_verify);
        config.validate().unwrap();
    }

    #[test]
    fn every_option_can_be_set() {
        let config: ElasticsearchConfig = parse(
            "url = \"https://es:9200\"\nindex = \"m-%Y\"\ntemplate = false\nnumber_of_replicas = 0\n\
             timeout = \"5s\"\nusername = \"u\"\npassword = \"p\"\nca_file = \"ca.pem\"",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.number_of_replicas, Some(0));
        assert_eq!(
            config.auth(),
            Ok(Auth::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse::<ElasticsearchConfig>("indx = \"a\"").unwrap_err();
        assert_eq!(err.key, "indx");
    }

    #[test]
    fn validation_names_the_bad_option() {
        let bad = |toml: &str| {
            parse::<ElasticsearchConfig>(toml)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert!(bad("url = \"es:9200\"").contains("url"));
        assert!(bad("url = \"ftp://es\"").contains("http"));
        assert!(bad("index = \"Periscope\"").contains("lowercase"));
        assert!(bad("index = \"%Y-periscope\"").contains("template"));
        assert!(bad("username = \"u\"").contains("go together"));
        assert!(bad("api_key = \"k\"\nusername = \"u\"\npassword = \"p\"").contains("either"));
        assert!(bad("timeout = \"0s\"").contains("timeout"));
        assert!(bad("ca_file = \"x\"").contains("https"));
        assert!(
            bad("url = \"https://a\"\nca_file = \"x\"\ninsecure_skip_verify = true")
                .contains("exclude")
        );
    }
}
