//! Sigil's profile of RFC 9421 HTTP Message Signatures (docs/protocol.md §3).
//!
//! Label `sig1`; covered components `"@method" "@target-uri"` and, for a request with a body,
//! `"content-digest"` (RFC 9530, `sha-256`); parameters `created`, `expires`, `nonce`,
//! `keyid`, `alg` and `tag="sigil-request"`, all required.

use sfv::{BareItem, InnerList, Item, ListEntry, Parameters, SerializeValue as _};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{KeyId, PublicIdentity, SecretIdentity, Signed};

/// The signature label Sigil uses.
pub const LABEL: &str = "sig1";
/// The `tag` parameter of every Sigil request signature.
pub const TAG: &str = "sigil-request";
/// The longest validity a signature may claim (`expires − created`), in seconds.
pub const MAX_VALIDITY_SECS: i64 = 300;
/// How far in the future `created` may lie (clock skew), in seconds.
pub const MAX_SKEW_SECS: i64 = 60;
/// The validity clients ask for by default.
pub const DEFAULT_VALIDITY_SECS: i64 = 60;

const ALG_ED25519: &str = "ed25519";
const ALG_ECDSA_P256: &str = "ecdsa-p256-sha256";

/// Why a request signature is refused. Every variant maps to 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Signature-Input`/`Signature` headers.
    #[error(
        "request is not signed: Sigil authenticates every request with an RFC 9421 signature (it uses no tokens)"
    )]
    Missing,
    /// The headers do not parse or do not follow Sigil's profile.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// A required parameter is absent or of the wrong type.
    #[error("signature parameter {0:?} is missing or invalid")]
    Parameter(&'static str),
    /// The algorithm is not supported for this key.
    #[error("signature algorithm is not supported for this key")]
    Algorithm,
    /// `now` is outside `[created − 60 s, expires]`.
    #[error("signature is expired or not yet valid")]
    Stale,
    /// `expires − created` exceeds 300 s.
    #[error("signature validity exceeds 300 seconds")]
    TooLong,
    /// The Content-Digest header is missing or does not match the body.
    #[error("content-digest does not match the request body")]
    Digest,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The `Content-Digest` value for `body`: `sha-256=:<base64>:` (RFC 9530).
pub fn content_digest(body: &[u8]) -> String {
    content_digest_of(&Sha256::digest(body).into())
}

/// [`content_digest`] of a body already hashed (one streamed from a file).
pub fn content_digest_of(sha256: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256)
    )
}

/// Checks a received `Content-Digest` header against the body: it must be a structured
/// dictionary with a `sha-256` byte sequence equal to SHA-256(body).
pub fn check_content_digest(header: &str, body: &[u8]) -> Result<(), SignatureError> {
    check_content_digest_of(header, &Sha256::digest(body).into())
}

/// [`check_content_digest`] of a body already hashed (one streamed to disk as it came).
pub fn check_content_digest_of(header: &str, sha256: &[u8; 32]) -> Result<(), SignatureError> {
    let dict =
        sfv::Parser::parse_dictionary(header.as_bytes()).map_err(|_| SignatureError::Digest)?;
    match dict.get("sha-256") {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSeq(digest),
            ..
        })) if digest.as_slice() == sha256.as_slice() => Ok(()),
        _ => Err(SignatureError::Digest),
    }
}

/// The headers a signed request carries.
#[derive(Clone, Debug)]
pub struct SignedHeaders {
    /// `Signature-Input` value.
    pub signature_input: String,
    /// `Signature` value.
    pub signature: String,
    /// `Content-Digest` value, when the request has a body.
    pub content_digest: Option<String>,
    /// The nonce, also the AAD of the sealed bodies of this exchange.
    pub nonce: String,
}

/// The verified-to-be-well-formed parameters of a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureParams {
    /// `created`, Unix seconds.
    pub created: i64,
    /// `expires`, Unix seconds.
    pub expires: i64,
    /// `nonce`.
    pub nonce: String,
    /// `keyid`.
    pub keyid: KeyId,
    /// `alg`.
    pub alg: String,
}

/// A parsed (not yet verified) request signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedSignature {
    /// Its parameters.
    pub params: SignatureParams,
    covers_digest: bool,
    params_line: String,
    signature: Vec<u8>,
}

fn signature_base(
    method: &str,
    target_uri: &str,
    content_digest: Option<&str>,
    params_line: &str,
) -> String {
    let mut base = format!("\"@method\": {method}\n\"@target-uri\": {target_uri}\n");
    if let Some(d) = content_digest {
        base.push_str("\"content-digest\": ");
        base.push_str(d);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_line);
    base
}

fn serialize_params(list: InnerList) -> Result<String, SignatureError> {
    vec![ListEntry::InnerList(list)]
        .serialize_value()
        .map_err(|_| SignatureError::Malformed("signature parameters do not serialize"))
}

/// Signs a request as `identity`, valid from `created` to `expires` (Unix seconds; clients use
/// `created + DEFAULT_VALIDITY_SECS`).
///
/// `body` is the body as sent (the sealed envelope), or `None` for a request without one.
///
/// # Panics
///
/// If `nonce` is not base64url ([`sigil_crypto::random::nonce`] makes one).
pub fn sign(
    identity: &SecretIdentity,
    method: &str,
    target_uri: &str,
    body: Option<&[u8]>,
    (created, expires): (i64, i64),
    nonce: String,
) -> SignedHeaders {
    let content_digest = body.map(content_digest);
    sign_digest(
        identity,
        method,
        target_uri,
        content_digest,
        (created, expires),
        nonce,
    )
}

/// [`sign`] of a request whose body's `content-digest` is already known (a body streamed from
/// a file, hashed while it was written: [`content_digest_of`]).
///
/// # Panics
///
/// If `nonce` is not base64url ([`sigil_crypto::random::nonce`] makes one).
pub fn sign_digest(
    identity: &SecretIdentity,
    method: &str,
    target_uri: &str,
    content_digest: Option<String>,
    (created, expires): (i64, i64),
    nonce: String,
) -> SignedHeaders {
    assert!(
        nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a request nonce is base64url (docs/protocol.md §2.6)"
    );
    // Written in the canonical form `parse` reads directly: the nonce and the keyid are
    // base64url, the integers Unix times, so this is its own RFC 8941 serialization (a test
    // checks it against the parser's).
    let components = if content_digest.is_some() {
        "(\"@method\" \"@target-uri\" \"content-digest\")"
    } else {
        "(\"@method\" \"@target-uri\")"
    };
    let params_line = format!(
        "{components};created={created};expires={expires};nonce=\"{nonce}\";keyid=\"{}\";alg=\"{ALG_ED25519}\";tag=\"{TAG}\"",
        identity.public().keyid()
    );
    let base = signature_base(method, target_uri, content_digest.as_deref(), &params_line);
    let sig = identity.sign(base.as_bytes());
    use base64::Engine as _;
    SignedHeaders {
        signature_input: format!("{LABEL}={params_line}"),
        signature: format!(
            "{LABEL}=:{}:",
            base64::engine::general_purpose::STANDARD.encode(sig)
        ),
        content_digest,
        nonce,
    }
}

fn string_param(params: &Parameters, name: &'static str) -> Result<String, SignatureError> {
    match params.get(name) {
        Some(BareItem::String(s)) => Ok(s.clone()),
        _ => Err(SignatureError::Parameter(name)),
    }
}

fn int_param(params: &Parameters, name: &'static str) -> Result<i64, SignatureError> {
    match params.get(name) {
        Some(BareItem::Integer(i)) => Ok(*i),
        _ => Err(SignatureError::Parameter(name)),
    }
}

/// Parses the `Signature-Input` and `Signature` headers of a request in Sigil's profile. Headers
/// in the canonical form a client serializes (members and parameters in the order
/// [`sign`] writes them, nothing that serializes differently) are read directly; anything else
/// goes through the RFC 8941 parser ([`parse_general`]). Both give the same answer for every
/// input the direct reading accepts (tested, and fuzzed: `signature_canonical`).
pub fn parse(signature_input: &str, signature: &str) -> Result<ParsedSignature, SignatureError> {
    match parse_canonical(signature_input, signature) {
        Some(fields) => fields.check(),
        None => parse_general(signature_input, signature),
    }
}

/// [`parse`] through the RFC 8941 parser, whatever the serialization.
pub fn parse_general(
    signature_input: &str,
    signature: &str,
) -> Result<ParsedSignature, SignatureError> {
    let inputs = sfv::Parser::parse_dictionary(signature_input.as_bytes())
        .map_err(|_| SignatureError::Malformed("Signature-Input is not a structured dictionary"))?;
    let sigs = sfv::Parser::parse_dictionary(signature.as_bytes())
        .map_err(|_| SignatureError::Malformed("Signature is not a structured dictionary"))?;
    let Some(ListEntry::InnerList(list)) = inputs.get(LABEL) else {
        return Err(SignatureError::Malformed(
            "no sig1 inner list in Signature-Input",
        ));
    };
    let Some(ListEntry::Item(Item {
        bare_item: BareItem::ByteSeq(sig_bytes),
        params: sig_params,
    })) = sigs.get(LABEL)
    else {
        return Err(SignatureError::Malformed(
            "no sig1 byte sequence in Signature",
        ));
    };
    if !sig_params.is_empty() {
        return Err(SignatureError::Malformed(
            "sig1 in Signature carries parameters",
        ));
    }

    let mut names = Vec::with_capacity(list.items.len());
    for item in &list.items {
        match (&item.bare_item, item.params.is_empty()) {
            (BareItem::String(s), true) => names.push(s.as_str()),
            _ => {
                return Err(SignatureError::Malformed(
                    "covered components must be plain strings",
                ));
            }
        }
    }
    let covers_digest = match names.as_slice() {
        ["@method", "@target-uri"] => false,
        ["@method", "@target-uri", "content-digest"] => true,
        _ => {
            return Err(SignatureError::Malformed(
                "covered components must be (\"@method\" \"@target-uri\" [\"content-digest\"])",
            ));
        }
    };

    let p = &list.params;
    for name in p.keys() {
        if !matches!(
            name.as_str(),
            "created" | "expires" | "nonce" | "keyid" | "alg" | "tag"
        ) {
            return Err(SignatureError::Malformed("unknown signature parameter"));
        }
    }
    Fields {
        covers_digest,
        tag: string_param(p, "tag")?,
        nonce: string_param(p, "nonce")?,
        keyid: string_param(p, "keyid")?,
        alg: string_param(p, "alg")?,
        created: int_param(p, "created")?,
        expires: int_param(p, "expires")?,
        params_line: serialize_params(list.clone())?,
        signature: sig_bytes.clone(),
    }
    .check()
}

/// A signature's fields as read, before Sigil's profile checks their values.
struct Fields {
    covers_digest: bool,
    tag: String,
    nonce: String,
    keyid: String,
    alg: String,
    created: i64,
    expires: i64,
    params_line: String,
    signature: Vec<u8>,
}

impl Fields {
    /// The profile's checks of the values, in the order the errors are reported.
    fn check(self) -> Result<ParsedSignature, SignatureError> {
        if self.tag != TAG {
            return Err(SignatureError::Parameter("tag"));
        }
        let nonce_ok = sigil_crypto::b64url_decode(&self.nonce).is_ok_and(|n| n.len() >= 16);
        if !nonce_ok || self.nonce.len() > 128 {
            return Err(SignatureError::Parameter("nonce"));
        }
        let keyid = KeyId::parse(&self.keyid).ok_or(SignatureError::Parameter("keyid"))?;
        if self.alg != ALG_ED25519 && self.alg != ALG_ECDSA_P256 {
            return Err(SignatureError::Parameter("alg"));
        }
        Ok(ParsedSignature {
            params: SignatureParams {
                created: self.created,
                expires: self.expires,
                nonce: self.nonce,
                keyid,
                alg: self.alg,
            },
            covers_digest: self.covers_digest,
            params_line: self.params_line,
            signature: self.signature,
        })
    }
}

/// Reads headers in exactly the form [`sign`] writes: `sig1=("@method" "@target-uri"[
/// "content-digest"]);created=N;expires=N;nonce="…";keyid="…";alg="…";tag="…"` and
/// `sig1=:<base64>:`, integers without a sign or leading zeros, strings without escapes, no
/// whitespace but the single spaces between the components. That text is its own RFC 8941
/// serialization, so it is the signature base's `@signature-params` as it stands. `None` for
/// anything else, which [`parse_general`] then reads.
fn parse_canonical(signature_input: &str, signature: &str) -> Option<Fields> {
    use base64::Engine as _;
    let params_line = signature_input.strip_prefix("sig1=")?;
    let (covers_digest, mut rest) =
        if let Some(r) = params_line.strip_prefix("(\"@method\" \"@target-uri\")") {
            (false, r)
        } else {
            let r = params_line.strip_prefix("(\"@method\" \"@target-uri\" \"content-digest\")")?;
            (true, r)
        };
    let mut int = |name: &str| -> Option<i64> {
        rest = rest
            .strip_prefix(';')?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (n, after) = rest.split_at(digits);
        // 1 to 15 digits (RFC 8941), no leading zero.
        if !(1..=15).contains(&digits) || (digits > 1 && n.starts_with('0')) {
            return None;
        }
        rest = after;
        n.parse().ok()
    };
    let created = int("created")?;
    let expires = int("expires")?;
    let mut string = |name: &str| -> Option<String> {
        rest = rest
            .strip_prefix(';')?
            .strip_prefix(name)?
            .strip_prefix("=\"")?;
        let end = rest.find('"')?;
        let (s, after) = rest.split_at(end);
        // Printable ASCII; a backslash would be an escape.
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'\\') {
            return None;
        }
        rest = &after[1..];
        Some(s.to_owned())
    };
    let nonce = string("nonce")?;
    let keyid = string("keyid")?;
    let alg = string("alg")?;
    let tag = string("tag")?;
    if !rest.is_empty() {
        return None;
    }
    let b64 = signature.strip_prefix("sig1=:")?.strip_suffix(':')?;
    let signature = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(Fields {
        covers_digest,
        tag,
        nonce,
        keyid,
        alg,
        created,
        expires,
        params_line: params_line.to_owned(),
        signature,
    })
}

impl ParsedSignature {
    /// Whether the signature covers `content-digest`.
    pub fn covers_digest(&self) -> bool {
        self.covers_digest
    }

    /// Checks `created`/`expires` against `now` (Unix seconds).
    pub fn check_time(&self, now: i64) -> Result<(), SignatureError> {
        let SignatureParams {
            created, expires, ..
        } = self.params;
        if expires < created {
            return Err(SignatureError::Parameter("expires"));
        }
        if expires - created > MAX_VALIDITY_SECS {
            return Err(SignatureError::TooLong);
        }
        if now < created - MAX_SKEW_SECS || now > expires {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }

    /// Verifies the signature over the request as received. `content_digest` is the
    /// request's `Content-Digest` header, already checked against the body, when covered.
    pub fn verify(
        &self,
        key: &PublicIdentity,
        method: &str,
        target_uri: &str,
        content_digest: Option<&str>,
    ) -> Result<(), SignatureError> {
        self.prepare(key, method, target_uri, content_digest)?
            .verify()
            .map_err(|_| SignatureError::BadSignature)
    }

    /// Everything [`ParsedSignature::verify`] checks but the signature's equation, which the returned
    /// [`Signed`] checks alone or in a batch ([`sigil_crypto::verify_batch`]).
    pub fn prepare(
        &self,
        key: &PublicIdentity,
        method: &str,
        target_uri: &str,
        content_digest: Option<&str>,
    ) -> Result<Signed, SignatureError> {
        if self.params.alg != ALG_ED25519 {
            return Err(SignatureError::Algorithm);
        }
        if key.keyid() != self.params.keyid {
            return Err(SignatureError::BadSignature);
        }
        let digest = match (self.covers_digest, content_digest) {
            (true, Some(d)) => Some(d.trim()),
            (true, None) => return Err(SignatureError::Digest),
            (false, _) => None,
        };
        let base = signature_base(method, target_uri, digest, &self.params_line);
        Signed::new(key, base.into_bytes(), &self.signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn nonce() -> String {
        sigil_crypto::random::nonce().unwrap()
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let id = SecretIdentity::generate().unwrap();
        let body = b"{\"enc\":\"x\",\"ct\":\"y\"}";
        let uri = "https://127.0.0.1:8200/v1/secret/data/app";
        let h = sign(
            &id,
            "POST",
            uri,
            Some(body),
            (NOW, NOW + DEFAULT_VALIDITY_SECS),
            nonce(),
        );
        let digest = h.content_digest.clone().unwrap();
        check_content_digest(&digest, body).unwrap();
        let p = parse(&h.signature_input, &h.signature).unwrap();
        assert!(p.covers_digest());
        p.check_time(NOW).unwrap();
        p.verify(&id.public(), "POST", uri, Some(&digest)).unwrap();
        assert_eq!(p.params.keyid, id.public().keyid());
        assert_eq!(p.params.nonce, h.nonce);

        // Tampering with method, URI or digest fails.
        assert_eq!(
            p.verify(&id.public(), "PUT", uri, Some(&digest)),
            Err(SignatureError::BadSignature)
        );
        assert!(
            p.verify(&id.public(), "POST", &format!("{uri}x"), Some(&digest))
                .is_err()
        );
        let other = content_digest(b"other");
        assert!(p.verify(&id.public(), "POST", uri, Some(&other)).is_err());
        assert!(check_content_digest(&digest, b"other").is_err());
        // Another key fails.
        let eve = SecretIdentity::generate().unwrap();
        assert!(p.verify(&eve.public(), "POST", uri, Some(&digest)).is_err());
    }

    /// What `sign` writes is read directly, to the same result as through the RFC 8941
    /// parser; every variation the direct reading does not take goes to the parser, and the
    /// answer is the parser's.
    #[test]
    fn canonical_headers_read_directly_and_agree_with_the_parser() {
        let id = SecretIdentity::generate().unwrap();
        for body in [None, Some(&b"{}"[..])] {
            let h = sign(&id, "GET", "https://h/v1/x", body, (NOW, NOW + 60), nonce());
            let direct = parse_canonical(&h.signature_input, &h.signature).expect("canonical");
            let direct = direct.check().unwrap();
            assert_eq!(
                direct,
                parse_general(&h.signature_input, &h.signature).unwrap()
            );
            assert_eq!(parse(&h.signature_input, &h.signature).unwrap(), direct);
            let variations = [
                h.signature_input.replace(";created=", "; created="),
                h.signature_input.replace("sig1=", "sig1 ="),
                format!(" {}", h.signature_input),
                format!("{}, other=(\"@method\")", h.signature_input),
                h.signature_input.replace(";created=", ";created=0"),
                h.signature_input.replace(";expires=", ";expires=-"),
                h.signature_input
                    .replace(";alg=\"ed25519\"", ";alg=\"ed\\25519\""),
                h.signature_input
                    .replace(";tag=\"sigil-request\"", ";tag=sigil-request"),
                h.signature_input.replace("\"@target-uri\"", "\"@path\""),
                h.signature_input.replace(";nonce=", ";x=1;nonce="),
                {
                    // keyid before nonce: a reordering RFC 8941 allows.
                    let i = h.signature_input.find(";nonce=").unwrap();
                    let k = h.signature_input.find(";keyid=").unwrap();
                    let a = h.signature_input.find(";alg=").unwrap();
                    let mut s = h.signature_input[..i].to_owned();
                    s.push_str(&h.signature_input[k..a]);
                    s.push_str(&h.signature_input[i..k]);
                    s.push_str(&h.signature_input[a..]);
                    s
                },
            ];
            // Canonical in form, wrong in value: read directly, refused as the parser's is.
            let other_tag = h.signature_input.replace("\"sigil-request\"", "\"other\"");
            assert!(parse_canonical(&other_tag, &h.signature).is_some());
            assert_eq!(
                parse(&other_tag, &h.signature),
                parse_general(&other_tag, &h.signature)
            );
            for input in &variations {
                assert!(parse_canonical(input, &h.signature).is_none(), "{input}");
                assert_eq!(
                    parse(input, &h.signature),
                    parse_general(input, &h.signature)
                );
            }
            for sig in [
                h.signature.replace("sig1=:", "sig1= :"),
                h.signature.replace(':', ""),
                format!("{};x=1", h.signature),
            ] {
                assert!(parse_canonical(&h.signature_input, &sig).is_none(), "{sig}");
                assert_eq!(
                    parse(&h.signature_input, &sig),
                    parse_general(&h.signature_input, &sig)
                );
            }
        }
    }

    #[test]
    fn rfc9421_signature_base_shape() {
        // The exact base for a request with a body (RFC 9421 §2.5).
        let base = signature_base(
            "POST",
            "https://h/v1/x",
            Some("sha-256=:AA==:"),
            "(\"@method\" \"@target-uri\" \"content-digest\");created=1",
        );
        assert_eq!(
            base,
            "\"@method\": POST\n\"@target-uri\": https://h/v1/x\n\"content-digest\": sha-256=:AA==:\n\"@signature-params\": (\"@method\" \"@target-uri\" \"content-digest\");created=1"
        );
    }

    #[test]
    fn time_window() {
        let id = SecretIdentity::generate().unwrap();
        let h = sign(
            &id,
            "GET",
            "https://h/v1/x",
            None,
            (NOW, NOW + DEFAULT_VALIDITY_SECS),
            nonce(),
        );
        let p = parse(&h.signature_input, &h.signature).unwrap();
        p.check_time(NOW - MAX_SKEW_SECS).unwrap();
        p.check_time(NOW + DEFAULT_VALIDITY_SECS).unwrap();
        assert_eq!(
            p.check_time(NOW - MAX_SKEW_SECS - 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            p.check_time(NOW + DEFAULT_VALIDITY_SECS + 1),
            Err(SignatureError::Stale)
        );
    }

    fn input_with(params: &str) -> String {
        format!("sig1=(\"@method\" \"@target-uri\"){params}")
    }

    #[test]
    fn fail_profile_violations() {
        let keyid = KeyId::for_ed25519(&[1; 32]);
        let n = nonce();
        let good = format!(
            ";created={NOW};expires={};nonce=\"{n}\";keyid=\"{keyid}\";alg=\"ed25519\";tag=\"sigil-request\"",
            NOW + 60
        );
        let sig = "sig1=:AAAA:";
        assert!(parse(&input_with(&good), sig).is_ok());
        let cases: Vec<(String, &str)> = vec![
            (good.replace(";tag=\"sigil-request\"", ""), sig),
            (good.replace("sigil-request", "other"), sig),
            (good.replace(&format!(";nonce=\"{n}\""), ""), sig),
            (good.replace(&n, "short"), sig),
            (good.replace(&format!(";keyid=\"{keyid}\""), ""), sig),
            (good.replace(keyid.as_str(), "nope"), sig),
            (good.replace("ed25519", "hmac-sha256"), sig),
            (
                good.replace(&format!("created={NOW}"), "created=\"x\""),
                sig,
            ),
            (good.replace(&format!(";expires={}", NOW + 60), ""), sig),
            (format!("{good};extra=1"), sig),
            (good.clone(), "sig1=\"notbytes\""),
            (good.clone(), "sig2=:AAAA:"),
            (good.clone(), "sig1=:AAAA:;x=1"),
            (good.clone(), "garbage(("),
        ];
        for (params, sig) in cases {
            assert!(
                parse(&input_with(&params), sig).is_err(),
                "{params} / {sig}"
            );
        }
        // Wrong components.
        for comps in [
            "(\"@method\")",
            "(\"@target-uri\" \"@method\")",
            "(\"@method\" \"@target-uri\" \"date\")",
            "(\"@method\" \"@target-uri\";sf)",
            "(\"@method\" @target-uri)",
        ] {
            assert!(
                parse(&format!("sig1={comps}{good}"), sig).is_err(),
                "{comps}"
            );
        }
        assert!(matches!(parse("", ""), Err(SignatureError::Malformed(_))));
        // Validity longer than 300 s.
        let long = good.replace(
            &format!("expires={}", NOW + 60),
            &format!("expires={}", NOW + 301),
        );
        let p = parse(&input_with(&long), sig).unwrap();
        assert_eq!(p.check_time(NOW), Err(SignatureError::TooLong));
    }
}

#[cfg(test)]
mod garbage {
    use super::*;

    /// Random and mutated header values never panic the parser, and never produce a
    /// signature that verifies.
    #[test]
    fn fail_random_and_mutated_headers() {
        let id = SecretIdentity::generate().unwrap();
        let uri = "https://h/v1/x";
        let h = sign(
            &id,
            "GET",
            uri,
            None,
            (1000, 1060),
            sigil_crypto::random::nonce().unwrap(),
        );
        let mut seed = [0u8; 4096];
        sigil_crypto::random::fill(&mut seed).unwrap();
        for i in 0..2000 {
            let r = &seed[(i * 7) % 4000..][..64];
            let random = String::from_utf8_lossy(r).into_owned();
            let _ = parse(&random, &random);
            // Flip one byte of a valid Signature-Input.
            let mut input = h.signature_input.clone().into_bytes();
            let pos = r[0] as usize % input.len();
            input[pos] = r[1] | 0x20;
            if let Ok(text) = String::from_utf8(input)
                && text != h.signature_input
                && let Ok(p) = parse(&text, &h.signature)
            {
                assert!(p.verify(&id.public(), "GET", uri, None).is_err(), "{text}");
            }
        }
    }
}
