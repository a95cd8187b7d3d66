//! The admin HTTP server: `/healthz` (the process is alive) and `/readyz` (it is
//! connected and its CRDs are installed).

use std::{convert::Infallible, future::Future, net::SocketAddr};

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
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
        tokio::spawn(serve_connection(TokioIo::new(stream), peer));
    }
}

async fn serve_connection(io: TokioIo<tokio::net::TcpStream>, peer: SocketAddr) {
    if let Err(error) = http1::Builder::new()
        .serve_connection(io, service_fn(respond))
        .await
    {
        tracing::debug!(%peer, %error, "admin connection ended with an error");
    }
}

async fn respond(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/healthz" | "/readyz" => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response is valid"))
}
