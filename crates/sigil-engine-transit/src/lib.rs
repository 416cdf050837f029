//! The `transit` engine: encryption as a service at Vault's paths. Keys stay in the server
//! (only a key created exportable can be exported, sealed to the caller); callers send data
//! and get ciphertexts (`sigil:v<N>:<base64>`), signatures and HMACs back.
//!
//! `keys/<name>` (create, read, delete, LIST), `keys/<name>/config|rotate|trim`,
//! `encrypt|decrypt|rewrap/<name>` (with `batch_input`, `context` for derived keys,
//! convergent encryption), `datakey/plaintext|wrapped/<name>`, `sign|verify/<name>[/<hash>]`,
//! `hmac/<name>[/<algorithm>]`, `hash[/<algorithm>]`, `random[/<bytes>]`.

mod key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use key::{ExportKind, KeyType, KeyVersion, SignOptions, TransitKey, armor, armor_jws, unarmor};
use sigil_engine::barrier::{View, ViewBatch};
use sigil_engine::fields::body_of;
use sigil_engine::path::check_name;
use sigil_engine::request::list_response;
use sigil_engine::{
    Context, CoreError, Engine, EngineKind, Matched, Operation, Request, Response, Route, Writes,
    duration,
};

/// Most items in one `batch_input`.
const MAX_BATCH: usize = 1000;
/// Most random bytes per request.
const MAX_RANDOM: u64 = 1024 * 1024;

struct TransitEngine {
    view: View,
    /// Loaded keys, decrypted (their material is zeroized when dropped).
    cache: Mutex<HashMap<String, Arc<TransitKey>>>,
    /// Serializes changes to keys.
    writes: Mutex<()>,
}

impl std::fmt::Debug for TransitEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitEngine").finish_non_exhaustive()
    }
}

fn key_path(name: &str) -> String {
    format!("policy/{name}")
}

fn b64_field(item: &Map<String, Value>, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() && name == "context" => Ok(None),
        Some(Value::String(s)) => B64
            .decode(s)
            .map(|b| Some(Zeroizing::new(b)))
            .map_err(|_| format!("{name} must be base64")),
        Some(_) => Err(format!("{name} must be a base64 string")),
    }
}

fn u64_field(item: &Map<String, Value>, name: &str) -> Result<u64, String> {
    match item.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("{name} must be a number")),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{name} must be a number")),
        Some(_) => Err(format!("{name} must be a number")),
    }
}

fn bool_field(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| CoreError::bad(format!("{name} must be true or false"))),
        Some(_) => Err(CoreError::bad(format!("{name} must be true or false"))),
    }
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str, default: &'a str) -> &'a str {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
}

/// The items of a request: `batch_input`, or the body itself as one item.
fn items(body: &Map<String, Value>) -> Result<(bool, Vec<Map<String, Value>>), CoreError> {
    match body.get("batch_input") {
        None | Some(Value::Null) => Ok((false, vec![body.clone()])),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(CoreError::bad("batch_input is empty"));
            }
            if list.len() > MAX_BATCH {
                return Err(CoreError::bad(format!(
                    "batch_input has more than {MAX_BATCH} items"
                )));
            }
            let items = list
                .iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(m.clone()),
                    _ => Err(CoreError::bad("every batch_input item must be an object")),
                })
                .collect::<Result<_, _>>()?;
            Ok((true, items))
        }
        Some(_) => Err(CoreError::bad("batch_input must be a list")),
    }
}

/// One item's answer, or its error (a batch answers item by item: one bad item does not fail
/// the others).
fn respond(
    batch: bool,
    items: &[Map<String, Value>],
    results: Vec<Result<Value, String>>,
) -> Result<Response, CoreError> {
    if !batch {
        return match results.into_iter().next() {
            Some(Ok(v)) => Ok(Response::data(v)),
            Some(Err(e)) => Err(CoreError::bad(e)),
            None => Err(CoreError::bad("nothing to do")),
        };
    }
    let out: Vec<Value> = results
        .into_iter()
        .zip(items)
        .map(|(r, item)| {
            let mut v = match r {
                Ok(v) => v,
                Err(e) => json!({ "error": e }),
            };
            if let Some(reference) = item.get("reference") {
                v["reference"] = reference.clone();
            }
            v
        })
        .collect();
    Ok(Response::data(json!({ "batch_results": out })))
}

fn err(e: CoreError) -> String {
    e.to_string()
}

impl TransitEngine {
    fn new(view: View) -> Self {
        TransitEngine {
            view,
            cache: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<TransitKey>> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// A key, for readers: from the cache, or loaded under `writes` so a concurrent rotate,
    /// trim or delete cannot be overwritten by an older copy.
    fn load(&self, name: &str) -> Result<Arc<TransitKey>, CoreError> {
        if let Some(k) = self.cached(name) {
            return Ok(k);
        }
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        self.load_locked(name)
    }

    /// A key, for callers holding `writes`.
    fn load_locked(&self, name: &str) -> Result<Arc<TransitKey>, CoreError> {
        if let Some(k) = self.cached(name) {
            return Ok(k);
        }
        let entry = self
            .view
            .get(&key_path(name))?
            .ok_or_else(|| CoreError::NotFound(format!("no key named {name:?}")))?;
        let key: TransitKey =
            serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        let key = Arc::new(key);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::clone(&key));
        Ok(key)
    }

    /// A key for an operation: a missing one is a bad request there (Vault's "encryption key
    /// not found"), while reading `keys/<name>` answers 404.
    fn key_for_use(&self, name: &str) -> Result<Arc<TransitKey>, CoreError> {
        self.load(name).map_err(|e| match e {
            CoreError::NotFound(_) => CoreError::bad(format!("encryption key not found: {name:?}")),
            e => e,
        })
    }

    /// Stores `key` and caches it. `shred`: what it replaces must leave the file (trim).
    fn store(&self, key: TransitKey, shred: bool) -> Result<Arc<TransitKey>, CoreError> {
        let mut batch = ViewBatch::default();
        // `put` holds the serialized key zeroizing until it is sealed.
        batch.put(
            &key_path(&key.name),
            serde_json::to_vec(&key).expect("key serializes"),
        );
        if shred {
            batch.shred();
        }
        self.view.apply(batch)?;
        let key = Arc::new(key);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.name.clone(), Arc::clone(&key));
        Ok(key)
    }

    /// Vault's existence checks: a write to `keys/<name>` or `encrypt/<name>` for a key that
    /// does not exist is a create (encrypt then creates the key: "upsert").
    fn key_exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        Ok(match at.route.path {
            KEY | ENCRYPT => self.view.get(&key_path(at.param("name")))?.is_some(),
            _ => true,
        })
    }

    fn handle_request(&self, req: &Request, at: &Matched<'_>) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let p = |name| at.param(name);
        let (name, algorithm) = (p("name"), p("algorithm"));
        let body = || body_of(req);
        let resp = match (at.route.path, req.operation) {
            (KEYS, Operation::List) => list_response(self.view.list_children("policy/")?),
            (KEY, Operation::Read) => Ok(Response::data(self.load(name)?.info())),
            (KEY, _) if write => self.create(name, &body()?),
            (KEY, Operation::Delete) => self.delete(name),
            (KEY_CONFIG, _) if write => self.config(name, &body()?),
            (ROTATE, _) if write => self.rotate(name),
            (TRIM, _) if write => self.trim(name, &body()?),
            (ENCRYPT, Operation::Create) => {
                // Upsert, as Vault: the caller holds `create` on this path.
                let body = body()?;
                let mut spec = Map::new();
                spec.insert(
                    "type".into(),
                    json!(str_field(&body, "type", "aes256-gcm96")),
                );
                let context = body.get("context").is_some()
                    || body
                        .get("batch_input")
                        .and_then(Value::as_array)
                        .is_some_and(|b| b.iter().any(|i| i.get("context").is_some()));
                spec.insert("derived".into(), json!(context));
                if let Some(c) = body.get("convergent_encryption") {
                    spec.insert("convergent_encryption".into(), c.clone());
                }
                self.create(name, &spec)?;
                self.encrypt(name, &body)
            }
            (ENCRYPT, _) if write => self.encrypt(name, &body()?),
            (DECRYPT, _) if write => self.decrypt(name, &body()?),
            (REWRAP, _) if write => self.rewrap(name, &body()?),
            (DATAKEY, _) if write => self.datakey(p("kind"), name, &body()?),
            (SIGN, _) if write => self.sign(name, None, &body()?),
            (SIGN_HASHED, _) if write => self.sign(name, Some(p("hash_algorithm")), &body()?),
            (VERIFY, _) if write => self.verify(name, None, &body()?),
            (VERIFY_HASHED, _) if write => self.verify(name, Some(p("hash_algorithm")), &body()?),
            (HMAC, _) if write => self.hmac(name, None, &body()?),
            (HMAC_WITH, _) if write => self.hmac(name, Some(algorithm), &body()?),
            (EXPORT, Operation::Read) => self.export(p("kind"), name, None),
            (EXPORT_VERSION, Operation::Read) => self.export(p("kind"), name, Some(p("version"))),
            (HASH, _) if write => hash(None, &body()?),
            (HASH_WITH, _) if write => hash(Some(algorithm), &body()?),
            (RANDOM, _) if write => random(None, None, &body()?),
            (RANDOM_BYTES, _) if write => random(Some(p("bytes")), None, &body()?),
            (RANDOM_FORMAT, _) if write => random(Some(p("bytes")), Some(p("format")), &body()?),
            _ => Err(CoreError::UnsupportedOperation),
        };
        resp.map(|r| r.with_mount_type("transit"))
    }

    fn create(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        check_name("key", name)?;
        for k in body.keys() {
            if ![
                "type",
                "derived",
                "convergent_encryption",
                "exportable",
                "allow_plaintext_backup",
                "auto_rotate_period",
            ]
            .contains(&k.as_str())
            {
                return Err(CoreError::bad(format!("unknown field {k}")));
            }
        }
        let kind = KeyType::parse(str_field(body, "type", "aes256-gcm96"))?;
        let derived = bool_field(body, "derived")?.unwrap_or(false);
        let convergent = bool_field(body, "convergent_encryption")?.unwrap_or(false);
        if (derived || convergent) && !kind.symmetric() {
            return Err(CoreError::bad(
                "derived and convergent keys must be aes256-gcm96 or chacha20-poly1305",
            ));
        }
        if convergent && !derived {
            return Err(CoreError::bad(
                "convergent encryption requires derived=true",
            ));
        }
        let exportable = bool_field(body, "exportable")?.unwrap_or(false);
        if bool_field(body, "allow_plaintext_backup")? == Some(true) {
            return Err(CoreError::bad("plaintext backups are not supported"));
        }
        let auto_rotate_period = rotate_period(body)?.unwrap_or(0);
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        // As Vault: creating an existing key changes nothing and returns it.
        if self.view.get(&key_path(name))?.is_some() {
            return Ok(Response::data(self.load_locked(name)?.info()));
        }
        let key = self.store(
            TransitKey::new(
                name,
                kind,
                derived,
                convergent,
                exportable,
                auto_rotate_period,
            )?,
            false,
        )?;
        tracing::info!(key = name, kind = %kind.name(), "transit key created");
        Ok(Response::data(key.info()))
    }

    fn delete(&self, name: &str) -> Result<Response, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let key = self.load_locked(name)?;
        if !key.deletion_allowed {
            return Err(CoreError::bad(
                "deletion is not allowed for this key (set deletion_allowed in its config)",
            ));
        }
        let mut batch = ViewBatch::default();
        batch.delete(&key_path(name));
        batch.shred();
        self.view.apply(batch)?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(Response::no_content())
    }

    fn config(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (*self.load_locked(name)?).clone();
        for k in body.keys() {
            match k.as_str() {
                "min_decryption_version"
                | "min_encryption_version"
                | "deletion_allowed"
                | "exportable"
                | "allow_plaintext_backup"
                | "auto_rotate_period" => {}
                other => return Err(CoreError::bad(format!("unknown field {other}"))),
            }
        }
        let num = |n: &str| u64_field(body, n).map_err(CoreError::bad);
        if body.contains_key("min_decryption_version") {
            let v = num("min_decryption_version")?.max(1);
            if v > key.latest_version {
                return Err(CoreError::bad(
                    "min_decryption_version cannot exceed the latest version",
                ));
            }
            if v < key.min_available_version {
                return Err(CoreError::bad(
                    "min_decryption_version cannot be below min_available_version",
                ));
            }
            key.min_decryption_version = v;
        }
        if body.contains_key("min_encryption_version") {
            let v = num("min_encryption_version")?;
            if v > key.latest_version {
                return Err(CoreError::bad(
                    "min_encryption_version cannot exceed the latest version",
                ));
            }
            key.min_encryption_version = v;
        }
        if key.min_encryption_version != 0
            && key.min_encryption_version < key.min_decryption_version
        {
            return Err(CoreError::bad(
                "min_encryption_version must be at least min_decryption_version",
            ));
        }
        if let Some(d) = bool_field(body, "deletion_allowed")? {
            key.deletion_allowed = d;
        }
        match bool_field(body, "exportable")? {
            Some(true) => key.exportable = true,
            Some(false) if key.exportable => {
                return Err(CoreError::bad(
                    "exportable cannot be turned off once a key is exportable",
                ));
            }
            _ => {}
        }
        if bool_field(body, "allow_plaintext_backup")? == Some(true) {
            return Err(CoreError::bad("plaintext backups are not supported"));
        }
        if let Some(p) = rotate_period(body)? {
            key.auto_rotate_period = p;
        }
        let key = self.store(key, false)?;
        Ok(Response::data(key.info()))
    }

    fn rotate(&self, name: &str) -> Result<Response, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Response::data(self.rotate_locked(name)?.info()))
    }

    fn rotate_locked(&self, name: &str) -> Result<Arc<TransitKey>, CoreError> {
        let mut key = (*self.load_locked(name)?).clone();
        let next = key.latest_version + 1;
        key.versions.insert(next, KeyVersion::generate(key.kind)?);
        key.latest_version = next;
        let key = self.store(key, false)?;
        tracing::info!(key = name, version = next, "transit key rotated");
        Ok(key)
    }

    /// Rotates every key whose `auto_rotate_period` has passed since its latest version was
    /// made (the server calls this every few seconds). Returns how many rotated.
    fn rotate_due(&self, now: time::OffsetDateTime) -> Result<usize, CoreError> {
        let mut rotated = 0;
        for stored in self.view.list("policy/")? {
            let name = &stored["policy/".len()..];
            let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
            // One bad or vanished key does not stop the others from rotating.
            let key = match self.load_locked(name) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(key = name, error = %e, "cannot check the key for rotation");
                    continue;
                }
            };
            if key.auto_rotate_period == 0 {
                continue;
            }
            let latest = key
                .versions
                .get(&key.latest_version)
                .and_then(|v| {
                    time::OffsetDateTime::parse(
                        &v.creation_time,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                })
                .ok_or(CoreError::Integrity)?;
            if now >= latest + time::Duration::seconds(key.auto_rotate_period as i64) {
                match self.rotate_locked(name) {
                    Ok(_) => rotated += 1,
                    Err(e) => tracing::warn!(key = name, error = %e, "automatic rotation failed"),
                }
            }
        }
        Ok(rotated)
    }

    fn trim(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (*self.load_locked(name)?).clone();
        let min = u64_field(body, "min_available_version").map_err(CoreError::bad)?;
        if min == 0 {
            return Err(CoreError::bad("min_available_version is required"));
        }
        if min > key.min_decryption_version
            || (key.min_encryption_version != 0 && min > key.min_encryption_version)
        {
            return Err(CoreError::bad(
                "min_available_version cannot exceed min_decryption_version or min_encryption_version",
            ));
        }
        key.versions.retain(|n, _| *n >= min);
        key.min_available_version = min;
        let key = self.store(key, true)?;
        Ok(Response::data(key.info()))
    }

    fn encrypt_one(&self, key: &TransitKey, item: &Map<String, Value>) -> Result<Value, String> {
        refuse_unsupported(item)?;
        let plaintext = b64_field(item, "plaintext")?.ok_or("plaintext is required")?;
        let context = b64_field(item, "context")?;
        let (n, version) = key
            .version_for_use(u64_field(item, "key_version")?)
            .map_err(err)?;
        let ct = key::encrypt(key, version, &plaintext, context.as_deref().map(|c| &c[..]))
            .map_err(err)?;
        Ok(json!({ "ciphertext": armor(n, &ct), "key_version": n }))
    }

    fn decrypt_one(
        &self,
        key: &TransitKey,
        item: &Map<String, Value>,
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        refuse_unsupported(item)?;
        let text = item
            .get("ciphertext")
            .and_then(Value::as_str)
            .ok_or("ciphertext is required")?;
        let context = b64_field(item, "context")?;
        let (n, ct) = unarmor(text, false).map_err(err)?;
        let version = key.version_for_decryption(n).map_err(err)?;
        key::decrypt(key, version, &ct, context.as_deref().map(|c| &c[..])).map_err(err)
    }

    /// Runs `op` on every item of the request with key `name`, which must be able to `what`
    /// (`able`), and answers item by item.
    fn per_item(
        &self,
        name: &str,
        body: &Map<String, Value>,
        (able, what): (fn(KeyType) -> bool, &str),
        op: impl Fn(&TransitKey, &Map<String, Value>) -> Result<Value, String>,
    ) -> Result<Response, CoreError> {
        let key = self.key_for_use(name)?;
        if !able(key.kind) {
            return Err(CoreError::bad(format!(
                "{} keys do not {what}",
                key.kind.name()
            )));
        }
        let (batch, items) = items(body)?;
        let results = items.iter().map(|i| op(&key, i)).collect();
        respond(batch, &items, results)
    }

    fn encrypt(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        self.per_item(name, body, (KeyType::encrypts, "encrypt"), |key, item| {
            let mut item = item.clone();
            // Upsert fields, not the item's.
            item.remove("type");
            item.remove("convergent_encryption");
            self.encrypt_one(key, &item)
        })
    }

    fn decrypt(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        self.per_item(name, body, (KeyType::encrypts, "decrypt"), |key, item| {
            self.decrypt_one(key, item)
                .map(|pt| json!({ "plaintext": B64.encode(&*pt) }))
        })
    }

    fn rewrap(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        self.per_item(name, body, (KeyType::encrypts, "encrypt"), |key, item| {
            let pt = self.decrypt_one(key, item)?;
            let mut again = item.clone();
            again.insert("plaintext".into(), Value::String(B64.encode(&*pt)));
            self.encrypt_one(key, &again)
        })
    }

    fn datakey(
        &self,
        kind: &str,
        name: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        let key = self.key_for_use(name)?;
        if !key.kind.encrypts() {
            return Err(CoreError::bad(format!(
                "{} keys do not encrypt",
                key.kind.name()
            )));
        }
        let bits = match u64_field(body, "bits").map_err(CoreError::bad)? {
            0 | 256 => 256,
            b @ (128 | 512) => b,
            _ => return Err(CoreError::bad("bits must be 128, 256 or 512")),
        };
        let mut data_key = Zeroizing::new(vec![0u8; (bits / 8) as usize]);
        sigil_crypto::random::fill(&mut data_key).map_err(|_| CoreError::rng())?;
        let mut item = body.clone();
        item.insert("plaintext".into(), Value::String(B64.encode(&*data_key)));
        let mut out = self.encrypt_one(&key, &item).map_err(CoreError::bad)?;
        match kind {
            "plaintext" => out["plaintext"] = Value::String(B64.encode(&*data_key)),
            "wrapped" => {}
            _ => return Err(CoreError::bad("datakey type must be plaintext or wrapped")),
        }
        Ok(Response::data(out))
    }

    /// Vault's `export/<kind>/<name>[/<version>]`, for keys created or configured
    /// `exportable` (which cannot be undone). Like every response, it is sealed to the caller.
    fn export(&self, kind: &str, name: &str, version: Option<&str>) -> Result<Response, CoreError> {
        let what = ExportKind::parse(kind)?;
        let key = self.load(name)?;
        if !key.exportable {
            return Err(CoreError::bad("key is not exportable"));
        }
        let wanted = match version {
            None => None,
            Some("latest") => Some(key.latest_version),
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| CoreError::bad("version must be a number or latest"))?,
            ),
        };
        let mut keys = Map::new();
        for (n, v) in &key.versions {
            if wanted.is_none_or(|w| w == *n) {
                keys.insert(
                    n.to_string(),
                    Value::String(v.export(key.kind, what)?.to_string()),
                );
            }
        }
        if keys.is_empty() {
            return Err(CoreError::bad("no such key version"));
        }
        tracing::info!(key = name, kind, "transit key exported");
        Ok(Response::data(json!({
            "name": name,
            "type": key.kind.name(),
            "keys": keys,
        })))
    }

    fn sign_options<'a>(
        key: &TransitKey,
        hash: Option<&'a str>,
        item: &'a Map<String, Value>,
    ) -> Result<SignOptions<'a>, String> {
        let prehashed = match item.get("prehashed") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.parse().map_err(|_| "prehashed must be true or false")?,
            Some(_) => return Err("prehashed must be true or false".into()),
        };
        for unsupported in ["salt_length", "context"] {
            if item.get(unsupported).is_some_and(|v| !v.is_null()) {
                return Err(format!("{unsupported} is not supported for signatures yet"));
            }
        }
        let hash = hash.unwrap_or_else(|| str_field(item, "hash_algorithm", "sha2-256"));
        if key.kind == KeyType::Ed25519 && hash != "sha2-256" && hash != "none" {
            return Err("ed25519 signs the input itself: no hash_algorithm".into());
        }
        let jws = match str_field(item, "marshaling_algorithm", "asn1") {
            "asn1" => false,
            "jws" => true,
            _ => return Err("marshaling_algorithm must be asn1 or jws".into()),
        };
        Ok(SignOptions {
            prehashed,
            hash,
            rsa_scheme: str_field(item, "signature_algorithm", "pss"),
            jws,
        })
    }

    fn sign(
        &self,
        name: &str,
        hash: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        self.per_item(name, body, (KeyType::signs, "sign"), |key, item| {
            let opts = Self::sign_options(key, hash, item)?;
            let input = b64_field(item, "input")?.ok_or("input is required")?;
            let (n, version) = key
                .version_for_use(u64_field(item, "key_version")?)
                .map_err(err)?;
            let sig = key::sign(key, version, &input, &opts).map_err(err)?;
            let signature = if opts.jws {
                armor_jws(n, &sig)
            } else {
                armor(n, &sig)
            };
            Ok(json!({ "signature": signature, "key_version": n }))
        })
    }

    fn verify(
        &self,
        name: &str,
        hash: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        self.per_item(name, body, (|_| true, "verify"), |key, item| {
            let input = b64_field(item, "input")?.ok_or("input is required")?;
            if let Some(mac) = item.get("hmac").and_then(Value::as_str) {
                let (n, tag) = unarmor(mac, false).map_err(err)?;
                let version = key.version_for_decryption(n).map_err(err)?;
                let alg = hash.unwrap_or_else(|| str_field(item, "algorithm", "sha2-256"));
                let expected = key::hmac_of(key, version, &input, alg).map_err(err)?;
                use subtle::ConstantTimeEq as _;
                return Ok(json!({ "valid": bool::from(expected.ct_eq(&tag)) }));
            }
            if !key.kind.signs() {
                return Err(format!("{} keys do not verify signatures", key.kind.name()));
            }
            let opts = Self::sign_options(key, hash, item)?;
            let sig = item
                .get("signature")
                .and_then(Value::as_str)
                .ok_or("signature or hmac is required")?;
            let (n, sig) = unarmor(sig, opts.jws).map_err(err)?;
            let version = key.version_for_decryption(n).map_err(err)?;
            let valid = key::verify(key, version, &input, &sig, &opts).map_err(err)?;
            Ok(json!({ "valid": valid }))
        })
    }

    fn hmac(
        &self,
        name: &str,
        alg: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        self.per_item(name, body, (|_| true, "hmac"), |key, item| {
            let input = b64_field(item, "input")?.ok_or("input is required")?;
            let alg = alg.unwrap_or_else(|| str_field(item, "algorithm", "sha2-256"));
            let (n, version) = key
                .version_for_use(u64_field(item, "key_version")?)
                .map_err(err)?;
            let mac = key::hmac_of(key, version, &input, alg).map_err(err)?;
            Ok(json!({ "hmac": armor(n, &mac), "key_version": n }))
        })
    }
}

/// Vault fields Sigil does not implement: refused, so nobody believes they took effect
/// (`associated_data` would otherwise look authenticated when it is not).
fn refuse_unsupported(item: &Map<String, Value>) -> Result<(), String> {
    for name in [
        "associated_data",
        "nonce",
        "padding_scheme",
        "partial_failure_response_code",
    ] {
        if item.get(name).is_some_and(|v| !v.is_null() && v != "") {
            return Err(format!("{name} is not supported yet"));
        }
    }
    Ok(())
}

/// `auto_rotate_period`: 0 (never) or at least an hour, as Vault.
fn rotate_period(body: &Map<String, Value>) -> Result<Option<u64>, CoreError> {
    match body.get("auto_rotate_period") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match duration::seconds(v, "auto_rotate_period")? {
            p @ (0 | 3600..) => Ok(Some(p)),
            _ => Err(CoreError::bad(
                "auto_rotate_period must be 0 (never) or at least 1h",
            )),
        },
    }
}

fn hash(alg: Option<&str>, body: &Map<String, Value>) -> Result<Response, CoreError> {
    use aws_lc_rs::digest;
    let input = b64_field(body, "input")
        .map_err(CoreError::bad)?
        .ok_or_else(|| CoreError::bad("input is required"))?;
    let alg = alg.unwrap_or_else(|| str_field(body, "algorithm", "sha2-256"));
    let digest_alg = match alg {
        "sha2-224" => &digest::SHA224,
        "sha2-256" => &digest::SHA256,
        "sha2-384" => &digest::SHA384,
        "sha2-512" => &digest::SHA512,
        "sha3-256" => &digest::SHA3_256,
        "sha3-384" => &digest::SHA3_384,
        "sha3-512" => &digest::SHA3_512,
        _ => {
            return Err(CoreError::bad(
                "algorithm must be sha2-224, sha2-256, sha2-384, sha2-512, sha3-256, sha3-384 or sha3-512",
            ));
        }
    };
    let sum = digest::digest(digest_alg, &input);
    let sum = match str_field(body, "format", "hex") {
        "hex" => sigil_crypto::hex(sum.as_ref()),
        "base64" => B64.encode(sum.as_ref()),
        _ => return Err(CoreError::bad("format must be hex or base64")),
    };
    Ok(Response::data(json!({ "sum": sum })))
}

fn random(
    bytes: Option<&str>,
    format: Option<&str>,
    body: &Map<String, Value>,
) -> Result<Response, CoreError> {
    let n = match bytes {
        Some(b) => b
            .parse()
            .map_err(|_| CoreError::bad("bytes must be a number"))?,
        None => match u64_field(body, "bytes").map_err(CoreError::bad)? {
            0 => 32,
            n => n,
        },
    };
    if n == 0 || n > MAX_RANDOM {
        return Err(CoreError::bad("bytes must be between 1 and 1048576"));
    }
    let mut buf = Zeroizing::new(vec![0u8; n as usize]);
    sigil_crypto::random::fill(&mut buf).map_err(|_| CoreError::rng())?;
    let out = match format.unwrap_or_else(|| str_field(body, "format", "base64")) {
        "base64" => B64.encode(&*buf),
        "hex" => sigil_crypto::hex(&buf),
        _ => return Err(CoreError::bad("format must be base64 or hex")),
    };
    Ok(Response::data(json!({ "random_bytes": out })))
}

/// The `transit` engine kind: register it with the core to offer `sigil secrets enable transit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transit;

const KEYS: &str = "{mount}/keys";
const KEY: &str = "{mount}/keys/{name}";
const KEY_CONFIG: &str = "{mount}/keys/{name}/config";
const ROTATE: &str = "{mount}/keys/{name}/rotate";
const TRIM: &str = "{mount}/keys/{name}/trim";
const ENCRYPT: &str = "{mount}/encrypt/{name}";
const DECRYPT: &str = "{mount}/decrypt/{name}";
const REWRAP: &str = "{mount}/rewrap/{name}";
const DATAKEY: &str = "{mount}/datakey/{kind}/{name}";
const SIGN: &str = "{mount}/sign/{name}";
const SIGN_HASHED: &str = "{mount}/sign/{name}/{hash_algorithm}";
const VERIFY: &str = "{mount}/verify/{name}";
const VERIFY_HASHED: &str = "{mount}/verify/{name}/{hash_algorithm}";
const HMAC: &str = "{mount}/hmac/{name}";
const HMAC_WITH: &str = "{mount}/hmac/{name}/{algorithm}";
const HASH: &str = "{mount}/hash";
const HASH_WITH: &str = "{mount}/hash/{algorithm}";
const RANDOM: &str = "{mount}/random";
const RANDOM_BYTES: &str = "{mount}/random/{bytes}";
const RANDOM_FORMAT: &str = "{mount}/random/{bytes}/{format}";
const EXPORT: &str = "{mount}/export/{kind}/{name}";
const EXPORT_VERSION: &str = "{mount}/export/{kind}/{name}/{version}";

/// Every route of a transit mount.
const ROUTES: &[Route] = &[
    Route::new(KEYS, &["LIST"], "Transit: list keys"),
    Route::new(
        KEY,
        &["GET", "POST", "PUT", "DELETE"],
        "Transit: create (type, derived, convergent_encryption, exportable), read (versions, public keys) or delete a key",
    ),
    Route::new(
        KEY_CONFIG,
        &["POST", "PUT"],
        "Transit: min_decryption_version, min_encryption_version, deletion_allowed, exportable, auto_rotate_period",
    ),
    Route::new(ROTATE, &["POST", "PUT"], "Transit: add a key version"),
    Route::new(
        TRIM,
        &["POST", "PUT"],
        "Transit: remove versions below min_available_version",
    ),
    Route::new(
        ENCRYPT,
        &["POST", "PUT"],
        "Transit: encrypt plaintext (base64) or batch_input; context for derived keys",
    )
    .writing(Writes::OnCreate),
    Route::new(
        DECRYPT,
        &["POST", "PUT"],
        "Transit: decrypt sigil:v<N>: ciphertexts",
    )
    .writing(Writes::OnCreate),
    Route::new(
        REWRAP,
        &["POST", "PUT"],
        "Transit: re-encrypt ciphertexts under the latest (or key_version) version",
    )
    .writing(Writes::OnCreate),
    Route::new(
        DATAKEY,
        &["POST", "PUT"],
        "Transit: a new data key, wrapped (and in plaintext for kind=plaintext)",
    )
    .writing(Writes::OnCreate),
    Route::new(
        SIGN,
        &["POST", "PUT"],
        "Transit: sign input (ed25519, ecdsa-p256, rsa)",
    )
    .writing(Writes::OnCreate),
    Route::new(
        SIGN_HASHED,
        &["POST", "PUT"],
        "Transit: sign input, the hash algorithm named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(
        VERIFY,
        &["POST", "PUT"],
        "Transit: verify a signature or an HMAC",
    )
    .writing(Writes::OnCreate),
    Route::new(
        VERIFY_HASHED,
        &["POST", "PUT"],
        "Transit: verify a signature, the hash algorithm named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(HMAC, &["POST", "PUT"], "Transit: HMAC of input").writing(Writes::OnCreate),
    Route::new(
        HMAC_WITH,
        &["POST", "PUT"],
        "Transit: HMAC of input, the algorithm named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(
        HASH,
        &["POST", "PUT"],
        "Transit: SHA-2 or SHA-3 digest of input",
    )
    .writing(Writes::OnCreate),
    Route::new(
        HASH_WITH,
        &["POST", "PUT"],
        "Transit: digest of input, the algorithm named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(RANDOM, &["POST", "PUT"], "Transit: random bytes").writing(Writes::OnCreate),
    Route::new(
        RANDOM_BYTES,
        &["POST", "PUT"],
        "Transit: random bytes, how many named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(
        RANDOM_FORMAT,
        &["POST", "PUT"],
        "Transit: random bytes, how many and their format (base64, hex) named in the path",
    )
    .writing(Writes::OnCreate),
    Route::new(
        EXPORT,
        &["GET"],
        "Transit: an exportable key's versions (encryption-key, signing-key, hmac-key)",
    ),
    Route::new(
        EXPORT_VERSION,
        &["GET"],
        "Transit: one version (a number or latest) of an exportable key",
    ),
];

impl EngineKind for Transit {
    fn name(&self) -> &'static str {
        "transit"
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn mount(&self, at: sigil_engine::MountPoint<'_>) -> Box<dyn Engine> {
        Box::new(TransitEngine::new(at.view))
    }
}

impl Engine for TransitEngine {
    fn handle(
        &self,
        req: &Request,
        at: &Matched<'_>,
        _cx: &Context<'_>,
    ) -> Result<Response, CoreError> {
        self.handle_request(req, at)
    }

    fn exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        self.key_exists(at)
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn periodic(&self, now: time::OffsetDateTime) -> Result<usize, CoreError> {
        self.rotate_due(now)
    }
}

#[cfg(test)]
mod tests {
    use sigil_engine::testing::Harness;

    use super::*;

    /// A transit mount at `transit/` over a fresh barrier, and a caller.
    struct T(Harness);

    impl std::ops::Deref for T {
        type Target = Harness;

        fn deref(&self) -> &Harness {
            &self.0
        }
    }

    impl T {
        fn new() -> T {
            T(Harness::new(&Transit, "transit/"))
        }

        fn ok(&self, op: Operation, path: &str, body: Value) -> Value {
            self.call(op, path, body).unwrap()
        }

        fn post(&self, path: &str, body: Value) -> Value {
            self.ok(Operation::Update, path, body)
        }

        fn bad(&self, path: &str, body: Value) -> String {
            match self.call(Operation::Update, path, body) {
                Err(CoreError::BadRequest(m)) => m,
                other => panic!("{path}: expected 400, got {other:?}"),
            }
        }
    }

    fn b64(s: &[u8]) -> String {
        B64.encode(s)
    }

    #[test]
    fn every_key_type_round_trips_and_rotation_keeps_old_ciphertexts() {
        let t = T::new();
        for kind in [
            "aes256-gcm96",
            "chacha20-poly1305",
            "rsa-2048",
            "rsa-3072",
            "rsa-4096",
        ] {
            let name = kind.replace('-', "_");
            t.post(&format!("transit/keys/{name}"), json!({ "type": kind }));
            let enc = |v: u64| {
                t.post(
                    &format!("transit/encrypt/{name}"),
                    json!({ "plaintext": b64(b"the data"), "key_version": v }),
                )
            };
            let c1 = enc(0);
            assert!(c1["ciphertext"].as_str().unwrap().starts_with("sigil:v1:"));
            t.post(&format!("transit/keys/{name}/rotate"), json!({}));
            let c2 = enc(0);
            assert!(
                c2["ciphertext"].as_str().unwrap().starts_with("sigil:v2:"),
                "{kind}"
            );
            for c in [&c1, &c2] {
                let d = t.post(
                    &format!("transit/decrypt/{name}"),
                    json!({ "ciphertext": c["ciphertext"] }),
                );
                assert_eq!(d["plaintext"], b64(b"the data"), "{kind}");
            }
            // Rewrap moves an old ciphertext to the latest version.
            let r = t.post(
                &format!("transit/rewrap/{name}"),
                json!({ "ciphertext": c1["ciphertext"] }),
            );
            assert!(r["ciphertext"].as_str().unwrap().starts_with("sigil:v2:"));
            // min_decryption_version refuses the old version, and then allows it again.
            t.post(
                &format!("transit/keys/{name}/config"),
                json!({ "min_decryption_version": 2 }),
            );
            let m = t.bad(
                &format!("transit/decrypt/{name}"),
                json!({ "ciphertext": c1["ciphertext"] }),
            );
            assert!(m.contains("min_decryption_version"), "{m}");
            t.post(
                &format!("transit/keys/{name}/config"),
                json!({ "min_decryption_version": 1 }),
            );
            t.post(
                &format!("transit/decrypt/{name}"),
                json!({ "ciphertext": c1["ciphertext"] }),
            );
        }
        for kind in ["ed25519", "ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"] {
            let name = format!("s_{}", kind.replace('-', "_"));
            t.post(&format!("transit/keys/{name}"), json!({ "type": kind }));
            let sig = t.post(
                &format!("transit/sign/{name}"),
                json!({ "input": b64(b"msg") }),
            );
            let sig = sig["signature"].clone();
            let verify = |input: &[u8]| {
                t.post(
                    &format!("transit/verify/{name}"),
                    json!({ "input": b64(input), "signature": sig }),
                )["valid"]
                    .as_bool()
                    .unwrap()
            };
            assert!(verify(b"msg"), "{kind}");
            assert!(!verify(b"msh"), "{kind}");
            let info = t.ok(
                Operation::Read,
                &format!("transit/keys/{name}"),
                Value::Null,
            );
            assert!(info["keys"]["1"]["public_key"].as_str().is_some(), "{kind}");
            assert_eq!(info["supports_signing"], true);
        }
        // HMAC keys and the HMAC of any key.
        t.post("transit/keys/mac", json!({ "type": "hmac" }));
        let mac = t.post("transit/hmac/mac", json!({ "input": b64(b"m") }));
        let check = |input: &[u8]| {
            t.post(
                "transit/verify/mac",
                json!({ "input": b64(input), "hmac": mac["hmac"] }),
            )["valid"]
                .as_bool()
                .unwrap()
        };
        assert!(check(b"m"));
        assert!(!check(b"n"));
        t.bad("transit/encrypt/mac", json!({ "plaintext": b64(b"x") }));
        // Key listing and reads never show material.
        let listed = t.ok(Operation::List, "transit/keys/", Value::Null);
        assert!(listed["keys"].as_array().unwrap().len() >= 7);
        let info = t.ok(Operation::Read, "transit/keys/aes256_gcm96", Value::Null);
        assert!(
            info["keys"]["1"].is_number(),
            "symmetric versions show only their time"
        );
        assert!(!info.to_string().contains("material"));
    }

    #[test]
    fn derived_convergent_batches_and_bad_input() {
        let t = T::new();
        t.post(
            "transit/keys/conv",
            json!({ "type": "aes256-gcm96", "derived": true, "convergent_encryption": true }),
        );
        let enc = |pt: &[u8], ctx: &[u8]| {
            t.post(
                "transit/encrypt/conv",
                json!({ "plaintext": b64(pt), "context": b64(ctx) }),
            )["ciphertext"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            enc(b"x", b"ctx1"),
            enc(b"x", b"ctx1"),
            "deterministic per context"
        );
        assert_ne!(enc(b"x", b"ctx1"), enc(b"x", b"ctx2"));
        assert_ne!(enc(b"x", b"ctx1"), enc(b"y", b"ctx1"));
        let c = enc(b"x", b"ctx1");
        let m = t.bad(
            "transit/decrypt/conv",
            json!({ "ciphertext": c, "context": b64(b"ctx2") }),
        );
        assert!(m.contains("authentication failed"), "{m}");
        t.bad("transit/encrypt/conv", json!({ "plaintext": b64(b"x") }));

        // A batch answers item by item.
        t.post("transit/keys/k", json!({}));
        let out = t.post(
            "transit/encrypt/k",
            json!({ "batch_input": [
                { "plaintext": b64(b"a"), "reference": "one" },
                { "plaintext": "%%% not base64" },
                { "plaintext": b64(b"c"), "key_version": 7 },
            ] }),
        );
        let r = out["batch_results"].as_array().unwrap();
        assert!(r[0]["ciphertext"].is_string());
        assert_eq!(r[0]["reference"], "one");
        assert!(r[1]["error"].as_str().unwrap().contains("base64"));
        assert!(r[2]["error"].as_str().unwrap().contains("version"));
        let dec = t.post(
            "transit/decrypt/k",
            json!({ "batch_input": [ { "ciphertext": r[0]["ciphertext"] }, { "ciphertext": "sigil:v1:AAAA" } ] }),
        );
        let d = dec["batch_results"].as_array().unwrap();
        assert_eq!(d[0]["plaintext"], b64(b"a"));
        assert!(d[1]["error"].is_string());
        // Sign and verify batches, item by item too.
        t.post("transit/keys/batch-signer", json!({ "type": "ecdsa-p256" }));
        let signed = t.post(
            "transit/sign/batch-signer",
            json!({ "batch_input": [
                { "input": b64(b"one"), "reference": "1" },
                { "input": "!!", "reference": "2" },
                { "input": b64(b"three"), "reference": "3" },
            ] }),
        );
        let sigs = signed["batch_results"].as_array().unwrap();
        assert!(sigs[1]["error"].as_str().unwrap().contains("base64"));
        let verified = t.post(
            "transit/verify/batch-signer",
            json!({ "batch_input": [
                { "input": b64(b"one"), "signature": sigs[0]["signature"] },
                { "input": b64(b"one"), "signature": sigs[2]["signature"] },
                { "input": b64(b"three"), "signature": sigs[2]["signature"] },
            ] }),
        );
        let v = verified["batch_results"].as_array().unwrap();
        assert_eq!(
            v.iter().map(|r| r["valid"].clone()).collect::<Vec<_>>(),
            [json!(true), json!(false), json!(true)]
        );
        assert_eq!(sigs[2]["reference"], "3");

        // Bad input: a clear 400, and nothing changes.
        t.post("transit/keys/ed", json!({ "type": "ed25519" }));
        t.post(
            "transit/keys/ec",
            json!({ "type": "ecdsa-p256", "exportable": true }),
        );
        t.bad("transit/keys/ec/config", json!({ "exportable": false }));
        assert!(matches!(
            t.call(Operation::Read, "transit/export/signing-key/ed", Value::Null),
            Err(CoreError::BadRequest(m)) if m.contains("not exportable")
        ));
        let exported = t.ok(
            Operation::Read,
            "transit/export/signing-key/ec/latest",
            Value::Null,
        );
        assert!(
            exported["keys"]["1"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        let before = t.ok(Operation::Read, "transit/keys/k", Value::Null);
        for (path, body) in [
            ("transit/encrypt/k", json!({ "plaintext": "!!" })),
            ("transit/encrypt/k", json!({})),
            ("transit/decrypt/k", json!({ "ciphertext": "vault:v1:abc" })),
            (
                "transit/decrypt/k",
                json!({ "ciphertext": "sigil:v9:AAAA" }),
            ),
            ("transit/sign/k", json!({ "input": b64(b"x") })),
            (
                "transit/encrypt/k",
                json!({ "batch_input": (0..1001).map(|_| json!({ "plaintext": "" })).collect::<Vec<_>>() }),
            ),
            ("transit/encrypt/k", json!({ "batch_input": [] })),
            (
                "transit/encrypt/k",
                json!({ "plaintext": b64(b"x"), "associated_data": b64(b"ad") }),
            ),
            (
                "transit/encrypt/k",
                json!({ "plaintext": b64(b"x"), "nonce": b64(b"n") }),
            ),
            (
                "transit/keys/k/config",
                json!({ "min_decryption_version": 5 }),
            ),
            ("transit/keys/k/config", json!({ "bogus": 1 })),
            ("transit/keys/new", json!({ "type": "des" })),
            (
                "transit/keys/new2",
                json!({ "type": "ed25519", "derived": true }),
            ),
            (
                "transit/keys/new3",
                json!({ "allow_plaintext_backup": true }),
            ),
            (
                "transit/sign/ed",
                json!({ "input": b64(&[0; 32]), "prehashed": true }),
            ),
            (
                "transit/sign/ec",
                json!({ "input": b64(&[0; 31]), "prehashed": true }),
            ),
            (
                "transit/decrypt/missing",
                json!({ "ciphertext": "sigil:v1:AAAA" }),
            ),
            ("transit/datakey/plaintext/k", json!({ "bits": 100 })),
            (
                "transit/hash",
                json!({ "input": b64(b"x"), "algorithm": "md5" }),
            ),
            ("transit/random/0", json!({})),
        ] {
            t.bad(path, body);
        }
        assert_eq!(t.ok(Operation::Read, "transit/keys/k", Value::Null), before);
        assert!(matches!(
            t.call(Operation::Read, "transit/keys/new", Value::Null),
            Err(CoreError::NotFound(_))
        ));
        // Encrypting with a key that does not exist creates it (Vault's upsert).
        let up = t.post(
            "transit/encrypt/upserted",
            json!({ "plaintext": b64(b"u") }),
        );
        assert!(up["ciphertext"].as_str().unwrap().starts_with("sigil:v1:"));
        let info = t.ok(Operation::Read, "transit/keys/upserted", Value::Null);
        assert_eq!(info["type"], "aes256-gcm96");
        // Deletion needs deletion_allowed.
        t.bad_delete("transit/keys/k");
        t.post("transit/keys/k/config", json!({ "deletion_allowed": true }));
        t.ok(Operation::Delete, "transit/keys/k", Value::Null);

        // datakey, hash, random.
        t.post("transit/keys/d", json!({}));
        let dk = t.post("transit/datakey/plaintext/d", json!({}));
        let pt = dk["plaintext"].clone();
        let back = t.post(
            "transit/decrypt/d",
            json!({ "ciphertext": dk["ciphertext"] }),
        );
        assert_eq!(back["plaintext"], pt);
        assert!(
            t.post("transit/datakey/wrapped/d", json!({}))
                .get("plaintext")
                .is_none()
        );
        let h = t.post("transit/hash/sha2-256", json!({ "input": b64(b"abc") }));
        assert_eq!(
            h["sum"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let r = t.post("transit/random/16", json!({ "format": "hex" }));
        assert_eq!(r["random_bytes"].as_str().unwrap().len(), 32);
        // The path's forms of Vault's parameters are routes of their own.
        let r = t.post("transit/random/24/hex", json!({}));
        assert_eq!(r["random_bytes"].as_str().unwrap().len(), 48);
        let h = t.post("transit/hash/sha2-512", json!({ "input": b64(b"abc") }));
        assert_eq!(h["sum"].as_str().unwrap().len(), 128);
        let mac = t.post("transit/hmac/d/sha2-512", json!({ "input": b64(b"abc") }));
        let mac = mac["hmac"].clone();
        let ok = t.post(
            "transit/verify/d/sha2-512",
            json!({ "input": b64(b"abc"), "hmac": mac }),
        );
        assert_eq!(ok["valid"], true);
        // A path no route matches is not found; an operation a route does not serve is 405.
        for path in [
            "transit/keys/d/other",
            "transit/random/1/hex/x",
            "transit/nope",
        ] {
            assert!(
                matches!(
                    t.call(Operation::Update, path, json!({})),
                    Err(CoreError::NotFound(_))
                ),
                "{path}"
            );
        }
        assert!(matches!(
            t.call(Operation::Read, "transit/hash", Value::Null),
            Err(CoreError::UnsupportedOperation)
        ));
        // auto_rotate_period: at least an hour; due keys rotate when the sweep runs.
        t.bad(
            "transit/keys/d/config",
            json!({ "auto_rotate_period": "30m" }),
        );
        t.post(
            "transit/keys/d/config",
            json!({ "auto_rotate_period": "1h" }),
        );
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(t.engine.periodic(now).unwrap(), 0, "not due yet");
        let later = now + time::Duration::hours(2);
        assert_eq!(t.engine.periodic(later).unwrap(), 1);
        let info = t.ok(Operation::Read, "transit/keys/d", Value::Null);
        assert_eq!(info["latest_version"], 2);
        assert_eq!(info["auto_rotate_period"], 3600);
        // Trim removes old versions for good.
        t.post("transit/keys/d/rotate", json!({}));
        t.post(
            "transit/keys/d/config",
            json!({ "min_decryption_version": 2, "min_encryption_version": 2 }),
        );
        t.post("transit/keys/d/trim", json!({ "min_available_version": 2 }));
        let m = t.bad(
            "transit/decrypt/d",
            json!({ "ciphertext": dk["ciphertext"] }),
        );
        assert!(
            m.contains("min_decryption_version") || m.contains("does not exist"),
            "{m}"
        );
    }

    impl T {
        fn bad_delete(&self, path: &str) {
            assert!(matches!(
                self.call(Operation::Delete, path, Value::Null),
                Err(CoreError::BadRequest(_))
            ));
        }
    }
}
