//! `[[endpoints]]`: HTTP endpoints polled for metrics, given as URLs or discovered through the
//! Kubernetes API.

use std::collections::BTreeMap;

use periscope_plugin_api::auth::AuthConfig;
use periscope_plugin_api::config::{ByteSize, Duration};
use periscope_plugin_api::tls::TlsConfig;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::{MetricConfig, schema};

/// One `[[endpoints]]` entry: a set of targets scraped the same way.
///
/// ```toml
/// [[endpoints]]
/// name = "virt-handler"
/// interval = "15s"
/// timeout = "5s"
/// drop = ["go_.*"]
/// labels = { cluster = "lab" }
///
///   [endpoints.kubernetes]
///   role = "pod"
///   namespaces = ["kubevirt"]
///   label_selector = "kubevirt.io=virt-handler"
///   port = "metrics"
///   scheme = "https"
/// ```
///
/// Every sample of a target carries `job` (the entry's name) and `instance` (the target's
/// `host:port`), then the entry's `labels`, then the labels read from the discovered object; a
/// scraped label with one of those names is renamed `exported_<name>`, as Prometheus does.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The entry's name: the `job` label of its samples and part of its input's name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Targets given by URL (`http://10.0.0.7:8080/metrics`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub urls: Vec<Spanned<String>>,
    /// Targets discovered through the Kubernetes API.
    #[serde(default)]
    pub kubernetes: Option<DiscoveryConfig>,
    /// What the targets answer: `prometheus` (text 0.0.4 or OpenMetrics, by content type) or
    /// `json` (read with `[[endpoints.metrics]]`).
    #[serde(default)]
    pub format: EndpointFormat,
    /// How often each target is scraped. Targets are spread over the interval (each keeps its
    /// own offset, derived from its URL), so many targets do not fire at once.
    #[serde(default = "default_interval")]
    #[schemars(with = "schema::DurationText")]
    pub interval: Spanned<Duration>,
    /// How long one scrape may take, body included; at most the interval.
    #[serde(default = "default_timeout")]
    #[schemars(with = "schema::DurationText")]
    pub timeout: Spanned<Duration>,
    /// A larger (decompressed) response fails the scrape.
    #[serde(default = "default_max_response_bytes")]
    #[schemars(with = "schema::ByteSizeText")]
    pub max_response_bytes: ByteSize,
    /// A response with more samples (after `keep` and `drop`) fails the scrape; `0` means no
    /// limit.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// The most series the entry writes over all its targets (at least 1): the newest beyond it
    /// are left out of each scrape and counted in `periscope_series_limited_total{entry=
    /// "endpoints[i]"}`; the next scrapes bring them back once there is room. No cap by default.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_series: Option<Spanned<u64>>,
    /// The most distinct values one label takes within one metric over all the entry's targets
    /// (at least 1): a series bringing a value beyond it is left out of the scrape and counted in
    /// `periscope_series_limited_total{reason="max_values"}`; once values are given back (a target
    /// stopped writing them), the next scrapes bring such series back. No cap by default.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_values: Option<Spanned<u64>>,
    /// A sample with more labels than this fails the scrape (Prometheus' `label_limit`); `0` means
    /// no limit.
    #[serde(default = "default_label_limit")]
    pub label_limit: usize,
    /// A label value longer than this many bytes fails the scrape (Prometheus'
    /// `label_value_length_limit`); `0` means no limit.
    #[serde(default = "default_label_value_length_limit")]
    pub label_value_length_limit: usize,
    /// A label name longer than this many bytes fails the scrape (Prometheus'
    /// `label_name_length_limit`); `0` means no limit.
    #[serde(default = "default_label_name_length_limit")]
    pub label_name_length_limit: usize,
    /// Only samples whose metric name fully matches one of these regular expressions are kept
    /// (all when empty).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub keep: Vec<Spanned<String>>,
    /// Samples whose metric name fully matches one of these regular expressions are dropped.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub drop: Vec<Spanned<String>>,
    /// Labels added to every sample of the entry: name to value.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: BTreeMap<Spanned<String>, String>,
    /// Credentials sent with every scrape: `{ token_file = "…" }` (bearer) or
    /// `{ username = "…", password_file = "…" }` (basic). The file is read again at every scrape,
    /// so a rotated secret is picked up; inline secrets are refused (a scrape config often sits in
    /// a ConfigMap, and a secret read once would never rotate).
    #[serde(default)]
    #[schemars(with = "Option<schema::HostFiles>")]
    pub auth: Option<AuthConfig>,
    /// TLS settings for `https` targets (`ca_file`, `cert_file` and `key_file` for mutual TLS,
    /// `insecure_skip_verify`; `server_name` is refused).
    #[serde(default)]
    #[schemars(with = "Option<schema::HostFiles>")]
    pub tls: Option<TlsConfig>,
    /// Put before every metric name of `metrics` (JSON), joined with `_`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// How a JSON answer becomes metrics: the same entries and path language as
    /// `[[resources.metrics]]`, with the answer as the object.
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
}

/// What targets answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointFormat {
    /// Prometheus text 0.0.4 or OpenMetrics 1.0, chosen by the response's content type.
    #[default]
    Prometheus,
    /// A JSON document, read with the entry's `metrics`.
    Json,
}

/// `[endpoints.kubernetes]`: targets found among Pods or EndpointSlices.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `pod` (one target per pod with an IP) or `endpointslice` (one per address of a slice).
    pub role: DiscoveryRole,
    /// Only objects in these namespaces; empty means every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A Kubernetes label selector on the Pods or EndpointSlices.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub label_selector: Option<Spanned<String>>,
    /// The port: a number, or the name of a container port (pods) or slice port (slices).
    #[schemars(with = "PortRef")]
    pub port: Spanned<PortRef>,
    /// The URL path.
    #[serde(default = "default_path")]
    pub path: String,
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Labels read from the discovered object: label name to path (`spec.nodeName`). Targets
    /// always carry `namespace` and `pod` (pods) or `namespace`, `service` and, when the address
    /// names one, `pod` (slices).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// Which objects targets are discovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryRole {
    /// `v1` Pods: the pod IP and a container port.
    Pod,
    /// `discovery.k8s.io/v1` EndpointSlices: each endpoint's first address and a slice port.
    EndpointSlice,
}

/// A port by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A port name.
    Name(String),
}

/// The URL scheme of discovered targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

fn default_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(15)))
}

fn default_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(10)))
}

fn default_max_response_bytes() -> ByteSize {
    ByteSize(16 << 20)
}

fn default_label_limit() -> usize {
    64
}

fn default_label_name_length_limit() -> usize {
    1024
}

fn default_label_value_length_limit() -> usize {
    4096
}

fn default_max_samples() -> usize {
    100_000
}

fn default_path() -> String {
    "/metrics".to_owned()
}
