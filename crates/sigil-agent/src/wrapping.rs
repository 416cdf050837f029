//! `sys/wrapping/*` as Vault's clients call it, through the local API. A Sigil wrap is
//! encrypted to one recipient's key, so the agent opens wraps addressed to its identity: it
//! checks the sender (the server, for a response wrap, or a sender `[wrapping] trust`
//! vouches for), fetches the wrap once and decrypts it, and answers what Vault answers — the
//! wrapped response. Making a wrap needs a recipient, which Vault's API cannot name, so
//! `sys/wrapping/wrap` and `rewrap` are refused with a pointer to `sigil wrap --to`.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use sigil_client::e2e::{Trust, Unwrapped};
use sigil_client::{Client, ClientError};

/// Why the agent makes no wraps (`sys/wrapping/wrap`, `X-Vault-Wrap-TTL`).
pub const CANNOT_WRAP: &str = "a Sigil wrap is encrypted to its recipient's key, which Vault's API cannot name; make one with `sigil wrap --to NAME` or `sigil kv get -wrap-to=NAME` (docs/e2e.md)";

/// What the local API answers for `sys/wrapping/<op>`: the status and Vault's JSON, or
/// `None` to forward the request unchanged.
pub async fn answer(
    client: &Client,
    trust: &Trust,
    op: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Option<Result<Value, (StatusCode, String)>> {
    match op {
        "unwrap" => Some(unwrap(client, trust, headers, body).await),
        "lookup" => Some(lookup(client, headers, body).await),
        "wrap" | "rewrap" => Some(Err((
            StatusCode::BAD_REQUEST,
            format!("sys/wrapping/{op}: {CANNOT_WRAP}"),
        ))),
        _ => None,
    }
}

/// The wrap id a Vault client sends: `{"token": …}` in the body, or else the request's
/// `X-Vault-Token` (Vault unwraps with the wrapping token as the client token).
fn wrap_id(headers: &HeaderMap, body: Option<&Value>) -> Result<String, (StatusCode, String)> {
    let from_body = body
        .and_then(|b| b.get("token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let from_header = || {
        headers
            .get("x-vault-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    from_body
        .or_else(from_header)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "give the wrap id as \"token\" in the body (or as X-Vault-Token)".into(),
            )
        })
}

fn client_error(e: ClientError) -> (StatusCode, String) {
    match e {
        ClientError::Api { status, errors } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            errors.join("; "),
        ),
        ClientError::Untrusted(why) => (
            StatusCode::FORBIDDEN,
            format!(
                "refused: {why} (the agent opens the server's response wraps and wraps from senders in [wrapping] trust)"
            ),
        ),
        e => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn unwrap(
    client: &Client,
    trust: &Trust,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Value, (StatusCode, String)> {
    let id = wrap_id(headers, body)?;
    let opened = client.unwrap(&id, trust).await.map_err(client_error)?;
    Ok(as_vault_response(&opened))
}

/// A wrapped response is Vault's JSON already; wrapped bytes (`sigil wrap`) become `data`:
/// a JSON object as it is, other text as `{"value": …}`, other bytes as `{"value_base64": …}`.
fn as_vault_response(w: &Unwrapped) -> Value {
    if w.content_type == "application/json"
        && let Ok(v) = serde_json::from_slice::<Value>(&w.plaintext)
    {
        return v;
    }
    let data = match serde_json::from_slice::<Value>(&w.plaintext) {
        Ok(v @ Value::Object(_)) => v,
        _ => match std::str::from_utf8(&w.plaintext) {
            Ok(text) => json!({ "value": text }),
            Err(_) => json!({
                "value_base64": base64::engine::general_purpose::STANDARD.encode(&w.plaintext[..])
            }),
        },
    };
    crate::envelope::envelope(data)
}

async fn lookup(
    client: &Client,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Value, (StatusCode, String)> {
    let id = wrap_id(headers, body)?;
    let data = client.wrap_status(&id).await.map_err(client_error)?;
    Ok(crate::envelope::envelope(data))
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn opened(content_type: &str, bytes: &[u8]) -> Unwrapped {
        Unwrapped {
            plaintext: Zeroizing::new(bytes.to_vec()),
            content_type: content_type.into(),
            sender: "s".into(),
        }
    }

    #[test]
    fn wrapped_responses_pass_and_wrapped_bytes_become_data() {
        let response = json!({ "data": { "data": { "k": "v" } }, "lease_id": "" });
        let w = opened("application/json", response.to_string().as_bytes());
        assert_eq!(as_vault_response(&w), response);
        let obj = opened("application/octet-stream", br#"{"user":"u"}"#);
        assert_eq!(as_vault_response(&obj)["data"], json!({ "user": "u" }));
        let text = opened("application/octet-stream", b"s3cret\n");
        assert_eq!(
            as_vault_response(&text)["data"],
            json!({ "value": "s3cret\n" })
        );
        let bytes = opened("application/octet-stream", &[0xff, 0x00]);
        assert_eq!(
            as_vault_response(&bytes)["data"],
            json!({ "value_base64": "/wA=" })
        );
    }

    #[test]
    fn the_wrap_id_comes_from_the_body_or_the_token_header() {
        let mut h = HeaderMap::new();
        assert!(wrap_id(&h, None).is_err());
        assert!(wrap_id(&h, Some(&json!({ "token": "" }))).is_err());
        assert_eq!(wrap_id(&h, Some(&json!({ "token": "ab" }))).unwrap(), "ab");
        h.insert("x-vault-token", "cd".parse().unwrap());
        assert_eq!(wrap_id(&h, None).unwrap(), "cd");
        assert_eq!(wrap_id(&h, Some(&json!({ "token": "ab" }))).unwrap(), "ab");
    }
}
