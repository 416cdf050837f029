//! What the KV v2 engine stores and accepts: secret and version metadata, the engine's
//! `config`, and the parsing of request bodies (Vault's field names and limits).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use sigil_engine::{CoreError, duration, timefmt};

/// Vault's default number of versions kept per secret.
const DEFAULT_MAX_VERSIONS: u64 = 10;
/// Vault's limits on `custom_metadata`.
const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;

/// Where the engine's `config` is stored.
pub(super) const CONFIG_KEY: &str = "config";

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub(super) struct VersionMeta {
    pub(super) created_time: String,
    pub(super) deletion_time: String,
    pub(super) destroyed: bool,
}

impl VersionMeta {
    /// Not destroyed, and not deleted: no deletion time, or one still in the future (set by
    /// `delete_version_after`).
    pub(super) fn readable(&self) -> bool {
        !self.destroyed && (self.deletion_time.is_empty() || !timefmt::is_past(&self.deletion_time))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub(super) struct SecretMeta {
    pub(super) current_version: u64,
    pub(super) oldest_version: u64,
    pub(super) created_time: String,
    pub(super) updated_time: String,
    pub(super) versions: BTreeMap<u64, VersionMeta>,
    #[serde(default)]
    pub(super) max_versions: u64,
    #[serde(default)]
    pub(super) cas_required: bool,
    #[serde(default)]
    pub(super) custom_metadata: BTreeMap<String, String>,
    /// Seconds after which a new version counts as deleted (0: never).
    #[serde(default)]
    pub(super) delete_version_after: u64,
    /// How many times the metadata itself was written (OpenBao's field).
    #[serde(default)]
    pub(super) current_metadata_version: u64,
}

impl SecretMeta {
    fn custom_json(&self) -> Value {
        if self.custom_metadata.is_empty() {
            Value::Null
        } else {
            json!(self.custom_metadata)
        }
    }

    /// One version's metadata as Vault returns it with the data.
    pub(super) fn version_json(&self, v: u64) -> Value {
        let m = self.versions.get(&v).cloned().unwrap_or_default();
        json!({
            "created_time": m.created_time,
            "custom_metadata": self.custom_json(),
            "deletion_time": m.deletion_time,
            "destroyed": m.destroyed,
            "version": v,
        })
    }

    /// The whole metadata as `GET metadata/<path>` returns it.
    pub(super) fn to_json(&self) -> Value {
        let versions: Map<String, Value> = self
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
        json!({
            "cas_required": self.cas_required,
            "created_time": self.created_time,
            "current_version": self.current_version,
            "current_metadata_version": self.current_metadata_version,
            "custom_metadata": self.custom_json(),
            "delete_version_after": duration::go_format(self.delete_version_after),
            "max_versions": self.max_versions,
            "metadata_cas_required": false,
            "oldest_version": self.oldest_version,
            "updated_time": self.updated_time,
            "versions": versions,
        })
    }

    /// Applies a metadata write (`patch`: a JSON merge patch of `custom_metadata`, where
    /// `null` removes a key; otherwise a given `custom_metadata` replaces the old one).
    pub(super) fn apply(&mut self, input: MetadataInput, patch: bool) -> Result<(), CoreError> {
        if let Some(m) = input.max_versions {
            self.max_versions = m;
        }
        if let Some(c) = input.cas_required {
            self.cas_required = c;
        }
        if let Some(d) = input.delete_version_after {
            self.delete_version_after = d;
        }
        if let Some(custom) = input.custom_metadata {
            if !patch {
                self.custom_metadata.clear();
            }
            for (k, v) in custom {
                match v {
                    Value::String(s) => {
                        self.custom_metadata.insert(k, s);
                    }
                    Value::Null if patch => {
                        self.custom_metadata.remove(&k);
                    }
                    _ => return Err(CoreError::bad("custom_metadata values must be strings")),
                }
            }
            check_custom(&self.custom_metadata)?;
        }
        Ok(())
    }
}

fn check_custom(custom: &BTreeMap<String, String>) -> Result<(), CoreError> {
    if custom.len() > MAX_CUSTOM_KEYS {
        return Err(CoreError::bad(format!(
            "custom_metadata can have at most {MAX_CUSTOM_KEYS} keys"
        )));
    }
    for (k, v) in custom {
        if k.is_empty() || k.len() > MAX_CUSTOM_KEY_LEN {
            return Err(CoreError::bad(format!(
                "custom_metadata keys must be 1 to {MAX_CUSTOM_KEY_LEN} bytes"
            )));
        }
        if v.len() > MAX_CUSTOM_VALUE_LEN {
            return Err(CoreError::bad(format!(
                "custom_metadata values must be at most {MAX_CUSTOM_VALUE_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// The engine's `config`.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub(super) struct EngineConfig {
    pub(super) max_versions: u64,
    pub(super) cas_required: bool,
    #[serde(default)]
    pub(super) delete_version_after: u64,
}

impl EngineConfig {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "cas_required": self.cas_required,
            "delete_version_after": duration::go_format(self.delete_version_after),
            "max_versions": self.max_versions,
            "metadata_cas_required": false,
        })
    }

    /// Versions kept for `meta`: the larger of the secret's and the engine's settings (as
    /// OpenBao and the current Vault KV plugin do: a secret cannot keep fewer versions than
    /// the engine promises); when neither is set, Vault's default of 10.
    pub(super) fn max_versions(&self, meta: &SecretMeta) -> u64 {
        match meta.max_versions.max(self.max_versions) {
            0 => DEFAULT_MAX_VERSIONS,
            m => m,
        }
    }

    /// Seconds after which a new version of `meta` counts as deleted: the shorter of the
    /// secret's and the engine's settings, ignoring unset (0) ones (Vault's rule).
    pub(super) fn delete_version_after(&self, meta: &SecretMeta) -> u64 {
        match (meta.delete_version_after, self.delete_version_after) {
            (0, e) => e,
            (s, 0) => s,
            (s, e) => s.min(e),
        }
    }
}

/// A write to `metadata/<path>` or `config` (config takes no `custom_metadata`).
/// Numbers and booleans may come as strings (`sigil write secret/config max_versions=5`), as
/// Vault's field parser accepts them.
#[derive(Default)]
pub(super) struct MetadataInput {
    pub(super) max_versions: Option<u64>,
    pub(super) cas_required: Option<bool>,
    pub(super) delete_version_after: Option<u64>,
    pub(super) custom_metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetadataInput {
    max_versions: Option<Value>,
    cas_required: Option<Value>,
    delete_version_after: Option<Value>,
    custom_metadata: Option<Map<String, Value>>,
}

impl MetadataInput {
    pub(super) fn parse(body: Option<&Value>) -> Result<Self, CoreError> {
        // serde's messages can quote the offending value: never echo them.
        let bad = || {
            CoreError::bad(
                "invalid request body: expected max_versions (number), cas_required \
                 (boolean), custom_metadata (object of strings), delete_version_after",
            )
        };
        let raw: RawMetadataInput =
            serde_json::from_value(body.cloned().unwrap_or(json!({}))).map_err(|_| bad())?;
        let max_versions = match raw.max_versions {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(bad)?),
            Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        };
        let cas_required = match raw.cas_required {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        };
        let delete_version_after = match &raw.delete_version_after {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => Some(0),
            Some(v) => Some(duration::seconds(v, "delete_version_after")?),
        };
        Ok(MetadataInput {
            max_versions,
            cas_required,
            delete_version_after,
            custom_metadata: raw.custom_metadata,
        })
    }
}

/// A write (or patch) to `data/<path>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteInput {
    pub(super) data: Option<Map<String, Value>>,
    #[serde(default)]
    options: WriteOptions,
    /// `options.cas`, parsed (a number or a string of digits: Vault decodes it weakly).
    #[serde(skip)]
    pub(super) cas: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteOptions {
    cas: Option<Value>,
}

impl WriteInput {
    pub(super) fn parse(body: Option<&Value>) -> Result<Self, CoreError> {
        let bad = || {
            CoreError::bad(
                "invalid request body: expected {\"data\": {…}, \"options\": {\"cas\": <version>}}",
            )
        };
        let mut input: WriteInput =
            serde_json::from_value(body.cloned().unwrap_or(Value::Null)).map_err(|_| bad())?;
        input.cas = match &input.options.cas {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(bad)?),
            Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        };
        Ok(input)
    }
}

/// RFC 7386 JSON merge patch of `target` by `patch`.
pub(super) fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(inner) => {
                let slot = target.entry(k).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, inner);
                }
            }
            other => {
                target.insert(k, other);
            }
        }
    }
}

/// Vault's `subkeys`: the structure of `data` with every leaf `null`, objects expanded down to
/// `depth` levels (0: all).
pub(super) fn subkeys(data: &Map<String, Value>, depth: u64) -> Value {
    fn walk(data: &Map<String, Value>, level: u64, depth: u64) -> Value {
        data.iter()
            .map(|(k, v)| {
                let inner = match v {
                    Value::Object(m) if depth == 0 || level < depth => walk(m, level + 1, depth),
                    _ => Value::Null,
                };
                (k.clone(), inner)
            })
            .collect::<Map<_, _>>()
            .into()
    }
    walk(data, 1, depth)
}

pub(super) fn meta_key(path: &str) -> String {
    format!("meta/{path}")
}

pub(super) fn version_key(path: &str, version: u64) -> String {
    let h = Sha256::digest(path.as_bytes());
    let hex = sigil_crypto::hex(&h);
    format!("ver/{hex}/{version}")
}

/// The `versions` of a delete/undelete/destroy body: a list of numbers or a comma-separated
/// string, as Vault accepts. `missing` is the endpoint's message when there are none (Vault's
/// wording differs between endpoints).
pub(super) fn versions(body: Option<&Value>, missing: &str) -> Result<Vec<u64>, CoreError> {
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
        return Err(CoreError::bad(missing));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, want) in cases {
            let Value::Object(mut t) = target else {
                panic!()
            };
            let Value::Object(p) = patch else { panic!() };
            merge_patch(&mut t, p);
            assert_eq!(Value::Object(t), want);
        }
    }

    #[test]
    fn subkeys_hide_values_and_honour_depth() {
        let Value::Object(data) =
            json!({ "a": 1, "b": { "c": "x", "d": { "e": true } }, "f": [1] })
        else {
            panic!()
        };
        assert_eq!(
            subkeys(&data, 0),
            json!({ "a": null, "b": { "c": null, "d": { "e": null } }, "f": null })
        );
        assert_eq!(
            subkeys(&data, 1),
            json!({ "a": null, "b": null, "f": null })
        );
        assert_eq!(
            subkeys(&data, 2),
            json!({ "a": null, "b": { "c": null, "d": null }, "f": null })
        );
    }

    #[test]
    fn fail_bad_metadata_and_versions() {
        assert!(MetadataInput::parse(Some(&json!({ "max_versions": -1 }))).is_err());
        assert!(MetadataInput::parse(Some(&json!({ "bogus": 1 }))).is_err());
        assert!(MetadataInput::parse(Some(&json!({ "delete_version_after": "1 hour" }))).is_err());
        let dva = MetadataInput::parse(Some(&json!({ "delete_version_after": "1h30m" }))).unwrap();
        assert_eq!(dva.delete_version_after, Some(5400));
        assert!(MetadataInput::parse(Some(&json!({ "delete_version_after": "0s" }))).is_ok());
        assert!(MetadataInput::parse(Some(&json!({ "cas_required": "maybe" }))).is_err());
        assert!(MetadataInput::parse(Some(&json!({ "max_versions": [1] }))).is_err());
        let coerced = MetadataInput::parse(Some(
            &json!({ "max_versions": "5", "cas_required": "true" }),
        ))
        .unwrap();
        assert_eq!(
            (coerced.max_versions, coerced.cas_required),
            (Some(5), Some(true))
        );
        let mut meta = SecretMeta::default();
        let too_many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        let input = MetadataInput::parse(Some(&json!({ "custom_metadata": too_many }))).unwrap();
        assert!(meta.apply(input, false).is_err());
        let long = "x".repeat(513);
        let input =
            MetadataInput::parse(Some(&json!({ "custom_metadata": { "k": long } }))).unwrap();
        assert!(meta.apply(input, false).is_err());
        let input = MetadataInput::parse(Some(&json!({ "custom_metadata": { "k": 1 } }))).unwrap();
        assert!(meta.apply(input, false).is_err());
        for bad in [
            json!({}),
            json!({ "versions": [] }),
            json!({ "versions": [-1] }),
            json!({ "versions": {} }),
        ] {
            assert!(versions(Some(&bad), "none").is_err(), "{bad}");
        }
        assert_eq!(
            versions(Some(&json!({ "versions": "1, 3" })), "none").unwrap(),
            [1, 3]
        );
    }

    #[test]
    fn the_larger_max_versions_wins() {
        let meta = |m| SecretMeta {
            max_versions: m,
            ..SecretMeta::default()
        };
        let config = |m| EngineConfig {
            delete_version_after: 0,
            max_versions: m,
            cas_required: false,
        };
        assert_eq!(config(0).max_versions(&meta(0)), 10);
        assert_eq!(config(5).max_versions(&meta(0)), 5);
        assert_eq!(config(0).max_versions(&meta(3)), 3);
        assert_eq!(config(5).max_versions(&meta(8)), 8);
        assert_eq!(config(5).max_versions(&meta(2)), 5);
    }
}
