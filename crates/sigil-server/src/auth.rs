//! Request authentication: RFC 9421 signature in Sigil's profile, clock window, replay cache,
//! identity lookup (docs/protocol.md §1, §3).

use std::sync::Arc;

use http::HeaderMap;
use http::request::Parts;
use sigil_core::{Caller, Core, Node, ReplayMark};
use sigil_crypto::PublicIdentity;
use sigil_proto::headers;
use sigil_proto::signature::{self, SignatureError};

use crate::error::ApiError;
use crate::replay::ReplayCache;
use crate::signatures::Verifier;

/// A request whose signature verified, and who signed it.
pub(crate) struct Authenticated<T> {
    pub(crate) caller: T,
    /// The signature's nonce: the AAD of this exchange's sealed bodies.
    pub(crate) nonce: String,
    /// A signed request's replay mark, stored with the first write the request causes.
    pub(crate) mark: Option<ReplayMark>,
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

pub(crate) fn authority(parts: &Parts) -> Result<&str, ApiError> {
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

/// `host[:port]` as in a URL's authority (an IPv6 host in brackets): the host in lower case
/// without brackets, and the port, 443 (https) when none is given.
pub fn parse_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            match rest {
                "" => (host, None),
                _ => (host, Some(rest.strip_prefix(':')?)),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 443,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    // A bare host has no `:` (an IPv6 address goes in brackets, RFC 3986 §3.2.2), and no host
    // has brackets, `/`, `@`, white space or control characters in it: then what this returns
    // prints back (`host:port`, `[host]:port` for IPv6) to an authority that parses the same.
    let bare_with_colon = !authority.starts_with('[') && host.contains(':');
    let ok = !host.is_empty()
        && !bare_with_colon
        && !host
            .chars()
            .any(|c| matches!(c, '[' | ']' | '/' | '@') || c.is_whitespace() || c.is_control());
    ok.then(|| (host.to_ascii_lowercase(), port))
}

/// The authorities (`host:port`) a server answers to. A signed request names its server in
/// `@target-uri`; one addressed to another name or port is refused, so a request captured at
/// one server cannot be replayed at another where the same identity exists, even on the same
/// machine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts(Vec<(String, u16)>);

impl Hosts {
    /// `names` at the port the server listens on, and `more` as they are (the `api_addr` a
    /// load balancer answers at).
    pub(crate) fn new(names: &[String], port: u16, more: &[(String, u16)]) -> Self {
        let mut all: Vec<(String, u16)> = names
            .iter()
            .map(|n| (n.trim_matches(['[', ']']).to_ascii_lowercase(), port))
            .collect();
        all.extend(more.iter().map(|(h, p)| (h.to_ascii_lowercase(), *p)));
        Hosts(all)
    }

    pub(crate) fn check(&self, parts: &Parts) -> Result<(), ApiError> {
        let authority = authority(parts)?;
        // Forwarded by a follower, which checked the authority against its own names.
        if let Some(f) = parts.extensions.get::<crate::audit_trail::Forwarded>() {
            return match f.authority_ok {
                true => Ok(()),
                false => Err(ApiError::unauthorized(format!(
                    "request is addressed to {authority:?}, which is not a name and port of the node that received it"
                ))),
            };
        }
        let known = parse_authority(authority)
            .is_some_and(|(host, port)| self.0.iter().any(|(h, p)| *h == host && *p == port));
        if known {
            Ok(())
        } else {
            Err(ApiError::unauthorized(format!(
                "request is addressed to {authority:?}, which is not a name and port of this server"
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

/// What a signature is checked against besides its signer: the names the server answers to,
/// the nonces it has seen, and (transient mode, which keeps no nonces across restarts) the
/// time it started: an earlier signature may have been used on the previous run.
#[derive(Debug)]
pub(crate) struct Freshness {
    pub(crate) hosts: Hosts,
    pub(crate) replay: ReplayCache,
    /// Signatures `created` before this (Unix seconds) are refused.
    pub(crate) not_before: i64,
}

/// The one answer for a key the server does not know (or that is disabled) and for a signature
/// that does not verify: anyone could otherwise probe which public keys are registered. The
/// log tells them apart.
const NOT_ACCEPTED: &str =
    "signature not accepted: unknown or disabled key, or a signature that does not verify";

/// Checks the request's signature from its headers alone, before any of the body is read
/// (the signature covers the `content-digest` header, not the body): authority, time window,
/// signer, and everything of the signature but its equation, which [`Prepared::verify`]
/// checks. [`Verified::body`] then checks the body against the digest and the nonce against
/// the replay cache.
pub(crate) fn authenticate<S: Signers>(
    signers: &S,
    fresh: &Freshness,
    parts: &Parts,
    now: i64,
) -> Result<Prepared<S::Signer>, ApiError> {
    fresh.hosts.check(parts)?;
    let h = &parts.headers;
    let input = single_header(h, headers::SIGNATURE_INPUT).map_err(deny)?;
    let sig = single_header(h, headers::SIGNATURE).map_err(deny)?;
    let (Some(input), Some(sig)) = (input, sig) else {
        return Err(deny(SignatureError::Missing));
    };
    let parsed = signature::parse(input, sig).map_err(deny)?;
    parsed.check_time(now).map_err(deny)?;
    if parsed.params.created < fresh.not_before {
        return Err(ApiError::unauthorized(
            "signature created before this server started (it keeps no nonces across restarts): sign the request again",
        ));
    }
    let keyid = parsed.params.keyid.as_str();
    let Some(caller) = signers.find(keyid) else {
        tracing::debug!(keyid, "signature refused: unknown or disabled key");
        return Err(ApiError::unauthorized(NOT_ACCEPTED));
    };
    let digest = single_header(h, headers::CONTENT_DIGEST).map_err(deny)?;
    if parsed.covers_digest() && digest.is_none() {
        return Err(deny(SignatureError::Digest));
    }
    let signed = match parsed.prepare(
        S::public_key(&caller),
        parts.method.as_str(),
        &target_uri(parts)?,
        digest,
    ) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::debug!(keyid, error = %e, "signature refused");
            return Err(ApiError::unauthorized(NOT_ACCEPTED));
        }
    };
    Ok(Prepared {
        signed,
        batchable: BATCHED_METHODS.contains(&parts.method.as_str()),
        verified: Verified {
            digest: parsed
                .covers_digest()
                .then(|| digest.map(str::to_owned))
                .flatten(),
            keyid: parsed.params.keyid.as_str().to_owned(),
            expires: parsed.params.expires,
            now,
            caller,
            nonce: parsed.params.nonce,
        },
    })
}

/// The requests whose signatures may be verified in a batch: reads and lists, whose signatures
/// the audit log does not keep. A batch may accept a signature that differs from a strictly
/// valid one by a small-order point, which only the key's holder can make
/// ([`sigil_crypto::verify_batch`]); the signature of every other request goes into the audit
/// log as proof of who sent it (non-repudiation), so it is verified alone, strictly, and a
/// later check of the log agrees with the server's.
pub(crate) const BATCHED_METHODS: [&str; 2] = ["GET", "LIST"];

/// A request whose headers passed every check but its signature's equation.
pub(crate) struct Prepared<T> {
    signed: sigil_crypto::Signed,
    batchable: bool,
    verified: Verified<T>,
}

impl<T> Prepared<T> {
    /// The request, once its signature verifies: a read's in a batch with others that arrived
    /// with it, any other alone ([`BATCHED_METHODS`]).
    pub(crate) async fn verify(self, verifier: &Verifier) -> Result<Verified<T>, ApiError> {
        let verifies = if self.batchable {
            verifier.verify(self.signed).await
        } else {
            self.signed.verify().is_ok()
        };
        if verifies {
            Ok(self.verified)
        } else {
            tracing::debug!(
                keyid = self.verified.keyid,
                "signature refused: it does not verify"
            );
            Err(ApiError::unauthorized(NOT_ACCEPTED))
        }
    }
}

/// A request whose signature verified; its body is still to be checked against the signed
/// `content-digest`, and its nonce recorded.
pub(crate) struct Verified<T> {
    caller: T,
    keyid: String,
    nonce: String,
    expires: i64,
    now: i64,
    /// The signed `content-digest`, if the signature covers one.
    digest: Option<String>,
}

impl<T> Verified<T> {
    /// The signer, its body not yet read.
    pub(crate) fn caller(&self) -> &T {
        &self.caller
    }

    /// The signature's nonce.
    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The signer, once `body` matches the signed digest (a body needs one) and the nonce is
    /// new. A request refused here leaves its nonce unused.
    pub(crate) fn body(
        self,
        body: &[u8],
        replay: &ReplayCache,
    ) -> Result<Authenticated<T>, ApiError> {
        match &self.digest {
            None if !body.is_empty() => {
                return Err(deny(SignatureError::Malformed(
                    "a request with a body must cover content-digest",
                )));
            }
            None => {}
            Some(d) => signature::check_content_digest(d, body).map_err(deny)?,
        }
        self.fresh(replay)
    }

    /// [`Verified::body`] for a body read as it came (streamed to a spool) and hashed on the
    /// way: `sha256` of its bytes as sent (it has some: a stream is never empty).
    pub(crate) fn streamed_body(
        self,
        sha256: &[u8; 32],
        replay: &ReplayCache,
    ) -> Result<Authenticated<T>, ApiError> {
        let Some(d) = &self.digest else {
            return Err(deny(SignatureError::Malformed(
                "a request with a body must cover content-digest",
            )));
        };
        signature::check_content_digest_of(d, sha256).map_err(deny)?;
        self.fresh(replay)
    }

    /// The signer, once its nonce is found new (and recorded).
    fn fresh(self, replay: &ReplayCache) -> Result<Authenticated<T>, ApiError> {
        let Some(mark) = replay.check_and_insert(&self.keyid, &self.nonce, self.expires, self.now)
        else {
            return Err(ApiError::unauthorized(
                "replayed request: this nonce was already used",
            ));
        };
        Ok(Authenticated {
            caller: self.caller,
            nonce: self.nonce,
            mark: Some(mark),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_parse_with_their_port() {
        let a = |s: &str| parse_authority(s).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(a("LocalHost:8200").as_deref(), Some("localhost 8200"));
        assert_eq!(a("sigil.example").as_deref(), Some("sigil.example 443"));
        assert_eq!(a("[::1]:8200").as_deref(), Some("::1 8200"));
        assert_eq!(a("[::1]").as_deref(), Some("::1 443"));
        for bad in [
            "",
            ":8200",
            "h:",
            "h:x",
            "[::1",
            "[::1]x",
            "u@h:1",
            "h:99999",
            "::1:8200",
            "a]:b:1",
            "[[::1]]:1",
            "h\t:1",
            "h\u{0}",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_check_the_port() {
        let hosts = Hosts::new(
            &["localhost".into(), "[::1]".into()],
            8200,
            &[("vault.example".into(), 443)],
        );
        let check = |authority: &str| {
            let req = http::Request::builder()
                .uri(format!("https://{authority}/v1/x"))
                .body(())
                .unwrap();
            hosts.check(&req.into_parts().0).is_ok()
        };
        assert!(check("localhost:8200"));
        assert!(check("[::1]:8200"));
        assert!(check("vault.example"));
        assert!(!check("localhost:8201"));
        assert!(!check("localhost"));
        assert!(!check("vault.example:8200"));
        assert!(!check("other:8200"));
    }
}
