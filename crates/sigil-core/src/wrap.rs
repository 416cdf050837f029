//! One-time wraps (`sys/wrapping/…`, docs/e2e.md). A wrap is an age envelope encrypted on
//! the sender's side to one recipient's key and signed by the sender; the server stores it
//! until the recipient fetches it once. Fetching replaces it, in one compare-and-set, with a
//! tombstone "consumed at T by keyid K" that the sender and the recipient can look up: a wrap
//! taken by someone else is detected, and a stolen wrap id is useless without the recipient's
//! key. Unconsumed wraps lose their envelope when they expire; tombstones go a day later.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{KeyId, PublicIdentity, SecretIdentity, age, b64url_decode, b64url_encode};
use sigil_proto::e2e::{Author, WrapRequest, wrap_statement};
use time::OffsetDateTime;

use crate::barrier::{View, ViewBatch};
use crate::identity::Caller;
use crate::{CoreError, Operation, Request, Response, duration};

/// Default time to live (Vault's default wrap TTL).
const DEFAULT_TTL: u64 = 300;
/// Longest time to live.
const MAX_TTL: u64 = 30 * 24 * 3600;
/// How long a tombstone outlives the wrap's expiry.
const TOMBSTONE_RETENTION: i64 = 24 * 3600;
/// Distinct identities whose refused fetches are remembered per wrap (all are counted).
const MAX_REFUSALS: usize = 16;

/// `content_type` of a wrap made by `sigil wrap` (bytes) and of a wrapped response (JSON).
const BYTES: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Fetches refused to one identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Refusal {
    keyid: String,
    first: String,
    last: String,
    count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WrapRecord {
    id: String,
    /// The sender's `sigil1…` key (the server's own for a wrapped response).
    sender: String,
    sender_keyid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<Author>,
    recipient: String,
    content_type: String,
    creation_time: String,
    creation_path: String,
    /// Unix seconds.
    expires: i64,
    /// Present until the wrap is consumed or expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envelope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumed_by: Option<String>,
    #[serde(default)]
    refused: Vec<Refusal>,
    /// Every refused fetch, including those of identities past [`MAX_REFUSALS`].
    #[serde(default)]
    refused_total: u64,
    /// For a wrapped response: the keyid of the caller who asked for it (it may look it up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
}

impl WrapRecord {
    fn status(&self, now: i64) -> &'static str {
        if self.consumed_at.is_some() {
            "consumed"
        } else if now >= self.expires || self.envelope.is_none() {
            "expired"
        } else {
            "pending"
        }
    }

    fn info(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "sender": self.sender_keyid,
            "sender_name": self.author.as_ref().map(|a| a.name.clone()),
            // The whole key and the author's certification, so that a recipient can decide
            // whether it trusts the sender before it consumes the wrap.
            "sender_key": self.sender,
            "author": self.author,
            "recipient": self.recipient,
            "creation_time": self.creation_time,
            "creation_path": self.creation_path,
            "expiration_time": rfc3339(self.expires),
            "ttl": (self.expires - now).max(0),
            "status": self.status(now),
            "consumed_at": self.consumed_at,
            "consumed_by": self.consumed_by,
            "refused": self.refused.iter().map(|r| json!({ "keyid": r.keyid, "first": r.first, "last": r.last, "count": r.count })).collect::<Vec<_>>(),
            "refused_total": self.refused_total,
            "requested_by": self.requested_by,
        })
    }

    /// Records a fetch refused to `keyid`.
    fn refuse(&mut self, keyid: &str) {
        let now = crate::timefmt::now_rfc3339();
        self.refused_total += 1;
        if let Some(r) = self.refused.iter_mut().find(|r| r.keyid == keyid) {
            r.count += 1;
            r.last = now;
        } else if self.refused.len() < MAX_REFUSALS {
            self.refused.push(Refusal {
                keyid: keyid.to_owned(),
                first: now.clone(),
                last: now,
                count: 1,
            });
        }
    }

    /// Who may look it up: the sender, the recipient, and who asked for a wrapped response.
    fn visible_to(&self, keyid: &str) -> bool {
        keyid == self.recipient
            || keyid == self.sender_keyid
            || self.requested_by.as_deref() == Some(keyid)
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Where a wrap is stored: a hash of its id (ids never appear in storage keys).
fn storage_key(id: &str) -> String {
    sigil_crypto::hex(&Sha256::digest(id.as_bytes()))
}

fn gone(id: &str) -> CoreError {
    CoreError::NotFound(format!("no wrap {id:?}: unknown, or expired and purged"))
}

/// A wrap id: 32 lower-case hex digits.
fn check_id(id: &str) -> Result<(), CoreError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(CoreError::bad("a wrap id is 32 lower-case hex digits"))
    }
}

fn id_of(req: &Request) -> Result<String, CoreError> {
    let id = req
        .data
        .as_ref()
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| CoreError::bad("expected {\"id\": \"<wrap id>\"}"))?;
    check_id(id)?;
    Ok(id.to_owned())
}

/// Parses a response-wrapping TTL (`wrap_ttl`), so a bad one is refused before the request runs.
pub(crate) fn response_ttl(ttl: Option<&str>) -> Result<u64, CoreError> {
    ttl_of(ttl.map(|t| Value::String(t.to_owned())).as_ref())
}

fn ttl_of(value: Option<&Value>) -> Result<u64, CoreError> {
    let ttl = match value {
        None | Some(Value::Null) => DEFAULT_TTL,
        Some(v) => duration::seconds(v, "ttl")?,
    };
    if ttl == 0 || ttl > MAX_TTL {
        return Err(CoreError::bad("ttl must be between 1 second and 30 days"));
    }
    Ok(ttl)
}

pub(crate) struct WrapStore {
    view: View,
}

impl std::fmt::Debug for WrapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapStore").finish_non_exhaustive()
    }
}

impl WrapStore {
    pub(crate) fn new(view: View) -> Self {
        WrapStore { view }
    }

    fn load(&self, id: &str) -> Result<Option<(WrapRecord, crate::barrier::Entry)>, CoreError> {
        let Some(entry) = self.view.get(&storage_key(id))? else {
            return Ok(None);
        };
        let record: WrapRecord =
            serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        if record.id != id {
            return Err(CoreError::Integrity);
        }
        Ok(Some((record, entry)))
    }

    /// Stores a new wrap (its id must be unused); returns its info.
    fn create(&self, record: WrapRecord) -> Result<Response, CoreError> {
        let key = storage_key(&record.id);
        let mut batch = ViewBatch::default();
        batch.expect(&key, None);
        batch.put(&key, serde_json::to_vec(&record).expect("wrap serializes"));
        match self.view.apply(batch) {
            Ok(()) => {}
            Err(CoreError::Contended) => {
                return Err(CoreError::bad("this wrap id is already in use"));
            }
            Err(e) => return Err(e),
        }
        tracing::debug!(recipient = %record.recipient, "wrap created");
        Ok(Response::data(record.info(now_unix())))
    }

    /// `sys/wrapping/<op>` for `caller`. `policy` says whether the caller's policies allow the
    /// path: `wrap` needs it (the core checked); `unwrap` needs it only from someone other
    /// than the recipient, `lookup` only from someone other than the sender or recipient.
    pub(crate) fn handle(
        &self,
        req: &Request,
        op: &str,
        caller: &Caller,
        policy: bool,
        recipient_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Response, CoreError> {
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return Err(CoreError::UnsupportedOperation);
        }
        let party = |id: &str, recipient_only: bool| -> Result<(), CoreError> {
            let me = caller.public.keyid().to_string();
            let is_party = self.load(id)?.is_some_and(|(r, _)| {
                if recipient_only {
                    r.recipient == me
                } else {
                    r.visible_to(&me)
                }
            });
            // Without a policy, a wrap that is not the caller's and one that does not exist
            // look alike.
            if is_party || policy {
                Ok(())
            } else {
                Err(CoreError::Forbidden)
            }
        };
        match op {
            "wrap" => self.wrap(req, caller, recipient_exists),
            "unwrap" => {
                let id = id_of(req)?;
                party(&id, true)?;
                self.unwrap(&id, caller)
            }
            "lookup" => {
                let id = id_of(req)?;
                party(&id, false)?;
                self.lookup(&id, caller)
            }
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\"",
                req.path
            ))),
        }
    }

    fn wrap(
        &self,
        req: &Request,
        caller: &Caller,
        recipient_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Response, CoreError> {
        let input: WrapRequest = serde_json::from_value(req.data.clone().unwrap_or(Value::Null))
            .map_err(|_| {
                CoreError::bad(
                    "expected {\"id\": \"<32 hex digits>\", \"to\": \"<recipient keyid>\", \
                     \"envelope\": \"<age file, base64>\", \"signature\": \"…\", \"ttl\": \"5m\"}: \
                     use `sigil wrap`",
                )
            })?;
        check_id(&input.id)?;
        let to = KeyId::parse(&input.to)
            .ok_or_else(|| CoreError::bad("to must be the recipient's keyid"))?;
        if !recipient_exists(to.as_str()) {
            return Err(CoreError::bad("no enabled identity has that keyid"));
        }
        let ttl = ttl_of(input.ttl.as_ref())?;
        use base64::Engine as _;
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(&input.envelope)
            .map_err(|_| CoreError::bad("envelope must be standard base64"))?;
        if age::recipient_count(&envelope).map_err(|e| {
            CoreError::bad(format!(
                "the envelope is not an age v1 file for X25519 recipients: {e}"
            ))
        })? != 1
        {
            return Err(CoreError::bad(
                "a wrap is encrypted to exactly one recipient",
            ));
        }
        let signature = b64url_decode(&input.signature)
            .map_err(|_| CoreError::bad("signature must be base64url"))?;
        caller
            .public
            .verify(
                &wrap_statement(&input.id, &to, BYTES, &envelope),
                &signature,
            )
            .map_err(|_| {
                CoreError::bad("the signature does not verify with the sender's key (docs/e2e.md)")
            })?;
        self.create(WrapRecord {
            id: input.id,
            sender: caller.public.to_string(),
            sender_keyid: caller.public.keyid().to_string(),
            author: Some(caller.identity.author()),
            recipient: to.to_string(),
            content_type: BYTES.into(),
            creation_time: crate::timefmt::now_rfc3339(),
            creation_path: req.path.clone(),
            expires: now_unix() + ttl as i64,
            envelope: Some(input.envelope),
            signature: Some(input.signature),
            consumed_at: None,
            consumed_by: None,
            refused: vec![],
            refused_total: 0,
            requested_by: None,
        })
    }

    /// Wraps a response `body` (Vault's JSON envelope) for `recipient`, signed by the server,
    /// at the request of `requester` (a keyid).
    pub(crate) fn wrap_response(
        &self,
        server: &SecretIdentity,
        recipient: &PublicIdentity,
        requester: &str,
        ttl: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> Result<Response, CoreError> {
        let ttl = response_ttl(ttl)?;
        let envelope = age::encrypt(&[*recipient.encryption_key()], body)
            .map_err(|_| CoreError::bad("could not encrypt to the recipient's key"))?;
        let to = recipient.keyid();
        let id = new_id()?;
        let signature = server.sign(&wrap_statement(&id, &to, JSON, &envelope));
        use base64::Engine as _;
        self.create(WrapRecord {
            id,
            sender: server.public().to_string(),
            sender_keyid: server.public().keyid().to_string(),
            author: None,
            recipient: to.to_string(),
            content_type: JSON.into(),
            creation_time: crate::timefmt::now_rfc3339(),
            creation_path: path.to_owned(),
            expires: now_unix() + ttl as i64,
            envelope: Some(base64::engine::general_purpose::STANDARD.encode(&envelope)),
            signature: Some(b64url_encode(&signature)),
            consumed_at: None,
            consumed_by: None,
            refused: vec![],
            refused_total: 0,
            requested_by: Some(requester.to_owned()),
        })
    }

    /// Writes `record` over `entry`; false when another request changed it first.
    fn replace(
        &self,
        record: &WrapRecord,
        entry: &crate::barrier::Entry,
    ) -> Result<bool, CoreError> {
        let key = storage_key(&record.id);
        let mut batch = ViewBatch::default();
        batch.expect(&key, Some(entry));
        batch.put(&key, serde_json::to_vec(record).expect("wrap serializes"));
        match self.view.apply(batch) {
            Ok(()) => Ok(true),
            Err(CoreError::Contended) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn unwrap(&self, id: &str, caller: &Caller) -> Result<Response, CoreError> {
        let me = caller.public.keyid().to_string();
        loop {
            let (mut record, entry) = self.load(id)?.ok_or_else(|| gone(id))?;
            let now = now_unix();
            if record.recipient != me {
                // Remember who tried: the sender and the recipient see it in the lookup.
                record.refuse(&me);
                if !self.replace(&record, &entry)? {
                    continue;
                }
                tracing::warn!(wrap_recipient = %record.recipient, caller = %me, "unwrap by another identity refused");
                return Err(CoreError::Forbidden);
            }
            match record.status(now) {
                "consumed" => {
                    return Err(CoreError::bad(format!(
                        "this wrap was already consumed at {} by keyid {}",
                        record.consumed_at.as_deref().unwrap_or_default(),
                        record.consumed_by.as_deref().unwrap_or_default()
                    )));
                }
                "expired" => {
                    return Err(CoreError::bad(format!(
                        "this wrap expired at {}",
                        rfc3339(record.expires)
                    )));
                }
                _ => {}
            }
            let out = json!({
                "id": record.id,
                "envelope": record.envelope.take(),
                "signature": record.signature.take(),
                "sender": record.sender,
                "author": record.author,
                "content_type": record.content_type,
                "creation_time": record.creation_time,
                "creation_path": record.creation_path,
            });
            record.consumed_at = Some(crate::timefmt::now_rfc3339());
            record.consumed_by = Some(me.clone());
            // Exactly once: only the request whose compare-and-set lands gets the envelope.
            if self.replace(&record, &entry)? {
                tracing::info!(caller = %me, "wrap consumed");
                return Ok(Response::data(out));
            }
        }
    }

    /// The status, for the wrap's parties. Anyone else is refused and recorded, as a refused
    /// fetch is: `sigil unwrap` looks a wrap up before it fetches, so an identity trying
    /// someone else's wrap shows in its `refused` list either way.
    fn lookup(&self, id: &str, caller: &Caller) -> Result<Response, CoreError> {
        let me = caller.public.keyid().to_string();
        loop {
            let (mut record, entry) = self.load(id)?.ok_or_else(|| gone(id))?;
            if record.visible_to(&me) {
                return Ok(Response::data(record.info(now_unix())));
            }
            record.refuse(&me);
            if self.replace(&record, &entry)? {
                tracing::warn!(wrap_recipient = %record.recipient, caller = %me, "wrap lookup by another identity refused");
                return Err(CoreError::Forbidden);
            }
        }
    }

    /// Drops the envelopes of expired wraps and the tombstones past their retention. Returns
    /// how many records changed.
    pub(crate) fn purge(&self) -> Result<usize, CoreError> {
        let now = now_unix();
        let mut changed = 0;
        for key in self.view.list("")? {
            let Some(entry) = self.view.get(&key)? else {
                continue;
            };
            let Ok(mut record) = serde_json::from_slice::<WrapRecord>(&entry.plain) else {
                continue;
            };
            let mut batch = ViewBatch::default();
            batch.expect(&key, Some(&entry));
            if now >= record.expires + TOMBSTONE_RETENTION {
                batch.delete(&key);
            } else if now >= record.expires && record.envelope.is_some() {
                record.envelope = None;
                record.signature = None;
                batch.put(&key, serde_json::to_vec(&record).expect("wrap serializes"));
            } else {
                continue;
            }
            // A concurrent unwrap wins; the next sweep looks again.
            match self.view.apply(batch) {
                Ok(()) => changed += 1,
                Err(CoreError::Contended) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }
}

/// 128 random bits in hex: a wrap's name (hex, so it never starts with `-` on a command
/// line). It carries no authority.
fn new_id() -> Result<String, CoreError> {
    sigil_crypto::random::hex_id().map_err(|_| CoreError::rng())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sigil_storage::MemoryBackend;

    use super::*;

    #[test]
    fn expired_wraps_lose_their_envelope_and_cannot_be_fetched() {
        let (core, admin) = crate::core::admin_core(Arc::new(MemoryBackend::new()));
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let me = admin.public().keyid();
        let envelope = age::encrypt(&[*admin.public().encryption_key()], b"x").unwrap();
        use base64::Engine as _;
        let id = new_id().unwrap();
        let request = |ttl: &str, signature: &[u8]| Request {
            operation: Operation::Update,
            path: "sys/wrapping/wrap".into(),
            data: Some(json!({
                "id": id,
                "to": me.to_string(),
                "envelope": base64::engine::general_purpose::STANDARD.encode(&envelope),
                "signature": b64url_encode(signature),
                "ttl": ttl,
            })),
            query: vec![],
        };
        // A signature over another envelope, or by another key, is refused.
        let other = SecretIdentity::generate().unwrap();
        let forged = other.sign(&wrap_statement(&id, &me, BYTES, &envelope));
        assert!(matches!(
            core.handle(&caller, request("1s", &forged)),
            Err(CoreError::BadRequest(_))
        ));
        let other_id = admin.sign(&wrap_statement(&new_id().unwrap(), &me, BYTES, &envelope));
        assert!(matches!(
            core.handle(&caller, request("1s", &other_id)),
            Err(CoreError::BadRequest(_))
        ));
        let good = admin.sign(&wrap_statement(&id, &me, BYTES, &envelope));
        let info = core
            .handle(&caller, request("3s", &good))
            .unwrap()
            .data
            .unwrap();
        assert_eq!(info["id"], id.as_str());
        assert_eq!(info["status"], "pending");
        // The id is the sender's: it cannot be used twice.
        assert!(matches!(
            core.handle(&caller, request("3s", &good)),
            Err(CoreError::BadRequest(_))
        ));

        // Expiry has whole-second granularity, so the TTL must leave more
        // than one second of room for "not yet" to hold on a slow machine.
        let (record, _) = core.wraps.load(&id).unwrap().unwrap();
        assert!(now_unix() < record.expires);
        assert_eq!(core.purge_wraps().unwrap(), 0, "not expired yet");
        while now_unix() < record.expires {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(core.purge_wraps().unwrap(), 1);
        let (record, _) = core.wraps.load(&id).unwrap().unwrap();
        assert!(record.envelope.is_none() && record.signature.is_none());
        let fetch = Request {
            operation: Operation::Update,
            path: "sys/wrapping/unwrap".into(),
            data: Some(json!({ "id": id })),
            query: vec![],
        };
        assert!(matches!(
            core.handle(&caller, fetch),
            Err(CoreError::BadRequest(_))
        ));
        assert_eq!(
            core.purge_wraps().unwrap(),
            0,
            "nothing left to drop until retention ends"
        );
    }
}
