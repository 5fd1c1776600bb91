//! Fetching one page: the HTTP client of an entry (TLS, credentials), the request with its
//! `Accept` header, and the body read up to the entry's cap.

use std::path::{Path, PathBuf};

use crate::config::{EndpointConfig, EndpointFormat};

/// The credentials sent with every request of an entry. Files are read at each scrape, so
/// rotated secrets are picked up without a restart.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// None.
    None,
    /// `Authorization: Bearer <file content>`.
    Bearer(PathBuf),
    /// Basic auth with the password from a file.
    Basic {
        username: String,
        password_file: PathBuf,
    },
}

impl Auth {
    /// The credentials configured for `config`.
    pub(crate) fn of(config: &EndpointConfig) -> Auth {
        match (&config.bearer_token_file, &config.basic_auth) {
            (Some(file), _) => Auth::Bearer(file.get_ref().clone()),
            (None, Some(basic)) => Auth::Basic {
                username: basic.username.clone(),
                password_file: basic.password_file.get_ref().clone(),
            },
            (None, None) => Auth::None,
        }
    }
}

/// Builds the HTTP client of an entry from its `tls` settings; the message says which file is
/// wrong and why.
pub(crate) fn build(config: &EndpointConfig) -> Result<reqwest::Client, (&'static str, String)> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("periscope/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        // A pooled connection per target: scrapes reuse it, as Prometheus' do.
        .pool_max_idle_per_host(1)
        .use_rustls_tls();
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca_file {
            let pem = read(ca.get_ref()).map_err(|e| ("tls.ca_file", e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ("tls.ca_file", format!("{}: {e}", ca.get_ref().display())))?;
            if certs.is_empty() {
                let message = format!("{}: no PEM certificate in it", ca.get_ref().display());
                return Err(("tls.ca_file", message));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert.get_ref()).map_err(|e| ("tls.cert_file", e))?;
                pem.push(b'\n');
                pem.extend(read(key.get_ref()).map_err(|e| ("tls.key_file", e))?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    let message = format!(
                        "{} with {}: {e}",
                        cert.get_ref().display(),
                        key.get_ref().display()
                    );
                    ("tls.cert_file", message)
                })?;
                builder = builder.identity(identity);
            }
            (Some(_), None) => return Err(("tls.key_file", "needed with cert_file".to_owned())),
            (None, Some(_)) => return Err(("tls.cert_file", "needed with key_file".to_owned())),
            (None, None) => {}
        }
        if tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
    }
    builder
        .build()
        .map_err(|e| ("tls", format!("cannot build the HTTP client: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
    #[error("{0}")]
    Credentials(String),
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
    auth: &Auth,
    max_bytes: u64,
) -> Result<Page, FetchError> {
    let mut request = http.get(url.clone()).header("Accept", accept(format));
    match auth {
        Auth::None => {}
        Auth::Bearer(file) => {
            let token = secret(file)?;
            request = request.bearer_auth(token);
        }
        Auth::Basic {
            username,
            password_file,
        } => {
            let password = secret(password_file)?;
            request = request.basic_auth(username, Some(password));
        }
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
    let mut body = Vec::new();
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

/// A secret file's content without its trailing newline.
fn secret(path: &Path) -> Result<String, FetchError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| FetchError::Credentials(format!("cannot read {}: {e}", path.display())))
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
