//! Fetching one page: the HTTP client of an entry (TLS, credentials), the request with its
//! `Accept` header, and the body read up to the entry's cap.

use periscope_plugin_api::auth::{Auth, AuthError, Credentials};
use periscope_plugin_api::tls::{TlsConfig, TlsError};

use crate::config::EndpointFormat;

/// Why the HTTP client of an entry cannot be built. [`ClientError::key`] names the key at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The `tls` table is inconsistent or names a file that cannot be read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A PEM file that reqwest cannot use.
    #[error("{what}: {}", error_chain(.source))]
    Pem {
        /// The key of the file.
        key: &'static str,
        /// The file(s), as the message names them.
        what: String,
        /// Why.
        source: reqwest::Error,
    },
    /// A CA file without a certificate.
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(String),
    /// A CA file with a PEM certificate block that is not a valid certificate.
    #[error("{path}: not a usable CA certificate ({})", error_chain(.source))]
    BadCertificate {
        /// The file.
        path: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The client itself.
    #[error("cannot build the HTTP client: {}", error_chain(.0))]
    Build(reqwest::Error),
}

impl ClientError {
    /// The key at fault, relative to the entry (`tls.ca_file`).
    pub(crate) fn key(&self) -> String {
        let key = match self {
            ClientError::Tls(e) => e.key(),
            ClientError::Pem { key, .. } => key,
            ClientError::NoCertificate(_) | ClientError::BadCertificate { .. } => "ca_file",
            ClientError::Build(_) => "",
        };
        if key.is_empty() {
            "tls".to_owned()
        } else {
            format!("tls.{key}")
        }
    }
}

/// Builds the HTTP client of an entry from its `tls` settings.
pub(crate) fn build(tls: Option<&TlsConfig>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("periscope/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        // A pooled connection per target: scrapes reuse it, as Prometheus' do.
        .pool_max_idle_per_host(1)
        .use_rustls_tls();
    // The CA certificates are parsed only when the client is built: kept to tell a bad one
    // from another failure.
    let mut roots = None;
    if let Some(tls) = tls {
        tls.refuse(&["server_name"], "for endpoints")?;
        let pem = tls.load()?;
        if let (Some(ca), Some(path)) = (&pem.ca, &tls.ca_file) {
            let certs =
                reqwest::Certificate::from_pem_bundle(ca).map_err(|source| ClientError::Pem {
                    key: "ca_file",
                    what: path.display().to_string(),
                    source,
                })?;
            if certs.is_empty() {
                return Err(ClientError::NoCertificate(path.display().to_string()));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in &certs {
                builder = builder.add_root_certificate(cert.clone());
            }
            roots = Some((path, certs));
        }
        if let (Some(identity), Some(cert), Some(key)) =
            (&pem.identity, &tls.cert_file, &tls.key_file)
        {
            let mut both = identity.cert.clone();
            both.push(b'\n');
            both.extend_from_slice(&identity.key);
            let identity =
                reqwest::Identity::from_pem(&both).map_err(|source| ClientError::Pem {
                    key: "cert_file",
                    what: format!("{} with {}", cert.display(), key.display()),
                    source,
                })?;
            builder = builder.identity(identity);
        }
        if tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
    }
    builder.build().map_err(|source| match roots {
        Some((path, certs)) if !usable_roots(&certs) => ClientError::BadCertificate {
            path: path.display().to_string(),
            source,
        },
        _ => ClientError::Build(source),
    })
}

/// Whether a client trusting `certs` alone can be built (a certificate that is PEM but not a
/// valid X.509 certificate fails only there).
fn usable_roots(certs: &[reqwest::Certificate]) -> bool {
    certs
        .iter()
        .fold(
            reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false),
            |builder, cert| builder.add_root_certificate(cert.clone()),
        )
        .build()
        .is_ok()
}

/// A page as fetched: its body and content type.
pub(crate) struct Page {
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: String,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// A credentials file could not be read.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// The request failed: connection refused, TLS, a broken body.
    #[error("{0}")]
    Request(String),
    /// The target answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is larger than the entry allows.
    #[error("the response is larger than max_response_bytes ({0} bytes)")]
    TooLarge(u64),
}

/// What an entry of `format` asks for: OpenMetrics first, then text, as Prometheus does.
fn accept(format: EndpointFormat) -> &'static str {
    match format {
        EndpointFormat::Prometheus => crate::exposition::Format::ACCEPT,
        EndpointFormat::Json => "application/json",
    }
}

/// Fetches `url`, reading at most `max_bytes` of (decompressed) body. The caller bounds the
/// time taken.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &reqwest::Url,
    format: EndpointFormat,
    auth: Option<&Auth>,
    max_bytes: u64,
) -> Result<Page, FetchError> {
    let mut request = http.get(url.clone()).header("Accept", accept(format));
    match auth.map(Auth::load).transpose()? {
        None => {}
        Some(Credentials::Bearer(token)) => request = request.bearer_auth(token),
        Some(Credentials::Basic { username, password }) => {
            request = request.basic_auth(username, Some(password));
        }
        // `compile` takes no other kind.
        Some(Credentials::ApiKey(_)) => {}
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| FetchError::Request(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Sized from a `Content-Length` within the cap, so a large page is not copied as it grows.
    let expected = response.content_length().unwrap_or(0).min(max_bytes);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Request(error_chain(&e)))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Page { body, content_type })
}

/// The error and its causes in one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
