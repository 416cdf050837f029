//! The `kv` engine, version 2, at `secret/` — the basic operations for now: write (with
//! `options.cas`), read latest or `?version=N`, list, soft-delete latest. Vault's paths and
//! JSON shapes.

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
        match rest.strip_prefix("data/") {
            Some(p) if !p.is_empty() => Ok(self.load_meta(p)?.is_some()),
            _ => Ok(false),
        }
    }

    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let resp = if let Some(p) = rest.strip_prefix("data/") {
            match req.operation {
                Operation::Read => self.read(secret_path(p)?, req.query("version")),
                Operation::Create | Operation::Update => {
                    self.write(secret_path(p)?, req.data.clone())
                }
                Operation::Delete => self.delete_latest(secret_path(p)?),
                _ => Err(CoreError::UnsupportedOperation),
            }
        } else if let Some(p) = rest
            .strip_prefix("metadata/")
            .or((rest == "metadata").then_some(""))
        {
            match req.operation {
                Operation::List => self.list(p),
                _ => Err(CoreError::UnsupportedOperation),
            }
        } else {
            Err(CoreError::NotFound(format!(
                "no handler for route \"secret/{rest}\""
            )))
        };
        resp.map(|r| r.with_mount_type("kv"))
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

    fn delete_latest(&self, path: &str) -> Result<Response, CoreError> {
        let Some((mut meta, entry)) = self.load_meta(path)? else {
            return Ok(Response::no_content());
        };
        let current = meta.current_version;
        if let Some(v) = meta.versions.get_mut(&current)
            && v.deletion_time.is_empty()
        {
            v.deletion_time = timefmt::now_rfc3339();
            let mkey = meta_key(path);
            let mut batch = ViewBatch::default();
            batch.expect(&mkey, Some(&entry));
            batch.put(
                &mkey,
                serde_json::to_vec(&meta).expect("metadata serializes"),
            );
            self.view.apply(batch)?;
        }
        Ok(Response::no_content())
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
