//! The `kv` engine, version 2, at `secret/`, with Vault's paths and JSON shapes: `config`,
//! `data` (write with `options.cas`, PATCH as a JSON merge patch, read latest or
//! `?version=N`, soft-delete latest), `subkeys`, `delete`, `undelete` and `destroy` of listed versions,
//! and `metadata` (read, write, patch, delete all, list).
//!
//! The same engine serves `e2e` mounts: each version is an envelope a client encrypted to its
//! recipients; the server checks its shape and signature and stores it, and cannot read it.

mod model;
mod sealed;

use serde_json::{Map, Value, json};

use model::{
    CONFIG_KEY, EngineConfig, MetadataInput, SecretMeta, VersionMeta, WriteInput, merge_patch,
    meta_key, subkeys, version_key, versions,
};
use sigil_engine::barrier::{Entry, View, ViewBatch};
use sigil_engine::request::list_response;
use sigil_engine::{
    Caller, Context, CoreError, Engine, EngineKind, Matched, MountPoint, Operation, Request,
    Response, Route, timefmt,
};
use sigil_proto::e2e::E2eSlot;

/// The `kv` engine kind (Vault's KV version 2; also enabled as `kv-v2`).
#[derive(Debug, Clone, Copy)]
pub struct Kv;

/// The `e2e` engine kind: KV-shaped, holding envelopes the server cannot read.
#[derive(Debug, Clone, Copy)]
pub struct E2e;

const CONFIG: &str = "{mount}/config";
const DATA: &str = "{mount}/data/{path}";
const METADATA: &str = "{mount}/metadata/{path}";
const SUBKEYS: &str = "{mount}/subkeys/{path}";
const DELETE: &str = "{mount}/delete/{path}";
const UNDELETE: &str = "{mount}/undelete/{path}";
const DESTROY: &str = "{mount}/destroy/{path}";

const ROUTES: &[Route] = &[
    Route::new(
        CONFIG,
        &["GET", "POST", "PUT"],
        "KV v2: the engine's max_versions and cas_required",
    ),
    Route::new(
        DATA,
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "KV v2: read, write, merge-patch or soft-delete a secret",
    ),
    Route::new(
        METADATA,
        &["GET", "POST", "PUT", "PATCH", "DELETE", "LIST"],
        "KV v2: read, write or patch a secret's metadata (max_versions, cas_required, custom_metadata), delete the secret and all its versions, or list keys",
    ),
    Route::new(
        SUBKEYS,
        &["GET"],
        "KV v2: a version's keys without their values (?version, ?depth)",
    ),
    Route::new(
        DELETE,
        &["POST", "PUT"],
        "KV v2: soft-delete the listed versions",
    ),
    Route::new(
        UNDELETE,
        &["POST", "PUT"],
        "KV v2: restore the listed soft-deleted versions",
    ),
    Route::new(
        DESTROY,
        &["POST", "PUT"],
        "KV v2: permanently remove the listed versions' data",
    ),
];

impl EngineKind for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["kv-v2"]
    }

    fn offered_as(&self) -> &'static str {
        "kv (version 2)"
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn options(&self) -> Value {
        json!({ "version": "2" })
    }

    fn check_options(&self, options: &Map<String, Value>) -> Result<(), CoreError> {
        let Some(v) = options.get("version") else {
            return Ok(());
        };
        let version = v
            .as_str()
            .map(str::to_owned)
            .or_else(|| v.as_u64().map(|n| n.to_string()));
        match version.as_deref() {
            Some("2") => Ok(()),
            _ => Err(CoreError::bad(
                "only KV version 2 is supported (options.version = \"2\")",
            )),
        }
    }

    fn mount(&self, at: MountPoint<'_>) -> Box<dyn Engine> {
        Box::new(KvEngine::new(at.view, KvMode::Kv, at.path))
    }
}

impl EngineKind for E2e {
    fn name(&self) -> &'static str {
        "e2e"
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn mount(&self, at: MountPoint<'_>) -> Box<dyn Engine> {
        Box::new(KvEngine::new(at.view, KvMode::E2e, at.path))
    }
}

impl Engine for KvEngine {
    fn handle(
        &self,
        req: &Request,
        at: &Matched<'_>,
        cx: &Context<'_>,
    ) -> Result<Response, CoreError> {
        self.handle_request(req, at, cx.caller)
    }

    fn exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        self.secret_exists(at)
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }
}

/// How often a change that lost to a concurrent writer is tried in all.
const CONTENDED_TRIES: u32 = 16;

/// What a KV-shaped mount stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KvMode {
    /// Plain KV v2: the server reads and writes the data.
    Kv,
    /// End-to-end secrets: each version is an envelope the client encrypted to its recipients;
    /// the server checks its shape and stores it, and cannot read it (no PATCH, no subkeys).
    E2e,
}

struct KvEngine {
    view: View,
    mode: KvMode,
    /// The mount path (ending in `/`): end-to-end signatures cover the full path.
    mount: String,
}

impl std::fmt::Debug for KvEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvEngine").finish_non_exhaustive()
    }
}

fn secret_path(rest: &str) -> Result<&str, CoreError> {
    if rest.is_empty() || rest.ends_with('/') {
        return Err(CoreError::bad(
            "a secret path must name a secret, not a folder",
        ));
    }
    Ok(rest)
}

/// A non-negative integer query parameter; absent or empty is 0.
fn number(value: Option<&str>, name: &str) -> Result<u64, CoreError> {
    match value {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| CoreError::bad(format!("{name} must be a non-negative integer"))),
    }
}

fn not_found() -> CoreError {
    CoreError::NotFound(String::new())
}

impl KvEngine {
    fn new(view: View, mode: KvMode, mount: &str) -> Self {
        KvEngine {
            view,
            mode,
            mount: mount.to_owned(),
        }
    }

    fn load_meta(&self, path: &str) -> Result<Option<(SecretMeta, Entry)>, CoreError> {
        let Some(entry) = self.view.get(&meta_key(path))? else {
            return Ok(None);
        };
        let meta = serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        Ok(Some((meta, entry)))
    }

    fn config(&self) -> Result<EngineConfig, CoreError> {
        match self.view.get(CONFIG_KEY)? {
            Some(e) => serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity),
            None => Ok(EngineConfig::default()),
        }
    }

    /// Whether a write to `at` updates an existing secret (Vault's existence check).
    fn secret_exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        let p = at.param("path");
        match at.route.path {
            DATA | METADATA if !p.is_empty() => Ok(self.load_meta(p)?.is_some()),
            // Vault has no existence check on these: a write to them is an update.
            DELETE | UNDELETE | DESTROY | CONFIG => Ok(true),
            _ => Ok(false),
        }
    }

    /// Handles `at` (the route the path below the mount matched) for `caller`, who has passed the policy check.
    /// Every KV change is one compare-and-set batch on the secret's metadata (or the engine's
    /// config). One that lost to a concurrent writer wrote nothing, so it runs again on what
    /// that writer left: Vault serializes writes to a key, and a plain write must not fail
    /// because another landed first. (A stale `options.cas` is still a conflict.)
    fn handle_request(
        &self,
        req: &Request,
        at: &Matched<'_>,
        caller: &Caller,
    ) -> Result<Response, CoreError> {
        let mut tries = 1;
        loop {
            match self.handle_once(req, at, caller) {
                Err(CoreError::Contended) if tries < CONTENDED_TRIES => tries += 1,
                done => return done,
            }
        }
    }

    fn handle_once(
        &self,
        req: &Request,
        at: &Matched<'_>,
        caller: &Caller,
    ) -> Result<Response, CoreError> {
        let (route, p) = (at.route.path, at.param("path"));
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let body = req.data.as_ref();
        if self.mode == KvMode::E2e
            && (route == SUBKEYS || (route == DATA && req.operation == Operation::Patch))
        {
            return Err(CoreError::bad(
                "an e2e mount holds envelopes encrypted by clients: the server cannot read them, \
                 so it has no PATCH and no subkeys",
            ));
        }
        let resp = match (route, req.operation) {
            (CONFIG, Operation::Read) => Ok(Response::data(self.config()?.to_json())),
            (CONFIG, _) if write => self.write_config(body),
            (DATA, Operation::Read) => self.read(secret_path(p)?, req.query("version")),
            (SUBKEYS, Operation::Read) => {
                self.read_subkeys(secret_path(p)?, req.query("version"), req.query("depth"))
            }
            (DATA, _) if write => self.write(secret_path(p)?, body, false, caller),
            (DATA, Operation::Patch) => self.write(secret_path(p)?, body, true, caller),
            (DATA, Operation::Delete) | (DELETE, Operation::Create | Operation::Update) => {
                // DELETE data/: the latest version; POST delete/: the listed ones.
                let versions = match route {
                    DATA => None,
                    _ => Some(versions(body, "No version number provided")?),
                };
                let now = timefmt::now_rfc3339();
                self.update_versions(secret_path(p)?, versions.as_deref(), |v, _, _| {
                    if v.readable() {
                        v.deletion_time = now.clone();
                    }
                })
            }
            (UNDELETE, _) if write => {
                let versions = versions(body, "No version number provided")?;
                self.update_versions(secret_path(p)?, Some(&versions), |v, _, _| {
                    if !v.destroyed {
                        v.deletion_time.clear();
                    }
                })
            }
            (DESTROY, _) if write => {
                let versions = versions(body, "no version number provided")?;
                let path = secret_path(p)?;
                self.update_versions(path, Some(&versions), |v, n, batch| {
                    v.destroyed = true;
                    batch.delete(&version_key(path, n));
                    batch.shred();
                })
            }
            (METADATA, Operation::List) => self.list(p),
            (METADATA, Operation::Read) => self.read_metadata(secret_path(p)?),
            (METADATA, _) if write => self.write_metadata(secret_path(p)?, body, false),
            (METADATA, Operation::Patch) => self.write_metadata(secret_path(p)?, body, true),
            (METADATA, Operation::Delete) => self.delete_metadata(secret_path(p)?),
            _ => Err(CoreError::UnsupportedOperation),
        };
        resp.map(|r| {
            r.with_mount_type(match self.mode {
                KvMode::Kv => "kv",
                KvMode::E2e => "e2e",
            })
        })
    }

    fn write_config(&self, body: Option<&Value>) -> Result<Response, CoreError> {
        let input = MetadataInput::parse(body)?;
        if input.custom_metadata.is_some() {
            return Err(CoreError::bad("config takes no custom_metadata"));
        }
        let mut config = self.config()?;
        if let Some(m) = input.max_versions {
            config.max_versions = m;
        }
        if let Some(c) = input.cas_required {
            config.cas_required = c;
        }
        if let Some(d) = input.delete_version_after {
            config.delete_version_after = d;
        }
        let mut batch = ViewBatch::default();
        batch.put(
            CONFIG_KEY,
            serde_json::to_vec(&config).expect("config serializes"),
        );
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    /// Stores `meta` for `path` if the stored metadata is still `expected`, with `batch`.
    fn save_meta(
        &self,
        path: &str,
        meta: &SecretMeta,
        expected: Option<&Entry>,
        mut batch: ViewBatch,
    ) -> Result<(), CoreError> {
        let mkey = meta_key(path);
        batch.expect(&mkey, expected);
        batch.put(
            &mkey,
            serde_json::to_vec(meta).expect("metadata serializes"),
        );
        self.view.apply(batch)
    }

    /// Applies `change` to each listed version that exists (Vault ignores the others), or to
    /// the latest when `versions` is `None`, in one compare-and-set batch on the metadata.
    fn update_versions(
        &self,
        path: &str,
        versions: Option<&[u64]>,
        mut change: impl FnMut(&mut VersionMeta, u64, &mut ViewBatch),
    ) -> Result<Response, CoreError> {
        let Some((mut meta, entry)) = self.load_meta(path)? else {
            return Ok(Response::no_content());
        };
        let latest = [meta.current_version];
        let mut batch = ViewBatch::default();
        for &n in versions.unwrap_or(&latest) {
            if let Some(v) = meta.versions.get_mut(&n) {
                change(v, n, &mut batch);
            }
        }
        self.save_meta(path, &meta, Some(&entry), batch)?;
        Ok(Response::no_content())
    }

    fn read_metadata(&self, path: &str) -> Result<Response, CoreError> {
        let (meta, _) = self.load_meta(path)?.ok_or_else(not_found)?;
        Ok(Response::data(meta.to_json()))
    }

    /// POST (replace the given fields) or PATCH (merge) a secret's metadata; POST creates it.
    fn write_metadata(
        &self,
        path: &str,
        body: Option<&Value>,
        patch: bool,
    ) -> Result<Response, CoreError> {
        let input = MetadataInput::parse(body)?;
        let existing = self.load_meta(path)?;
        if patch && existing.is_none() {
            return Err(not_found());
        }
        let now = timefmt::now_rfc3339();
        let mut meta = existing
            .as_ref()
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| SecretMeta {
                created_time: now.clone(),
                ..SecretMeta::default()
            });
        meta.apply(input, patch)?;
        meta.updated_time = now;
        meta.current_metadata_version += 1;
        self.save_meta(
            path,
            &meta,
            existing.as_ref().map(|(_, e)| e),
            ViewBatch::default(),
        )?;
        Ok(Response::no_content())
    }

    /// Removes every version and the metadata of a secret, in one batch.
    fn delete_metadata(&self, path: &str) -> Result<Response, CoreError> {
        let Some((meta, entry)) = self.load_meta(path)? else {
            return Ok(Response::no_content());
        };
        let mkey = meta_key(path);
        let mut batch = ViewBatch::default();
        batch.expect(&mkey, Some(&entry));
        for n in meta.versions.keys() {
            batch.delete(&version_key(path, *n));
        }
        batch.delete(&mkey);
        batch.shred();
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    /// The data of a readable version.
    fn version_data(
        &self,
        path: &str,
        meta: &SecretMeta,
        version: u64,
    ) -> Result<Map<String, Value>, CoreError> {
        if !meta.versions.get(&version).is_some_and(|v| v.readable()) {
            return Err(not_found());
        }
        let entry = self
            .view
            .get(&version_key(path, version))?
            .ok_or(CoreError::Integrity)?;
        let mut stored: Value =
            serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        match stored.get_mut("data").map(Value::take) {
            Some(Value::Object(data)) => Ok(data),
            _ => Err(CoreError::Integrity),
        }
    }

    /// The metadata, the version asked for (`?version`, 0 or none: the latest) and its data.
    fn load_version(
        &self,
        path: &str,
        version: Option<&str>,
    ) -> Result<(SecretMeta, u64, Map<String, Value>), CoreError> {
        let version = number(version, "version")?;
        let (meta, _) = self.load_meta(path)?.ok_or_else(not_found)?;
        let version = if version == 0 {
            meta.current_version
        } else {
            version
        };
        let data = self.version_data(path, &meta, version)?;
        Ok((meta, version, data))
    }

    fn read(&self, path: &str, version: Option<&str>) -> Result<Response, CoreError> {
        let (meta, version, data) = self.load_version(path, version)?;
        Ok(Response::data(json!({
            "data": data,
            "metadata": meta.version_json(version),
        })))
    }

    fn read_subkeys(
        &self,
        path: &str,
        version: Option<&str>,
        depth: Option<&str>,
    ) -> Result<Response, CoreError> {
        let depth = number(depth, "depth")?;
        let (meta, version, data) = self.load_version(path, version)?;
        Ok(Response::data(json!({
            "metadata": meta.version_json(version),
            "subkeys": subkeys(&data, depth),
        })))
    }

    /// A new version: the given data, or (`patch`) the latest readable version's data merged
    /// with it (RFC 7386).
    fn write(
        &self,
        path: &str,
        body: Option<&Value>,
        patch: bool,
        caller: &Caller,
    ) -> Result<Response, CoreError> {
        let input = WriteInput::parse(body)?;
        let cas = input.cas;
        let mut data = input
            .data
            .ok_or_else(|| CoreError::bad("no data provided"))?;
        let config = self.config()?;
        let existing = self.load_meta(path)?;
        let mut meta = existing
            .as_ref()
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        if patch && existing.is_none() {
            return Err(not_found());
        }
        match cas {
            Some(cas) if cas != meta.current_version => {
                return Err(CoreError::Conflict(
                    "check-and-set parameter did not match the current version".into(),
                ));
            }
            None if config.cas_required || meta.cas_required => {
                return Err(CoreError::bad(
                    "check-and-set parameter required for this call",
                ));
            }
            _ => {}
        }
        if patch {
            let mut current = self.version_data(path, &meta, meta.current_version)?;
            merge_patch(&mut current, data);
            data = current;
        }
        let version = meta.current_version + 1;
        if self.mode == KvMode::E2e {
            if cas.is_none() {
                return Err(CoreError::bad(
                    "an e2e write needs options.cas: the envelope is signed for the version it \
                     becomes (sigil e2e put does this)",
                ));
            }
            let slot = E2eSlot {
                mount: self.mount.trim_end_matches('/'),
                path,
                version,
            };
            data = sealed::check(slot, data, caller)?;
        }
        let now = timefmt::now_rfc3339();
        if meta.created_time.is_empty() {
            meta.created_time = now.clone();
        }
        meta.current_version = version;
        meta.updated_time = now.clone();
        let deletion_time = match config.delete_version_after(&meta) {
            0 => String::new(),
            after => timefmt::rfc3339_after(after),
        };
        meta.versions.insert(
            version,
            VersionMeta {
                created_time: now,
                deletion_time,
                ..VersionMeta::default()
            },
        );

        // Vault's trimming: once the versions since `oldest_version` reach the limit, every
        // version older than the last `max` goes, ciphertext included.
        let mut batch = ViewBatch::default();
        let max = config.max_versions(&meta);
        if meta.current_version - meta.oldest_version >= max {
            let oldest = meta.current_version - max + 1;
            let old: Vec<u64> = meta.versions.range(..oldest).map(|(n, _)| *n).collect();
            for n in old {
                meta.versions.remove(&n);
                batch.delete(&version_key(path, n));
            }
            meta.oldest_version = oldest;
        }
        batch.put(
            &version_key(path, version),
            serde_json::to_vec(&json!({ "data": data })).expect("JSON serializes"),
        );
        self.save_meta(path, &meta, existing.as_ref().map(|(_, e)| e), batch)?;
        Ok(Response::data(meta.version_json(version)))
    }

    fn list(&self, prefix: &str) -> Result<Response, CoreError> {
        let prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        let full = meta_key(&prefix);
        list_response(self.view.list_children(&full)?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sigil_engine::testing::Harness;
    use sigil_engine::{CoreError, Operation};

    use super::{E2e, Kv};

    fn kv() -> Harness {
        Harness::new(&Kv, "secret/")
    }

    fn put(h: &Harness, path: &str, data: Value) -> Result<Value, CoreError> {
        h.call(Operation::Update, path, json!({ "data": data }))
    }

    #[test]
    fn concurrent_plain_writes_to_one_key_all_land() {
        let h = kv();
        let (threads, each) = (8, 25);
        let mut versions: Vec<u64> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..threads)
                .map(|t| {
                    let h = &h;
                    s.spawn(move || {
                        (0..each)
                            .map(|n| {
                                let made = put(h, "secret/data/hot", json!({ "w": t, "n": n }))
                                    .expect("a plain write is never refused for contention");
                                made["version"].as_u64().unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            writers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(
            versions.len(),
            threads * each,
            "every write made its own version"
        );
        assert_eq!(*versions.last().unwrap(), (threads * each) as u64);
    }

    #[test]
    fn versions_read_by_number_and_check_and_set() {
        let h = kv();
        let v1 = put(&h, "secret/data/app", json!({ "pw": "one" })).unwrap();
        assert_eq!(v1["version"], 1);
        put(&h, "secret/data/app", json!({ "pw": "two" })).unwrap();
        let latest = h
            .call(Operation::Read, "secret/data/app", Value::Null)
            .unwrap();
        assert_eq!(latest["data"]["pw"], "two");
        assert_eq!(latest["metadata"]["version"], 2);
        let first = h
            .request(
                Operation::Read,
                "secret/data/app",
                Value::Null,
                &[("version", "1")],
            )
            .unwrap();
        assert_eq!(first.data.unwrap()["data"]["pw"], "one");

        // A stale cas is a conflict and writes nothing; the right one writes.
        let stale = json!({ "data": { "pw": "x" }, "options": { "cas": 1 } });
        assert!(matches!(
            h.call(Operation::Update, "secret/data/app", stale),
            Err(CoreError::Conflict(_))
        ));
        let right = json!({ "data": { "pw": "three" }, "options": { "cas": 2 } });
        assert_eq!(
            h.call(Operation::Update, "secret/data/app", right).unwrap()["version"],
            3
        );
        // cas 0 creates only.
        let create_only = json!({ "data": { "a": 1 }, "options": { "cas": 0 } });
        assert!(
            h.call(Operation::Update, "secret/data/app", create_only.clone())
                .is_err()
        );
        assert!(
            h.call(Operation::Update, "secret/data/new", create_only)
                .is_ok()
        );
    }

    #[test]
    fn delete_undelete_destroy_and_metadata() {
        let h = kv();
        for pw in ["a", "b", "c"] {
            put(&h, "secret/data/s", json!({ "pw": pw })).unwrap();
        }
        // DELETE data/ soft-deletes the latest.
        h.call(Operation::Delete, "secret/data/s", Value::Null)
            .unwrap();
        assert!(matches!(
            h.call(Operation::Read, "secret/data/s", Value::Null),
            Err(CoreError::NotFound(_))
        ));
        h.call(
            Operation::Update,
            "secret/undelete/s",
            json!({ "versions": [3] }),
        )
        .unwrap();
        assert_eq!(
            h.call(Operation::Read, "secret/data/s", Value::Null)
                .unwrap()["data"]["pw"],
            "c"
        );
        h.call(
            Operation::Update,
            "secret/destroy/s",
            json!({ "versions": [1] }),
        )
        .unwrap();
        let meta = h
            .call(Operation::Read, "secret/metadata/s", Value::Null)
            .unwrap();
        assert_eq!(meta["versions"]["1"]["destroyed"], true);
        assert_eq!(meta["current_version"], 3);
        // A destroyed version is gone for good: undelete does not bring it back.
        h.call(
            Operation::Update,
            "secret/undelete/s",
            json!({ "versions": [1] }),
        )
        .unwrap();
        assert!(
            h.request(
                Operation::Read,
                "secret/data/s",
                Value::Null,
                &[("version", "1")]
            )
            .is_err()
        );
        // Listing, then deleting every version and the metadata.
        put(&h, "secret/data/dir/inner", json!({ "x": 1 })).unwrap();
        let list = h
            .call(Operation::List, "secret/metadata/", Value::Null)
            .unwrap();
        assert_eq!(list["keys"], json!(["dir/", "s"]));
        h.call(Operation::Delete, "secret/metadata/s", Value::Null)
            .unwrap();
        assert!(!h.exists("secret/data/s").unwrap());
        let list = h
            .call(Operation::List, "secret/metadata/", Value::Null)
            .unwrap();
        assert_eq!(list["keys"], json!(["dir/"]));
    }

    #[test]
    fn max_versions_trims_old_ciphertexts_and_patch_merges() {
        let h = kv();
        h.call(
            Operation::Update,
            "secret/config",
            json!({ "max_versions": 2 }),
        )
        .unwrap();
        for n in 1..=4 {
            put(&h, "secret/data/t", json!({ "n": n, "keep": "yes" })).unwrap();
        }
        let meta = h
            .call(Operation::Read, "secret/metadata/t", Value::Null)
            .unwrap();
        let versions: Vec<&String> = meta["versions"].as_object().unwrap().keys().collect();
        assert_eq!(versions, ["3", "4"]);
        let stored = h.barrier.view("logical/secret/").list("").unwrap();
        assert_eq!(
            stored.iter().filter(|k| *k != "config").count(),
            3,
            "the metadata and two versions remain: {stored:?}"
        );
        // PATCH is a JSON merge patch on the latest version (RFC 7386).
        let patch = json!({ "data": { "n": null, "added": true } });
        h.call(Operation::Patch, "secret/data/t", patch).unwrap();
        let read = h
            .call(Operation::Read, "secret/data/t", Value::Null)
            .unwrap();
        assert_eq!(read["data"], json!({ "keep": "yes", "added": true }));
        let sub = h
            .call(Operation::Read, "secret/subkeys/t", Value::Null)
            .unwrap();
        assert_eq!(sub["subkeys"], json!({ "keep": null, "added": null }));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let h = kv();
        for (op, path, body) in [
            (Operation::Update, "secret/data/x", json!({ "nodata": 1 })),
            (Operation::Update, "secret/data/", json!({ "data": {} })),
            (
                Operation::Update,
                "secret/data/x",
                json!({ "data": "not an object" }),
            ),
            (
                Operation::Update,
                "secret/config",
                json!({ "max_versions": "many" }),
            ),
            (Operation::Update, "secret/undelete/x", json!({})),
        ] {
            assert!(h.call(op, path, body.clone()).is_err(), "{path} {body}");
        }
        assert!(
            h.barrier
                .view("logical/secret/")
                .list("")
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            h.request(
                Operation::Read,
                "secret/data/x",
                Value::Null,
                &[("version", "-1")]
            ),
            Err(CoreError::BadRequest(_))
        ));
    }

    #[test]
    fn an_e2e_mount_has_no_patch_no_subkeys_and_needs_cas() {
        let h = Harness::new(&E2e, "e2e/");
        for (op, path) in [
            (Operation::Patch, "e2e/data/x"),
            (Operation::Read, "e2e/subkeys/x"),
        ] {
            assert!(matches!(
                h.call(op, path, json!({ "data": {} })),
                Err(CoreError::BadRequest(_))
            ));
        }
        let no_cas = json!({ "data": { "anything": 1 } });
        let err = h.call(Operation::Update, "e2e/data/x", no_cas).unwrap_err();
        assert!(err.to_string().contains("options.cas"), "{err}");
        // With cas, the server checks the envelope: arbitrary data is not one.
        let junk = json!({ "data": { "anything": 1 }, "options": { "cas": 0 } });
        assert!(h.call(Operation::Update, "e2e/data/x", junk).is_err());
        assert!(h.barrier.view("logical/e2e/").list("").unwrap().is_empty());
    }
}
