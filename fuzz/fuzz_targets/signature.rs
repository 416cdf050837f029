//! RFC 9421 request signatures as the server checks them (`sigil-server` `auth.rs`): the
//! `Content-Digest` check, `signature::parse` of `Signature-Input` and `Signature`, the time
//! window, and `verify` against the fixed client key, whose keyid the seeds carry so that the
//! Ed25519 check itself is reached.
//!
//! Input: UTF-8 text, one field per line: Signature-Input, Signature, Content-Digest (empty for
//! none), method, target URI, then the body (the rest, newlines included).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_proto::signature;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let [input, sig, digest, method, uri, body] = sigil_fuzz::fields::<6>(text);
    let digest = (!digest.is_empty()).then_some(digest);
    let body = body.as_bytes();
    if let Some(d) = digest {
        let _ = signature::check_content_digest(d, body);
    }

    let Ok(parsed) = signature::parse(input, sig) else {
        return;
    };
    let _ = parsed.check_time(parsed.params.created);
    let _ = parsed.check_time(sigil_fuzz::NOW);
    let [_, client, other] = sigil_fuzz::publics();
    if parsed.verify(client, method, uri, digest).is_ok() {
        // A signature that verifies binds its key, the method, the target URI and, when it
        // covers it, the digest.
        assert!(parsed.verify(other, method, uri, digest).is_err());
        assert!(
            parsed
                .verify(client, &format!("{method}X"), uri, digest)
                .is_err()
        );
        assert!(
            parsed
                .verify(client, method, &format!("{uri}/x"), digest)
                .is_err()
        );
        if parsed.covers_digest() {
            assert!(parsed.verify(client, method, uri, None).is_err());
        }
    }
});
