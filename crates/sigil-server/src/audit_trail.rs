//! What the audit log records of one request: a `request` entry before anything happens (the
//! fail-closed gate) and a `response` entry with the outcome.

use std::net::SocketAddr;

use axum::response::Response;
use http::request::Parts;
use serde_json::Value;
use sigil_core::audit::Entry;
use sigil_core::{Core, Operation};

use crate::error::ApiError;

/// The peer address of a connection, put into every request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

/// A request the leader received from a follower (cluster/forward.rs); tells the
/// authentication step how to check the authority.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forwarded {
    /// Whether the follower found the authority to be one of its names.
    pub(crate) authority_ok: bool,
}

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
    /// The lease of a dynamic secret the response hands out (in clear: a lease id carries no
    /// authority, and revocations are matched to it).
    pub(crate) lease_id: Option<String>,
}

impl Trail {
    /// Keeps the request's `Signature-Input` and `Signature` for the request entry: the
    /// signature of every write goes into the audit log (non-repudiation).
    pub(crate) fn record_signature(&mut self, parts: &Parts) {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.signature = Some((
            header(sigil_proto::headers::SIGNATURE_INPUT),
            header(sigil_proto::headers::SIGNATURE),
        ));
    }

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
            lease_id: None,
        })
    }

    fn entry(&self, kind: &str) -> Entry<'_> {
        let mut e = Entry::new(kind);
        e.now("time")
            .str("request_id", &self.request_id)
            .str("remote_address", &self.remote);
        match &self.identity {
            Some((keyid, name)) => e.object("identity", &[("keyid", keyid), ("name", name)]),
            None => e.null("identity"),
        };
        match self.operation {
            Some(o) => e.str("operation", o.name()),
            None => e.null("operation"),
        };
        e.str("path", &self.path)
            .str("auth", if self.mtls { "mtls" } else { "signature" });
        if let Some((input, sig)) = &self.signature {
            e.object(
                "signature",
                &[("signature_input", input), ("signature", sig)],
            );
        }
        e
    }

    /// The `request` entry; `data` (the opened body) is HMAC-ed by each device.
    pub(crate) fn request_entry<'a>(&'a self, data: Option<&'a Value>) -> Entry<'a> {
        let mut e = self.entry("request");
        if let Some(d) = data {
            e.data(d);
        }
        e
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
        let (outcome, data) = match outcome {
            Ok((resp, data)) => {
                m.num("status", resp.status().as_u16().into());
                (Ok(resp), data)
            }
            Err(e) => {
                m.num("status", e.status().as_u16().into())
                    .str("error", e.message());
                (Err(e), None)
            }
        };
        if let Some(id) = &self.lease_id {
            m.str("lease_id", id);
        }
        if let Some(d) = &data {
            m.data(d);
        }
        let logged = core.audit().log(m).await;
        match (outcome, logged) {
            (Ok(resp), Ok(())) => Ok(resp),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }
}

/// Records a request entry before anything happens (fail-closed). The entry is built only when
/// a device records it.
pub(crate) async fn audit_request<'a>(
    core: &std::sync::Arc<sigil_core::Core>,
    entry: impl FnOnce() -> sigil_core::audit::Entry<'a>,
) -> Result<(), ApiError> {
    if !core.audit().enabled() {
        return Ok(());
    }
    core.audit().log(entry()).await.map_err(ApiError::from)
}
