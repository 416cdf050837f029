//! The small header parsers the server and the SDK apply to untrusted values: a request's
//! authority (`sigil_server::parse_authority`, from `Host`, `:authority` and `@target-uri`),
//! a channel grant (`headers::channel_grant`, `Sigil-Channel: <id>; ttl=<s>` in an answer) and
//! an expired-channel answer (`headers::channel_expired_signature`, whose signature is then
//! checked against the server key). What each accepts must print back to a value that parses
//! to the same thing, and a forged expired-channel signature must never verify.
//!
//! Input: UTF-8 text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_proto::headers;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((host, port)) = sigil_server::parse_authority(text) {
        assert_eq!(host, host.to_ascii_lowercase());
        let printed = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        assert_eq!(
            sigil_server::parse_authority(&printed),
            Some((host, port)),
            "{printed}"
        );
    }
    if let Some((id, ttl)) = headers::channel_grant(text) {
        assert!(!id.is_empty() && id.len() <= 64);
        assert_eq!(
            headers::channel_grant(&format!("{id}; ttl={ttl}")),
            Some((id, ttl))
        );
    }
    if let Some(sig) = headers::channel_expired_signature(text) {
        let printed = format!("expired; sig={}", sigil_crypto::b64url_encode(&sig));
        assert_eq!(
            headers::channel_expired_signature(&printed).as_deref(),
            Some(&sig[..])
        );
        let message = headers::channel_expired_message(sigil_fuzz::NONCE);
        assert!(
            sigil_fuzz::server()
                .public()
                .verify(&message, &sig)
                .is_err(),
            "the fuzzer forged the server's signature"
        );
    }
});
