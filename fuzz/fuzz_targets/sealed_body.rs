//! Sealed bodies (`sigil-proto` `body.rs`, `sigil-crypto` `seal.rs`): `body::parse` of either
//! envelope, then opening with fixed keys as both ends do: an HPKE `{"enc","ct"}` request
//! body by the server (mode_auth, from the client), a response by the client
//! (`body::open`), an unseal share (mode_base), and a channel `{"ch","n","ct"}` envelope with
//! the fixed channel keys (each direction's). All under the fixed nonce.
//!
//! Input: the body's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_crypto::SealInfo;
use sigil_fuzz::{NONCE, client, publics, server};
use sigil_proto::body::{self, Sealed};

fuzz_target!(|data: &[u8]| {
    let [server_pub, client_pub, _] = publics();
    match body::parse(data) {
        Ok(Sealed::Hpke(envelope)) => {
            let _ = sigil_crypto::open_from(
                server().encryption_key(),
                client_pub.encryption_key(),
                SealInfo::Request,
                NONCE.as_bytes(),
                &envelope,
            );
            let _ = sigil_crypto::open_from_exporting(
                client().encryption_key(),
                server_pub.encryption_key(),
                SealInfo::Response,
                NONCE.as_bytes(),
                &envelope,
            );
            let _ =
                sigil_crypto::open_base(client().encryption_key(), SealInfo::Share, b"", &envelope);
        }
        Ok(Sealed::Channel { nonce, ct, .. }) => {
            // The server opens requests with the request key, the client answers with the
            // response key.
            let keys = sigil_fuzz::channel_keys();
            let _ = body::open_channel(&keys.request, NONCE, &nonce, &ct);
            let _ = body::open_channel(&keys.response, NONCE, &nonce, &ct);
        }
        Ok(_) | Err(_) => {}
    }
    let _ = body::open(
        client().encryption_key(),
        server_pub.encryption_key(),
        SealInfo::Response,
        NONCE,
        data,
    );
});
