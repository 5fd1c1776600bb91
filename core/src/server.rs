//! The host's own HTTP server: `/metrics` (self-metrics), `/healthz` (alive) and `/readyz`.
//!
//! Three fixed routes on hyper's HTTP/1 server, the implementation every server in the project
//! uses. On shutdown it stops accepting, asks open connections to close once their request is
//! answered, and waits for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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

use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

/// What the routes read.
struct Routes {
    telemetry: Telemetry,
    readiness: Readiness,
}

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Binds `listen`; the returned future serves until `shutdown` is cancelled.
pub async fn bind(
    listen: SocketAddr,
    telemetry: Telemetry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let routes = Arc::new(Routes {
        telemetry,
        readiness,
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
                let response = routes.answer(&request);
                async move { Ok::<_, Infallible>(response) }
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
