//! The HTTP side: an HTTP/1 server (hyper) on the daemon's runtime. `GET /metrics`
//! answers the metrics, another method on it 405, any other path 404. Each connection
//! is a tracked task that closes on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::families::CONTENT_TYPE as METRICS_TYPE;
use super::scrape::Exporter;

/// The one path served.
pub const PATH: &str = "/metrics";
/// Connections served at once (a scraper or two, and someone with curl); more are
/// closed at once.
const MAX_CONNECTIONS: usize = 8;
/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// On shutdown, a connection in the middle of a response has this long to finish
/// (well inside the daemon's 1.7 s drain).
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// Accepts connections on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: back off briefly instead of spinning.
                warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics endpoint busy; connection closed");
            continue;
        };
        let exporter = exporter.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            connection(stream, exporter, shutdown).await;
        });
    }
}

async fn connection(stream: TcpStream, exporter: Arc<Exporter>, shutdown: CancellationToken) {
    let service = service_fn(move |req| {
        let exporter = exporter.clone();
        async move { Ok::<_, Infallible>(respond(&exporter, &req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "metrics connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}

async fn respond(exporter: &Exporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
        return response;
    }
    match exporter.render().await {
        Ok(text) => with_type(StatusCode::OK, METRICS_TYPE, text),
        Err(e) => {
            warn!(error = %e, "metrics scrape failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", text)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
