//! Stored ACL policies at `sys/policies/acl/<name>` (Vault's API), plus the built-in `admin`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::json;

use crate::barrier::{View, ViewBatch};
use crate::path::check_name;
use crate::policy::{ADMIN_POLICY, ADMIN_POLICY_HCL, Acl, Policy, TemplateContext, parse_policy};
use crate::request::list_response;
use crate::{CoreError, Operation, Request, Response};

pub(crate) struct PolicyStore {
    view: View,
    cache: RwLock<HashMap<String, Arc<Policy>>>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyInput {
    policy: String,
}

impl PolicyStore {
    pub(crate) fn new(view: View) -> Self {
        let admin = parse_policy(ADMIN_POLICY, ADMIN_POLICY_HCL).expect("built-in policy parses");
        let mut cache = HashMap::new();
        cache.insert(ADMIN_POLICY.to_owned(), Arc::new(admin));
        PolicyStore {
            view,
            cache: RwLock::new(cache),
        }
    }

    /// Loads every stored policy (at unseal). A stored policy that no longer parses stops the
    /// unseal: skipping it could drop a `deny` and grant more than its author meant.
    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for name in self.view.list("")? {
            let entry = self.view.get(&name)?.ok_or(CoreError::Integrity)?;
            let text = std::str::from_utf8(&entry.plain).map_err(|_| CoreError::Integrity)?;
            let policy = parse_policy(&name, text).map_err(|e| {
                tracing::error!(policy = name, error = %e, "stored policy does not parse");
                CoreError::Integrity
            })?;
            cache.insert(name, Arc::new(policy));
        }
        Ok(())
    }

    /// The ACL for a caller holding `names` (unknown names contribute nothing, as in Vault).
    pub(crate) fn acl_for(&self, names: &[String], ctx: &TemplateContext) -> Acl {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let policies: Vec<Arc<Policy>> =
            names.iter().filter_map(|n| cache.get(n).cloned()).collect();
        Acl::for_caller(policies.iter().map(|p| p.as_ref()), ctx)
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    fn write(&self, name: &str, text: &str) -> Result<(), CoreError> {
        let policy = parse_policy(name, text).map_err(|e| CoreError::bad(e.0))?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut batch = ViewBatch::default();
        batch.put(name, text.as_bytes().to_vec());
        self.view.apply(batch)?;
        cache.insert(name.to_owned(), Arc::new(policy));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), CoreError> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut batch = ViewBatch::default();
        batch.delete(name);
        self.view.apply(batch)?;
        cache.remove(name);
        Ok(())
    }

    /// Handles `sys/policies/acl/<rest>`.
    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        if rest.is_empty() {
            return match req.operation {
                Operation::List => {
                    let mut keys = self.view.list_children("")?;
                    keys.push(ADMIN_POLICY.to_owned());
                    keys.sort();
                    list_response(keys)
                }
                _ => Err(CoreError::UnsupportedOperation),
            };
        }
        // Refuse rather than fold case: the ACL was checked against the path as sent, so a
        // folded name could reach a policy that a `deny` on its lower-case path protects.
        if rest.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(CoreError::bad("policy names are lower case"));
        }
        let name = rest;
        check_name("policy", name)?;
        let builtin = name == ADMIN_POLICY;
        match req.operation {
            Operation::Read => {
                let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
                let p = cache
                    .get(name)
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(json!({ "name": p.name, "policy": p.text })))
            }
            Operation::Create | Operation::Update if builtin => {
                Err(CoreError::bad("cannot update the built-in admin policy"))
            }
            Operation::Create | Operation::Update => {
                let input: PolicyInput = serde_json::from_value(
                    req.data
                        .clone()
                        .ok_or_else(|| CoreError::bad("missing body: {\"policy\": \"<HCL>\"}"))?,
                )
                .map_err(|_| CoreError::bad("expected {\"policy\": \"<HCL>\"}"))?;
                self.write(name, &input.policy)?;
                Ok(Response::no_content())
            }
            Operation::Delete if builtin => {
                Err(CoreError::bad("cannot delete the built-in admin policy"))
            }
            Operation::Delete => {
                self.delete(name)?;
                Ok(Response::no_content())
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }
}
