//! Request authentication: RFC 9421 signature in Sigil's profile, clock window, replay cache,
//! identity lookup (PROTOCOL.md §1, §3).

use std::sync::Arc;

use http::HeaderMap;
use http::request::Parts;
use sigil_core::{Caller, Core, Node};
use sigil_crypto::PublicIdentity;
use sigil_proto::headers;
use sigil_proto::signature::{self, SignatureError};

use crate::error::ApiError;
use crate::replay::ReplayCache;

/// A request whose signature verified, and who signed it.
pub(crate) struct Authenticated<T> {
    pub(crate) caller: T,
    /// The signature's nonce: the AAD of this exchange's sealed bodies.
    pub(crate) nonce: String,
}

/// Who may sign: looks a keyid up and yields the signer with its public key.
pub(crate) trait Signers {
    type Signer;
    fn find(&self, keyid: &str) -> Option<Self::Signer>;
    fn public_key(signer: &Self::Signer) -> &PublicIdentity;
}

/// The identities of an unsealed core.
impl Signers for Core {
    type Signer = Arc<Caller>;
    fn find(&self, keyid: &str) -> Option<Arc<Caller>> {
        self.caller(keyid)
    }
    fn public_key(signer: &Arc<Caller>) -> &PublicIdentity {
        &signer.public
    }
}

/// The admins of the seal configuration (for the unseal endpoints, while sealed).
impl Signers for Node {
    type Signer = (String, PublicIdentity);
    fn find(&self, keyid: &str) -> Option<(String, PublicIdentity)> {
        self.admin(keyid).map(|p| (keyid.to_owned(), p))
    }
    fn public_key(signer: &(String, PublicIdentity)) -> &PublicIdentity {
        &signer.1
    }
}

const NO_TOKENS: &str = "Sigil does not use tokens: sign each request with your private key (RFC 9421); see `sigil key generate`";

/// Refuses Vault tokens and bearer credentials on every endpoint.
pub(crate) fn refuse_tokens(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(headers::VAULT_TOKEN) {
        return Err(ApiError::unauthorized(NO_TOKENS));
    }
    for value in headers.get_all(http::header::AUTHORIZATION) {
        let scheme = value
            .as_bytes()
            .split(|b| b.is_ascii_whitespace())
            .find(|s| !s.is_empty());
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"bearer")) {
            return Err(ApiError::unauthorized(NO_TOKENS));
        }
    }
    Ok(())
}

fn authority(parts: &Parts) -> Result<&str, ApiError> {
    match parts.uri.authority() {
        Some(a) => Ok(a.as_str()),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::bad_request("missing Host header")),
    }
}

/// `https://` + authority + path and query, as sent.
fn target_uri(parts: &Parts) -> Result<String, ApiError> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("https://{}{pq}", authority(parts)?))
}

/// The names a server answers to. A signed request names its server in `@target-uri`; one
/// addressed to another name is refused, so a request captured at one server cannot be
/// replayed at another where the same identity exists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts(Vec<String>);

impl Hosts {
    pub(crate) fn new(names: &[String]) -> Self {
        Hosts(
            names
                .iter()
                .map(|n| n.trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
        )
    }

    pub(crate) fn check(&self, parts: &Parts) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let authority = authority(parts)?;
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        if self.0.contains(&host) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(format!(
                "request is addressed to {host:?}, which is not a name of this server"
            )))
        }
    }
}

fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SignatureError::Malformed("header repeated"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| SignatureError::Malformed("header is not ASCII"))
}

fn deny(e: SignatureError) -> ApiError {
    ApiError::unauthorized(e.to_string())
}

/// Verifies the request's signature and finds its signer among `signers`.
pub(crate) fn authenticate<S: Signers>(
    signers: &S,
    replay: &ReplayCache,
    hosts: &Hosts,
    parts: &Parts,
    body: &[u8],
    now: i64,
) -> Result<Authenticated<S::Signer>, ApiError> {
    hosts.check(parts)?;
    let h = &parts.headers;
    let input = single_header(h, headers::SIGNATURE_INPUT).map_err(deny)?;
    let sig = single_header(h, headers::SIGNATURE).map_err(deny)?;
    let (Some(input), Some(sig)) = (input, sig) else {
        return Err(deny(SignatureError::Missing));
    };
    let parsed = signature::parse(input, sig).map_err(deny)?;
    parsed.check_time(now).map_err(deny)?;
    let caller = signers
        .find(parsed.params.keyid.as_str())
        .ok_or_else(|| ApiError::unauthorized("unknown or disabled key"))?;

    let digest = single_header(h, headers::CONTENT_DIGEST).map_err(deny)?;
    if !body.is_empty() && !parsed.covers_digest() {
        return Err(deny(SignatureError::Malformed(
            "a request with a body must cover content-digest",
        )));
    }
    if parsed.covers_digest() {
        let d = digest.ok_or_else(|| deny(SignatureError::Digest))?;
        signature::check_content_digest(d, body).map_err(deny)?;
    }
    parsed
        .verify(
            S::public_key(&caller),
            parts.method.as_str(),
            &target_uri(parts)?,
            digest,
        )
        .map_err(deny)?;
    if !replay.check_and_insert(
        parsed.params.keyid.as_str(),
        &parsed.params.nonce,
        parsed.params.expires,
        now,
    ) {
        return Err(ApiError::unauthorized(
            "replayed request: this nonce was already used",
        ));
    }
    Ok(Authenticated {
        caller,
        nonce: parsed.params.nonce,
    })
}
