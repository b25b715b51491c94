//! The HTTP endpoint (docs/architecture.md §8): `/metrics` (Prometheus),
//! `/healthz`, `/api/…` (JSON) and `/` (a self-contained status page).
//!
//! Input: the [`Board`], which the service keeps up to date with copies of
//! the daemon's state, and the cameras' live counters it hands out; output:
//! HTTP responses, and questions ([`AskRequest`]) that go to the service,
//! which answers them as it answers MQTT's. Threads: tokio tasks (axum,
//! the HTTP stack rumqttd already brings); the one CPU-heavy thing, a
//! frame's JPEG, is encoded on a blocking thread. Nothing here holds a lock
//! a camera's frame path needs across a request.

mod api;
mod board;
mod config;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use board::{AskRequest, Board, CameraView, Figures, Outcome, RECENT_EVENTS};
pub use config::HttpConfig;

use crate::settings::Secret;

/// How long a stop waits for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Why the HTTP endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Another program (or another glimpse) has the port.
    #[error("http.listen {listen}: the address is already in use, probably by another glimpse; pick another port with http.listen, or turn the endpoint off with http.enabled = false")]
    PortTaken {
        /// The configured address.
        listen: SocketAddr,
    },
    /// The address cannot be listened on.
    #[error("http.listen {listen}: cannot listen: {source}")]
    Bind {
        /// The configured address.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The address is not one.
    #[error("http.listen: {0}")]
    Address(String),
}

/// Binds the configured address (none when the endpoint is off): done
/// before the model loads, so that a taken port fails the start at once.
pub async fn bind(config: &HttpConfig) -> Result<Option<TcpListener>, HttpError> {
    if !config.enabled {
        return Ok(None);
    }
    let listen = config.address().map_err(HttpError::Address)?;
    match TcpListener::bind(listen).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(HttpError::PortTaken { listen }),
        Err(source) => Err(HttpError::Bind { listen, source }),
    }
}

/// The running endpoint.
pub struct HttpServer {
    /// Where it listens (the port chosen, when the config said 0).
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

/// What every handler shares.
struct App {
    board: Arc<Board>,
    registry: prometheus_client::registry::Registry,
    token: Option<Secret>,
    frames: api::FrameCache,
}

impl HttpServer {
    /// Serves the board on `listener` until [`HttpServer::shutdown`].
    pub fn serve(
        listener: TcpListener,
        config: &HttpConfig,
        board: Arc<Board>,
    ) -> std::io::Result<HttpServer> {
        let address = listener.local_addr()?;
        let app = Arc::new(App {
            registry: metrics::registry(board.clone()),
            board,
            token: config.token.clone(),
            frames: api::FrameCache::default(),
        });
        let router = Router::new()
            .route("/", get(page))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .route("/api/cameras", get(api::cameras))
            .route("/api/cameras/:camera/frame.jpg", get(api::frame))
            .route("/api/cameras/:camera/ask", post(api::ask))
            .route("/api/events", get(api::events))
            .route("/api/rules", get(api::rules))
            .route("/api/snapshots/:name", get(api::snapshot))
            .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
            .with_state(app);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!("the HTTP endpoint stopped: {e}");
            }
        });
        let open = if config.token.is_some() {
            "bearer token required"
        } else {
            "no token"
        };
        tracing::info!(address = %address, "HTTP endpoint: status page http://{address}/, metrics /metrics, API /api ({open})");
        Ok(HttpServer {
            address,
            task,
            stop,
        })
    }

    /// Stops taking connections and lets requests in flight finish, for at
    /// most a second; what is still open then is dropped.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            tracing::debug!("HTTP requests still open at stop were dropped");
        }
    }
}

/// Refuses requests without the token (when one is set); `/healthz` stays
/// open for health checks (it tells nothing about the cameras).
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(Secret(token)) = &app.token {
        if request.uri().path() != "/healthz" && !authorized(&request, token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required: send Authorization: Bearer TOKEN, or add ?token=TOKEN to the page's address\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn authorized(request: &Request, token: &str) -> bool {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    [header, query]
        .into_iter()
        .flatten()
        .any(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("page.html"),
    )
        .into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.board.stalled() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: {why}\n")).into_response(),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    match metrics::render(&app.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        let request = |uri: &str, auth: Option<&str>| {
            let mut r = Request::builder().uri(uri);
            if let Some(a) = auth {
                r = r.header(header::AUTHORIZATION, a);
            }
            r.body(axum::body::Body::empty()).unwrap()
        };
        assert!(authorized(&request("/", Some("Bearer s3")), "s3"));
        assert!(authorized(
            &request("/api/cameras?x=1&token=s3", None),
            "s3"
        ));
        assert!(!authorized(&request("/", Some("Bearer s4")), "s3"));
        assert!(!authorized(&request("/?token=s", None), "s3"));
        assert!(!authorized(&request("/", None), "s3"));
    }
}
