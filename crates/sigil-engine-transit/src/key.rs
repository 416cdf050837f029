//! Transit keys: their types, versions and the cryptography of each (aws-lc-rs, the library
//! under the server's TLS). Key material is kept under the barrier and, once loaded, in
//! zeroizing memory.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use aws_lc_rs::{aead, digest, hkdf, hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use sigil_engine::CoreError;
use sigil_engine::encoding::pem;

/// A key's type, named as Vault names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum KeyType {
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    #[serde(rename = "ed25519")]
    Ed25519,
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "hmac")]
    Hmac,
}

impl KeyType {
    pub(super) fn parse(s: &str) -> Result<Self, CoreError> {
        serde_json::from_value(Value::String(s.to_owned())).map_err(|_| {
            CoreError::bad(
                "type must be one of aes256-gcm96, chacha20-poly1305, ed25519, ecdsa-p256, \
                 rsa-2048, rsa-3072, rsa-4096, hmac",
            )
        })
    }

    pub(super) fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub(super) fn symmetric(self) -> bool {
        matches!(self, KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305)
    }

    pub(super) fn rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    pub(super) fn encrypts(self) -> bool {
        self.symmetric() || self.rsa()
    }

    pub(super) fn signs(self) -> bool {
        matches!(self, KeyType::Ed25519 | KeyType::EcdsaP256) || self.rsa()
    }
}

fn rng_failed() -> CoreError {
    CoreError::rng()
}

/// One version of a key: its material (raw bytes for symmetric keys, PKCS#8 for asymmetric
/// ones) and an independent HMAC key, as Vault keeps one per version.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct KeyVersion {
    #[serde(with = "sigil_engine::encoding::b64_zeroizing")]
    pub(super) material: Zeroizing<Vec<u8>>,
    #[serde(with = "sigil_engine::encoding::b64_zeroizing")]
    pub(super) hmac_key: Zeroizing<Vec<u8>>,
    pub(super) creation_time: String,
}

impl KeyVersion {
    pub(super) fn generate(kind: KeyType) -> Result<Self, CoreError> {
        let rng = SystemRandom::new();
        let random = |n: usize| -> Result<Zeroizing<Vec<u8>>, CoreError> {
            let mut b = Zeroizing::new(vec![0u8; n]);
            sigil_crypto::random::fill(&mut b).map_err(|_| rng_failed())?;
            Ok(b)
        };
        let material = match kind {
            KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 | KeyType::Hmac => random(32)?,
            KeyType::Ed25519 => Zeroizing::new(
                Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| rng_failed())?
                    .as_ref()
                    .to_vec(),
            ),
            KeyType::EcdsaP256 => Zeroizing::new(
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(|_| rng_failed())?
                    .as_ref()
                    .to_vec(),
            ),
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let size = match kind {
                    KeyType::Rsa2048 => rsa::KeySize::Rsa2048,
                    KeyType::Rsa3072 => rsa::KeySize::Rsa3072,
                    _ => rsa::KeySize::Rsa4096,
                };
                let pair = rsa::KeyPair::generate(size).map_err(|_| rng_failed())?;
                let der = pair.as_der().map_err(|_| rng_failed())?;
                Zeroizing::new(der.as_ref().to_vec())
            }
        };
        Ok(KeyVersion {
            material,
            hmac_key: random(32)?,
            creation_time: sigil_engine::now_rfc3339(),
        })
    }

    /// The public key (PEM SubjectPublicKeyInfo; Ed25519: the raw key in base64, as Vault).
    pub(super) fn public_key(&self, kind: KeyType) -> Option<String> {
        let spki: Vec<u8> = match kind {
            KeyType::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8(&self.material).ok()?;
                return Some(B64.encode(pair.public_key().as_ref()));
            }
            KeyType::EcdsaP256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &self.material,
                )
                .ok()?;
                let der: PublicKeyX509Der<'_> = pair.public_key().as_der().ok()?;
                der.as_ref().to_vec()
            }
            k if k.rsa() => {
                let pair = rsa::KeyPair::from_pkcs8(&self.material).ok()?;
                let der: PublicKeyX509Der<'_> = pair.public_key().as_der().ok()?;
                der.as_ref().to_vec()
            }
            _ => return None,
        };
        Some(pem("PUBLIC KEY", &spki).to_string())
    }
}

/// What `export/<kind>/…` hands out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ExportKind {
    Encryption,
    Signing,
    Hmac,
}

impl ExportKind {
    pub(super) fn parse(s: &str) -> Result<Self, CoreError> {
        match s {
            "encryption-key" => Ok(ExportKind::Encryption),
            "signing-key" => Ok(ExportKind::Signing),
            "hmac-key" => Ok(ExportKind::Hmac),
            _ => Err(CoreError::bad(
                "export type must be encryption-key, signing-key or hmac-key",
            )),
        }
    }
}

impl KeyVersion {
    /// One version's key in Vault's export format: symmetric and HMAC keys in base64, an
    /// Ed25519 key as base64 of seed and public key (64 bytes), ECDSA as an `EC PRIVATE KEY`
    /// PEM, RSA as a PKCS#8 `PRIVATE KEY` PEM (Vault: PKCS#1).
    pub(super) fn export(
        &self,
        kind: KeyType,
        what: ExportKind,
    ) -> Result<Zeroizing<String>, CoreError> {
        let b64 = |bytes: &[u8]| Zeroizing::new(B64.encode(bytes));
        match (what, kind) {
            (ExportKind::Hmac, KeyType::Hmac) => Ok(b64(&self.material)),
            (ExportKind::Hmac, _) => Ok(b64(&self.hmac_key)),
            (ExportKind::Encryption, k) if k.symmetric() => Ok(b64(&self.material)),
            (ExportKind::Signing, KeyType::Ed25519) => {
                use aws_lc_rs::encoding::AsBigEndian as _;
                let pair =
                    Ed25519KeyPair::from_pkcs8(&self.material).map_err(|_| CoreError::Integrity)?;
                let seed = pair
                    .seed()
                    .and_then(|s| s.as_be_bytes())
                    .map_err(|_| CoreError::Integrity)?;
                let mut both = Zeroizing::new(seed.as_ref().to_vec());
                both.extend_from_slice(pair.public_key().as_ref());
                Ok(b64(&both))
            }
            (ExportKind::Signing, KeyType::EcdsaP256) => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &self.material,
                )
                .map_err(|_| CoreError::Integrity)?;
                let der: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'_> = pair
                    .private_key()
                    .as_der()
                    .map_err(|_| CoreError::Integrity)?;
                Ok(pem("EC PRIVATE KEY", der.as_ref()))
            }
            (ExportKind::Signing, k) if k.rsa() => Ok(pem("PRIVATE KEY", &self.material)),
            _ => Err(CoreError::bad(format!(
                "{} keys have no key of that export type",
                kind.name()
            ))),
        }
    }
}

/// A key as stored under the barrier.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct TransitKey {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: KeyType,
    pub(super) versions: BTreeMap<u64, KeyVersion>,
    pub(super) latest_version: u64,
    pub(super) min_decryption_version: u64,
    pub(super) min_encryption_version: u64,
    pub(super) min_available_version: u64,
    pub(super) deletion_allowed: bool,
    pub(super) exportable: bool,
    pub(super) allow_plaintext_backup: bool,
    pub(super) derived: bool,
    pub(super) convergent_encryption: bool,
    pub(super) auto_rotate_period: u64,
}

impl TransitKey {
    /// A new key named `name` with one fresh version of `kind`, as Vault creates it: version 1
    /// decrypts and encrypts, nothing is trimmed, deletion is not allowed until configured.
    pub(super) fn new(
        name: &str,
        kind: KeyType,
        derived: bool,
        convergent_encryption: bool,
        exportable: bool,
        auto_rotate_period: u64,
    ) -> Result<Self, CoreError> {
        let mut versions = BTreeMap::new();
        versions.insert(1, KeyVersion::generate(kind)?);
        Ok(TransitKey {
            name: name.to_owned(),
            kind,
            versions,
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            deletion_allowed: false,
            exportable,
            allow_plaintext_backup: false,
            derived,
            convergent_encryption,
            auto_rotate_period,
        })
    }

    /// Vault's `GET transit/keys/<name>`.
    pub(super) fn info(&self) -> Value {
        let keys: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| {
                let entry = match v.public_key(self.kind) {
                    Some(pk) => json!({
                        "public_key": pk,
                        "creation_time": v.creation_time,
                        "name": match self.kind {
                            KeyType::Ed25519 => "ed25519",
                            KeyType::EcdsaP256 => "P-256",
                            _ => "rsa",
                        },
                    }),
                    None => json!(
                        time::OffsetDateTime::parse(
                            &v.creation_time,
                            &time::format_description::well_known::Rfc3339
                        )
                        .map_or(0, |t| t.unix_timestamp())
                    ),
                };
                (n.to_string(), entry)
            })
            .collect();
        json!({
            "name": self.name,
            "type": self.kind.name(),
            "keys": keys,
            "latest_version": self.latest_version,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "min_available_version": self.min_available_version,
            "deletion_allowed": self.deletion_allowed,
            "exportable": self.exportable,
            "allow_plaintext_backup": self.allow_plaintext_backup,
            "derived": self.derived,
            "convergent_encryption": self.convergent_encryption,
            "kdf": if self.derived { "hkdf_sha256" } else { "" },
            "auto_rotate_period": self.auto_rotate_period,
            "supports_encryption": self.kind.encrypts(),
            "supports_decryption": self.kind.encrypts(),
            "supports_derivation": self.kind.symmetric(),
            "supports_signing": self.kind.signs(),
            "imported_key": false,
        })
    }

    /// The version to encrypt, sign or HMAC with: `asked` (0: the latest), which must be at
    /// least `min_encryption_version`.
    pub(super) fn version_for_use(&self, asked: u64) -> Result<(u64, &KeyVersion), CoreError> {
        let n = if asked == 0 {
            self.latest_version
        } else {
            asked
        };
        if n < self.min_encryption_version.max(1) || n > self.latest_version {
            return Err(CoreError::bad(format!(
                "key version {n} cannot be used: versions {}..={} can",
                self.min_encryption_version.max(1),
                self.latest_version
            )));
        }
        let v = self
            .versions
            .get(&n)
            .ok_or_else(|| CoreError::bad(format!("key version {n} has been trimmed")))?;
        Ok((n, v))
    }

    /// The version a ciphertext or signature names, if it may still be used to decrypt or
    /// verify.
    pub(super) fn version_for_decryption(&self, n: u64) -> Result<&KeyVersion, CoreError> {
        if n < self.min_decryption_version.max(1) {
            return Err(CoreError::bad(format!(
                "key version {n} is below min_decryption_version {}",
                self.min_decryption_version
            )));
        }
        self.versions
            .get(&n)
            .ok_or_else(|| CoreError::bad(format!("key version {n} does not exist")))
    }
}

/// `sigil:v<N>:<base64>`.
pub(super) fn armor(version: u64, bytes: &[u8]) -> String {
    format!("sigil:v{version}:{}", B64.encode(bytes))
}

/// A JWS-marshalled signature: `sigil:v<N>:<base64url, no padding>`, as Vault.
pub(super) fn armor_jws(version: u64, bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("sigil:v{version}:{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Splits `sigil:v<N>:<base64>` (`jws`: base64url without padding).
pub(super) fn unarmor(text: &str, jws: bool) -> Result<(u64, Vec<u8>), CoreError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bad = || CoreError::bad("expected sigil:v<version>:<base64>");
    let rest = text.strip_prefix("sigil:v").ok_or_else(bad)?;
    let (n, b64) = rest.split_once(':').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let bytes = if jws {
        URL_SAFE_NO_PAD.decode(b64)
    } else {
        B64.decode(b64)
    }
    .map_err(|_| bad())?;
    Ok((n, bytes))
}

/// The key to use: the version's own, or (derived keys) HKDF-SHA256 of it with `context` as
/// the info, which must then be given.
fn working_key(
    key: &TransitKey,
    version: &KeyVersion,
    context: Option<&[u8]>,
) -> Result<Zeroizing<[u8; 32]>, CoreError> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (key.derived, context) {
        (false, None) => out.copy_from_slice(&version.material[..32]),
        (false, Some(_)) => {
            return Err(CoreError::bad(
                "context is only for keys created with derived=true",
            ));
        }
        (true, None) => return Err(CoreError::bad("this key is derived: context is required")),
        (true, Some(ctx)) => return derive(&version.material, ctx),
    }
    Ok(out)
}

/// HKDF-SHA256 of `secret`, no salt, `context` as the info: 32 bytes.
fn derive(secret: &[u8], context: &[u8]) -> Result<Zeroizing<[u8; 32]>, CoreError> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(secret)
        .expand(&[context], Len)
        .and_then(|okm| okm.fill(&mut out[..]))
        .map_err(|_| CoreError::Internal("key derivation failed"))?;
    Ok(out)
}

fn aead_key(kind: KeyType, key: &[u8; 32]) -> Result<aead::LessSafeKey, CoreError> {
    let alg = match kind {
        KeyType::Aes256Gcm96 => &aead::AES_256_GCM,
        KeyType::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        _ => return Err(CoreError::bad("this key type does not encrypt")),
    };
    let unbound =
        aead::UnboundKey::new(alg, key).map_err(|_| CoreError::bad("invalid key material"))?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Encrypts with `version` of `key`: AEADs give `nonce ‖ ciphertext ‖ tag` (the nonce is
/// random, or for convergent keys the first 12 bytes of HMAC-SHA256(derived key, plaintext)),
/// RSA keys OAEP with SHA-256.
pub(super) fn encrypt(
    key: &TransitKey,
    version: &KeyVersion,
    plaintext: &[u8],
    context: Option<&[u8]>,
) -> Result<Vec<u8>, CoreError> {
    if key.kind.rsa() {
        if context.is_some() {
            return Err(CoreError::bad("RSA keys take no context"));
        }
        let private = rsa::PrivateDecryptingKey::from_pkcs8(&version.material)
            .map_err(|_| CoreError::Integrity)?;
        let public = rsa::OaepPublicEncryptingKey::new(private.public_key())
            .map_err(|_| CoreError::Integrity)?;
        if plaintext.len() > public.max_plaintext_size(&rsa::OAEP_SHA256_MGF1SHA256) {
            return Err(CoreError::bad("plaintext too long for this RSA key"));
        }
        let mut out = vec![0u8; public.ciphertext_size()];
        let n = public
            .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| CoreError::bad("RSA encryption failed"))?
            .len();
        out.truncate(n);
        return Ok(out);
    }
    let k = working_key(key, version, context)?;
    let sealing = aead_key(key.kind, &k)?;
    let mut nonce = [0u8; 12];
    if key.convergent_encryption {
        // The nonce comes from an HMAC under a key of its own (the version's HMAC key, derived
        // for the context), never the encryption key itself.
        let nonce_key = derive(&version.hmac_key, context.unwrap_or_default())?;
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &nonce_key[..]),
            plaintext,
        );
        nonce.copy_from_slice(&tag.as_ref()[..12]);
    } else {
        sigil_crypto::random::fill(&mut nonce).map_err(|_| rng_failed())?;
    }
    let mut buf = plaintext.to_vec();
    sealing
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut buf,
        )
        .map_err(|_| CoreError::Internal("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Reverses [`encrypt`]; fails (400) on a wrong context or tampered ciphertext.
pub(super) fn decrypt(
    key: &TransitKey,
    version: &KeyVersion,
    ciphertext: &[u8],
    context: Option<&[u8]>,
) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let failed = || CoreError::bad("cipher: message authentication failed");
    if key.kind.rsa() {
        let private = rsa::PrivateDecryptingKey::from_pkcs8(&version.material)
            .map_err(|_| CoreError::Integrity)?;
        let private =
            rsa::OaepPrivateDecryptingKey::new(private).map_err(|_| CoreError::Integrity)?;
        let mut out = Zeroizing::new(vec![0u8; private.min_output_size()]);
        let n = private
            .decrypt(&rsa::OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| failed())?
            .len();
        out.truncate(n);
        return Ok(out);
    }
    let k = working_key(key, version, context)?;
    let opening = aead_key(key.kind, &k)?;
    if ciphertext.len() < 12 + 16 {
        return Err(failed());
    }
    let (nonce, ct) = ciphertext.split_at(12);
    let mut buf = Zeroizing::new(ct.to_vec());
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
    let n = opening
        .open_in_place(nonce, aead::Aad::empty(), &mut buf)
        .map_err(|_| failed())?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// A signature's hash and encoding options (Vault's `hash_algorithm`, `signature_algorithm`,
/// `marshaling_algorithm`, `prehashed`).
pub(super) struct SignOptions<'a> {
    pub(super) hash: &'a str,
    pub(super) rsa_scheme: &'a str,
    pub(super) jws: bool,
    /// `input` is already the digest (of `hash`'s length).
    pub(super) prehashed: bool,
}

/// The digest an ECDSA or RSA signature covers: `input` hashed, or `input` itself when it was
/// hashed by the caller.
fn digest_for(input: &[u8], opts: &SignOptions<'_>) -> Result<digest::Digest, CoreError> {
    let alg = match opts.hash {
        "sha2-256" => &digest::SHA256,
        "sha2-384" => &digest::SHA384,
        "sha2-512" => &digest::SHA512,
        _ => {
            return Err(CoreError::bad(
                "hash_algorithm must be sha2-256, sha2-384 or sha2-512",
            ));
        }
    };
    if !opts.prehashed {
        return Ok(digest::digest(alg, input));
    }
    digest::Digest::import_less_safe(input, alg).map_err(|_| {
        CoreError::bad(format!(
            "a prehashed {} input is {} bytes, not {}",
            opts.hash,
            alg.output_len,
            input.len()
        ))
    })
}

/// The RSA padding for `opts`.
fn rsa_padding(opts: &SignOptions<'_>) -> Result<&'static dyn signature::RsaEncoding, CoreError> {
    Ok(match (opts.rsa_scheme, opts.hash) {
        ("pss", "sha2-256") => &signature::RSA_PSS_SHA256,
        ("pss", "sha2-384") => &signature::RSA_PSS_SHA384,
        ("pss", "sha2-512") => &signature::RSA_PSS_SHA512,
        ("pkcs1v15", "sha2-256") => &signature::RSA_PKCS1_SHA256,
        ("pkcs1v15", "sha2-384") => &signature::RSA_PKCS1_SHA384,
        ("pkcs1v15", "sha2-512") => &signature::RSA_PKCS1_SHA512,
        _ => {
            return Err(CoreError::bad(
                "RSA signs with signature_algorithm pss or pkcs1v15 and hash_algorithm \
                 sha2-256, sha2-384 or sha2-512",
            ));
        }
    })
}

fn ecdsa_checks(opts: &SignOptions<'_>) -> Result<(), CoreError> {
    if opts.hash != "sha2-256" {
        return Err(CoreError::bad(
            "ecdsa-p256 signs with hash_algorithm sha2-256",
        ));
    }
    Ok(())
}

fn ed25519_checks(opts: &SignOptions<'_>) -> Result<(), CoreError> {
    if opts.prehashed {
        return Err(CoreError::bad(
            "ed25519 signs the input itself: prehashed is not available",
        ));
    }
    Ok(())
}

/// Signs `input` with `version`.
pub(super) fn sign(
    key: &TransitKey,
    version: &KeyVersion,
    input: &[u8],
    opts: &SignOptions<'_>,
) -> Result<Vec<u8>, CoreError> {
    let failed = |_| CoreError::Internal("signing failed");
    match key.kind {
        KeyType::Ed25519 => {
            ed25519_checks(opts)?;
            let pair =
                Ed25519KeyPair::from_pkcs8(&version.material).map_err(|_| CoreError::Integrity)?;
            Ok(pair.sign(input).as_ref().to_vec())
        }
        KeyType::EcdsaP256 => {
            ecdsa_checks(opts)?;
            let digest = digest_for(input, opts)?;
            let alg = if opts.jws {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING
            };
            let pair = EcdsaKeyPair::from_pkcs8(alg, &version.material)
                .map_err(|_| CoreError::Integrity)?;
            Ok(pair.sign_digest(&digest).map_err(failed)?.as_ref().to_vec())
        }
        k if k.rsa() => {
            let padding = rsa_padding(opts)?;
            let digest = digest_for(input, opts)?;
            let pair =
                rsa::KeyPair::from_pkcs8(&version.material).map_err(|_| CoreError::Integrity)?;
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign_digest(padding, &digest, &mut sig)
                .map_err(failed)?;
            Ok(sig)
        }
        _ => Err(CoreError::bad("this key type does not sign")),
    }
}

/// Verifies `sig` over `input` with `version`'s public key.
pub(super) fn verify(
    key: &TransitKey,
    version: &KeyVersion,
    input: &[u8],
    sig: &[u8],
    opts: &SignOptions<'_>,
) -> Result<bool, CoreError> {
    let public = |alg: &'static dyn signature::VerificationAlgorithm, bytes: &[u8]| {
        signature::UnparsedPublicKey::new(alg, bytes.to_vec())
    };
    match key.kind {
        KeyType::Ed25519 => {
            ed25519_checks(opts)?;
            let pair =
                Ed25519KeyPair::from_pkcs8(&version.material).map_err(|_| CoreError::Integrity)?;
            Ok(public(&signature::ED25519, pair.public_key().as_ref())
                .verify(input, sig)
                .is_ok())
        }
        KeyType::EcdsaP256 => {
            ecdsa_checks(opts)?;
            let digest = digest_for(input, opts)?;
            let pair = EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &version.material,
            )
            .map_err(|_| CoreError::Integrity)?;
            let alg: &'static dyn signature::VerificationAlgorithm = if opts.jws {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P256_SHA256_ASN1
            };
            Ok(public(alg, pair.public_key().as_ref())
                .verify_digest(&digest, sig)
                .is_ok())
        }
        k if k.rsa() => {
            rsa_padding(opts)?;
            let digest = digest_for(input, opts)?;
            let pair =
                rsa::KeyPair::from_pkcs8(&version.material).map_err(|_| CoreError::Integrity)?;
            let alg: &'static dyn signature::VerificationAlgorithm =
                match (opts.rsa_scheme, opts.hash) {
                    ("pss", "sha2-256") => &signature::RSA_PSS_2048_8192_SHA256,
                    ("pss", "sha2-384") => &signature::RSA_PSS_2048_8192_SHA384,
                    ("pss", "sha2-512") => &signature::RSA_PSS_2048_8192_SHA512,
                    ("pkcs1v15", "sha2-256") => &signature::RSA_PKCS1_2048_8192_SHA256,
                    ("pkcs1v15", "sha2-384") => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
            Ok(public(alg, pair.public_key().as_ref())
                .verify_digest(&digest, sig)
                .is_ok())
        }
        _ => Err(CoreError::bad("this key type does not verify signatures")),
    }
}

/// HMAC of `input` with `version`'s HMAC key (`hmac` keys: the key itself).
pub(super) fn hmac_of(
    key: &TransitKey,
    version: &KeyVersion,
    input: &[u8],
    algorithm: &str,
) -> Result<Vec<u8>, CoreError> {
    let alg = match algorithm {
        "sha2-256" => hmac::HMAC_SHA256,
        "sha2-384" => hmac::HMAC_SHA384,
        "sha2-512" => hmac::HMAC_SHA512,
        _ => {
            return Err(CoreError::bad(
                "algorithm must be sha2-256, sha2-384 or sha2-512",
            ));
        }
    };
    let secret = if key.kind == KeyType::Hmac {
        &version.material
    } else {
        &version.hmac_key
    };
    Ok(hmac::sign(&hmac::Key::new(alg, secret), input)
        .as_ref()
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: KeyType, derived: bool, convergent: bool) -> TransitKey {
        TransitKey::new("k", kind, derived, convergent, false, 0).unwrap()
    }

    #[test]
    fn armor_round_trips_and_refuses_other_shapes() {
        let bytes = [0u8, 255, 7, 42];
        assert_eq!(
            unarmor(&armor(3, &bytes), false).unwrap(),
            (3, bytes.to_vec())
        );
        assert_eq!(
            unarmor(&armor_jws(9, &bytes), true).unwrap(),
            (9, bytes.to_vec())
        );
        for bad in [
            "vault:v1:AAAA",
            "sigil:v:AAAA",
            "sigil:vx:AAAA",
            "sigil:v1",
            "sigil:v1:not base64!",
            "",
        ] {
            assert!(unarmor(bad, false).is_err(), "{bad:?}");
        }
    }

    /// AEAD ciphertexts open only unchanged, with the right context for derived keys; a
    /// convergent key gives the same ciphertext for the same plaintext and context only.
    #[test]
    fn encryption_fails_closed_on_tampering_and_wrong_context() {
        for kind in [KeyType::Aes256Gcm96, KeyType::ChaCha20Poly1305] {
            let k = key(kind, false, false);
            let v = &k.versions[&1];
            let c = encrypt(&k, v, b"data", None).unwrap();
            assert_eq!(&*decrypt(&k, v, &c, None).unwrap(), b"data");
            assert_ne!(c, encrypt(&k, v, b"data", None).unwrap(), "random nonces");
            let mut tampered = c.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert!(decrypt(&k, v, &tampered, None).is_err());
            assert!(
                encrypt(&k, v, b"data", Some(b"ctx")).is_err(),
                "not derived"
            );

            let d = key(kind, true, false);
            let dv = &d.versions[&1];
            assert!(encrypt(&d, dv, b"data", None).is_err(), "context required");
            let c = encrypt(&d, dv, b"data", Some(b"tenant-a")).unwrap();
            assert!(decrypt(&d, dv, &c, Some(b"tenant-b")).is_err());
            assert_eq!(&*decrypt(&d, dv, &c, Some(b"tenant-a")).unwrap(), b"data");

            let cv = key(kind, true, true);
            let cvv = &cv.versions[&1];
            let one = encrypt(&cv, cvv, b"data", Some(b"a")).unwrap();
            assert_eq!(one, encrypt(&cv, cvv, b"data", Some(b"a")).unwrap());
            assert_ne!(one, encrypt(&cv, cvv, b"other", Some(b"a")).unwrap());
            assert_ne!(one, encrypt(&cv, cvv, b"data", Some(b"b")).unwrap());
        }
    }

    /// What a key signs verifies with it, and not after a change to the input or the
    /// signature; a key type that does not sign refuses.
    #[test]
    fn signatures_verify_only_unchanged() {
        let opts = SignOptions {
            hash: "sha2-256",
            rsa_scheme: "pss",
            jws: false,
            prehashed: false,
        };
        for kind in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa2048] {
            let k = key(kind, false, false);
            let v = &k.versions[&1];
            let sig = sign(&k, v, b"message", &opts).unwrap();
            assert!(verify(&k, v, b"message", &sig, &opts).unwrap(), "{kind:?}");
            assert!(!verify(&k, v, b"messagE", &sig, &opts).unwrap(), "{kind:?}");
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(
                !verify(&k, v, b"message", &bad, &opts).unwrap_or(false),
                "{kind:?}"
            );
        }
        let aes = key(KeyType::Aes256Gcm96, false, false);
        assert!(sign(&aes, &aes.versions[&1], b"m", &opts).is_err());
    }
}
