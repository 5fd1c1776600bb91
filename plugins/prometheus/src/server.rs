//! The HTTP(S) server of the metrics page, on a tokio runtime the exporter owns.
//!
//! The runtime is created in the exporter's `new` and shut down in its `shutdown` (or drop): no
//! runtime context crosses the plugin boundary. The listener is bound synchronously in `new`, so
//! an address in use is an error of `new`, not a log line. A scrape takes the current state (one
//! pointer clone) and renders it on a blocking thread, so a large page never stalls other
//! connections, and ingestion never waits for a scrape.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::buf::Chain;
use bytes::{Buf as _, Bytes};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use periscope_plugin_api::auth::Credentials;
use periscope_plugin_api::tls::{TlsConfig, TlsError};

use crate::config::authorization;
use crate::format::{Format, accepts_gzip, negotiate};
use crate::gzip_pages;
use crate::render::render_tail;
use crate::shared_pages::SharedPages;
use crate::state::{Published, State};
use crate::stats::Stats;
use crate::write_timeout::{Deadline, WriteTimeout};

/// A response body: a page's series and its end, or one piece and nothing.
pub type Body = Chain<Bytes, Bytes>;

/// What the server needs to know.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The page's path.
    pub path: String,
    /// HTTPS with these files.
    pub tls: Option<TlsConfig>,
    /// Credentials a scraper must present.
    pub auth: Option<Credentials>,
    /// How long a response may take to be written, from the moment it is ready.
    pub write_timeout: Duration,
    /// How long a connection may wait for its next request's headers (or its TLS handshake).
    pub idle_timeout: Duration,
}

/// A running server; stopped by [`Server::shutdown`] or when dropped.
#[derive(Debug)]
pub struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

struct Context {
    path: String,
    authorization: Option<String>,
    challenge: &'static str,
    published: Arc<Published>,
    stats: Arc<Stats>,
    pages: SharedPages,
    write_timeout: Duration,
    idle_timeout: Duration,
}

/// The most connections served at once; more are closed at once and counted. Each may hold a
/// rendered page while its client reads it (for at most `write_timeout`), so this bounds the
/// server's memory.
pub const MAX_CONNECTIONS: usize = 32;

impl Server {
    /// Binds `options.listen` and starts serving `published`.
    pub fn start(
        options: &ServerOptions,
        published: Arc<Published>,
        stats: Arc<Stats>,
    ) -> Result<Server, ServerError> {
        let tls = options.tls.as_ref().map(load_tls).transpose()?;
        let listen_error = |source| ServerError::Listen {
            addr: options.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(options.listen).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("prometheus-exporter")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(listen_error)?
        };
        let context = Arc::new(Context {
            path: options.path.clone(),
            authorization: options.auth.as_ref().map(authorization),
            challenge: match options.auth {
                Some(Credentials::Basic { .. }) => "Basic realm=\"periscope\"",
                _ => "Bearer",
            },
            published,
            stats,
            pages: SharedPages::default(),
            write_timeout: options.write_timeout,
            idle_timeout: options.idle_timeout,
        });
        runtime.spawn(accept_loop(listener, tls, context));
        Ok(Server {
            runtime: Some(runtime),
            addr,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and joins the runtime's threads.
    pub fn shutdown(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound (in use, not ours).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server's own runtime.
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    /// The `tls` table or its files.
    #[error("`tls.{key}`: {source}", key = .0.key(), source = .0)]
    Tls(#[from] TlsError),
    /// A `tls` table without a certificate and key.
    #[error("`tls` needs `cert_file` and `key_file`")]
    NoIdentity,
    /// A PEM file that holds no usable certificate or key.
    #[error("cannot read the {what} in {}: {source}", path.display())]
    Pem {
        /// `certificates` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file without a certificate.
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// A certificate and key that rustls refuses together.
    #[error("TLS: {} and {} do not make a usable certificate and key: {source}", cert.display(), key.display())]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// No protocol version to offer.
    #[error("TLS: {0}")]
    Protocols(rustls::Error),
}

/// The TLS acceptor of `tls`'s certificate chain and key (a validated config names both).
fn load_tls(tls: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let identity = tls.load()?.identity.ok_or(ServerError::NoIdentity)?;
    let cert_file = tls.cert_file.clone().unwrap_or_default();
    let key_file = tls.key_file.clone().unwrap_or_default();
    let certs = CertificateDer::pem_slice_iter(&identity.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServerError::Pem {
            what: "certificates",
            path: cert_file.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ServerError::NoCertificate(cert_file));
    }
    let key = PrivateKeyDer::from_pem_slice(&identity.key).map_err(|source| ServerError::Pem {
        what: "private key",
        path: key_file.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| ServerError::Identity {
            cert: cert_file,
            key: key_file,
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    context: Arc<Context>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "accepting a scrape connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            context.stats.connection_over_limit();
            tracing::debug!("scrape connection refused: {MAX_CONNECTIONS} already open");
            drop(stream);
            continue;
        };
        let context = context.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream, context).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(context.idle_timeout, handshake).await {
                        Ok(Ok(stream)) => serve(stream, context).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => {
                            context.stats.connection_idle();
                            tracing::debug!("TLS handshake timed out");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Serves one connection until the client closes it, it stays idle for `idle_timeout`, or a
/// response is not read within `write_timeout`; the last two are counted.
async fn serve<S>(stream: S, context: Arc<Context>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Arc::new(Deadline::new(context.write_timeout));
    let io = TokioIo::new(WriteTimeout::new(stream, deadline.clone()));
    let stats = context.stats.clone();
    let idle_timeout = context.idle_timeout;
    let armed = deadline.clone();
    let service = hyper::service::service_fn(move |request| {
        let context = context.clone();
        let deadline = armed.clone();
        async move {
            let response = handle(context, request).await;
            deadline.arm();
            response
        }
    });
    // hyper's header read timeout runs from the moment it waits for a request's headers: on a
    // new connection, and on a kept-alive one once its last response is written.
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .serve_connection(io, service)
        .await;
    if deadline.expired() {
        stats.connection_too_slow();
        tracing::debug!("scrape connection dropped: its response was not read in time");
    } else if let Err(error) = result {
        if error.is_timeout() {
            stats.connection_idle();
            tracing::debug!("scrape connection closed: idle for {idle_timeout:?}");
        } else {
            tracing::debug!(%error, "scrape connection ended with an error");
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Body>> {
    let text = Bytes::from_static(text.as_bytes());
    let mut response = Response::new(Full::new(text.chain(Bytes::new())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Compares without an early exit, so the time taken says nothing about the secret.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    context: Arc<Context>,
    request: Request<Incoming>,
) -> Result<Response<Full<Body>>, Infallible> {
    if request.uri().path() != context.path {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    if let Some(expected) = &context.authorization {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !given.is_some_and(|given| same_secret(given, expected.as_bytes())) {
            context.stats.unauthorized();
            let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(context.challenge),
            );
            return Ok(response);
        }
    }
    let header_text = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = negotiate(header_text(header::ACCEPT));
    let gzip = accepts_gzip(header_text(header::ACCEPT_ENCODING));
    let head = request.method() == Method::HEAD;
    let state = context.published.get();
    let shared = context.clone();
    let body = tokio::task::spawn_blocking(move || {
        page_body(
            &shared.pages,
            &shared.published,
            &state,
            format,
            gzip,
            &shared.stats,
        )
    })
    .await;
    let Ok(Some(body)) = body else {
        return Ok(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the page failed\n",
        ));
    };
    let body = if head {
        Bytes::new().chain(Bytes::new())
    } else {
        body
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// The page body, gzipped when asked; `None` only if compression failed. Uncompressed, the
/// series are shared with the other responses of the same state ([`SharedPages`]); gzipped, they
/// are assembled from deflated pieces (only what changed since the last body is compressed) and
/// kept while the state is current, and only the page's end is deflated per scrape
/// ([`crate::gzip_pages`]).
pub fn page_body(
    pages: &SharedPages,
    published: &Published,
    state: &Arc<State>,
    format: Format,
    gzip: bool,
    stats: &Stats,
) -> Option<Body> {
    stats.scrape(format);
    let mut tail = Vec::new();
    render_tail(format, stats, &mut tail);
    if !gzip {
        let series = pages.series(state, format, stats);
        return Some(series.chain(Bytes::from(tail)));
    }
    let series = published.gzip().series(state, format, stats).ok()?;
    let end = gzip_pages::finish(&series, &tail).ok()?;
    Some(series.bytes.clone().chain(end))
}
