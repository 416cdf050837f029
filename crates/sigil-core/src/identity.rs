//! Identities: named principals with a public key (`sigil1…`) and policies.
//! API in Vault's entity shape at `identity/entity/name/<name>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Deserialize;
use serde_json::{Value, json};
use sigil_crypto::PublicIdentity;
use sigil_proto::e2e::Certification;

use crate::barrier::{View, ViewBatch};
use crate::grant::{Gate, Grant, added};
use crate::path::check_name;
use crate::policy::ADMIN_POLICY;
use crate::request::list_response;
use crate::{CoreError, Operation, Request, Response, timefmt};
pub use sigil_engine::caller::{Caller, Identity};

pub(crate) struct IdentityStore {
    view: View,
    by_keyid: RwLock<HashMap<String, Arc<Caller>>>,
    writes: Mutex<()>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityInput {
    public_key: Option<String>,
    certification: Option<Certification>,
    policies: Option<PolicyList>,
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "crate::fields::de_flag")]
    disabled: Option<bool>,
}

/// Vault accepts policies as a list or a comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum PolicyList {
    List(Vec<String>),
    Csv(String),
}

impl PolicyList {
    pub(crate) fn into_vec(self) -> Vec<String> {
        let list = match self {
            PolicyList::List(l) => l,
            PolicyList::Csv(s) => s.split(',').map(str::to_owned).collect(),
        };
        let mut out: Vec<String> = list
            .into_iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore").finish_non_exhaustive()
    }
}

pub(crate) use sigil_engine::id::random_id;

impl IdentityStore {
    pub(crate) fn new(view: View) -> Self {
        IdentityStore {
            view,
            by_keyid: RwLock::new(HashMap::new()),
            writes: Mutex::new(()),
        }
    }

    /// Keyids of enabled identities holding the admin policy, sorted.
    pub(crate) fn admin_keyids(&self) -> Vec<String> {
        let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = map
            .values()
            .filter(|c| {
                !c.identity.disabled && c.identity.policies.iter().any(|p| p == ADMIN_POLICY)
            })
            .map(|c| c.identity.keyid.clone())
            .collect();
        out.sort();
        out
    }

    /// Loads every stored identity into the keyid index (at unseal).
    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        let mut map = HashMap::new();
        for name in self.view.list("")? {
            let (identity, _) = self.load(&name)?.ok_or(CoreError::Integrity)?;
            let public =
                PublicIdentity::parse(&identity.public_key).map_err(|_| CoreError::Integrity)?;
            map.insert(
                identity.keyid.clone(),
                Arc::new(Caller { identity, public }),
            );
        }
        *self.by_keyid.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    /// The enabled identity with this name.
    pub(crate) fn caller_by_name(&self, name: &str) -> Option<Arc<Caller>> {
        let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .find(|c| c.identity.name == name && !c.identity.disabled)
            .cloned()
    }

    /// Whether an identity with this id exists (enabled or not, whatever its key now is).
    pub(crate) fn has_id(&self, id: &str) -> bool {
        let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
        map.values().any(|c| c.identity.id == id)
    }

    /// The enabled identity whose signing key has this keyid.
    pub(crate) fn caller(&self, keyid: &str) -> Option<Arc<Caller>> {
        let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
        map.get(keyid).filter(|c| !c.identity.disabled).cloned()
    }

    /// The identity named `name`, enabled or not.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Identity>, CoreError> {
        Ok(self.load(name)?.map(|(i, _)| i))
    }

    fn load(&self, name: &str) -> Result<Option<(Identity, crate::barrier::Entry)>, CoreError> {
        let Some(entry) = self.view.get(name)? else {
            return Ok(None);
        };
        let identity = serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        Ok(Some((identity, entry)))
    }

    pub(crate) fn exists(&self, name: &str) -> Result<bool, CoreError> {
        Ok(self.view.get(name)?.is_some())
    }

    /// Creates or updates `name`: through the API with the caller's `gate`, and with none at
    /// start-up, for the init admins.
    pub(crate) fn upsert(
        &self,
        name: &str,
        input: Value,
        gate: Option<&dyn Gate>,
    ) -> Result<Identity, CoreError> {
        check_name("identity", name)?;
        let input: IdentityInput = serde_json::from_value(input).map_err(|_| {
            CoreError::bad(
                "invalid identity: expected {\"public_key\": \"sigil1…\", \"policies\": [\"…\"], \"metadata\": {\"k\": \"v\"}, \"disabled\": false}",
            )
        })?;
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.load(name)?;
        let now = timefmt::now_rfc3339();
        let mut identity = match &existing {
            Some((i, _)) => i.clone(),
            None => Identity {
                id: random_id()?,
                name: name.to_owned(),
                public_key: String::new(),
                keyid: String::new(),
                policies: vec![],
                metadata: BTreeMap::new(),
                disabled: false,
                creation_time: now.clone(),
                last_update_time: now.clone(),
                certification: None,
            },
        };
        let public = match (input.public_key, existing.is_some()) {
            (Some(text), _) => PublicIdentity::parse(&text)
                .map_err(|e| CoreError::bad(format!("invalid public_key: {e}")))?,
            (None, true) => {
                PublicIdentity::parse(&identity.public_key).map_err(|_| CoreError::Integrity)?
            }
            (None, false) => {
                return Err(CoreError::bad("public_key is required (a sigil1… string)"));
            }
        };
        let keyid = public.keyid().to_string();
        {
            let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = map.get(&keyid)
                && other.identity.name != name
            {
                return Err(CoreError::bad(format!(
                    "this public key already belongs to identity {:?}",
                    other.identity.name
                )));
            }
        }
        let old_keyid = std::mem::replace(&mut identity.keyid, keyid.clone());
        if identity.public_key != public.to_string() {
            identity.certification = None;
        }
        identity.public_key = public.to_string();
        if let Some(c) = input.certification {
            c.verify(name, &public).map_err(|_| {
                CoreError::bad(
                    "certification does not verify for this name and public_key (docs/e2e.md)",
                )
            })?;
            identity.certification = Some(c);
        }
        if let Some(p) = input.policies {
            identity.policies = p.into_vec();
            for p in &identity.policies {
                check_name("policy", p)?;
            }
        }
        if let Some(m) = input.metadata {
            identity.metadata = m;
        }
        if let Some(d) = input.disabled {
            identity.disabled = d;
        }
        identity.last_update_time = now;
        if existing.is_some() {
            self.check_keeps_an_admin(Some(&identity), name)?;
        }
        if let Some(gate) = gate {
            // New policies go to the identity; a new key gets everything it holds (grant.rs).
            let old = existing.as_ref().map(|(i, _)| i);
            let rekeyed = old.is_some_and(|o| o.keyid != identity.keyid);
            let grant = Grant {
                policies: if rekeyed {
                    identity.policies.iter().map(String::as_str).collect()
                } else {
                    added(old.map_or(&[][..], |o| &o.policies), &identity.policies)
                },
                identities: if rekeyed { vec![name] } else { Vec::new() },
            };
            gate.check(&grant)?;
        }

        let mut batch = ViewBatch::default();
        batch.expect(name, existing.as_ref().map(|(_, e)| e));
        batch.put(
            name,
            serde_json::to_vec(&identity).expect("identity serializes"),
        );
        self.view.apply(batch)?;

        let mut map = self.by_keyid.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&old_keyid);
        map.insert(
            keyid,
            Arc::new(Caller {
                identity: identity.clone(),
                public,
            }),
        );
        Ok(identity)
    }

    /// Refuses a change that would leave no enabled identity holding the admin policy: with no
    /// root token, that would lock everyone out of administration.
    fn check_keeps_an_admin(
        &self,
        replacement: Option<&Identity>,
        name: &str,
    ) -> Result<(), CoreError> {
        let map = self.by_keyid.read().unwrap_or_else(|e| e.into_inner());
        let is_admin = |i: &Identity| !i.disabled && i.policies.iter().any(|p| p == ADMIN_POLICY);
        let others = map
            .values()
            .any(|c| c.identity.name != name && is_admin(&c.identity));
        if others || replacement.is_some_and(is_admin) {
            Ok(())
        } else {
            Err(CoreError::bad(
                "refusing to remove the last enabled identity with the admin policy",
            ))
        }
    }

    /// Deletes `name`; returns the id of the identity it removed, if there was one.
    pub(crate) fn delete(&self, name: &str) -> Result<Option<String>, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let Some((identity, entry)) = self.load(name)? else {
            return Ok(None);
        };
        self.check_keeps_an_admin(None, name)?;
        let mut batch = ViewBatch::default();
        batch.expect(name, Some(&entry));
        batch.delete(name);
        self.view.apply(batch)?;
        self.by_keyid
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&identity.keyid);
        Ok(Some(identity.id))
    }

    /// Handles `identity/entity/name/<rest>` for `caller`.
    pub(crate) fn handle(
        &self,
        req: &Request,
        rest: &str,
        caller: &Caller,
        gate: &dyn Gate,
    ) -> Result<Response, CoreError> {
        match (req.operation, rest) {
            (Operation::List, "") => list_response(self.view.list_children("")?),
            (_, "") => Err(CoreError::UnsupportedOperation),
            (Operation::Read, name) => match self.load(name)? {
                Some((i, _)) => Ok(Response::data(i.to_json())),
                None => Err(CoreError::NotFound(String::new())),
            },
            (Operation::Create | Operation::Update, name) => {
                let input = req.data.clone().unwrap_or_else(|| json!({}));
                // Only its certifier may attach a certification: an old one cannot be put back
                // by someone else after the key was changed.
                if let Some(c) = input.get("certification").filter(|c| !c.is_null()) {
                    let certifier = c
                        .get("certifier")
                        .and_then(Value::as_str)
                        .and_then(|t| PublicIdentity::parse(t).ok());
                    if certifier.is_none_or(|k| k.keyid() != caller.public.keyid()) {
                        return Err(CoreError::bad(
                            "a certification must be made by the caller's own key",
                        ));
                    }
                }
                Ok(Response::data(
                    self.upsert(name, input, Some(gate))?.to_json(),
                ))
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sigil_crypto::{BarrierKey, KeyTerm, SecretIdentity};
    use sigil_storage::MemoryBackend;

    use super::*;
    use crate::barrier::Barrier;
    use crate::grant::{Gate, Grant};

    fn store() -> IdentityStore {
        let root = BarrierKey::generate(KeyTerm(1)).unwrap();
        let barrier = Arc::new(Barrier::initialize(Arc::new(MemoryBackend::new()), root).unwrap());
        IdentityStore::new(barrier.view("sys/identity/"))
    }

    fn key() -> String {
        SecretIdentity::generate().unwrap().public().to_string()
    }

    /// A new identity `name` holding the admin policy.
    fn admin(ids: &IdentityStore, name: &str) {
        ids.upsert(
            name,
            json!({ "public_key": key(), "policies": ["admin"] }),
            None,
        )
        .unwrap();
    }

    /// Refuses every grant (a caller holding nothing).
    struct Nobody;

    impl Gate for Nobody {
        fn identity_exists(&self, _: &str) -> bool {
            false
        }
        fn check(&self, grant: &Grant<'_>) -> Result<(), CoreError> {
            if grant.is_empty() {
                Ok(())
            } else {
                Err(CoreError::Forbidden)
            }
        }
    }

    #[test]
    fn an_identity_is_found_by_keyid_and_name_until_disabled_or_rekeyed() {
        let ids = store();
        let (k1, k2) = (key(), key());
        let admin = ids
            .upsert(
                "ops",
                json!({ "public_key": k1, "policies": ["admin"] }),
                None,
            )
            .unwrap();
        assert!(ids.caller(&admin.keyid).is_some());
        assert_eq!(ids.caller_by_name("ops").unwrap().identity.id, admin.id);
        assert_eq!(ids.admin_keyids(), vec![admin.keyid.clone()]);
        ids.upsert(
            "app",
            json!({ "public_key": k2, "policies": "kv-read, other" }),
            None,
        )
        .unwrap();
        assert_eq!(
            ids.get("app").unwrap().unwrap().policies,
            ["kv-read", "other"],
            "a comma-separated string is a list"
        );
        // Disabled: not a caller, though it still exists (its id too).
        let app = ids
            .upsert("app", json!({ "disabled": true }), None)
            .unwrap();
        assert!(ids.caller(&app.keyid).is_none() && ids.caller_by_name("app").is_none());
        assert!(ids.has_id(&app.id) && ids.exists("app").unwrap());
        // A new key: the old keyid no longer authenticates; the id stays.
        let k3 = key();
        let rekeyed = ids
            .upsert("app", json!({ "public_key": k3, "disabled": false }), None)
            .unwrap();
        assert_eq!(rekeyed.id, app.id);
        assert!(ids.caller(&app.keyid).is_none());
        assert!(ids.caller(&rekeyed.keyid).is_some());
        // The index is rebuilt from storage at unseal.
        let reloaded = IdentityStore::new(ids.view);
        reloaded.load_all().unwrap();
        assert!(reloaded.caller(&rekeyed.keyid).is_some());
        assert_eq!(reloaded.admin_keyids(), vec![admin.keyid]);
    }

    #[test]
    fn bad_input_changes_nothing() {
        let ids = store();
        let k = key();
        ids.upsert("a", json!({ "public_key": k }), None).unwrap();
        for (name, input) in [
            ("b", json!({})),
            ("b", json!({ "public_key": "sigil1nope" })),
            ("b", json!({ "public_key": k })),
            (
                "b",
                json!({ "public_key": key(), "policies": ["bad name!"] }),
            ),
            ("b", json!({ "public_key": key(), "unknown": 1 })),
            ("bad/name", json!({ "public_key": key() })),
        ] {
            assert!(
                ids.upsert(name, input.clone(), None).is_err(),
                "{name} {input}"
            );
        }
        assert_eq!(ids.view.list("").unwrap(), ["a"]);
    }

    #[test]
    fn the_last_admin_cannot_be_removed_or_disabled() {
        let ids = store();
        admin(&ids, "root");
        assert!(ids.delete("root").is_err());
        assert!(
            ids.upsert("root", json!({ "disabled": true }), None)
                .is_err()
        );
        assert!(ids.upsert("root", json!({ "policies": [] }), None).is_err());
        admin(&ids, "second");
        assert!(ids.delete("root").unwrap().is_some());
        assert_eq!(ids.delete("root").unwrap(), None, "already gone");
    }

    #[test]
    fn a_gate_refuses_granting_policies_or_a_new_key() {
        let ids = store();
        admin(&ids, "root");
        ids.upsert("x", json!({ "public_key": key() }), Some(&Nobody))
            .unwrap();
        assert!(matches!(
            ids.upsert("x", json!({ "policies": ["admin"] }), Some(&Nobody)),
            Err(CoreError::Forbidden)
        ));
        assert!(matches!(
            ids.upsert("x", json!({ "public_key": key() }), Some(&Nobody)),
            Err(CoreError::Forbidden)
        ));
        assert!(ids.get("x").unwrap().unwrap().policies.is_empty());
        // Metadata is no grant.
        ids.upsert("x", json!({ "metadata": { "team": "a" } }), Some(&Nobody))
            .unwrap();
    }
}
