//! Forwarding: a follower sends each request it does not answer itself to the leader's
//! cluster listener (mutual TLS between pinned member certificates) and streams the answer
//! back; clients are never redirected. The leader runs it through the same API as its own
//! requests, with what only the follower saw: the client's address, its TLS client
//! certificate, and whether the request's authority is one of the follower's names.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use http::request::Parts;
use http::{HeaderName, StatusCode};

use super::Cluster;
use crate::audit_trail::{PeerCerts, RemoteAddr};
use crate::error::ApiError;
use sigil_proto::headers;

/// Where a member takes the root key a rekey on the leader made (api/forwarded.rs).
pub(crate) const ROOT: &str = "/v1/cluster/root";
/// Where the leader takes forwarded requests on the cluster listener (api/forwarded.rs).
pub(crate) const PREFIX: &str = "/v1/cluster/forward";
/// The authority the client addressed (the follower's name and port).
pub(crate) const AUTHORITY: &str = "x-sigil-forwarded-authority";
/// `1` when that authority is one of the follower's names (`Hosts`).
pub(crate) const AUTHORITY_OK: &str = "x-sigil-forwarded-authority-ok";
/// The client's address.
pub(crate) const FOR: &str = "x-sigil-forwarded-for";
/// The client's TLS certificate chain, base64 DER, comma-separated.
pub(crate) const CERTS: &str = "x-sigil-forwarded-client-certs";

/// Headers that belong to one connection, never forwarded (HTTP/2 forbids them).
pub(crate) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "proxy-connection"
    ) || name.as_str().starts_with("x-sigil-forwarded-")
}

/// What only the follower knows about a request it forwards.
pub(crate) struct Seen {
    /// The authority the client addressed, if any.
    pub(crate) authority: Option<String>,
    /// Whether that authority is one of the follower's names.
    pub(crate) authority_ok: bool,
    /// The most body bytes to take.
    pub(crate) max_body: usize,
}

/// Sends `parts` and `body` to the leader and returns its answer.
pub(crate) async fn to_leader(
    cluster: &Cluster,
    parts: Parts,
    body: Body,
    seen: Seen,
) -> Result<Response, ApiError> {
    let Some(leader) = cluster.raft.leader() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader is elected yet; try again",
        ));
    };
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let pq = pq.strip_prefix("/v1").unwrap_or(pq);
    let url = format!("https://{}{PREFIX}{pq}", leader.cluster_addr);
    let mut req = cluster
        .raft
        .peer_client()
        .request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            req = req.header(name, value);
        }
    }
    if let Some(authority) = &seen.authority {
        req = req.header(AUTHORITY, authority);
    }
    req = req.header(AUTHORITY_OK, if seen.authority_ok { "1" } else { "0" });
    if let Some(RemoteAddr(addr)) = parts.extensions.get::<RemoteAddr>() {
        req = req.header(FOR, addr.to_string());
    }
    if let Some(certs) = parts.extensions.get::<Arc<PeerCerts>>() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let list: Vec<String> = certs.chain.iter().map(|c| b64.encode(c)).collect();
        req = req.header(CERTS, list.join(","));
    }
    let streamed = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with(headers::SEALED_STREAM));
    let req = if streamed {
        // A snapshot to restore: passed on as it comes, never whole in memory.
        req.body(reqwest::Body::wrap(relay(body)))
    } else {
        // A sealed body is at most ~1.4 times the limit; the leader enforces the limit itself.
        let bytes = axum::body::to_bytes(body, seen.max_body)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than this server takes",
                )
            })?;
        req.body(bytes)
    };
    let resp = req.send().await.map_err(|e| {
        tracing::warn!(leader = %leader.name, error = %e, "forwarding to the leader failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the leader ({}) could not be reached; try again",
                leader.name
            ),
        )
    })?;
    let (mut head, body) = http::Response::from(resp).into_parts();
    let dropped: Vec<HeaderName> = head
        .headers
        .keys()
        .filter(|n| hop_by_hop(n))
        .cloned()
        .collect();
    for name in dropped {
        head.headers.remove(name);
    }
    Ok(Response::from_parts(head, Body::new(body)))
}

/// `body` as a body that can be sent on (a task reads it into a channel, a few chunks ahead).
fn relay(mut body: Body) -> crate::spool::ChannelBody {
    use http_body_util::BodyExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let sent = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => tx.send(Ok(data)).await,
                    Err(_) => continue,
                },
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    crate::spool::ChannelBody(rx)
}
