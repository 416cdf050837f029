//! The signed JSON documents of the e2e engine and wraps (`sigil-proto` `e2e.rs`), as a client
//! receives them from a server it does not trust and as the server receives them from a
//! caller: a key certification, an end-to-end secret version and a wrap request. Each is
//! parsed, printed and parsed back to the same value, and its signature is checked. The seeds
//! hold genuine documents signed by the fixture identity `other`; whatever verifies must be
//! one of them, with exactly the signature `other` makes (Ed25519 is deterministic), so the
//! fuzzer can neither forge a signature nor find a second encoding of one that passes.
//!
//! Input: a byte choosing the document, then its JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_crypto::b64url_decode;
use sigil_proto::e2e::{Certification, E2eSlot, SealedSecret, WrapRequest};

/// Parses `json` as `T`, and checks that it prints and parses back to itself.
fn round_trip<T>(json: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(json).ok()?;
    let printed = serde_json::to_vec(&value).expect("a parsed document prints");
    let again: T = serde_json::from_slice(&printed).expect("a printed document parses");
    assert_eq!(again, value);
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let client = sigil_fuzz::client().public();
    let other = sigil_fuzz::other();
    match which % 3 {
        0 => {
            if let Some(cert) = round_trip::<Certification>(json)
                && let Ok(certifier) = cert.verify("fuzz", &client)
            {
                let genuine = Certification::sign(other, "fuzz", &client);
                assert_eq!(certifier, other.public(), "a forged certification");
                assert_eq!(
                    b64url_decode(&cert.signature).ok(),
                    b64url_decode(&genuine.signature).ok(),
                    "a second signature verifies"
                );
            }
        }
        1 => {
            let slot = E2eSlot {
                mount: "private",
                path: "fuzz",
                version: 1,
            };
            if let Some(secret) = round_trip::<SealedSecret>(json)
                && let Ok((envelope, signer)) = secret.verify(slot)
            {
                let genuine = SealedSecret::new(other, slot, &envelope, vec![]);
                assert_eq!(signer, other.public(), "a forged secret version");
                assert_eq!(
                    b64url_decode(&secret.signature).ok(),
                    b64url_decode(&genuine.signature).ok(),
                    "a second signature verifies"
                );
            }
        }
        _ => {
            let _ = round_trip::<WrapRequest>(json);
        }
    }
});
