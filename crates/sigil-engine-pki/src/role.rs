//! PKI roles: which names, keys, lifetimes and usages a certificate may have.

use rcgen::{ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, RsaKeySize};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_SIG_ED25519};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use sigil_engine::CoreError;
use sigil_engine::fields::{bad, flag, list_of, number, only, text, ttl};

/// Vault's default `key_usage` for a role.
const DEFAULT_KEY_USAGE: [&str; 3] = ["DigitalSignature", "KeyAgreement", "KeyEncipherment"];

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(default)]
pub(super) struct Role {
    #[serde(default = "default_issuer")]
    pub(super) issuer_ref: String,
    pub(super) allowed_domains: Vec<String>,
    pub(super) allow_subdomains: bool,
    pub(super) allow_bare_domains: bool,
    pub(super) allow_any_name: bool,
    pub(super) allow_localhost: bool,
    pub(super) allow_ip_sans: bool,
    pub(super) allowed_uri_sans: Vec<String>,
    pub(super) key_type: String,
    pub(super) key_bits: u64,
    #[serde(default = "default_key_usage")]
    pub(super) key_usage: Vec<String>,
    pub(super) ext_key_usage: Vec<String>,
    pub(super) ttl: u64,
    pub(super) max_ttl: u64,
    pub(super) no_store: bool,
    pub(super) server_flag: bool,
    pub(super) client_flag: bool,
}

fn default_issuer() -> String {
    "default".into()
}

fn default_key_usage() -> Vec<String> {
    DEFAULT_KEY_USAGE.map(str::to_owned).to_vec()
}

impl Role {
    /// A role from a `roles/<name>` write, every field checked.
    pub(super) fn from_body(body: &Map<String, Value>) -> Result<Role, CoreError> {
        only(
            body,
            &[
                "issuer_ref",
                "allowed_domains",
                "allow_subdomains",
                "allow_bare_domains",
                "allow_any_name",
                "allow_localhost",
                "allow_ip_sans",
                "allowed_uri_sans",
                "key_type",
                "key_bits",
                "key_usage",
                "ext_key_usage",
                "ttl",
                "max_ttl",
                "no_store",
                "server_flag",
                "client_flag",
            ],
        )?;
        let key_type = text(body, "key_type", "ec")?.to_owned();
        let key_bits = KeySpec::new(&key_type, number(body, "key_bits")?)?.bits;
        let key_usage = match body.get("key_usage") {
            None | Some(Value::Null) => default_key_usage(),
            v => list_of(v)?
                .iter()
                .map(|u| key_usage(u).map(|(name, _)| name.to_owned()))
                .collect::<Result<_, _>>()?,
        };
        let ext_key_usage = list_of(body.get("ext_key_usage"))?
            .iter()
            .map(|u| ext_key_usage(u).map(|(name, _)| name.to_owned()))
            .collect::<Result<_, _>>()?;
        let role = Role {
            issuer_ref: text(body, "issuer_ref", "default")?.to_owned(),
            allowed_domains: list_of(body.get("allowed_domains"))?,
            allow_subdomains: flag(body, "allow_subdomains", false)?,
            allow_bare_domains: flag(body, "allow_bare_domains", false)?,
            allow_any_name: flag(body, "allow_any_name", false)?,
            allow_localhost: flag(body, "allow_localhost", true)?,
            allow_ip_sans: flag(body, "allow_ip_sans", true)?,
            allowed_uri_sans: list_of(body.get("allowed_uri_sans"))?,
            key_type,
            key_bits,
            key_usage,
            ext_key_usage,
            ttl: ttl(body, "ttl")?,
            max_ttl: ttl(body, "max_ttl")?,
            no_store: flag(body, "no_store", false)?,
            server_flag: flag(body, "server_flag", true)?,
            client_flag: flag(body, "client_flag", true)?,
        };
        if role.max_ttl != 0 && role.ttl > role.max_ttl {
            return Err(bad("ttl cannot exceed max_ttl"));
        }
        Ok(role)
    }

    pub(super) fn key_spec(&self) -> Result<KeySpec, CoreError> {
        KeySpec::new(&self.key_type, self.key_bits)
    }

    /// The key usages of a leaf. KeyEncipherment is kept only for RSA keys and KeyAgreement
    /// only for EC keys: no other key can do them.
    pub(super) fn key_usages(&self) -> Vec<KeyUsagePurpose> {
        self.key_usage
            .iter()
            .filter_map(|u| key_usage(u).ok())
            .filter(|(name, _)| match *name {
                "KeyEncipherment" => self.key_type == "rsa",
                "KeyAgreement" => self.key_type == "ec",
                _ => true,
            })
            .map(|(_, p)| p)
            .collect()
    }

    /// `ext_key_usage` plus the server and client flags.
    pub(super) fn ext_key_usages(&self) -> Vec<ExtendedKeyUsagePurpose> {
        let mut out: Vec<ExtendedKeyUsagePurpose> = self
            .ext_key_usage
            .iter()
            .filter_map(|u| ext_key_usage(u).ok().map(|(_, p)| p))
            .collect();
        for (on, p) in [
            (self.server_flag, ExtendedKeyUsagePurpose::ServerAuth),
            (self.client_flag, ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            if on && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// `a.example.com` matches `example.com` (bare) or `*.example.com` (subdomains) per role.
    pub(super) fn allows_domain(&self, name: &str) -> bool {
        if self.allow_any_name {
            return true;
        }
        if self.allow_localhost && name == "localhost" {
            return true;
        }
        self.allowed_domains.iter().any(|d| {
            let d = d.trim_start_matches("*.");
            (self.allow_bare_domains && name == d)
                || (self.allow_subdomains
                    && name.len() > d.len() + 1
                    && name.ends_with(d)
                    && name.as_bytes()[name.len() - d.len() - 1] == b'.')
        })
    }
}

/// A leaf key usage by Vault's name (case-insensitive), as its canonical name and rcgen's.
/// CertSign and CRLSign are refused: a role issues leaves, not CAs.
fn key_usage(name: &str) -> Result<(&'static str, KeyUsagePurpose), CoreError> {
    use KeyUsagePurpose as K;
    let known = [
        ("DigitalSignature", K::DigitalSignature),
        ("ContentCommitment", K::ContentCommitment),
        ("NonRepudiation", K::ContentCommitment),
        ("KeyEncipherment", K::KeyEncipherment),
        ("DataEncipherment", K::DataEncipherment),
        ("KeyAgreement", K::KeyAgreement),
        ("EncipherOnly", K::EncipherOnly),
        ("DecipherOnly", K::DecipherOnly),
    ];
    known
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            bad(format!(
                "key_usage {name:?} is not one Sigil issues (DigitalSignature, ContentCommitment, KeyEncipherment, DataEncipherment, KeyAgreement, EncipherOnly, DecipherOnly)"
            ))
        })
}

/// An extended key usage by Vault's name (case-insensitive, `ExtKeyUsage` prefix optional).
fn ext_key_usage(name: &str) -> Result<(&'static str, ExtendedKeyUsagePurpose), CoreError> {
    use ExtendedKeyUsagePurpose as E;
    let bare = name
        .strip_prefix("ExtKeyUsage")
        .or_else(|| name.strip_prefix("extkeyusage"))
        .unwrap_or(name);
    let known = [
        ("ServerAuth", E::ServerAuth),
        ("ClientAuth", E::ClientAuth),
        ("CodeSigning", E::CodeSigning),
        ("EmailProtection", E::EmailProtection),
        ("TimeStamping", E::TimeStamping),
        ("OCSPSigning", E::OcspSigning),
        ("Any", E::Any),
    ];
    known
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(bare))
        .ok_or_else(|| {
            bad(format!(
                "ext_key_usage {name:?} is not known (ServerAuth, ClientAuth, CodeSigning, EmailProtection, TimeStamping, OCSPSigning, Any)"
            ))
        })
}

/// A key type and size Sigil generates and accepts: ec 256/384/521, ed25519, rsa
/// 2048/3072/4096 (`bits` 0 means the type's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeySpec {
    pub(super) kind: &'static str,
    pub(super) bits: u64,
}

impl KeySpec {
    pub(super) fn new(key_type: &str, bits: u64) -> Result<KeySpec, CoreError> {
        let spec = |kind, bits| Ok(KeySpec { kind, bits });
        match (key_type, bits) {
            ("ec", 0 | 256) => spec("ec", 256),
            ("ec", 384 | 521) => spec("ec", bits),
            ("ed25519", 0) => spec("ed25519", 0),
            ("rsa", 0 | 2048) => spec("rsa", 2048),
            ("rsa", 3072 | 4096) => spec("rsa", bits),
            _ => Err(bad(
                "key_type/key_bits must be ec (256, 384, 521), ed25519, or rsa (2048, 3072, 4096)",
            )),
        }
    }

    /// The type and size of a public key, or `None` for one Sigil does not certify.
    pub(super) fn of(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeySpec> {
        let alg = &spki.algorithm;
        match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => Some(KeySpec {
                kind: "rsa",
                bits: rsa.key_size() as u64,
            }),
            PublicKey::EC(_) => {
                let curve = alg.parameters.as_ref()?.as_oid().ok()?;
                let bits = [
                    (OID_EC_P256, 256),
                    (OID_NIST_EC_P384, 384),
                    (OID_NIST_EC_P521, 521),
                ]
                .into_iter()
                .find(|(oid, _)| *oid == curve)?
                .1;
                Some(KeySpec { kind: "ec", bits })
            }
            _ if alg.algorithm == OID_SIG_ED25519 => Some(KeySpec {
                kind: "ed25519",
                bits: 0,
            }),
            _ => None,
        }
    }

    /// A CSR's key must be the role's type; an RSA key at least the role's size (up to 8192).
    pub(super) fn admits(&self, csr_key: Option<KeySpec>) -> Result<(), CoreError> {
        let ok = match csr_key {
            Some(k) if k.kind == "rsa" && self.kind == "rsa" => {
                k.bits >= self.bits && k.bits <= 8192
            }
            Some(k) => k == *self,
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(bad(format!(
                "the CSR's key is not what the role allows (key_type {}, key_bits {})",
                self.kind, self.bits
            )))
        }
    }

    /// A new key pair of this type and size.
    pub(super) fn generate(&self) -> Result<KeyPair, CoreError> {
        let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
        match (self.kind, self.bits) {
            ("ec", 256) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            ("ec", 384) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            ("ec", _) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
            ("ed25519", _) => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            ("rsa", 3072) => rsa(RsaKeySize::_3072),
            ("rsa", 4096) => rsa(RsaKeySize::_4096),
            _ => rsa(RsaKeySize::_2048),
        }
        .map_err(bad)
    }
}

/// A DNS name Sigil certifies: letters, digits and hyphens in labels of 1–63 characters,
/// at most 253 in all; no wildcards.
pub(super) fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A glob with `*` matching any run of characters (Vault's allowed_uri_sans).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| {
                    text.is_char_boundary(head.len() + i) && glob(tail, &text[head.len() + i..])
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_globs_and_usages() {
        let role = Role {
            allowed_domains: vec!["example.com".into()],
            allow_subdomains: true,
            ..Role::default()
        };
        assert!(role.allows_domain("a.example.com"));
        assert!(role.allows_domain("a.b.example.com"));
        assert!(!role.allows_domain("example.com"), "bare not allowed");
        assert!(!role.allows_domain("badexample.com"));
        assert!(!role.allows_domain("example.com.evil.org"));
        assert!(glob("spiffe://prod/*", "spiffe://prod/ns/app"));
        assert!(!glob("spiffe://prod/*", "spiffe://dev/ns/app"));
        assert!(glob("a*c*e", "abcde"));
        assert_eq!(key_usage("digitalsignature").unwrap().0, "DigitalSignature");
        assert!(key_usage("CertSign").is_err(), "leaves are not CAs");
        assert_eq!(
            ext_key_usage("ExtKeyUsageCodeSigning").unwrap().0,
            "CodeSigning"
        );
        assert!(ext_key_usage("Bogus").is_err());
        let rsa = KeySpec::new("rsa", 3072).unwrap();
        assert!(
            rsa.admits(Some(KeySpec {
                kind: "rsa",
                bits: 4096
            }))
            .is_ok()
        );
        assert!(
            rsa.admits(Some(KeySpec {
                kind: "rsa",
                bits: 2048
            }))
            .is_err()
        );
        assert!(
            rsa.admits(Some(KeySpec {
                kind: "ec",
                bits: 256
            }))
            .is_err()
        );
        assert!(KeySpec::new("rsa", 1024).is_err());
        assert!(KeySpec::new("ec", 224).is_err());
    }
}
