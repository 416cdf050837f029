//! Client-side encryption (docs/e2e.md): end-to-end secrets and one-time wraps. Data is
//! encrypted here, to the recipients' keys, as an age v1 file, and signed by the writer; the
//! server stores it and never sees the plaintext. Every key the server hands out is checked
//! against this client's trust anchors before anything is encrypted to it, and every signature
//! is checked before anything is decrypted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sigil_crypto::{KeyId, PublicIdentity, age, b64url_decode, b64url_encode};
pub use sigil_proto::e2e::Certification;
use sigil_proto::e2e::{Author, E2eSlot, SealedSecret, WrapRequest, wrap_statement};
use zeroize::Zeroizing;

use crate::{ApiResponse, Client, ClientError};

/// What this client trusts (`SIGIL_TRUST` and its own key). A *pinned* key (the whole
/// `sigil1…`: signing and encryption halves) is accepted as a recipient as is; an *anchor*
/// (a keyid, or a pinned key's) vouches for other keys by certifying them and is accepted as
/// an author. A keyid alone never makes an encryption key acceptable: it names only the
/// signing half.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    anchors: Vec<KeyId>,
    pinned: Vec<PublicIdentity>,
}

/// The content type of a wrap made from bytes (`sigil wrap`).
const WRAP_BYTES: &str = "application/octet-stream";

fn refused(msg: impl Into<String>) -> ClientError {
    ClientError::Untrusted(msg.into())
}

impl Trust {
    /// Trusts these whole keys (pinned; their keyids are anchors too) and these keyids.
    pub fn new(
        pinned: impl IntoIterator<Item = PublicIdentity>,
        anchors: impl IntoIterator<Item = KeyId>,
    ) -> Self {
        let pinned: Vec<PublicIdentity> = pinned.into_iter().collect();
        let mut anchors: Vec<KeyId> = anchors.into_iter().collect();
        anchors.extend(pinned.iter().map(PublicIdentity::keyid));
        Trust { anchors, pinned }
    }

    /// Trusts `me` and what `items` name: a `sigil1…` key is pinned, anything else must be a
    /// keyid and is an anchor (`SIGIL_TRUST`, the agent's `[wrapping] trust`). Blank items are
    /// skipped.
    pub fn parse<'a>(
        me: &PublicIdentity,
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ClientError> {
        let mut pinned = vec![me.clone()];
        let mut anchors = Vec::new();
        for t in items.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            if t.starts_with("sigil1") {
                pinned.push(PublicIdentity::parse(t).map_err(|_| {
                    ClientError::Config(format!("trust: {t:?} is not a sigil1 key"))
                })?);
            } else {
                anchors.push(
                    KeyId::parse(t).ok_or_else(|| {
                        ClientError::Config(format!("trust: {t:?} is not a keyid"))
                    })?,
                );
            }
        }
        Ok(Trust::new(pinned, anchors))
    }

    fn anchored(&self, key: &PublicIdentity) -> bool {
        let id = key.keyid();
        self.anchors.iter().any(|a| a == &id)
    }

    /// Accepts `public` as `name`'s key if it is pinned as a whole, or certified for `name` by
    /// an anchor.
    pub fn check_identity(
        &self,
        name: &str,
        public: &PublicIdentity,
        certification: Option<&Certification>,
    ) -> Result<(), ClientError> {
        if self.pinned.contains(public) {
            return Ok(());
        }
        let Some(cert) = certification else {
            return Err(refused(format!(
                "identity {name:?} has no certification: an admin must certify its key \
                 (`sigil identity certify {name} --public-key …`) before data is encrypted to it"
            )));
        };
        let certifier = cert.verify(name, public).map_err(|_| {
            refused(format!(
                "the certification of identity {name:?} does not match its key: the server may \
                 have substituted the key; refusing"
            ))
        })?;
        if !self.anchored(&certifier) {
            return Err(refused(format!(
                "identity {name:?} is certified by {}, which is not in SIGIL_TRUST",
                certifier.keyid()
            )));
        }
        Ok(())
    }

    /// Accepts `signer` as the author of client-encrypted data; returns how to name it. A
    /// name is shown as checked only when a certification binds it to the key; an anchor's
    /// name comes from the server and is labelled so.
    pub fn check_author(
        &self,
        signer: &PublicIdentity,
        author: Option<&Author>,
    ) -> Result<String, ClientError> {
        let name = author.map_or("", |a| a.name.as_str());
        let certification = author.and_then(|a| a.certification.as_ref());
        // Authorship is a signature, made with the signing half the keyid names.
        if self.anchored(signer) && certification.is_none_or(|c| c.verify(name, signer).is_err()) {
            return Ok(format!(
                "{} (a trust anchor; the server calls it {name:?})",
                signer.keyid()
            ));
        }
        self.check_identity(name, signer, certification)
            .map_err(|_| {
                refused(format!(
                    "written by key {} ({name:?}), which is neither in SIGIL_TRUST nor certified \
                 by a key that is; refusing to trust it",
                    signer.keyid()
                ))
            })?;
        Ok(format!("{name} ({})", signer.keyid()))
    }
}

/// A checked recipient: how the writer named it, and its key.
#[derive(Clone, Debug)]
pub struct Recipient {
    /// `alice`, `group:ops/bob`, or the `sigil1…` key itself.
    pub label: String,
    /// The key.
    pub key: PublicIdentity,
}

/// An opened end-to-end secret.
pub struct OpenedSecret {
    /// The key/value data.
    pub data: Zeroizing<Vec<u8>>,
    /// Who wrote it (checked).
    pub author: String,
    /// Who it was encrypted to, as the writer named them.
    pub recipients: Vec<String>,
    /// The version's metadata (Vault's shape).
    pub metadata: Value,
}

impl std::fmt::Debug for OpenedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSecret")
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

/// An opened wrap.
pub struct Unwrapped {
    /// The wrapped bytes (a wrapped response: Vault's JSON).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// `application/octet-stream` (from `sigil wrap`) or `application/json` (a response).
    pub content_type: String,
    /// Who sent it (checked).
    pub sender: String,
}

impl std::fmt::Debug for Unwrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwrapped")
            .field("content_type", &self.content_type)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, ClientError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Response(format!("missing {name}")))
}

impl Client {
    /// This client's public key.
    pub fn public(&self) -> Result<PublicIdentity, ClientError> {
        Ok(self.key()?.public())
    }

    /// The `data` of a response.
    async fn data_of(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let resp = self.request(method, path, body).await?;
        resp.body
            .and_then(|mut b| b.get_mut("data").map(Value::take))
            .ok_or_else(|| ClientError::Response(format!("{path}: no data")))
    }

    async fn certified(
        &self,
        name: &str,
        label: String,
        trust: &Trust,
    ) -> Result<Recipient, ClientError> {
        let entity = self
            .data_of("GET", &format!("identity/entity/name/{name}"), None)
            .await?;
        let key = PublicIdentity::parse(field(&entity, "public_key")?)
            .map_err(|e| ClientError::Response(e.to_string()))?;
        let cert: Option<Certification> = match entity.get("certification") {
            None | Some(Value::Null) => None,
            Some(c) => Some(
                serde_json::from_value(c.clone())
                    .map_err(|e| ClientError::Response(format!("certification: {e}")))?,
            ),
        };
        trust.check_identity(name, &key, cert.as_ref())?;
        Ok(Recipient { label, key })
    }

    /// Resolves `--to` values: `sigil1…` keys (taken as given), identity names and
    /// `group:NAME` (each member), every identity key checked against `trust`.
    pub async fn resolve_recipients(
        &self,
        to: &[String],
        trust: &Trust,
    ) -> Result<Vec<Recipient>, ClientError> {
        let mut out: Vec<Recipient> = Vec::new();
        for t in to {
            if t.starts_with("sigil1") {
                let key = PublicIdentity::parse(t)
                    .map_err(|e| ClientError::Config(format!("recipient {t:?}: {e}")))?;
                out.push(Recipient {
                    label: t.clone(),
                    key,
                });
            } else if let Some(group) = t.strip_prefix("group:") {
                let g = self
                    .data_of("GET", &format!("identity/group/name/{group}"), None)
                    .await?;
                let members: Vec<String> = g
                    .get("members")
                    .and_then(Value::as_array)
                    .map(|m| {
                        m.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if members.is_empty() {
                    return Err(ClientError::Config(format!(
                        "group {group:?} has no members"
                    )));
                }
                for m in members {
                    out.push(
                        self.certified(&m, format!("group:{group}/{m}"), trust)
                            .await?,
                    );
                }
            } else {
                out.push(self.certified(t, t.clone(), trust).await?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert(r.key.to_string()));
        Ok(out)
    }

    /// Encrypts `data` to `recipients` and the caller, signs it, and writes it as a new
    /// version of `mount/path` on an `e2e` mount.
    pub async fn e2e_put(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        recipients: &[Recipient],
        cas: Option<u64>,
    ) -> Result<ApiResponse, ClientError> {
        let me = self.key()?;
        let mut keys: Vec<[u8; 32]> = recipients.iter().map(|r| *r.key.encryption_key()).collect();
        keys.push(*me.public().encryption_key());
        keys.sort_unstable();
        keys.dedup();
        let plain = Zeroizing::new(serde_json::to_vec(data).expect("JSON serializes"));
        let envelope =
            age::encrypt(&keys, &plain).map_err(|e| ClientError::Config(e.to_string()))?;
        // The envelope is signed for the version it becomes, so the write is check-and-set.
        let cas = match cas {
            Some(c) => c,
            None => self.current_version(mount, path).await?,
        };
        let slot = E2eSlot {
            mount,
            path,
            version: cas + 1,
        };
        let labels = recipients.iter().map(|r| r.label.clone()).collect();
        let sealed = SealedSecret::new(me, slot, &envelope, labels);
        let body = json!({ "data": sealed, "options": { "cas": cas } });
        self.request("POST", &format!("{mount}/data/{path}"), Some(&body))
            .await
    }

    /// A secret's `current_version` (0 when it does not exist).
    async fn current_version(&self, mount: &str, path: &str) -> Result<u64, ClientError> {
        match self
            .data_of("GET", &format!("{mount}/metadata/{path}"), None)
            .await
        {
            Ok(meta) => meta
                .get("current_version")
                .and_then(Value::as_u64)
                .ok_or_else(|| ClientError::Response("metadata without current_version".into())),
            Err(ClientError::Api { status: 404, .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Reads a version of `mount/path` (latest when `version` is `None`), checks the writer's
    /// signature and trust, and decrypts it with the caller's key.
    pub async fn e2e_get(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
        trust: &Trust,
    ) -> Result<OpenedSecret, ClientError> {
        let version_asked = version;
        let query = version.map_or(String::new(), |v| format!("?version={v}"));
        let mut data = self
            .data_of("GET", &format!("{mount}/data/{path}{query}"), None)
            .await?;
        let metadata = data
            .get_mut("metadata")
            .map(Value::take)
            .unwrap_or_default();
        let sealed: SealedSecret =
            serde_json::from_value(data.get_mut("data").map(Value::take).unwrap_or_default())
                .map_err(|_| {
                    ClientError::Response(format!("{mount}/{path} is not an end-to-end secret"))
                })?;
        let version = metadata
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| ClientError::Response("no version in the metadata".into()))?;
        if let Some(asked) = version_asked.filter(|v| *v != version) {
            return Err(refused(format!("asked for version {asked}, got {version}")));
        }
        let slot = E2eSlot {
            mount,
            path,
            version,
        };
        let (envelope, signer) = sealed.verify(slot).map_err(|_| {
            refused(format!(
                "the signature of {mount}/{path} version {version} does not verify: it was \
                 altered, or moved from another path or version"
            ))
        })?;
        let author = trust.check_author(&signer, sealed.author.as_ref())?;
        let plain = age::decrypt(self.key()?.encryption_key(), &envelope)
            .map_err(|_| refused(format!("{mount}/{path} is not encrypted to your key")))?;
        Ok(OpenedSecret {
            data: plain,
            author,
            recipients: sealed.recipients,
            metadata,
        })
    }

    /// Encrypts `plaintext` to `to`, signs it and stores it as a one-time wrap; returns the
    /// wrap's info (`id`, `expiration_time`, …).
    pub async fn wrap(
        &self,
        to: &Recipient,
        plaintext: &[u8],
        ttl: Option<&str>,
    ) -> Result<Value, ClientError> {
        let me = self.key()?;
        let envelope = age::encrypt(&[*to.key.encryption_key()], plaintext)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let keyid = to.key.keyid();
        // The id is ours and signed, so the server cannot replay the envelope under another.
        let id = sigil_crypto::random::hex_id().map_err(|e| ClientError::Config(e.to_string()))?;
        let statement = wrap_statement(&id, &keyid, WRAP_BYTES, &envelope);
        let request = WrapRequest {
            id,
            to: keyid.to_string(),
            envelope: STANDARD.encode(&envelope),
            signature: b64url_encode(&me.sign(&statement)),
            ttl: ttl.map(|t| Value::String(t.to_owned())),
        };
        let body = serde_json::to_value(request).expect("wrap serializes");
        self.data_of("POST", "sys/wrapping/wrap", Some(&body)).await
    }

    /// Checks that `trust` accepts the sender of wrap `id`, from its lookup, without
    /// consuming it: an untrusted sender is refused while the wrap is still there. (The server
    /// could lie here; [`Client::open_wrap`] checks the fetched wrap again.)
    pub async fn check_wrap_sender(&self, id: &str, trust: &Trust) -> Result<(), ClientError> {
        let info = self.wrap_status(id).await?;
        let sender = PublicIdentity::parse(field(&info, "sender_key")?)
            .map_err(|e| ClientError::Response(e.to_string()))?;
        if sender.keyid() == self.server_key().await?.keyid() {
            return Ok(());
        }
        let author: Option<Author> = match info.get("author") {
            None | Some(Value::Null) => None,
            Some(a) => serde_json::from_value(a.clone()).ok(),
        };
        trust.check_author(&sender, author.as_ref()).map(|_| ())
    }

    /// Fetches wrap `id`: its signed envelope, once (the server keeps only a tombstone).
    pub async fn fetch_wrap(&self, id: &str) -> Result<Value, ClientError> {
        self.data_of("POST", "sys/wrapping/unwrap", Some(&wrap_id(id)))
            .await
    }

    /// Checks the sender's signature and trust on a fetched wrap `w` and decrypts it. A
    /// wrapped response is signed by the server, whose key is pinned.
    pub async fn open_wrap(
        &self,
        id: &str,
        w: &Value,
        trust: &Trust,
    ) -> Result<Unwrapped, ClientError> {
        let me = self.key()?;
        let envelope = STANDARD
            .decode(field(w, "envelope")?)
            .map_err(|_| ClientError::Response("envelope is not base64".into()))?;
        let signature = b64url_decode(field(w, "signature")?)
            .map_err(|_| ClientError::Response("signature is not base64url".into()))?;
        let sender = PublicIdentity::parse(field(w, "sender")?)
            .map_err(|e| ClientError::Response(e.to_string()))?;
        if field(w, "id")? != id {
            return Err(refused("the server answered with another wrap"));
        }
        let content_type = field(w, "content_type")?.to_owned();
        sender
            .verify(
                &wrap_statement(id, &me.public().keyid(), &content_type, &envelope),
                &signature,
            )
            .map_err(|_| refused("the wrap's signature does not verify: it was altered"))?;
        let server = self.server_key().await?;
        let sender_name = if sender.keyid() == server.keyid() {
            format!("the server ({})", sender.keyid())
        } else {
            let author: Option<Author> = match w.get("author") {
                None | Some(Value::Null) => None,
                Some(a) => serde_json::from_value(a.clone()).ok(),
            };
            trust.check_author(&sender, author.as_ref())?
        };
        let plaintext = age::decrypt(me.encryption_key(), &envelope)
            .map_err(|_| refused("the wrap is not encrypted to your key"))?;
        Ok(Unwrapped {
            plaintext,
            content_type,
            sender: sender_name,
        })
    }

    /// Fetches wrap `id` (once), checks the sender's signature and trust, and decrypts it:
    /// [`Client::check_wrap_sender`], [`Client::fetch_wrap`] and [`Client::open_wrap`].
    pub async fn unwrap(&self, id: &str, trust: &Trust) -> Result<Unwrapped, ClientError> {
        self.check_wrap_sender(id, trust).await?;
        let w = self.fetch_wrap(id).await?;
        self.open_wrap(id, &w, trust).await
    }

    /// A wrap's status, for its sender or recipient.
    pub async fn wrap_status(&self, id: &str) -> Result<Value, ClientError> {
        self.data_of("POST", "sys/wrapping/lookup", Some(&wrap_id(id)))
            .await
    }
}

/// The body naming wrap `id` (`sys/wrapping/unwrap`, `lookup`).
fn wrap_id(id: &str) -> serde_json::Value {
    serde_json::to_value(sigil_proto::sys::WrapId { id: id.to_owned() })
        .expect("a wrap id serializes")
}

#[cfg(test)]
mod tests {
    use sigil_crypto::SecretIdentity;

    use super::*;

    #[test]
    fn only_keys_certified_by_an_anchor_for_their_name_are_accepted() {
        let admin = SecretIdentity::generate().unwrap();
        let other_admin = SecretIdentity::generate().unwrap();
        let alice = SecretIdentity::generate().unwrap().public();
        let mallory = SecretIdentity::generate().unwrap().public();
        let trust = Trust::new([], [admin.public().keyid()]);
        let cert = Certification::sign(&admin, "alice", &alice);
        assert!(trust.check_identity("alice", &alice, Some(&cert)).is_ok());
        // An anchor's keyid certifies, but does not make a key acceptable as a recipient: a
        // server could pair the anchor's signing key with its own encryption key.
        assert!(
            trust
                .check_identity("alice", &admin.public(), None)
                .is_err()
        );
        let evil = SecretIdentity::generate().unwrap().public();
        let spliced = PublicIdentity::from_parts(
            admin.public().signing_key().to_bytes(),
            *evil.encryption_key(),
        )
        .unwrap();
        assert_eq!(spliced.keyid(), admin.public().keyid());
        assert!(trust.check_identity("admin", &spliced, None).is_err());
        let pinned = Trust::new([admin.public()], []);
        assert!(
            pinned
                .check_identity("admin", &admin.public(), None)
                .is_ok()
        );
        assert!(
            pinned.check_identity("admin", &spliced, None).is_err(),
            "a spliced key is refused"
        );
        // A server that substitutes the key (keeping alice's certification) is caught.
        assert!(
            trust
                .check_identity("alice", &mallory, Some(&cert))
                .is_err()
        );
        // Or renames the certified key.
        assert!(trust.check_identity("bob", &alice, Some(&cert)).is_err());
        assert!(trust.check_identity("alice", &alice, None).is_err());
        let elsewhere = Certification::sign(&other_admin, "alice", &alice);
        assert!(
            trust
                .check_identity("alice", &alice, Some(&elsewhere))
                .is_err()
        );
        let author = Author {
            name: "alice".into(),
            certification: Some(cert),
        };
        assert_eq!(
            trust.check_author(&alice, Some(&author)).unwrap(),
            format!("alice ({})", alice.keyid())
        );
        assert!(trust.check_author(&mallory, Some(&author)).is_err());
    }
}
