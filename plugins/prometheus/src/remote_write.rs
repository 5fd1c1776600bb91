//! Prometheus remote write 1.0: the protobuf messages, the snappy-compressed request, and what a
//! response means for the host.
//!
//! This module sends one request and says what its answer means: connection errors, timeouts,
//! 5xx and 429 are worth retrying, any other 4xx refuses the request for good (remote write 1.0
//! forbids retrying it). How a batch becomes requests, and what the host hears, is
//! [`crate::push`]'s.

use std::time::Duration;

use periscope_plugin_api::tls::{TlsConfig, TlsError};
use prost::Message as _;

use crate::config::{ConfigError, RemoteWriteConfig};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, `__name__` among them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The label pairs.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// What sending a request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted the request.
    Ok,
    /// Worth retrying the request after `after`.
    Retry {
        /// The shortest wait (the receiver's `Retry-After`, or a second).
        after: Duration,
        /// What failed.
        reason: String,
    },
    /// The receiver refuses the request for good.
    Reject {
        /// The receiver's status and message.
        reason: String,
    },
}

/// The snappy (block format) compressed protobuf body of a request for `series`.
pub fn encode(series: Vec<TimeSeries>) -> Result<Vec<u8>, snap::Error> {
    let proto = WriteRequest { timeseries: series }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&proto)
}

/// A remote-write client.
pub struct RemoteWriter {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The wait before retrying when the receiver does not say.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How much of a refusal's body goes into the reason.
const MAX_REASON_BYTES: usize = 1024;

/// The longest `Retry-After` a receiver is obeyed for: a receiver asking for years (or for more
/// seconds than a clock can add) gets retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait a `Retry-After` header (seconds) asks for, at most [`MAX_RETRY_AFTER`];
/// [`DEFAULT_RETRY_AFTER`] without one or with one that is not a number of seconds.
fn retry_after(header: Option<&str>) -> Duration {
    header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |secs| {
            Duration::from_secs(secs).min(MAX_RETRY_AFTER)
        })
}

impl RemoteWriter {
    /// A client for `config` (validated): reads its secret and certificate files.
    pub fn new(config: &RemoteWriteConfig) -> Result<Self, SetupError> {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout.0))
            .user_agent(concat!(
                "periscope-exporter-prometheus-remote-write/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(client_tls(tls)?);
        }
        let authorization = config
            .auth
            .as_ref()
            .map(|auth| crate::config::credentials("auth", auth))
            .transpose()?
            .as_ref()
            .map(crate::config::authorization);
        Ok(RemoteWriter {
            agent: builder.build().into(),
            url: config.url.clone(),
            authorization,
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts one request body (made by [`encode`]) and says what the answer means.
    pub fn post(&self, body: &[u8]) -> Outcome {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = match request.send(body) {
            Ok(response) => response,
            Err(e) => {
                return Outcome::Retry {
                    after: DEFAULT_RETRY_AFTER,
                    reason: format!("remote write to {}: {e}", self.url),
                };
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Outcome::Ok;
        }
        let retry_after = retry_after(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        // Only the start of a refusal's body is kept: read no more than that.
        let mut head = Vec::new();
        let _ = std::io::Read::read_to_end(
            &mut std::io::Read::take(response.body_mut().as_reader(), MAX_REASON_BYTES as u64 + 4),
            &mut head,
        );
        let mut message = String::from_utf8_lossy(&head).into_owned();
        if let Some(cut) = crate::names::truncate(&message, MAX_REASON_BYTES) {
            message = cut.to_owned();
        }
        let reason = format!(
            "remote write to {}: HTTP {status}: {}",
            self.url,
            message.trim()
        );
        classify(status, retry_after, reason)
    }
}

/// Why the remote-write client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The credentials.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `tls` table or its files.
    #[error("`tls.{key}`: {source}", key = .0.key(), source = .0)]
    Tls(#[from] TlsError),
    /// A PEM file ureq cannot use.
    #[error("`tls.{key}`: {source}")]
    Pem {
        /// The key of the file.
        key: &'static str,
        /// Why.
        source: ureq::Error,
    },
    /// A certificate file without a certificate.
    #[error("`tls.{0}`: no PEM certificate in it")]
    NoCertificate(&'static str),
}

/// The client TLS settings of `tls`: its CA instead of the built-in roots, its client
/// certificate, or no verification at all.
fn client_tls(tls: &TlsConfig) -> Result<ureq::tls::TlsConfig, SetupError> {
    let pem = tls.load()?;
    let mut builder =
        ureq::tls::TlsConfig::builder().disable_verification(tls.insecure_skip_verify);
    if let Some(ca) = &pem.ca {
        let roots = certificates("ca_file", ca)?;
        builder = builder.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    if let Some(identity) = &pem.identity {
        let chain = certificates("cert_file", &identity.cert)?;
        let key =
            ureq::tls::PrivateKey::from_pem(&identity.key).map_err(|source| SetupError::Pem {
                key: "key_file",
                source,
            })?;
        builder = builder.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// Every certificate in the PEM file of `key`; an error if there is none.
fn certificates(
    key: &'static str,
    pem: &[u8],
) -> Result<Vec<ureq::tls::Certificate<'static>>, SetupError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        // Private keys in the same file are not certificates: skipped.
        if let ureq::tls::PemItem::Certificate(cert) =
            item.map_err(|source| SetupError::Pem { key, source })?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(SetupError::NoCertificate(key));
    }
    Ok(certs)
}

/// What a non-2xx status means: 429 and 5xx are retried, other statuses rejected.
pub fn classify(status: u16, retry_after: Duration, reason: String) -> Outcome {
    if status == 429 || !(200..500).contains(&status) {
        Outcome::Retry {
            after: retry_after,
            reason,
        }
    } else {
        Outcome::Reject { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let series = vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                Label {
                    name: "job".into(),
                    value: "x".into(),
                },
            ],
            samples: vec![Sample {
                value: 1.5,
                timestamp: 1000,
            }],
        }];
        let body = encode(series.clone()).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let decoded = WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(decoded.timeseries, series);
    }

    #[test]
    fn retry_after_is_obeyed_up_to_five_minutes() {
        assert_eq!(retry_after(Some(" 7 ")), Duration::from_secs(7));
        assert_eq!(retry_after(Some("18446744073709551615")), MAX_RETRY_AFTER);
        assert_eq!(retry_after(Some("soon")), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn statuses_map_to_retry_or_reject() {
        let retry = |s| {
            matches!(
                classify(s, DEFAULT_RETRY_AFTER, String::new()),
                Outcome::Retry { .. }
            )
        };
        assert!(retry(429));
        assert!(retry(500));
        assert!(retry(503));
        assert!(!retry(400));
        assert!(!retry(404));
    }
}
