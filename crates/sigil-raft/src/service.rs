//! The cluster listener: Raft's RPCs from peers, over HTTP/2 and mutual TLS 1.3.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::network::{APPEND, SNAPSHOT, VOTE};

use crate::types::Raft;

fn encode<T: Serialize>(answer: &T) -> Response {
    match postcard::to_allocvec(answer) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Decodes a peer's request and answers it with `handle`, or answers 400.
async fn answer<Req, Resp, F>(body: &Bytes, handle: impl FnOnce(Req) -> F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: Future<Output = Resp>,
{
    match postcard::from_bytes(body) {
        Ok(req) => encode(&handle(req).await),
        Err(e) => (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response(),
    }
}

async fn append(State(raft): State<Raft>, body: Bytes) -> Response {
    answer(&body, |req| raft.append_entries(req)).await
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    answer(&body, |req| raft.vote(req)).await
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    answer(&body, |req| raft.install_snapshot(req)).await
}

/// What the server serves on the cluster listener besides Raft, set once it is built.
#[derive(Clone, Default)]
pub(crate) struct Extra(Arc<std::sync::OnceLock<axum::Router>>);

impl Extra {
    pub(crate) fn set(&self, router: axum::Router) {
        let _ = self.0.set(router);
    }
}

async fn extra(State(extra): State<Extra>, req: axum::extract::Request) -> Response {
    use tower::ServiceExt as _;
    match extra.0.get() {
        Some(router) => match router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        None => (StatusCode::SERVICE_UNAVAILABLE, "this node is starting").into_response(),
    }
}

/// The largest body the Raft routes take: an AppendEntries carries up to
/// [`APPEND_BUDGET`](crate::network::APPEND_BUDGET) of entries and at least one, which may be
/// `max_entry` bytes; an InstallSnapshot carries a chunk of `chunk` bytes; both with their
/// encoding's overhead. (axum's default, 2 MB, refused a follower's catch-up for good once an
/// entry or a snapshot chunk was larger.)
pub(crate) fn body_limit(max_entry: usize, chunk: usize) -> usize {
    2 * (crate::network::APPEND_BUDGET + max_entry).max(chunk) + (1 << 20)
}

/// The cluster listener's routes; Raft's take bodies of up to `body_limit` bytes.
pub(crate) fn router(raft: Raft, more: Extra, body_limit: usize) -> axum::Router {
    axum::Router::new()
        .route(APPEND, axum::routing::post(append))
        .route(VOTE, axum::routing::post(vote))
        .route(SNAPSHOT, axum::routing::post(snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(raft)
        .fallback(extra)
        .with_state(more)
}

/// Serves `app` on `listener` over TLS until the task is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cluster listener: TLS handshake refused");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "cluster connection closed");
            }
        });
    }
}
