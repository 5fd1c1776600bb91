//! The host's own HTTP server: `/metrics` (self-metrics), `/healthz` (alive), `/readyz`, and
//! `POST /-/reload` when `[host] reload_endpoint` is on.
//!
//! Fixed routes on hyper's HTTP/1 server, the implementation every server in the project
//! uses. On shutdown it stops accepting, asks open connections to close once their request is
//! answered, and waits for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::sync::CancellationToken;

use crate::host::{ReloadRequest, Trigger};
use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

/// What the routes read.
struct Routes {
    telemetry: Telemetry,
    readiness: Readiness,
    reload: ReloadRoute,
}

/// `POST /-/reload`: whether it is on (the config says, and a reload may change it), and where
/// requests go.
#[derive(Clone)]
pub struct ReloadRoute {
    /// `[host] reload_endpoint`.
    pub enabled: Arc<AtomicBool>,
    /// The host's reload requests.
    pub requests: tokio::sync::mpsc::Sender<ReloadRequest>,
}

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Binds `listen`; the returned future serves until `shutdown` is cancelled.
pub async fn bind(
    listen: SocketAddr,
    telemetry: Telemetry,
    readiness: Readiness,
    reload: ReloadRoute,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let routes = Arc::new(Routes {
        telemetry,
        readiness,
        reload,
    });
    let serve = async move {
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "the host's HTTP server cannot accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let routes = routes.clone();
            let service = service_fn(move |request| {
                let routes = routes.clone();
                async move {
                    let response = if request.uri().path() == "/-/reload" {
                        routes.reload(&request).await
                    } else {
                        routes.answer(&request)
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that goes away mid-request is its own business.
                let _ = connection.await;
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    };
    Ok((local, serve))
}

impl Routes {
    /// `POST /-/reload`: 200 once the config is applied, 500 with the reasons when it is
    /// refused (as Prometheus answers), 404 while the route is off.
    async fn reload<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if !self.reload.enabled.load(Ordering::Relaxed) {
            return plain(
                StatusCode::NOT_FOUND,
                "reloading over HTTP is off: set [host] reload_endpoint = true\n".to_owned(),
            );
        }
        if request.method() != Method::POST && request.method() != Method::PUT {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, String::new());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST,PUT"));
            return response;
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let request = ReloadRequest {
            trigger: Trigger::Http,
            reply: Some(reply),
        };
        if self.reload.requests.send(request).await.is_err() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the host is stopping\n".to_owned(),
            );
        }
        match outcome.await {
            Ok(Ok(())) => plain(StatusCode::OK, "config reloaded\n".to_owned()),
            Ok(Err(reasons)) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{reasons}\n")),
            Err(_) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the host is stopping\n".to_owned(),
            ),
        }
    }

    fn answer<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
            return plain(StatusCode::NOT_FOUND, String::new());
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, String::new());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
            return response;
        }
        match path {
            "/metrics" => {
                let mut response = plain(StatusCode::OK, self.telemetry.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/readyz" => {
                let (ready, text) = self.readiness.report();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                plain(status, text)
            }
            _ => plain(StatusCode::OK, "ok\n".to_owned()),
        }
    }
}

/// A `text/plain` response.
fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes {
            telemetry: Telemetry::new(),
            readiness: Readiness::default(),
            reload: ReloadRoute {
                enabled: Arc::default(),
                requests: tokio::sync::mpsc::channel(1).0,
            },
        }
    }

    fn get(path: &str) -> Response<Full<Bytes>> {
        routes().answer(&Request::get(path).body(()).unwrap())
    }

    #[test]
    fn the_three_routes_answer_and_others_are_not_found() {
        let metrics = get("/metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(get("/healthz").status(), StatusCode::OK);
        assert_eq!(get("/nope").status(), StatusCode::NOT_FOUND);
        let post = routes().answer(&Request::post("/metrics").body(()).unwrap());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let post = routes().answer(&Request::post("/nope").body(()).unwrap());
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn readyz_says_what_is_not_ready() {
        let routes = routes();
        routes.readiness.expect("exporter:x", "starting");
        let response = routes.answer(&Request::get("/readyz").body(()).unwrap());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        routes.readiness.set("exporter:x", Ok(()));
        let response = routes.answer(&Request::get("/readyz").body(()).unwrap());
        assert_eq!(response.status(), StatusCode::OK);
    }
}
