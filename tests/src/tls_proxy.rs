//! A TLS-terminating reverse proxy with authentication, in front of the real search node.
//!
//! The node the tests run (`tests/search-node`: Elasticsearch 8.19 assembled from Maven Central
//! artifacts) has no security module — Elastic's security plugin ships only with its own
//! distribution — so it speaks plain HTTP and knows no users. This proxy **stands in for the
//! node's own security**: it serves HTTPS with a certificate from a throwaway CA, checks every
//! request's `Authorization` header against the one credential it accepts (basic or `ApiKey`),
//! answers 401 the way Elasticsearch does otherwise, and forwards what passes to the node. What it
//! checks is the exporter's side — that its `ca_file`, `username`/`password` and `api_key` options
//! work, and how it behaves when refused — not Elasticsearch's security itself.
//!
//! It can also refuse what a user without a privilege would be refused: [`TlsProxy::forbid`]
//! answers 403 `security_exception`, as Elasticsearch's security does, to the requests it names
//! (template installation, say), and forwards the rest.
//!
//! The Prometheus tests put it in front of Prometheus' remote-write receiver the same way, to
//! check the remote-write client's `tls` and `auth`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::pki::Ca;

/// The credential a client must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An API key, already encoded (base64 of `id:key`, as Elasticsearch hands it out).
    ApiKey(String),
}

impl Credentials {
    /// The `Authorization` header value a client sends for these credentials.
    pub fn header(&self) -> String {
        match self {
            Credentials::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            Credentials::ApiKey(encoded) => format!("ApiKey {encoded}"),
        }
    }
}

/// A running proxy on a free loopback port; it stops when dropped.
pub struct TlsProxy {
    addr: SocketAddr,
    ca_file: PathBuf,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    target: SocketAddr,
    accepted: Mutex<String>,
    /// `(method, path part)`: requests whose method is that and whose path contains the part are
    /// answered 403.
    forbidden: Mutex<Vec<(String, String)>>,
    unauthorized: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
}

impl TlsProxy {
    /// Serves HTTPS on a free loopback port with a certificate from a new CA (written to
    /// `dir/proxy-ca.pem`), forwarding requests that carry `accept` to the plain-HTTP `target`.
    pub fn start(target: SocketAddr, accept: &Credentials, dir: &Path) -> TlsProxy {
        let ca = Ca::generate("periscope-test-proxy-ca");
        let ca_file = dir.join("proxy-ca.pem");
        ca.write_pem(&ca_file);
        let (cert, key) = ca.server_certificate("periscope-test-search-proxy").der();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("the serving certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            accepted: Mutex::new(accept.header()),
            forbidden: Mutex::new(Vec::new()),
            unauthorized: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let serving = shared.clone();
        runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("the proxy's listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = serving.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |request| handle(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsProxy {
            addr,
            ca_file,
            shared,
            runtime: Some(runtime),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The PEM file of the CA that signed the proxy's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// From now on, accepts `credentials` (and refuses the ones accepted before).
    pub fn accept(&self, credentials: &Credentials) {
        *self.shared.accepted.lock().expect("proxy lock") = credentials.header();
    }

    /// From now on, answers `method` requests whose path contains `path_part` with 403, as
    /// Elasticsearch answers an authenticated user who lacks the privilege (the template
    /// actions are named in the error, as the node names them).
    pub fn forbid(&self, method: &str, path_part: &str) {
        self.shared
            .forbidden
            .lock()
            .expect("proxy lock")
            .push((method.to_owned(), path_part.to_owned()));
    }

    /// Requests answered 403 so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Requests answered 401 so far.
    pub fn unauthorized(&self) -> u64 {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the node so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Checks the credentials, then forwards; 401 or 502 otherwise.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let accepted = shared.accepted.lock().expect("proxy lock").clone();
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(accepted.as_str()) {
        shared.unauthorized.fetch_add(1, Ordering::SeqCst);
        // As Elasticsearch answers a request it cannot authenticate.
        let reason = format!(
            "unable to authenticate for REST request [{}]",
            request.uri().path()
        );
        let body = serde_json::json!({
            "error": {"root_cause": [{"type": "security_exception", "reason": reason}],
                      "type": "security_exception", "reason": reason},
            "status": 401,
        });
        let mut response = text(StatusCode::UNAUTHORIZED, body.to_string());
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"security\", charset=\"UTF-8\""),
        );
        response
            .headers_mut()
            .append(WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"));
        return Ok(response);
    }
    let path = request.uri().path().to_owned();
    let is_forbidden = shared
        .forbidden
        .lock()
        .expect("proxy lock")
        .iter()
        .any(|(method, part)| request.method().as_str() == method && path.contains(part.as_str()));
    if is_forbidden {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        // As Elasticsearch answers a user whose roles do not grant the action.
        let action = if path.contains("_component_template") {
            "cluster:admin/component_template/put"
        } else if path.contains("_index_template") {
            "indices:admin/index_template/put"
        } else {
            "unknown"
        };
        let reason = format!(
            "action [{action}] is unauthorized for user [periscope] with effective roles [periscope_writer], this action is granted by the cluster privileges [manage_index_templates,manage,all]"
        );
        let body = serde_json::json!({
            "error": {"root_cause": [{"type": "security_exception", "reason": reason}],
                      "type": "security_exception", "reason": reason},
            "status": 403,
        });
        return Ok(text(StatusCode::FORBIDDEN, body.to_string()));
    }
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    Ok(match forward(shared.target, request).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(error) => text(
            StatusCode::BAD_GATEWAY,
            format!("the proxy cannot reach the node: {error}"),
        ),
    })
}

/// Sends `request` (without its credentials) to the node over a new connection.
async fn forward(
    target: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, String> {
    request.headers_mut().remove(AUTHORIZATION);
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
