//! The options of the two exporters: the `config` table of their `[[exporters]]` entries.
//!
//! The metrics page (`plugin = "prometheus"`):
//!
//! ```toml
//! config = { listen = "127.0.0.1:9100", path = "/metrics", metric_prefix = "periscope_",
//!            const_labels = { cluster = "lab" }, max_series_per_family = 100000,
//!            max_label_value_length = 1024, auth = { bearer_token = "s3cret" },
//!            tls = { cert = "tls.crt", key = "tls.key" } }
//! ```
//!
//! Remote write (`plugin = "prometheus-remote-write"`):
//!
//! ```toml
//! config = { url = "http://127.0.0.1:9090/api/v1/write", max_samples_per_request = 2000,
//!            timeout = "10s", bearer_token = "s3cret", metric_prefix = "periscope_",
//!            const_labels = { cluster = "lab" } }
//! ```
//!
//! Both name series the same way with the same options (`metric_prefix`, `const_labels`,
//! `max_series_per_family`, `max_label_value_length`), so a series pushed is the series scraped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use periscope_plugin_api::config::Duration;
use serde::Deserialize;

use crate::block::LineOptions;
use crate::state::Options;

/// Options of the metrics page exporter (`plugin = "prometheus"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The address the metrics page is served on.
    pub listen: SocketAddr,
    /// The path of the metrics page.
    #[serde(default = "default_path")]
    pub path: String,
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Require these credentials from scrapers.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Series kept per metric family over all sources; further series are dropped and counted.
    #[serde(default)]
    pub max_series_per_family: Option<u64>,
    /// Label values longer than this many bytes are cut (at a character boundary) and counted.
    #[serde(default)]
    pub max_label_value_length: Option<usize>,
    /// Put in front of every family name (`periscope_`); the exporter's own metrics keep theirs.
    #[serde(default)]
    pub metric_prefix: String,
    /// Labels added to every series (a label of the sample itself wins over one of these).
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
}

/// The certificate chain and private key (PEM files) of the HTTPS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Credentials: `{ bearer_token = "…" }` or `{ username = "…", password = "…" }` (HTTP basic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// The user name of basic auth.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of basic auth.
    #[serde(default)]
    pub password: Option<String>,
}

/// Validated credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl Credentials {
    /// The `Authorization` header value these credentials produce.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        match self {
            Credentials::Bearer(token) => format!("Bearer {token}"),
            Credentials::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        }
    }
}

impl AuthConfig {
    /// The credentials, or what is wrong with the fields given (`what` names the table).
    pub fn credentials(&self, what: &str) -> Result<Option<Credentials>, String> {
        match (&self.bearer_token, &self.username, &self.password) {
            (None, None, None) => Ok(None),
            (Some(token), None, None) if !token.is_empty() => {
                Ok(Some(Credentials::Bearer(token.clone())))
            }
            (None, Some(username), Some(password)) => Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            })),
            _ => Err(format!(
                "{what}: give either a non-empty `bearer_token`, or both `username` and `password`"
            )),
        }
    }
}

/// Options of the remote-write exporter (`plugin = "prometheus-remote-write"`): where and how to
/// push samples with the remote-write 1.0 protocol, and how to name them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's URL (`http://prometheus:9090/api/v1/write`).
    pub url: String,
    /// A batch is split into requests of at most this many samples.
    #[serde(default = "default_max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// How long one request may take.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Bearer token sent to the receiver.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// User name of basic auth at the receiver.
    #[serde(default)]
    pub username: Option<String>,
    /// Password of basic auth at the receiver.
    #[serde(default)]
    pub password: Option<String>,
    /// Series pushed per metric family over all sources; further series are dropped.
    #[serde(default)]
    pub max_series_per_family: Option<u64>,
    /// Label values longer than this many bytes are cut (at a character boundary).
    #[serde(default)]
    pub max_label_value_length: Option<usize>,
    /// Put in front of every family name (`periscope_`).
    #[serde(default)]
    pub metric_prefix: String,
    /// Labels added to every series (a label of the sample itself wins over one of these).
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
}

fn default_path() -> String {
    "/metrics".to_owned()
}

fn default_max_samples_per_request() -> usize {
    2000
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

/// How series are named and limited, from the options both exporters share.
fn options(
    metric_prefix: &str,
    const_labels: &BTreeMap<String, String>,
    max_series_per_family: Option<u64>,
    max_label_value_length: Option<usize>,
) -> Options {
    Options {
        metric_prefix: metric_prefix.to_owned(),
        line: LineOptions {
            max_label_value_length,
            const_labels: const_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        max_series_per_family,
    }
}

fn report(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

impl PrometheusConfig {
    /// How series are named and limited.
    pub fn options(&self) -> Options {
        options(
            &self.metric_prefix,
            &self.const_labels,
            self.max_series_per_family,
            self.max_label_value_length,
        )
    }

    /// Checks what serde cannot; every problem is reported, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push(format!("`path` {:?} must start with `/`", self.path));
        }
        if let Some(Err(e)) = self.auth.as_ref().map(|a| a.credentials("`auth`")) {
            problems.push(e);
        }
        problems.extend(self.options().problems());
        report(problems)
    }
}

impl RemoteWriteConfig {
    /// The credentials to send, or what is wrong with them.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        AuthConfig {
            bearer_token: self.bearer_token.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
        .credentials("remote write")
    }

    /// How series are named and limited.
    pub fn options(&self) -> Options {
        options(
            &self.metric_prefix,
            &self.const_labels,
            self.max_series_per_family,
            self.max_label_value_length,
        )
    }

    /// Checks what serde cannot; every problem is reported, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!(
                "`url` {:?} must be an http:// or https:// URL",
                self.url
            ));
        }
        if self.max_samples_per_request == 0 {
            problems.push("`max_samples_per_request` must be greater than 0".into());
        }
        if let Err(e) = self.credentials() {
            problems.push(e);
        }
        if self.timeout.0.is_zero() {
            problems.push("`timeout` must be greater than 0".into());
        }
        problems.extend(self.options().problems());
        report(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[test]
    fn listen_alone_is_enough_and_defaults_apply() {
        let config: PrometheusConfig = parse("listen = \"127.0.0.1:9100\"").unwrap();
        assert_eq!(config.path, "/metrics");
        assert_eq!(config.listen, "127.0.0.1:9100".parse().unwrap());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_page_needs_an_address() {
        let err = parse::<PrometheusConfig>("path = \"/m\"").unwrap_err();
        assert!(err.message.contains("listen"), "{err:?}");
    }

    #[test]
    fn every_page_option_can_be_set() {
        let config: PrometheusConfig = parse(
            r#"listen = "127.0.0.1:1"
path = "/m"
tls = { cert = "c.pem", key = "k.pem" }
auth = { username = "u", password = "p" }
max_series_per_family = 5
max_label_value_length = 10
metric_prefix = "x_"
const_labels = { cluster = "lab" }
"#,
        )
        .unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(
            config.auth.as_ref().unwrap().credentials("auth").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let options = config.options();
        assert_eq!(options.metric_prefix, "x_");
        assert_eq!(options.max_series_per_family, Some(5));
        assert_eq!(options.line.max_label_value_length, Some(10));
        assert_eq!(
            options.line.const_labels,
            [("cluster".to_owned(), "lab".to_owned())]
        );
    }

    #[test]
    fn every_remote_write_option_can_be_set() {
        let config: RemoteWriteConfig = parse(
            r#"url = "http://h/api/v1/write"
max_samples_per_request = 7
timeout = "2s"
bearer_token = "t"
max_series_per_family = 5
max_label_value_length = 10
metric_prefix = "x_"
const_labels = { cluster = "lab" }
"#,
        )
        .unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(config.max_samples_per_request, 7);
        assert_eq!(
            config.credentials().unwrap(),
            Some(Credentials::Bearer("t".into()))
        );
        assert_eq!(config.options().metric_prefix, "x_");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err =
            parse::<PrometheusConfig>("listen = \"127.0.0.1:1\"\nlisten_addr = 1").unwrap_err();
        assert_eq!(err.key, "listen_addr");
        assert!(
            parse::<PrometheusConfig>(
                "listen = \"127.0.0.1:1\"\ntls = { cert = \"a\", key = \"b\", ca = \"c\" }"
            )
            .is_err()
        );
        let err = parse::<PrometheusConfig>(
            "listen = \"127.0.0.1:1\"\nremote_write = { url = \"http://x\" }",
        )
        .unwrap_err();
        assert_eq!(err.key, "remote_write");
        assert!(parse::<RemoteWriteConfig>("url = \"http://x\"\nurll = 1").is_err());
    }

    #[test]
    fn validation_reports_every_problem() {
        let config: PrometheusConfig = parse(
            "listen = \"127.0.0.1:1\"\npath = \"metrics\"\nauth = { username = \"u\" }\nmetric_prefix = \"1x\"\nconst_labels = { \"a-b\" = \"v\" }\nmax_series_per_family = 0",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        for needle in [
            "either a non-empty",
            "`path`",
            "metric_prefix",
            "a-b",
            "max_series_per_family",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
        let config: RemoteWriteConfig = parse(
            "url = \"ftp://x\"\nmax_samples_per_request = 0\ntimeout = \"0s\"\nusername = \"u\"\nmax_label_value_length = 0",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        for needle in [
            "`url`",
            "max_samples_per_request",
            "`timeout`",
            "either a non-empty",
            "max_label_value_length",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }
}
