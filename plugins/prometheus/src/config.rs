//! The Prometheus exporter's options: the `config` table of its `[[exporters]]` entry.
//!
//! ```toml
//! config = { listen = "127.0.0.1:9100", path = "/metrics", metric_prefix = "periscope_",
//!            const_labels = { cluster = "lab" }, max_series_per_family = 100000,
//!            max_label_value_length = 1024, auth = { bearer_token = "s3cret" },
//!            tls = { cert = "tls.crt", key = "tls.key" },
//!            remote_write = { url = "http://127.0.0.1:9090/api/v1/write", max_samples_per_request = 2000 } }
//! ```
//!
//! Pull (`listen`) and push (`remote_write`) are independent; at least one must be configured.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use periscope_plugin_api::config::Duration;
use serde::Deserialize;

use crate::names;

/// Options of the Prometheus exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The address `/metrics` is served on; absent = no pull endpoint (remote write only).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
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
    /// Push every export to a Prometheus remote-write 1.0 receiver.
    #[serde(default)]
    pub remote_write: Option<RemoteWriteConfig>,
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

/// Where and how to push samples with the remote-write 1.0 protocol.
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

impl RemoteWriteConfig {
    /// The credentials to send, or what is wrong with them.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        AuthConfig {
            bearer_token: self.bearer_token.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
        .credentials("`remote_write`")
    }
}

impl PrometheusConfig {
    /// Checks what serde cannot; every problem is reported, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.listen.is_none() && self.remote_write.is_none() {
            problems.push(
                "nothing to do: set `listen` (serve /metrics) and/or `remote_write` (push)"
                    .to_owned(),
            );
        }
        if !self.path.starts_with('/') {
            problems.push(format!("`path` {:?} must start with `/`", self.path));
        }
        if self.listen.is_none() && (self.tls.is_some() || self.auth.is_some()) {
            problems.push("`tls` and `auth` need `listen`".to_owned());
        }
        if let Some(Err(e)) = self.auth.as_ref().map(|a| a.credentials("`auth`")) {
            problems.push(e);
        }
        if self.max_series_per_family == Some(0) {
            problems.push("`max_series_per_family` must be greater than 0".to_owned());
        }
        if self.max_label_value_length == Some(0) {
            problems.push("`max_label_value_length` must be greater than 0".to_owned());
        }
        if !self.metric_prefix.is_empty() && !names::is_valid_metric_name(&self.metric_prefix) {
            problems.push(format!(
                "`metric_prefix` {:?} is not a valid metric name start ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                self.metric_prefix
            ));
        }
        for name in self.const_labels.keys() {
            if !names::is_valid_label_name(name) || name.starts_with("__") {
                problems.push(format!(
                    "`const_labels`: {name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with `__`)"
                ));
            }
        }
        if let Some(rw) = &self.remote_write {
            if !(rw.url.starts_with("http://") || rw.url.starts_with("https://")) {
                problems.push(format!(
                    "`remote_write.url` {:?} must be an http:// or https:// URL",
                    rw.url
                ));
            }
            if rw.max_samples_per_request == 0 {
                problems
                    .push("`remote_write.max_samples_per_request` must be greater than 0".into());
            }
            if let Err(e) = rw.credentials() {
                problems.push(e);
            }
            if rw.timeout.0.is_zero() {
                problems.push("`remote_write.timeout` must be greater than 0".into());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
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
        assert_eq!(config.listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn every_option_can_be_set() {
        let config: PrometheusConfig = parse(
            r#"listen = "127.0.0.1:1"
path = "/m"
tls = { cert = "c.pem", key = "k.pem" }
auth = { username = "u", password = "p" }
max_series_per_family = 5
max_label_value_length = 10
metric_prefix = "x_"
const_labels = { cluster = "lab" }
remote_write = { url = "http://h/api/v1/write", max_samples_per_request = 7, timeout = "2s", bearer_token = "t" }
"#,
        )
        .unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(
            config.auth.unwrap().credentials("auth").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let rw = config.remote_write.unwrap();
        assert_eq!(rw.max_samples_per_request, 7);
        assert_eq!(
            rw.credentials().unwrap(),
            Some(Credentials::Bearer("t".into()))
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err =
            parse::<PrometheusConfig>("listen = \"127.0.0.1:1\"\nlisten_addr = 1").unwrap_err();
        assert_eq!(err.key, "listen_addr");
        assert!(
            parse::<PrometheusConfig>("tls = { cert = \"a\", key = \"b\", ca = \"c\" }").is_err()
        );
        assert!(
            parse::<PrometheusConfig>("remote_write = { url = \"http://x\", urll = 1 }").is_err()
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let config: PrometheusConfig = parse(
            "path = \"metrics\"\nauth = { username = \"u\" }\nmetric_prefix = \"1x\"\nconst_labels = { \"a-b\" = \"v\" }\nmax_series_per_family = 0",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        for needle in [
            "either a non-empty",
            "nothing to do",
            "`path`",
            "metric_prefix",
            "a-b",
            "max_series_per_family",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }
}
