//! The host's own HTTP server: `/metrics` (self-metrics), `/healthz` (alive) and `/readyz`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

#[derive(Clone)]
struct AppState {
    telemetry: Telemetry,
    readiness: Readiness,
}

/// Binds `listen`; the returned future serves until `shutdown` is cancelled.
pub async fn bind(
    listen: SocketAddr,
    telemetry: Telemetry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            telemetry,
            readiness,
        });
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    Ok((local, async move { serve.await }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.telemetry.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (ready, text) = state.readiness.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text)
}
