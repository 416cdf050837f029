//! The `kv` engine, version 2, at `secret/`, with Vault's paths and JSON shapes: `data`
//! (write with `options.cas`, read latest or `?version=N`, soft-delete latest), `delete`,
//! `undelete` and `destroy` of listed versions, and `metadata` (read, delete all, list).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::barrier::{View, ViewBatch};
use crate::request::{children, list_response};
use crate::{CoreError, Operation, Request, Response, timefmt};

/// Vault's default number of versions kept per secret.
const DEFAULT_MAX_VERSIONS: u64 = 10;

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
struct VersionMeta {
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
struct SecretMeta {
    current_version: u64,
    oldest_version: u64,
    created_time: String,
    updated_time: String,
    versions: BTreeMap<u64, VersionMeta>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteInput {
    data: Option<Map<String, Value>>,
    #[serde(default)]
    options: WriteOptions,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WriteOptions {
    cas: Option<u64>,
}

pub(crate) struct KvEngine {
    view: View,
}

impl std::fmt::Debug for KvEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvEngine").finish_non_exhaustive()
    }
}

fn meta_key(path: &str) -> String {
    format!("meta/{path}")
}

fn version_key(path: &str, version: u64) -> String {
    let h = Sha256::digest(path.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("ver/{hex}/{version}")
}

fn version_json(v: u64, m: &VersionMeta) -> Value {
    json!({
        "created_time": m.created_time,
        "custom_metadata": null,
        "deletion_time": m.deletion_time,
        "destroyed": m.destroyed,
        "version": v,
    })
}

/// The `versions` of a delete/undelete/destroy body: a list of numbers or a comma-separated
/// string, as Vault accepts.
fn versions(body: Option<&Value>) -> Result<Vec<u64>, CoreError> {
    let bad = || CoreError::bad("expected {\"versions\": [<version>, …]}");
    let list: Vec<u64> = match body.and_then(|b| b.get("versions")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64().ok_or_else(bad),
                Value::String(s) => s.trim().parse().map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
        Some(Value::Number(n)) => vec![n.as_u64().ok_or_else(bad)?],
        Some(_) => return Err(bad()),
    };
    if list.is_empty() {
        return Err(CoreError::bad("no version number provided"));
    }
    Ok(list)
}

fn secret_path(rest: &str) -> Result<&str, CoreError> {
    if rest.is_empty() || rest.ends_with('/') {
        return Err(CoreError::bad(
            "a secret path must name a secret, not a folder",
        ));
    }
    Ok(rest)
}

impl KvEngine {
    pub(crate) fn new(view: View) -> Self {
        KvEngine { view }
    }

    fn load_meta(
        &self,
        path: &str,
    ) -> Result<Option<(SecretMeta, crate::barrier::Entry)>, CoreError> {
        let Some(entry) = self.view.get(&meta_key(path))? else {
            return Ok(None);
        };
        let meta = serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        Ok(Some((meta, entry)))
    }

    /// Whether a write to `rest` updates an existing secret (Vault's existence check).
    pub(crate) fn exists(&self, rest: &str) -> Result<bool, CoreError> {
        match rest.split_once('/') {
            Some(("data", p)) if !p.is_empty() => Ok(self.load_meta(p)?.is_some()),
            // Vault has no existence check on these: a write to them is an update.
            Some(("delete" | "undelete" | "destroy", _)) => Ok(true),
            _ => Ok(false),
        }
    }

    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let (kind, p) = rest.split_once('/').unwrap_or((rest, ""));
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let resp = match (kind, req.operation) {
            ("data", Operation::Read) => self.read(secret_path(p)?, req.query("version")),
            ("data", _) if write => self.write(secret_path(p)?, req.data.clone()),
            ("data", Operation::Delete) | ("delete", Operation::Create | Operation::Update) => {
                // DELETE data/: the latest version; POST delete/: the listed ones.
                let versions = match kind {
                    "data" => None,
                    _ => Some(versions(req.data.as_ref())?),
                };
                let now = timefmt::now_rfc3339();
                self.update_versions(secret_path(p)?, versions.as_deref(), |v, _, _| {
                    if v.deletion_time.is_empty() && !v.destroyed {
                        v.deletion_time = now.clone();
                    }
                })
            }
            ("undelete", _) if write => {
                let versions = versions(req.data.as_ref())?;
                self.update_versions(secret_path(p)?, Some(&versions), |v, _, _| {
                    if !v.destroyed {
                        v.deletion_time.clear();
                    }
                })
            }
            ("destroy", _) if write => {
                let versions = versions(req.data.as_ref())?;
                let path = secret_path(p)?;
                self.update_versions(path, Some(&versions), |v, n, batch| {
                    v.destroyed = true;
                    batch.delete(&version_key(path, n));
                })
            }
            ("metadata", Operation::List) => self.list(p),
            ("metadata", Operation::Read) => self.read_metadata(secret_path(p)?),
            ("metadata", Operation::Delete) => self.delete_metadata(secret_path(p)?),
            ("data" | "delete" | "undelete" | "destroy" | "metadata", _) => {
                Err(CoreError::UnsupportedOperation)
            }
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"secret/{rest}\""
            ))),
        };
        resp.map(|r| r.with_mount_type("kv"))
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
        let mkey = meta_key(path);
        batch.expect(&mkey, Some(&entry));
        batch.put(
            &mkey,
            serde_json::to_vec(&meta).expect("metadata serializes"),
        );
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    fn read_metadata(&self, path: &str) -> Result<Response, CoreError> {
        let (meta, _) = self
            .load_meta(path)?
            .ok_or_else(|| CoreError::NotFound(String::new()))?;
        let versions: Map<String, Value> = meta
            .versions
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    json!({
                        "created_time": v.created_time,
                        "deletion_time": v.deletion_time,
                        "destroyed": v.destroyed,
                    }),
                )
            })
            .collect();
        Ok(Response::data(json!({
            "cas_required": false,
            "created_time": meta.created_time,
            "current_version": meta.current_version,
            "custom_metadata": null,
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": meta.oldest_version,
            "updated_time": meta.updated_time,
            "versions": versions,
        })))
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
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    fn read(&self, path: &str, version: Option<&str>) -> Result<Response, CoreError> {
        let version = match version {
            None | Some("") => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| CoreError::bad("version must be a non-negative integer"))?,
        };
        let (meta, _) = self
            .load_meta(path)?
            .ok_or_else(|| CoreError::NotFound(String::new()))?;
        let version = if version == 0 {
            meta.current_version
        } else {
            version
        };
        let vmeta = meta
            .versions
            .get(&version)
            .ok_or_else(|| CoreError::NotFound(String::new()))?;
        if vmeta.destroyed || !vmeta.deletion_time.is_empty() {
            return Err(CoreError::NotFound(String::new()));
        }
        let entry = self
            .view
            .get(&version_key(path, version))?
            .ok_or(CoreError::Integrity)?;
        let stored: Value =
            serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        Ok(Response::data(json!({
            "data": stored.get("data").cloned().unwrap_or(Value::Null),
            "metadata": version_json(version, vmeta),
        })))
    }

    fn write(&self, path: &str, body: Option<Value>) -> Result<Response, CoreError> {
        // serde's messages can quote the offending value: never echo them.
        let input: WriteInput = serde_json::from_value(body.unwrap_or(Value::Null)).map_err(|_| {
            CoreError::bad(
                "invalid request body: expected {\"data\": {…}, \"options\": {\"cas\": <version>}}",
            )
        })?;
        let data = input
            .data
            .ok_or_else(|| CoreError::bad("no data provided"))?;
        let existing = self.load_meta(path)?;
        let mut meta = existing
            .as_ref()
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        if let Some(cas) = input.options.cas
            && cas != meta.current_version
        {
            return Err(CoreError::Conflict(
                "check-and-set parameter did not match the current version".into(),
            ));
        }
        let now = timefmt::now_rfc3339();
        let version = meta.current_version + 1;
        if meta.created_time.is_empty() {
            meta.created_time = now.clone();
            meta.oldest_version = version;
        }
        meta.current_version = version;
        meta.updated_time = now.clone();
        let vmeta = VersionMeta {
            created_time: now,
            ..VersionMeta::default()
        };
        meta.versions.insert(version, vmeta.clone());

        let mut batch = ViewBatch::default();
        while meta.versions.len() as u64 > DEFAULT_MAX_VERSIONS {
            let (&old, _) = meta.versions.iter().next().expect("non-empty");
            meta.versions.remove(&old);
            batch.delete(&version_key(path, old));
            meta.oldest_version = old + 1;
        }
        let mkey = meta_key(path);
        batch.expect(&mkey, existing.as_ref().map(|(_, e)| e));
        batch.put(
            &version_key(path, version),
            serde_json::to_vec(&json!({ "data": data })).expect("JSON serializes"),
        );
        batch.put(
            &mkey,
            serde_json::to_vec(&meta).expect("metadata serializes"),
        );
        self.view.apply(batch)?;
        Ok(Response::data(version_json(version, &vmeta)))
    }

    fn list(&self, prefix: &str) -> Result<Response, CoreError> {
        let prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        let full = meta_key(&prefix);
        list_response(children(full.len(), self.view.list(&full)?))
    }
}
