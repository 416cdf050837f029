//! The Vault-compatible local API: Vault's HTTP paths and JSON, each request forwarded to the
//! server signed and sealed as the agent's identity, each answer opened and returned as
//! Vault's JSON. `X-Vault-Token` is neither required nor forwarded: whoever reaches this
//! listener acts as the agent (docs/agent.md, "the local API's security model").

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sigil_client::e2e::Trust;
use sigil_client::{Client, ClientError};

use crate::cache::KvCache;

/// The largest request body the local API takes.
const MAX_BODY: usize = 1 << 20;

/// What the local API's handler shares.
pub struct Proxy {
    client: Arc<Client>,
    keyid: String,
    cache: KvCache,
    /// Whose wraps `sys/wrapping/unwrap` opens.
    trust: Trust,
    /// Whether `Host` must name the loopback (a TCP listener).
    check_host: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy forwarding through `client`, caching KV reads for `cache`'s TTL, opening wraps
    /// from the senders `trust` names (beside the server's); on a TCP listener (`check_host`)
    /// only requests whose `Host` names the loopback are served.
    pub fn new(
        client: Arc<Client>,
        cache: KvCache,
        trust: &[String],
        check_host: bool,
    ) -> Result<Proxy, ClientError> {
        let me = client.key()?.public();
        let keyid = me.keyid().to_string();
        let trust = Trust::parse(&me, trust.iter().map(String::as_str))?;
        Ok(Proxy {
            client,
            keyid,
            cache,
            trust,
            check_host,
        })
    }

    /// The local API as an axum router (every path, every method).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }

    /// `auth/token/lookup-self`: the agent's identity in a token's shape (there is no token).
    fn lookup_self(&self) -> Value {
        crate::envelope::envelope(json!({
            "id": "",
            "accessor": "",
            "display_name": format!("sigil-agent-{}", self.keyid),
            "entity_id": self.keyid,
            "meta": { "sigil_keyid": self.keyid, "via": "sigil agent" },
            "policies": [],
            "ttl": 0,
            "renewable": false,
            "type": "service",
            "path": "auth/sigil/agent",
            "orphan": true,
        }))
    }
}

/// A Vault error answer: `{"errors": [...]}` with `status`.
fn vault_error(status: StatusCode, errors: Vec<String>) -> Response {
    (status, axum::Json(json!({ "errors": errors }))).into_response()
}

fn json_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The API path below `/v1/` and the query to forward, and whether Vault's `?list=true` made
/// a GET a LIST.
fn split(uri: &Uri) -> Option<(String, Option<String>, bool)> {
    let path = uri.path().strip_prefix("/v1/")?.trim_start_matches('/');
    let mut list = false;
    let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, v)| {
            let is_list = k == "list" && (v == "true" || v == "1");
            list |= is_list;
            !is_list
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let query = (!query.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    });
    Some((path.to_owned(), query, list))
}

/// Why a request that a browser sent is refused, if it is one: a web page must not be able to
/// make the agent act (a cross-site request to 127.0.0.1, or a DNS name rebound to it).
/// Browsers mark every request they send with `Origin` or `Sec-Fetch-*`; Vault's clients send
/// neither. On TCP, the `Host` must also name the loopback (`localhost`, 127.0.0.0/8, `[::1]`).
fn browser_refusal(headers: &HeaderMap, check_host: bool) -> Option<String> {
    if headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-mode") {
        return Some("requests from a web browser are refused by the agent".into());
    }
    if !check_host {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| format!("Host {host:?} is not this host's loopback"))
}

/// What the agent answers itself, without asking the server.
fn local_answer(proxy: &Proxy, method: &str, path: &str) -> Option<Response> {
    match (method, path) {
        ("GET" | "POST", "auth/token/lookup-self" | "auth/token/renew-self") => {
            Some(axum::Json(proxy.lookup_self()).into_response())
        }
        (_, p) if p.starts_with("auth/token/") => Some(vault_error(
            StatusCode::BAD_REQUEST,
            vec![format!(
                "{p}: Sigil has no tokens; the agent authenticates with its key (only lookup-self and renew-self answer, describing the agent's identity)"
            )],
        )),
        _ => None,
    }
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(why) = browser_refusal(&headers, proxy.check_host) {
        return vault_error(StatusCode::FORBIDDEN, vec![why]);
    }
    let Some((path, query, list)) = split(&uri) else {
        return vault_error(
            StatusCode::NOT_FOUND,
            vec![format!("{}: the API is under /v1/", uri.path())],
        );
    };
    if headers.contains_key("x-vault-wrap-ttl") {
        return vault_error(
            StatusCode::BAD_REQUEST,
            vec![format!(
                "response wrapping (X-Vault-Wrap-TTL) is not available through the agent: {}",
                crate::wrapping::CANNOT_WRAP
            )],
        );
    }
    let method = match (method.as_str(), list) {
        ("GET", true) => "LIST".to_owned(),
        (m, _) => m.to_owned(),
    };
    if let Some(answer) = local_answer(&proxy, &method, &path) {
        return answer;
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return vault_error(
                    StatusCode::BAD_REQUEST,
                    vec![format!("the request body is not JSON: {e}")],
                );
            }
        }
    };
    if method == "GET" && UNAUTHENTICATED.contains(&path.as_str()) {
        return unauthenticated(&proxy, &path).await;
    }
    if let Some(op) = path.strip_prefix("sys/wrapping/")
        && let Some(answer) =
            crate::wrapping::answer(&proxy.client, &proxy.trust, op, &headers, body.as_ref()).await
    {
        return match answer {
            Ok(v) => axum::Json(v).into_response(),
            Err((status, why)) => vault_error(status, vec![why]),
        };
    }
    let target = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    forward(&proxy, &method, &target, body.as_ref()).await
}

/// The status reads anyone may make (`sys/health` for probes, as Vault's): the server answers
/// them unsigned and unsealed, so the agent asks unsigned and passes status and body on.
const UNAUTHENTICATED: &[&str] = &["sys/health", "sys/seal-status", "sys/leader"];

async fn unauthenticated(proxy: &Proxy, path: &str) -> Response {
    match proxy.client.plain_raw("GET", path, None).await {
        Ok((status, bytes)) => json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            bytes,
        ),
        Err(e) => vault_error(
            StatusCode::BAD_GATEWAY,
            vec![format!("sigil agent: the server could not be asked: {e}")],
        ),
    }
}

/// Sends the request to the server as the agent (a KV read may be answered from the cache)
/// and returns the server's answer as Vault's JSON.
async fn forward(proxy: &Proxy, method: &str, target: &str, body: Option<&Value>) -> Response {
    if method == "GET"
        && let Some(bytes) = proxy.cache.get(target)
    {
        return json_response(StatusCode::OK, bytes.to_vec());
    }
    if method != "GET" && method != "LIST" {
        // A write through the agent may change what a cached read answered.
        proxy.cache.clear();
    }
    match proxy.client.request(method, target, body).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let Some(body) = answer.body else {
                return status.into_response();
            };
            let bytes = serde_json::to_vec(&body).expect("JSON serializes");
            if method == "GET" && status == StatusCode::OK && cacheable(&body) {
                proxy.cache.put(target, &bytes);
            }
            json_response(status, bytes)
        }
        Err(ClientError::Api { status, errors }) => vault_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            errors,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "a request through the agent failed");
            vault_error(
                StatusCode::BAD_GATEWAY,
                vec![format!("sigil agent: the server could not be asked: {e}")],
            )
        }
    }
}

/// Whether a read may be answered from the cache: a KV secret (no lease).
fn cacheable(body: &Value) -> bool {
    body.get("mount_type").and_then(Value::as_str) == Some("kv")
        && body
            .get("lease_id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_true_makes_a_list_and_the_rest_of_the_query_is_kept() {
        let uri: Uri = "/v1/secret/metadata/app?list=true".parse().unwrap();
        assert_eq!(
            split(&uri),
            Some(("secret/metadata/app".into(), None, true))
        );
        let uri: Uri = "/v1/secret/data/app?version=2".parse().unwrap();
        assert_eq!(
            split(&uri),
            Some(("secret/data/app".into(), Some("version=2".into()), false))
        );
        assert_eq!(split(&"/v2/x".parse().unwrap()), None);
    }

    #[test]
    fn browsers_and_foreign_hosts_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        for ok in [
            "127.0.0.1:8100",
            "localhost:8100",
            "[::1]:8100",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert_eq!(
                browser_refusal(&headers(&[("host", ok)]), true),
                None,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:8100",
            "10.0.0.1:8100",
            "",
            "localhost.evil.example",
        ] {
            assert!(
                browser_refusal(&headers(&[("host", bad)]), true).is_some(),
                "{bad}"
            );
        }
        assert!(browser_refusal(&headers(&[("host", "whatever")]), false).is_none());
        let from_page = headers(&[
            ("host", "127.0.0.1:8100"),
            ("origin", "https://evil.example"),
        ]);
        assert!(browser_refusal(&from_page, false).is_some());
        let fetch = headers(&[("host", "127.0.0.1:8100"), ("sec-fetch-mode", "no-cors")]);
        assert!(browser_refusal(&fetch, true).is_some());
    }

    #[test]
    fn only_kv_answers_without_a_lease_are_cached() {
        assert!(cacheable(&json!({ "mount_type": "kv", "data": {} })));
        assert!(!cacheable(
            &json!({ "mount_type": "database", "lease_id": "database/creds/x/1" })
        ));
        assert!(!cacheable(&json!({ "mount_type": "kv", "lease_id": "l" })));
        assert!(!cacheable(&json!({ "data": {} })));
    }
}
