//! The leader's side of forwarding (cluster/forward.rs): a follower's request arrives on the
//! cluster listener, from a member, and runs through the same API as the leader's own, with
//! what only the follower saw — the client's address and TLS certificate, and whether the
//! authority the client addressed is one of the follower's names.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderName, HeaderValue, StatusCode};

use super::state::AppState;
use crate::audit_trail::{Forwarded, PeerCerts, RemoteAddr};
use crate::cluster::forward::{AUTHORITY, AUTHORITY_OK, CERTS, FOR, PREFIX, ROOT};

/// What a node serves its peers on the cluster listener besides Raft: forwarded requests (as
/// the leader) and the root key after a rekey (as a follower).
pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            axum::routing::any(from_follower),
        )
        .route(ROOT, axum::routing::post(adopt_root))
        .with_state(state)
}

async fn from_follower(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authority = header(AUTHORITY).unwrap_or_default();
    let authority_ok = header(AUTHORITY_OK).as_deref() == Some("1");
    let remote = header(FOR).and_then(|a| a.parse().ok());
    let certs = header(CERTS);
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = match format!("https://{authority}/v1/{rest}{query}").parse() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad forwarded request").into_response(),
    };
    parts.uri = uri;
    let forwarded: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-sigil-forwarded-"))
        .cloned()
        .collect();
    for name in forwarded {
        parts.headers.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(http::header::HOST, v);
    }
    parts.extensions.insert(Forwarded { authority_ok });
    if let Some(addr) = remote {
        parts.extensions.insert(RemoteAddr(addr));
    }
    if let Some(list) = certs {
        let b64 = base64::engine::general_purpose::STANDARD;
        let chain: Option<Vec<Vec<u8>>> = list.split(',').map(|c| b64.decode(c).ok()).collect();
        match chain {
            Some(chain) if !chain.is_empty() => {
                parts.extensions.insert(Arc::new(PeerCerts::new(chain)));
            }
            _ => return (StatusCode::BAD_REQUEST, "bad forwarded certificates").into_response(),
        }
    }
    super::handle_forwarded(state, axum::extract::Request::from_parts(parts, body)).await
}

/// A member's new root key after a rekey on the leader: taken if it opens the keyring.
async fn adopt_root(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        root_key: String,
        root_term: u32,
    }
    impl Drop for Root {
        fn drop(&mut self) {
            use zeroize::Zeroize as _;
            self.root_key.zeroize();
        }
    }
    let Ok(root) = serde_json::from_slice::<Root>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"root_key\",\"root_term\"}",
        )
            .into_response();
    };
    let decoded =
        zeroize::Zeroizing::new(sigil_crypto::b64url_decode(&root.root_key).unwrap_or_default());
    if decoded.len() != 32 {
        return (StatusCode::BAD_REQUEST, "root_key is not 32 bytes").into_response();
    }
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&decoded);
    let key = sigil_crypto::BarrierKey::from_secret(sigil_crypto::KeyTerm(root.root_term), secret);
    let taken = tokio::task::spawn_blocking(move || state.node.adopt_root(key)).await;
    match taken {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
