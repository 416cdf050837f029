//! The mount table (Vault's `sys/mounts`): which engine serves which path prefix. Kept as one
//! entry under the barrier, changed by compare-and-set; each mount's data lives in its own view
//! (`logical/<uuid>/`), so disabling a mount removes exactly its data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::barrier::{Barrier, View, ViewBatch};
use crate::{CoreError, Operation, Request, Response, duration};
use sigil_engine::{EngineKind, EngineKinds, LeaseLimits, Leases, MountPoint, Passwords};

/// Where the table is stored, in the `core/` view.
const TABLE_KEY: &str = "mounts";
/// The data prefix (`logical/secret/`) of the default `secret/` mount, as before mounts existed.
const LEGACY_KV_UUID: &str = "secret";
/// Prefixes no engine can be mounted at or under (Vault's protected paths).
const RESERVED: &[&str] = &["sys/", "identity/", "auth/", "audit/", "cubbyhole/"];

/// What can be mounted, for an error message: "kv (version 2), e2e, transit, pki and
/// database".
fn offered(kinds: &EngineKinds) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.offered_as()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => "nothing".to_owned(),
    }
}

/// A mount's settings as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MountEntry {
    #[serde(rename = "type")]
    kind: String,
    description: String,
    uuid: String,
    accessor: String,
    default_lease_ttl: u64,
    max_lease_ttl: u64,
}

impl MountEntry {
    fn engine_kind<'k>(
        &self,
        kinds: &'k EngineKinds,
    ) -> Result<&'k Arc<dyn EngineKind>, CoreError> {
        kinds.get(&self.kind).ok_or(CoreError::Integrity)
    }

    /// The entry as Vault shows it in `sys/mounts`.
    fn to_json(&self, kinds: &EngineKinds) -> Value {
        let options = kinds.get(&self.kind).map_or(Value::Null, |k| k.options());
        json!({
            "type": self.kind,
            "description": self.description,
            "accessor": self.accessor,
            "uuid": self.uuid,
            "config": self.tune_config(),
            "options": options,
            "local": false,
            "seal_wrap": false,
            "external_entropy_access": false,
        })
    }

    fn limits(&self) -> LeaseLimits {
        LeaseLimits {
            default_ttl: self.default_lease_ttl,
            max_ttl: self.max_lease_ttl,
        }
    }

    fn tune_config(&self) -> Value {
        json!({
            "default_lease_ttl": self.default_lease_ttl,
            "max_lease_ttl": self.max_lease_ttl,
            "force_no_cache": false,
        })
    }
}

/// A mounted engine.
pub(crate) struct Mount {
    /// The mount path, ending in `/`.
    pub(crate) path: String,
    /// Its kind's name (`kv`).
    pub(crate) kind: &'static str,
    /// The engine.
    pub(crate) engine: Box<dyn sigil_engine::Engine>,
    /// Its lease TTLs (`sys/mounts/<path>/tune`).
    limits: RwLock<LeaseLimits>,
    /// Set once the mount is no longer in the table (disabled): a request planned before
    /// that finds it so instead of writing into data being removed.
    retired: AtomicBool,
}

impl Mount {
    /// Whether the mount was disabled since it was resolved.
    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The mount's lease TTLs.
    pub(crate) fn limits(&self) -> LeaseLimits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

type Table = BTreeMap<String, MountEntry>;

/// The mounts, by path (each ending in `/`).
pub(crate) struct MountTable {
    barrier: Arc<Barrier>,
    /// What mounted engines borrow from the core.
    leases: Arc<dyn Leases>,
    passwords: Arc<dyn Passwords>,
    /// The engine kinds the server registered.
    kinds: EngineKinds,
    core: View,
    /// By mount path without its trailing `/`, so routing looks paths up without allocating.
    mounts: RwLock<BTreeMap<String, Arc<Mount>>>,
    /// Serializes changes to the table.
    write: Mutex<()>,
}

impl std::fmt::Debug for MountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountTable").finish_non_exhaustive()
    }
}

/// Checks and normalizes a mount path: segments of letters, digits, `-`, `_`, `.`; not `.` or
/// `..`; ends in `/`; not at or under a reserved prefix.
fn mount_path(raw: &str) -> Result<String, CoreError> {
    let trimmed = raw.trim_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 256
        && trimmed.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if !ok {
        return Err(CoreError::bad(
            "a mount path is one or more segments of letters, digits, '-', '_' and '.'",
        ));
    }
    let path = format!("{trimmed}/");
    if let Some(r) = RESERVED.iter().find(|r| path.starts_with(*r)) {
        return Err(CoreError::bad(format!("cannot mount at or under {r}")));
    }
    Ok(path)
}

fn accessor(kind: &str) -> Result<String, CoreError> {
    let mut b = [0u8; 4];
    sigil_crypto::random::fill(&mut b).map_err(|_| CoreError::rng())?;
    Ok(format!("{kind}_{:08x}", u32::from_be_bytes(b)))
}

impl MountTable {
    /// Loads the table from `core/mounts`; a store without one gets `secret/` as KV v2 when
    /// the server offers `kv` (written at once, so it is there after a restart too). That first mount keeps its data
    /// under `logical/secret/`, where stores made before the mount table kept theirs.
    pub(crate) fn load(
        barrier: Arc<Barrier>,
        leases: Arc<dyn Leases>,
        passwords: Arc<dyn Passwords>,
        kinds: EngineKinds,
    ) -> Result<Self, CoreError> {
        let core = barrier.view("core/");
        let table = MountTable {
            barrier,
            leases,
            passwords,
            kinds,
            core,
            mounts: RwLock::new(BTreeMap::new()),
            write: Mutex::new(()),
        };
        let _guard = table.write.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = match table.core.get(TABLE_KEY)? {
            Some(e) => serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
            None => {
                let mut t = Table::new();
                if table.kinds.get("kv").is_some() {
                    let mut entry = table.new_entry("kv", "key/value secret storage".into())?;
                    entry.uuid = LEGACY_KV_UUID.into();
                    t.insert("secret/".into(), entry);
                }
                table.store(None, &t, ViewBatch::default())?;
                t
            }
        };
        table.install(&stored)?;
        drop(_guard);
        Ok(table)
    }

    fn new_entry(&self, kind: &str, description: String) -> Result<MountEntry, CoreError> {
        Ok(MountEntry {
            kind: kind.to_owned(),
            description,
            uuid: crate::identity::random_id()?,
            accessor: accessor(kind)?,
            default_lease_ttl: 0,
            max_lease_ttl: 0,
        })
    }

    fn read_table(&self) -> Result<(Table, Option<crate::barrier::Entry>), CoreError> {
        match self.core.get(TABLE_KEY)? {
            Some(e) => Ok((
                serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
                Some(e),
            )),
            None => Ok((Table::new(), None)),
        }
    }

    /// Writes `table` if the stored one is still `expected`, with `batch` (in the `core/` view
    /// only: engine data goes through [`MountTable::engine_view`]).
    fn store(
        &self,
        expected: Option<&crate::barrier::Entry>,
        table: &Table,
        mut batch: ViewBatch,
    ) -> Result<(), CoreError> {
        batch.expect(TABLE_KEY, expected);
        batch.put(
            TABLE_KEY,
            serde_json::to_vec(table).expect("mount table serializes"),
        );
        self.core.apply(batch)
    }

    fn engine_view(&self, uuid: &str) -> View {
        self.barrier.view(&format!("logical/{uuid}/"))
    }

    /// Rebuilds the in-memory mounts from `table`, keeping the engines of unchanged mounts.
    fn install(&self, table: &Table) -> Result<(), CoreError> {
        let mut mounts = self.mounts.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = BTreeMap::new();
        for (path, entry) in table {
            let kind = entry.engine_kind(&self.kinds)?;
            let mount = match mounts.get(path.trim_end_matches('/')) {
                Some(m) if m.kind == kind.name() => {
                    *m.limits.write().unwrap_or_else(PoisonError::into_inner) = entry.limits();
                    m.clone()
                }
                _ => Arc::new(Mount {
                    path: path.clone(),
                    kind: kind.name(),
                    engine: kind.mount(MountPoint {
                        view: self.engine_view(&entry.uuid),
                        path,
                        uuid: &entry.uuid,
                        leases: &self.leases,
                        passwords: &self.passwords,
                    }),
                    limits: RwLock::new(entry.limits()),
                    retired: AtomicBool::new(false),
                }),
            };
            next.insert(path.trim_end_matches('/').to_owned(), mount);
        }
        for (path, old) in mounts.iter() {
            if !next.get(path).is_some_and(|m| Arc::ptr_eq(m, old)) {
                old.retired.store(true, Ordering::Release);
            }
        }
        *mounts = next;
        Ok(())
    }

    /// Every mount.
    pub(crate) fn all(&self) -> Vec<Arc<Mount>> {
        self.mounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The mount serving `path` (longest prefix at a segment boundary) and the rest of the
    /// path below it.
    pub(crate) fn resolve<'p>(&self, path: &'p str) -> Option<(Arc<Mount>, &'p str)> {
        let mounts = self.mounts.read().unwrap_or_else(PoisonError::into_inner);
        // Candidate prefixes, longest first: `a/b/c` → `a/b/c`, `a/b`, `a`.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some(m) = mounts.get(candidate) {
                let rest = path.get(candidate.len() + 1..).unwrap_or("");
                return Some((m.clone(), rest));
            }
            candidate = &candidate[..candidate.rfind('/')?];
        }
    }

    /// The mount table's entries (paths ending in `/`) for which `visible` holds, as
    /// `sys/mounts` shows them (for `sys/internal/ui/mounts`).
    pub(crate) fn entries(
        &self,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Map<String, Value>, CoreError> {
        let (table, _) = self.read_table()?;
        Ok(table
            .iter()
            .filter(|(p, _)| visible(p))
            .map(|(p, e)| (p.clone(), e.to_json(&self.kinds)))
            .collect())
    }

    /// `sys/mounts…` requests; `rest` is what follows `sys/mounts`.
    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let body = req.data.as_ref();
        if rest.is_empty() {
            return match req.operation {
                Operation::Read => Ok(Response::data(self.list()?)),
                _ => Err(CoreError::UnsupportedOperation),
            };
        }
        if let Some(path) = rest.strip_suffix("/tune") {
            let path = mount_path(path)?;
            return match req.operation {
                Operation::Read => {
                    let (table, _) = self.read_table()?;
                    let e = table.get(&path).ok_or_else(|| no_mount(&path))?;
                    let mut out = e.tune_config();
                    out["description"] = json!(e.description);
                    out["options"] = e.to_json(&self.kinds)["options"].clone();
                    Ok(Response::data(out))
                }
                _ if write => self.tune(&path, body),
                _ => Err(CoreError::UnsupportedOperation),
            };
        }
        let path = mount_path(rest)?;
        match req.operation {
            Operation::Read => {
                let (table, _) = self.read_table()?;
                let e = table.get(&path).ok_or_else(|| no_mount(&path))?;
                Ok(Response::data(e.to_json(&self.kinds)))
            }
            _ if write => self.enable(&path, body),
            Operation::Delete => self.disable(&path),
            _ => Err(CoreError::UnsupportedOperation),
        }
    }

    /// Whether `sys/mounts/<rest>` names an existing mount (a write to it is then an update).
    pub(crate) fn exists(&self, rest: &str) -> bool {
        let key = rest.strip_suffix("/tune").unwrap_or(rest);
        mount_path(key).is_ok_and(|p| {
            self.mounts
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(p.trim_end_matches('/'))
        })
    }

    fn list(&self) -> Result<Value, CoreError> {
        let (table, _) = self.read_table()?;
        let mut out = Map::new();
        for (path, e) in &table {
            out.insert(path.clone(), e.to_json(&self.kinds));
        }
        // The built-in paths, shown as Vault shows them; they cannot be disabled or tuned.
        for (path, kind, description) in [
            (
                "sys/",
                "system",
                "system endpoints used for control, policy and debugging",
            ),
            ("identity/", "identity", "identity store"),
        ] {
            out.insert(
                path.into(),
                json!({
                    "type": kind,
                    "description": description,
                    "accessor": "",
                    "uuid": "",
                    "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false },
                    "options": Value::Null,
                    "local": false,
                    "seal_wrap": false,
                    "external_entropy_access": false,
                }),
            );
        }
        Ok(Value::Object(out))
    }

    fn enable(&self, path: &str, body: Option<&Value>) -> Result<Response, CoreError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct EnableInput {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            description: String,
            #[serde(default)]
            config: Option<Map<String, Value>>,
            #[serde(default)]
            options: Option<Map<String, Value>>,
        }
        let input: EnableInput = serde_json::from_value(body.cloned().unwrap_or(json!({})))
            .map_err(|_| {
                CoreError::bad(
                    "invalid request body: expected type (kv, e2e), and optionally description, config, options",
                )
            })?;
        let kind = self.kinds.get(&input.kind).ok_or_else(|| {
            CoreError::bad(format!(
                "unknown engine type: Sigil mounts {}",
                offered(&self.kinds)
            ))
        })?;
        if let Some(options) = &input.options {
            kind.check_options(options)?;
        }
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut table, expected) = self.read_table()?;
        if let Some(existing) = table
            .keys()
            .find(|p| p.starts_with(path) || path.starts_with(p.as_str()))
        {
            return Err(CoreError::bad(format!(
                "path is already in use at {existing}"
            )));
        }
        let mut entry = self.new_entry(kind.name(), input.description)?;
        if let Some(config) = &input.config {
            apply_ttls(&mut entry, config)?;
        }
        table.insert(path.to_owned(), entry);
        self.store(expected.as_ref(), &table, ViewBatch::default())?;
        self.install(&table)?;
        tracing::info!(path, kind = kind.name(), "engine enabled");
        Ok(Response::no_content())
    }

    fn disable(&self, path: &str) -> Result<Response, CoreError> {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut table, expected) = self.read_table()?;
        // As Vault: disabling what is not mounted succeeds and changes nothing.
        let Some(entry) = table.remove(path) else {
            return Ok(Response::no_content());
        };
        // The table first: once it commits, nothing routes to the old data. Then the data, in
        // batches that each fit a Raft entry; after a crash in between, the orphaned entries
        // are unreachable ciphertext under a uuid no mount uses, removed by the next
        // disable-time sweep below.
        self.store(expected.as_ref(), &table, ViewBatch::default())?;
        self.install(&table)?;
        let removed = self.purge(&entry.uuid)?;
        self.purge_orphans(&table)?;
        tracing::info!(path, removed, "engine disabled and its data removed");
        Ok(Response::no_content())
    }

    /// Deletes every entry of the engine whose data lives under `logical/<uuid>/`.
    fn purge(&self, uuid: &str) -> Result<usize, CoreError> {
        let view = self.engine_view(uuid);
        let keys = view.list("")?;
        view.delete_all(&keys, true)?;
        Ok(keys.len())
    }

    /// Removes data left under `logical/` by mounts no longer in `table` (an interrupted
    /// disable).
    fn purge_orphans(&self, table: &Table) -> Result<(), CoreError> {
        let live: Vec<&str> = table.values().map(|e| e.uuid.as_str()).collect();
        let logical = self.barrier.view("logical/");
        let seen: Vec<String> = logical
            .list_children("")?
            .into_iter()
            .filter_map(|child| child.strip_suffix('/').map(str::to_owned))
            .collect();
        for uuid in seen.iter().filter(|u| !live.contains(&u.as_str())) {
            self.purge(uuid)?;
        }
        Ok(())
    }

    fn tune(&self, path: &str, body: Option<&Value>) -> Result<Response, CoreError> {
        let input = match body {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(CoreError::bad("invalid request body: expected an object")),
        };
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut table, expected) = self.read_table()?;
        let entry = table.get_mut(path).ok_or_else(|| no_mount(path))?;
        for key in input.keys() {
            match key.as_str() {
                "description" | "default_lease_ttl" | "max_lease_ttl" => {}
                "options" => {
                    let version = input["options"].get("version");
                    if version.is_some_and(|v| v != "2" && v != 2) {
                        return Err(CoreError::bad(
                            "only KV version 2 is supported: a mount cannot be tuned to another version",
                        ));
                    }
                }
                other => {
                    return Err(CoreError::bad(format!(
                        "{other} cannot be tuned: Sigil tunes description, default_lease_ttl, max_lease_ttl"
                    )));
                }
            }
        }
        if let Some(d) = input.get("description") {
            entry.description = d
                .as_str()
                .ok_or_else(|| CoreError::bad("description must be a string"))?
                .to_owned();
        }
        apply_ttls(entry, &input)?;
        self.store(expected.as_ref(), &table, ViewBatch::default())?;
        self.install(&table)?;
        Ok(Response::no_content())
    }
}

fn apply_ttls(entry: &mut MountEntry, config: &Map<String, Value>) -> Result<(), CoreError> {
    for (key, v) in config {
        match key.as_str() {
            "default_lease_ttl" => entry.default_lease_ttl = duration::seconds(v, key)?,
            "max_lease_ttl" => entry.max_lease_ttl = duration::seconds(v, key)?,
            _ => {}
        }
    }
    if entry.max_lease_ttl != 0 && entry.default_lease_ttl > entry.max_lease_ttl {
        return Err(CoreError::bad(
            "default_lease_ttl cannot be longer than max_lease_ttl",
        ));
    }
    Ok(())
}

fn no_mount(path: &str) -> CoreError {
    CoreError::bad(format!("no mount at {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_checked() {
        assert_eq!(mount_path("kv").unwrap(), "kv/");
        assert_eq!(mount_path("/team/a.b-c_d/").unwrap(), "team/a.b-c_d/");
        for bad in [
            "",
            "/",
            "a//b",
            "a/../b",
            "..",
            "a b",
            "ä",
            "sys",
            "sys/x",
            "identity",
            "auth/x",
            "cubbyhole",
        ] {
            assert!(mount_path(bad).is_err(), "{bad:?}");
        }
    }
}
