//! The admin HTTP server: `/healthz` (the process is alive), `/readyz` (its caches
//! have synced, or it stands by for the leader lease; see [`Health`]) and `/metrics`
//! (Prometheus, OpenMetrics text).

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{health::Health, metrics::Metrics};

/// What the admin endpoints report from.
#[derive(Clone, Debug)]
pub struct Reports {
    /// Readiness for `/readyz`.
    pub health: Arc<Health>,
    /// The metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, reports: Reports, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin server could not accept a connection");
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(
            TokioIo::new(stream),
            peer,
            reports.clone(),
        ));
    }
}

async fn serve_connection(io: TokioIo<tokio::net::TcpStream>, peer: SocketAddr, reports: Reports) {
    let service = service_fn(move |request| {
        let reports = reports.clone();
        async move { respond(&request, &reports) }
    });
    if let Err(error) = http1::Builder::new().serve_connection(io, service).await {
        tracing::debug!(%peer, %error, "admin connection ended with an error");
    }
}

fn respond<B>(
    request: &Request<B>,
    reports: &Reports,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/readyz" if reports.health.ready() => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("not ready: {}\n", reports.health.waiting_for()),
        ),
        "/metrics" => (
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            reports.metrics.render(),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_owned()),
    };
    Ok(Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a response of a status, a header and a body is valid"))
}
