//! The options of the two exporters: the `config` table of their `[[exporters]]` entries.
//!
//! The metrics page (`plugin = "prometheus"`):
//!
//! ```toml
//! config = { listen = "127.0.0.1:9100", path = "/metrics", metric_prefix = "periscope_",
//!            const_labels = { cluster = "lab" }, max_series_per_family = 100000,
//!            max_label_value_length = 1024, auth = { token_file = "/run/secrets/scrape-token" },
//!            tls = { cert_file = "tls.crt", key_file = "tls.key" },
//!            write_timeout = "60s", idle_timeout = "30s" }
//! ```
//!
//! Remote write (`plugin = "prometheus-remote-write"`):
//!
//! ```toml
//! config = { url = "https://prometheus:9090/api/v1/write", max_samples_per_request = 2000,
//!            timeout = "10s", auth = { username = "periscope", password_file = "/run/secrets/rw" },
//!            tls = { ca_file = "ca.pem" }, metric_prefix = "periscope_",
//!            const_labels = { cluster = "lab" } }
//! ```
//!
//! Both name series the same way with the same options (`metric_prefix`, `const_labels`,
//! `max_series_per_family`, `max_label_value_length`), so a series pushed is the series scraped.
//! `auth` and `tls` are plugin-api's [`AuthConfig`] and [`TlsConfig`], the same tables the
//! scraper's endpoints and the Elasticsearch exporter take.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use periscope_plugin_api::auth::{Auth, AuthConfig, AuthError, Credentials};
use periscope_plugin_api::config::Duration;
use periscope_plugin_api::names;
use periscope_plugin_api::tls::{TlsConfig, TlsError};
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
    /// Serve HTTPS with this certificate and key (`cert_file`, `key_file`; the other keys are
    /// for clients and refused here).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Require these credentials from scrapers: basic auth or a bearer token.
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
    /// A client that has not read its whole response this long after it was ready is dropped
    /// and counted (`connections_dropped_total{reason="too_slow"}`), freeing the page it held.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: Duration,
    /// A connection that sends no complete request headers for this long — a kept-alive one
    /// between scrapes, or a new one that sends nothing — is closed and counted
    /// (`connections_dropped_total{reason="idle"}`); also the limit on a TLS handshake.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
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
    /// Credentials sent to the receiver: basic auth or a bearer token.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS towards an `https://` receiver (`ca_file`, `cert_file` and `key_file`,
    /// `insecure_skip_verify`; `server_name` is refused).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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

/// The range of remote write's `timeout`, and of the page's `write_timeout` and `idle_timeout`.
const TIMEOUT_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(1),
    std::time::Duration::from_secs(3600),
);

fn default_write_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

fn default_idle_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

/// One thing wrong with the options.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A page path that is not absolute.
    #[error("`path` {0:?} must start with `/`")]
    Path(String),
    /// A limit of 0.
    #[error("`{0}` must be greater than 0")]
    Zero(&'static str),
    /// A duration out of its range.
    #[error("`{0}`: {1}")]
    Range(&'static str, String),
    /// A prefix that cannot start a metric name.
    #[error("`metric_prefix` {0:?} is not a valid metric name start ([a-zA-Z_:][a-zA-Z0-9_:]*)")]
    MetricPrefix(String),
    /// A constant label a user may not set.
    #[error(
        "`const_labels`: {0:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with `__`)"
    )]
    ConstLabel(String),
    /// A remote-write URL that is not HTTP.
    #[error("`url` {0:?} must be an http:// or https:// URL")]
    RemoteWriteUrl(String),
    /// `tls` with a plain HTTP URL.
    #[error("`tls` needs an https:// `url`, not {0:?}")]
    TlsNeedsHttps(String),
    /// An `auth` table that is wrong or whose secret cannot be read.
    #[error("`{key}`: {source}")]
    Auth {
        /// The key at fault (`auth.token_file`).
        key: String,
        /// What is wrong.
        source: AuthError,
    },
    /// A `tls` table that is wrong or whose files cannot be read.
    #[error("`{key}`: {source}")]
    Tls {
        /// The key at fault (`tls.cert_file`).
        key: String,
        /// What is wrong.
        source: TlsError,
    },
}

impl ConfigError {
    /// What is wrong with the `auth` table called `table`.
    fn auth(table: &str, source: AuthError) -> ConfigError {
        ConfigError::Auth {
            key: key_in(table, source.key()),
            source,
        }
    }

    /// What is wrong with the `tls` table called `table`.
    fn tls(table: &str, source: TlsError) -> ConfigError {
        ConfigError::Tls {
            key: key_in(table, source.key()),
            source,
        }
    }
}

/// `table.key`, or `table` for an empty key.
fn key_in(table: &str, key: &str) -> String {
    if key.is_empty() {
        table.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// Every problem of the options, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// The credentials of an `auth` table (`table` names it) that the exporter takes: basic or
/// bearer, secrets read.
pub fn credentials(table: &'static str, config: &AuthConfig) -> Result<Credentials, ConfigError> {
    let auth_error = |source| ConfigError::auth(table, source);
    let auth = config.auth().map_err(auth_error)?;
    if let Auth::ApiKey(_) = auth {
        return Err(auth_error(AuthError::Unsupported {
            key: "api_key_file",
            kind: auth.kind(),
            takes: "basic auth or a bearer token",
        }));
    }
    auth.load().map_err(auth_error)
}

/// The `Authorization` header value `credentials` produce.
pub fn authorization(credentials: &Credentials) -> String {
    use base64::Engine as _;
    match credentials {
        Credentials::Bearer(token) => format!("Bearer {token}"),
        Credentials::Basic { username, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        ),
        Credentials::ApiKey(key) => format!("ApiKey {key}"),
    }
}

/// How series are named and limited, from the options both exporters share; the problems with
/// them go to `problems`.
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

/// The problems of the naming options both exporters share.
fn naming_problems(options: &Options, problems: &mut Vec<ConfigError>) {
    if options.max_series_per_family == Some(0) {
        problems.push(ConfigError::Zero("max_series_per_family"));
    }
    if options.line.max_label_value_length == Some(0) {
        problems.push(ConfigError::Zero("max_label_value_length"));
    }
    if !options.metric_prefix.is_empty() && !names::is_metric_name(&options.metric_prefix) {
        problems.push(ConfigError::MetricPrefix(options.metric_prefix.clone()));
    }
    for (name, _) in &options.line.const_labels {
        if !names::is_user_label_name(name) {
            problems.push(ConfigError::ConstLabel(name.clone()));
        }
    }
}

fn report(problems: Vec<ConfigError>) -> Result<(), ConfigErrors> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(problems))
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

    /// Checks what serde cannot, secret and certificate files included; every problem is
    /// reported.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push(ConfigError::Path(self.path.clone()));
        }
        if let Some(auth) = &self.auth
            && let Err(e) = credentials("auth", auth)
        {
            problems.push(e);
        }
        if let Some(tls) = &self.tls
            && let Err(source) = server_tls(tls)
        {
            problems.push(ConfigError::tls("tls", source));
        }
        let (min, max) = TIMEOUT_RANGE;
        for (key, timeout) in [
            ("write_timeout", self.write_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if let Err(range) = timeout.check_range(min, max) {
                problems.push(ConfigError::Range(key, range));
            }
        }
        naming_problems(&self.options(), &mut problems);
        report(problems)
    }
}

/// The page's `tls`: a certificate and key, nothing a client would set.
fn server_tls(tls: &TlsConfig) -> Result<(), TlsError> {
    tls.refuse(
        &["ca_file", "insecure_skip_verify", "server_name"],
        "for the metrics page (it serves `cert_file` with `key_file`)",
    )?;
    if tls.cert_file.is_none() {
        return Err(TlsError::Needs("key_file", "cert_file"));
    }
    tls.load().map(drop)
}

impl RemoteWriteConfig {
    /// How series are named and limited.
    pub fn options(&self) -> Options {
        options(
            &self.metric_prefix,
            &self.const_labels,
            self.max_series_per_family,
            self.max_label_value_length,
        )
    }

    /// Checks what serde cannot, secret and certificate files included; every problem is
    /// reported.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        let https = self.url.starts_with("https://");
        if !(https || self.url.starts_with("http://")) {
            problems.push(ConfigError::RemoteWriteUrl(self.url.clone()));
        }
        if self.max_samples_per_request == 0 {
            problems.push(ConfigError::Zero("max_samples_per_request"));
        }
        if let Some(auth) = &self.auth
            && let Err(e) = credentials("auth", auth)
        {
            problems.push(e);
        }
        if let Some(tls) = &self.tls {
            if !https {
                problems.push(ConfigError::TlsNeedsHttps(self.url.clone()));
            }
            let checked = tls
                .refuse(&["server_name"], "for remote write")
                .and_then(|()| tls.load().map(drop));
            if let Err(source) = checked {
                problems.push(ConfigError::tls("tls", source));
            }
        }
        let (min, max) = TIMEOUT_RANGE;
        if let Err(range) = self.timeout.check_range(min, max) {
            problems.push(ConfigError::Range("timeout", range));
        }
        naming_problems(&self.options(), &mut problems);
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
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN X-----\n-----END X-----\n";
        for file in ["c.pem", "k.pem"] {
            std::fs::write(dir.path().join(file), pem).unwrap();
        }
        let config: PrometheusConfig = parse(&format!(
            r#"listen = "127.0.0.1:1"
path = "/m"
tls = {{ cert_file = "{0}/c.pem", key_file = "{0}/k.pem" }}
auth = {{ username = "u", password = "p" }}
max_series_per_family = 5
max_label_value_length = 10
metric_prefix = "x_"
const_labels = {{ cluster = "lab" }}
write_timeout = "5s"
idle_timeout = "2s"
"#,
            dir.path().display()
        ))
        .unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(config.write_timeout.0, std::time::Duration::from_secs(5));
        assert_eq!(config.idle_timeout.0, std::time::Duration::from_secs(2));
        assert_eq!(
            credentials("auth", config.auth.as_ref().unwrap()).unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN X-----\n-----END X-----\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), "t\n").unwrap();
        let config: RemoteWriteConfig = parse(&format!(
            r#"url = "https://h/api/v1/write"
max_samples_per_request = 7
timeout = "2s"
auth = {{ token_file = "{0}/token" }}
tls = {{ ca_file = "{0}/ca.pem" }}
max_series_per_family = 5
max_label_value_length = 10
metric_prefix = "x_"
const_labels = {{ cluster = "lab" }}
"#,
            dir.path().display()
        ))
        .unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(config.max_samples_per_request, 7);
        let token = credentials("auth", config.auth.as_ref().unwrap()).unwrap();
        assert_eq!(token, Credentials::Bearer("t".into()));
        assert_eq!(authorization(&token), "Bearer t");
        assert_eq!(config.options().metric_prefix, "x_");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err =
            parse::<PrometheusConfig>("listen = \"127.0.0.1:1\"\nlisten_addr = 1").unwrap_err();
        assert_eq!(err.key, "listen_addr");
        let err = parse::<PrometheusConfig>(
            "listen = \"127.0.0.1:1\"\ntls = { cert = \"a\", key = \"b\" }",
        )
        .unwrap_err();
        assert_eq!(err.key, "tls.cert");
        let err = parse::<PrometheusConfig>(
            "listen = \"127.0.0.1:1\"\nremote_write = { url = \"http://x\" }",
        )
        .unwrap_err();
        assert_eq!(err.key, "remote_write");
        assert!(parse::<RemoteWriteConfig>("url = \"http://x\"\nurll = 1").is_err());
        assert!(parse::<RemoteWriteConfig>("url = \"http://x\"\nbearer_token = \"t\"").is_err());
    }

    #[test]
    fn validation_reports_every_problem() {
        let config: PrometheusConfig = parse(
            "listen = \"127.0.0.1:1\"\npath = \"metrics\"\nauth = { username = \"u\" }\n\
             metric_prefix = \"1x\"\nconst_labels = { \"a-b\" = \"v\" }\nmax_series_per_family = 0\n\
             write_timeout = \"0s\"\nidle_timeout = \"400000000000y\"\n\
             tls = { cert_file = \"/nonexistent/c.pem\", key_file = \"k\", ca_file = \"ca\" }",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "`auth.username`: `username` needs `password_file`",
            "`path`",
            "metric_prefix",
            "a-b",
            "max_series_per_family",
            "`tls.ca_file`: `ca_file` is not supported for the metrics page",
            "`write_timeout`: \"0s\" is out of range",
            "`idle_timeout`: ",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
        let config: RemoteWriteConfig = parse(
            "url = \"ftp://x\"\nmax_samples_per_request = 0\ntimeout = \"0s\"\n\
             auth = { username = \"u\" }\nmax_label_value_length = 0",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "`url`",
            "max_samples_per_request",
            "`timeout`",
            "`auth.username`",
            "max_label_value_length",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn a_missing_secret_or_certificate_file_is_named_with_its_key() {
        let config: RemoteWriteConfig = parse(
            "url = \"https://h/w\"\nauth = { token_file = \"/nonexistent/t\" }\n\
             tls = { ca_file = \"/nonexistent/ca.pem\", server_name = \"x\" }",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("`auth.token_file`: cannot read /nonexistent/t"),
            "{err}"
        );
        assert!(
            err.contains("`tls.server_name`: `server_name` is not supported for remote write"),
            "{err}"
        );
    }

    #[test]
    fn an_api_key_is_not_taken() {
        let config: PrometheusConfig =
            parse("listen = \"127.0.0.1:1\"\nauth = { api_key = \"k\" }").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("an API key is not taken here"), "{err}");
    }
}
