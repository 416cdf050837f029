//! What the audit log records of one request: a `request` entry before anything happens (the
//! fail-closed gate) and a `response` entry with the outcome.

use std::net::SocketAddr;

use axum::response::Response;
use http::request::Parts;
use serde_json::{Map, Value, json};
use sigil_core::{Core, Operation};

use crate::error::ApiError;

/// The peer address of a connection, put into every request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

/// The client certificate chain (leaf first) of an mTLS connection, verified in the handshake,
/// and which certificate role's CA verified it for requests (see `api::authenticate_mtls`).
#[derive(Debug)]
pub(crate) struct PeerCerts {
    pub(crate) chain: Vec<Vec<u8>>,
    /// `(roles generation, identity name, when)` of the last full verification: the chain
    /// against a role's CA and CRL, and that role's mapping of the leaf to an identity.
    pub(crate) verified: std::sync::Mutex<Option<(u64, String, std::time::Instant)>>,
}

impl PeerCerts {
    pub(crate) fn new(chain: Vec<Vec<u8>>) -> Self {
        PeerCerts {
            chain,
            verified: std::sync::Mutex::new(None),
        }
    }
}

/// The audit context of one request, filled in as it is authenticated and parsed.
pub(crate) struct Trail {
    pub(crate) request_id: String,
    remote: String,
    pub(crate) identity: Option<(String, String)>,
    pub(crate) operation: Option<Operation>,
    pub(crate) path: String,
    /// `(Signature-Input, Signature)` of a write.
    pub(crate) signature: Option<(String, String)>,
    /// Set when the request sealed the server: its devices are closed.
    pub(crate) closed: bool,
    /// Authenticated by a client certificate rather than a signature.
    pub(crate) mtls: bool,
}

impl Trail {
    pub(crate) fn new(parts: &Parts, raw_path: &str) -> Result<Self, ApiError> {
        let request_id = sigil_crypto::random::uuid().map_err(|_| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "random number generator failed",
            )
        })?;
        Ok(Trail {
            request_id,
            remote: parts
                .extensions
                .get::<RemoteAddr>()
                .map(|r| r.0.to_string())
                .unwrap_or_default(),
            identity: None,
            operation: None,
            path: raw_path.to_owned(),
            signature: None,
            closed: false,
            mtls: false,
        })
    }

    fn entry(&self, kind: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), kind.into());
        m.insert("time".into(), sigil_core::now_rfc3339().into());
        m.insert("request_id".into(), self.request_id.clone().into());
        m.insert("remote_address".into(), self.remote.clone().into());
        m.insert(
            "identity".into(),
            match &self.identity {
                Some((keyid, name)) => json!({ "keyid": keyid, "name": name }),
                None => Value::Null,
            },
        );
        m.insert(
            "operation".into(),
            self.operation
                .map(|o| format!("{o:?}").to_lowercase())
                .into(),
        );
        m.insert("path".into(), self.path.clone().into());
        m.insert(
            "auth".into(),
            if self.mtls { "mtls" } else { "signature" }.into(),
        );
        if let Some((input, sig)) = &self.signature {
            m.insert(
                "signature".into(),
                json!({ "signature_input": input, "signature": sig }),
            );
        }
        m
    }

    /// The `request` entry; `data` (the opened body) is HMAC-ed by each device.
    pub(crate) fn request_entry(&self, data: Option<&Value>) -> Map<String, Value> {
        let mut m = self.entry("request");
        if let Some(d) = data {
            m.insert("data".into(), d.clone());
        }
        m
    }

    /// Records the outcome. A success that no device can record becomes a 503, as the request
    /// entry would have.
    pub(crate) async fn finish(
        self,
        core: &Core,
        outcome: Result<(Response, Option<Value>), ApiError>,
    ) -> Result<Response, ApiError> {
        if self.closed || !core.audit().enabled() {
            return outcome.map(|(r, _)| r);
        }
        let mut m = self.entry("response");
        let outcome = match outcome {
            Ok((resp, data)) => {
                m.insert("status".into(), resp.status().as_u16().into());
                if let Some(d) = data {
                    m.insert("data".into(), d);
                }
                Ok(resp)
            }
            Err(e) => {
                m.insert("status".into(), e.status().as_u16().into());
                m.insert("error".into(), e.message().into());
                Err(e)
            }
        };
        let logged = core.audit().log(m).await;
        match (outcome, logged) {
            (Ok(resp), Ok(())) => Ok(resp),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }
}
