//! Client-encrypted data (docs/e2e.md): key certifications, end-to-end secrets and one-time
//! wraps. The server stores these and hands them out; clients check every signature here, so a
//! server that substitutes a key, forges a secret or moves one to another path is caught.
//!
//! Every signature is Ed25519 over a statement that starts with a purpose label, so a signature
//! made for one purpose is never valid for another:
//!
//! - certification: `sigil/v1/certify\n<identity name>\n<sigil1… public key>`
//! - end-to-end secret: `sigil/v1/e2e\n<mount>\n<path>\n<version>\n<SHA-256 of the envelope>`
//! - wrap: `sigil/v1/wrap\n<wrap id>\n<recipient keyid>\n<content type>\n<SHA-256 of the envelope>`
//!
//! No field can contain a newline (names, mounts and paths are checked; ids are hex, keyids
//! base64url), and the digest is a fixed 32 bytes at the end.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{
    CryptoError, KeyId, PublicIdentity, SecretIdentity, b64url_decode, b64url_encode,
};

/// `label\nfield\n…\ntail`.
fn statement(label: &str, fields: &[&str], tail: &[u8]) -> Vec<u8> {
    let mut m = label.as_bytes().to_vec();
    for f in fields {
        m.push(b'\n');
        m.extend_from_slice(f.as_bytes());
    }
    m.push(b'\n');
    m.extend_from_slice(tail);
    m
}

/// The statement an admin signs to certify that `name` owns `public`.
pub fn certification_statement(name: &str, public: &PublicIdentity) -> Vec<u8> {
    statement("sigil/v1/certify", &[name], public.to_string().as_bytes())
}

/// Where and as which version an end-to-end secret is written: the mount (no trailing `/`),
/// the path below it, and the version number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E2eSlot<'a> {
    /// The mount, e.g. `private` or `team/e2e`.
    pub mount: &'a str,
    /// The secret's path below the mount.
    pub path: &'a str,
    /// The version this envelope is (the write's `cas` + 1).
    pub version: u64,
}

/// The statement the writer of an end-to-end secret signs: mount, path, version and envelope.
pub fn e2e_statement(slot: E2eSlot<'_>, envelope: &[u8]) -> Vec<u8> {
    statement(
        "sigil/v1/e2e",
        &[slot.mount, slot.path, &slot.version.to_string()],
        &Sha256::digest(envelope),
    )
}

/// The statement the sender of a wrap signs: the wrap id (chosen by the sender), the
/// recipient's keyid, the content type and the envelope.
pub fn wrap_statement(id: &str, recipient: &KeyId, content_type: &str, envelope: &[u8]) -> Vec<u8> {
    statement(
        "sigil/v1/wrap",
        &[id, recipient.as_str(), content_type],
        &Sha256::digest(envelope),
    )
}

/// An admin's signature binding an identity name to its public key, kept with the identity
/// (`certification` in `identity/entity/name/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certification {
    /// The certifying admin's `sigil1…` public key.
    pub certifier: String,
    /// Ed25519 signature over [`certification_statement`], base64url.
    pub signature: String,
}

impl Certification {
    /// `certifier` certifies that `name` owns `public`.
    pub fn sign(certifier: &SecretIdentity, name: &str, public: &PublicIdentity) -> Self {
        let sig = certifier.sign(&certification_statement(name, public));
        Certification {
            certifier: certifier.public().to_string(),
            signature: b64url_encode(&sig),
        }
    }

    /// Checks the signature for `name` and `public`; returns the certifier.
    pub fn verify(
        &self,
        name: &str,
        public: &PublicIdentity,
    ) -> Result<PublicIdentity, CryptoError> {
        let certifier = PublicIdentity::parse(&self.certifier)?;
        certifier.verify(
            &certification_statement(name, public),
            &b64url_decode(&self.signature)?,
        )?;
        Ok(certifier)
    }
}

/// Who wrote an end-to-end secret or sent a wrap, as the server attaches it from the
/// authenticated caller: the name and that identity's certification, if it has one. Clients
/// check the certification themselves; the server cannot forge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The identity name.
    pub name: String,
    /// Its certification, when an admin made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<Certification>,
}

/// One version of an end-to-end secret: the `data` of a write to (and a read from)
/// `<mount>/data/<path>` on an `e2e` mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// The age v1 file, standard base64 (with padding).
    pub envelope: String,
    /// The writer's `sigil1…` public key.
    pub signer: String,
    /// Ed25519 signature over [`e2e_statement`], base64url.
    pub signature: String,
    /// Who it is encrypted to, as the writer named them (informational: the envelope's
    /// stanzas do not name their recipients).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Set by the server from the authenticated writer; ignored in writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
}

impl SealedSecret {
    /// Signs `envelope` for `slot` as `writer`.
    pub fn new(
        writer: &SecretIdentity,
        slot: E2eSlot<'_>,
        envelope: &[u8],
        recipients: Vec<String>,
    ) -> Self {
        SealedSecret {
            envelope: STANDARD.encode(envelope),
            signer: writer.public().to_string(),
            signature: b64url_encode(&writer.sign(&e2e_statement(slot, envelope))),
            recipients,
            author: None,
        }
    }

    /// Decodes the envelope and checks the writer's signature for `slot`; returns the envelope
    /// and the writer's key.
    pub fn verify(&self, slot: E2eSlot<'_>) -> Result<(Vec<u8>, PublicIdentity), CryptoError> {
        let envelope = STANDARD
            .decode(&self.envelope)
            .map_err(|_| CryptoError::Encoding("envelope is not base64"))?;
        let signer = PublicIdentity::parse(&self.signer)?;
        signer.verify(
            &e2e_statement(slot, &envelope),
            &b64url_decode(&self.signature)?,
        )?;
        Ok((envelope, signer))
    }
}

/// A one-time wrap as sent to `sys/wrapping/wrap`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapRequest {
    /// The wrap's id, chosen by the sender: 32 lower-case hex digits (128 random bits). It is
    /// signed, so a server cannot replay the envelope under another id.
    pub id: String,
    /// The recipient's keyid.
    pub to: String,
    /// The age v1 file, standard base64.
    pub envelope: String,
    /// Ed25519 signature over [`wrap_statement`] (content type `application/octet-stream`) by
    /// the sender (the caller), base64url.
    pub signature: String,
    /// Time to live (`"5m"`, `"1h"`, or seconds; default 5 minutes, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_purpose_subject_and_content() {
        let admin = SecretIdentity::generate().unwrap();
        let alice = SecretIdentity::generate().unwrap().public();
        let mallory = SecretIdentity::generate().unwrap().public();
        let cert = Certification::sign(&admin, "alice", &alice);
        assert_eq!(cert.verify("alice", &alice).unwrap(), admin.public());
        assert!(cert.verify("alice", &mallory).is_err(), "another key");
        assert!(cert.verify("bob", &alice).is_err(), "another name");
        let forged = Certification {
            certifier: mallory.to_string(),
            ..cert
        };
        assert!(forged.verify("alice", &alice).is_err());

        let slot = E2eSlot {
            mount: "private",
            path: "x",
            version: 2,
        };
        let s = SealedSecret::new(&admin, slot, b"age file", vec![]);
        assert!(s.verify(slot).is_ok());
        for moved in [
            E2eSlot { path: "y", ..slot },
            E2eSlot { version: 1, ..slot },
            // The same full path, split at another mount boundary.
            E2eSlot {
                mount: "private/x",
                path: "",
                ..slot
            },
        ] {
            assert!(s.verify(moved).is_err(), "{moved:?}");
        }
        let swapped = SealedSecret {
            envelope: STANDARD.encode(b"other"),
            ..s
        };
        assert!(swapped.verify(slot).is_err(), "another envelope");
        let keyid = alice.keyid();
        let wrap = |id, ct| wrap_statement(id, &keyid, ct, b"age file");
        let sig = admin.sign(&wrap("00ff", "application/octet-stream"));
        assert!(
            admin
                .public()
                .verify(&wrap("00ff", "application/octet-stream"), &sig)
                .is_ok()
        );
        assert!(
            admin
                .public()
                .verify(&wrap("00fe", "application/octet-stream"), &sig)
                .is_err()
        );
        assert!(
            admin
                .public()
                .verify(&wrap("00ff", "application/json"), &sig)
                .is_err()
        );
    }
}
