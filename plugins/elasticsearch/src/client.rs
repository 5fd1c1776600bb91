//! The HTTP side: the official `elasticsearch` client, built from the options, and the requests
//! the exporter makes (read the root endpoint, put or look up a template, send a `_bulk`).
//!
//! The client works against OpenSearch too: it sends plain `application/json` (no
//! `compatible-with` media type) and never checks the `X-Elastic-Product` header.

use std::time::Duration;

use elasticsearch::auth::Credentials as EsCredentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::{BulkOperations, BulkParts, Elasticsearch};

use periscope_plugin_api::auth::Credentials;

use crate::config::{ConfigError, ElasticsearchConfig};
use crate::distribution::NodeInfo;
use crate::template::{Kind, Template};

/// Why a request did not get an answer the exporter can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The node is down, slow, overloaded (429) or failing (5xx): the same request may work later.
    #[error("{0}")]
    Unavailable(String),
    /// The node refuses our credentials (401): nothing works until the operator fixes them,
    /// but the data must wait, not go.
    #[error("{0}")]
    Unauthorized(String),
    /// The node knows our credentials but they lack a privilege for the request (403): like
    /// wrong credentials, only the operator can fix it, and the data waits.
    #[error("{0}")]
    Forbidden(String),
    /// We refuse the node's certificate (an unknown CA, a name that does not match the `url`):
    /// like wrong credentials, only the operator can fix it, and the data waits.
    #[error("{0}")]
    Untrusted(String),
    /// The node refuses the request itself for good (another 4xx).
    #[error("{0}")]
    Refused(String),
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The options, or a secret or certificate file they name.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `ca_file` that holds no usable certificate.
    #[error("`tls.ca_file` {}: not a PEM certificate: {source}", path.display())]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: elasticsearch::Error,
    },
    /// The transport itself.
    #[error("cannot build the client for {url}: {source}")]
    Build {
        /// The node's URL.
        url: String,
        /// Why.
        source: elasticsearch::http::transport::BuildError,
    },
}

/// A client of one node.
pub struct Client {
    es: Elasticsearch,
    url: String,
    timeout: Duration,
}

impl Client {
    /// Builds the client; reads the secret and `ca_file`. Does not connect.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, ClientError> {
        let url = url::Url::parse(&config.url).map_err(|source| ConfigError::Url {
            url: config.url.clone(),
            source,
        })?;
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(config.timeout.0);
        if let Some(auth) = config.auth()? {
            builder = builder.auth(match auth.load().map_err(ConfigError::Auth)? {
                Credentials::Basic { username, password } => {
                    EsCredentials::Basic(username, password)
                }
                Credentials::Bearer(token) => EsCredentials::Bearer(token),
                Credentials::ApiKey(key) => EsCredentials::EncodedApiKey(key),
            });
        }
        if let Some(tls) = &config.tls {
            let pem = tls.load().map_err(ConfigError::Tls)?;
            if let (Some(ca), Some(path)) = (pem.ca, &tls.ca_file) {
                let cert = Certificate::from_pem(&ca).map_err(|source| ClientError::Ca {
                    path: path.clone(),
                    source,
                })?;
                builder = builder.cert_validation(CertificateValidation::Full(cert));
            } else if tls.insecure_skip_verify {
                builder = builder.cert_validation(CertificateValidation::None);
            }
        }
        let transport = builder.build().map_err(|source| ClientError::Build {
            url: config.url.clone(),
            source,
        })?;
        Ok(Client {
            es: Elasticsearch::new(transport),
            url: config.url.clone(),
            timeout: config.timeout.0,
        })
    }

    /// `GET /`: which distribution and version the node is.
    pub async fn root(&self) -> Result<NodeInfo, SendError> {
        let request = self.es.send(
            Method::Get,
            "/",
            HeaderMap::new(),
            None::<&()>,
            None::<JsonBody<serde_json::Value>>,
            None,
        );
        let response = self.within_timeout("GET /", request).await?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SendError::Unavailable(format!("reading the answer to GET /: {e}")))?;
        let what = format!("GET {}/", self.url.trim_end_matches('/'));
        check_status(&what, status, &String::from_utf8_lossy(&bytes))?;
        NodeInfo::from_root(&bytes).map_err(|e| SendError::Refused(format!("{what}: {e}")))
    }

    /// `PUT _component_template/<name>`, `PUT _index_template/<name>` or
    /// `PUT _plugins/_ism/policies/<name>`; an ISM policy that exists already (409) is kept as
    /// it is.
    pub async fn put_template(&self, template: &Template) -> Result<(), SendError> {
        let path = format!("/{}/{}", template.kind.endpoint(), template.name);
        let request = self.es.send(
            Method::Put,
            &path,
            HeaderMap::new(),
            None::<&()>,
            Some(JsonBody::new(template.body.clone())),
            None,
        );
        let what = format!("PUT {}", template.kind.endpoint());
        let response = self.within_timeout(&what, request).await?;
        let status = response.status_code().as_u16();
        if status == 409 && template.kind == Kind::IsmPolicy {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        check_status(&format!("PUT {}{path}", self.url), status, &text)
    }

    /// Whether the template `name` exists: `GET _component_template/<name>` or
    /// `GET _index_template/<name>` answered 200 (`false` on 404).
    pub async fn template_exists(&self, kind: Kind, name: &str) -> Result<bool, SendError> {
        let path = format!("/{}/{name}", kind.endpoint());
        let request = self.es.send(
            Method::Get,
            &path,
            HeaderMap::new(),
            None::<&()>,
            None::<JsonBody<serde_json::Value>>,
            None,
        );
        let what = format!("GET {}", kind.endpoint());
        let response = self.within_timeout(&what, request).await?;
        let status = response.status_code().as_u16();
        if status == 404 {
            return Ok(false);
        }
        let text = response.text().await.unwrap_or_default();
        check_status(&format!("GET {}{path}", self.url), status, &text).map(|()| true)
    }

    /// `POST _bulk`: the response body once the node answered 2xx.
    pub async fn bulk(&self, body: BulkOperations) -> Result<Vec<u8>, SendError> {
        let request = self.es.bulk(BulkParts::None).body(vec![body]).send();
        let response = self.within_timeout("POST _bulk", request).await?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SendError::Unavailable(format!("reading the _bulk response: {e}")))?;
        check_status(
            &format!("POST {}/_bulk", self.url),
            status,
            &String::from_utf8_lossy(&bytes),
        )?;
        Ok(bytes.to_vec())
    }

    /// Runs `request` with the configured timeout (the transport's own covers each attempt; this
    /// one also covers connecting and reading the headers).
    async fn within_timeout<F>(
        &self,
        what: &str,
        request: F,
    ) -> Result<elasticsearch::http::response::Response, SendError>
    where
        F: Future<Output = Result<elasticsearch::http::response::Response, elasticsearch::Error>>,
    {
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(SendError::Unavailable(format!(
                "{what} to {}: no answer within {:?}",
                self.url, self.timeout
            ))),
            Ok(Err(e)) => {
                let text = format!("{what} to {}: {}", self.url, error_chain(&e));
                Err(if is_certificate_error(&text) {
                    SendError::Untrusted(text)
                } else {
                    SendError::Unavailable(text)
                })
            }
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Sorts a response status into success or a [`SendError`].
fn check_status(what: &str, status: u16, body: &str) -> Result<(), SendError> {
    let detail = || {
        let body = body.trim();
        let cut = body.char_indices().nth(500).map_or(body.len(), |(i, _)| i);
        format!("{what}: HTTP {status}: {}", &body[..cut])
    };
    match status {
        200..=299 => Ok(()),
        401 => Err(SendError::Unauthorized(detail())),
        403 => Err(SendError::Forbidden(detail())),
        s if crate::response::is_retryable(s) => Err(SendError::Unavailable(detail())),
        _ => Err(SendError::Refused(detail())),
    }
}

/// Whether a request failed because the node's certificate was refused. rustls says so in its
/// error (`invalid peer certificate: UnknownIssuer`), which reqwest keeps among the causes; the
/// TLS error does not survive as a type through reqwest's `std::io::Error` wrapping, so the text
/// is what is left to go by.
fn is_certificate_error(chain: &str) -> bool {
    chain.contains("invalid peer certificate")
}

/// An error with its causes, `: `-separated (reqwest hides "connection refused" in a cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_wait_and_refuse() {
        assert_eq!(check_status("x", 200, ""), Ok(()));
        assert!(matches!(
            check_status("x", 429, ""),
            Err(SendError::Unavailable(_))
        ));
        assert!(matches!(
            check_status("x", 503, ""),
            Err(SendError::Unavailable(_))
        ));
        assert!(matches!(
            check_status("x", 401, ""),
            Err(SendError::Unauthorized(_))
        ));
        assert!(matches!(
            check_status("x", 403, ""),
            Err(SendError::Forbidden(_))
        ));
        match check_status("POST _bulk", 413, "too large") {
            Err(SendError::Refused(text)) => assert_eq!(text, "POST _bulk: HTTP 413: too large"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_certificate_is_told_apart_from_a_node_that_is_down() {
        assert!(is_certificate_error(
            "POST _bulk to https://127.0.0.1:9200: error sending request: client error (Connect): \
             invalid peer certificate: UnknownIssuer"
        ));
        assert!(!is_certificate_error(
            "POST _bulk to http://127.0.0.1:9200: error sending request: tcp connect error: \
             Connection refused (os error 111)"
        ));
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let config: ElasticsearchConfig = periscope_plugin_api::config::parse(
            "url = \"https://a:9200\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }",
        )
        .unwrap();
        let err = Client::new(&config).err().unwrap().to_string();
        assert!(err.contains("`tls.ca_file`"), "{err}");
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
