//! Real HTTP endpoints served from the test process on loopback: pages set per path (status,
//! content type, body, a delay before answering), every request recorded with its time and
//! headers. Plain HTTP, or HTTPS with an optional client-certificate check (mutual TLS).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What a path answers.
#[derive(Clone, Debug)]
pub struct Page {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header (none when empty).
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// When set, requests without exactly this `Authorization` header get a 401.
    pub authorization: Option<String>,
}

impl Page {
    /// A 200 page with this content type and body.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Page {
        Page {
            status: 200,
            content_type: content_type.to_owned(),
            body: body.into(),
            delay: Duration::ZERO,
            authorization: None,
        }
    }

    /// A Prometheus text 0.0.4 page.
    pub fn text(body: &str) -> Page {
        Page::ok("text/plain; version=0.0.4; charset=utf-8", body)
    }

    /// An OpenMetrics 1.0 page.
    pub fn openmetrics(body: &str) -> Page {
        Page::ok(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        )
    }

    /// The same page, answered only to requests with this `Authorization` header.
    pub fn requiring(mut self, authorization: &str) -> Page {
        self.authorization = Some(authorization.to_owned());
        self
    }

    /// The same page, answered after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Page {
        self.delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Hit {
    /// When it arrived.
    pub at: Instant,
    /// The path.
    pub path: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its `Accept` header, if any.
    pub accept: Option<String>,
}

#[derive(Default)]
struct State {
    pages: HashMap<String, Page>,
    hits: Vec<Hit>,
}

/// TLS settings of an HTTPS server.
pub struct Tls {
    /// The server's certificate chain and key (PEM).
    pub cert_pem: String,
    /// The key (PEM).
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_pem: Option<String>,
}

/// A running server; it stops when dropped.
pub struct EndpointServer {
    addr: SocketAddr,
    https: bool,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EndpointServer {
    /// Serves plain HTTP on a free port of 127.0.0.1.
    pub fn start() -> EndpointServer {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), None)
    }

    /// Serves HTTPS on a free port of 127.0.0.1.
    pub fn start_tls(tls: Tls) -> EndpointServer {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), Some(tls))
    }

    /// Serves on a free port of `ip`, over TLS when `tls` is given.
    pub fn start_on(ip: IpAddr, tls: Option<Tls>) -> EndpointServer {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the endpoint server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = tls.map(acceptor);
        let https = acceptor.is_some();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("endpoint server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = shared.clone();
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |request| answer(state.clone(), request));
                            let builder = hyper::server::conn::http1::Builder::new();
                            match acceptor {
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = builder
                                            .serve_connection(TokioIo::new(stream), service)
                                            .await;
                                    }
                                }
                                None => {
                                    let _ = builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        EndpointServer {
            addr,
            https,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Sets what `path` answers.
    pub fn set(&self, path: &str, page: Page) {
        self.lock().pages.insert(path.to_owned(), page);
    }

    /// Makes `path` answer 404 from now on.
    pub fn unset(&self, path: &str) {
        self.lock().pages.remove(path);
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request to `path` so far.
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.lock()
            .hits
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for EndpointServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = request.uri().path().to_owned();
    let page = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.hits.push(Hit {
            at: Instant::now(),
            path: path.clone(),
            authorization: header("authorization"),
            accept: header("accept"),
        });
        state.pages.get(&path).cloned()
    };
    let Some(page) = page else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
        return Ok(response);
    };
    if page.authorization.is_some() && page.authorization != header("authorization") {
        let mut response = Response::new(Full::new(Bytes::from_static(b"unauthorized\n")));
        *response.status_mut() = hyper::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    if !page.delay.is_zero() {
        tokio::time::sleep(page.delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(page.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(page.status).unwrap_or(hyper::StatusCode::OK);
    if !page.content_type.is_empty()
        && let Ok(value) = hyper::header::HeaderValue::from_str(&page.content_type)
    {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

fn acceptor(tls: Tls) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("server key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match tls.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("client CA PEM")).expect("client CA");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .expect("server certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
