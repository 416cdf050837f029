//! Groups: named sets of identities that carry policies, at Vault's
//! `identity/group/name/<name>`. A caller's policies are its own plus its groups'.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::barrier::{View, ViewBatch};
use crate::identity::{PolicyList, random_id};
use crate::path::check_name;
use crate::request::{children, list_response};
use crate::{CoreError, Operation, Request, Response, timefmt};

/// A stored group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// Random id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Policies every member holds.
    pub policies: Vec<String>,
    /// Names of member identities.
    pub members: Vec<String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339.
    pub creation_time: String,
    /// RFC 3339.
    pub last_update_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupInput {
    policies: Option<PolicyList>,
    members: Option<Vec<String>>,
    metadata: Option<BTreeMap<String, String>>,
}

pub(crate) struct GroupStore {
    view: View,
    cache: RwLock<HashMap<String, Group>>,
    writes: Mutex<()>,
}

impl std::fmt::Debug for GroupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStore").finish_non_exhaustive()
    }
}

impl GroupStore {
    pub(crate) fn new(view: View) -> Self {
        GroupStore {
            view,
            cache: RwLock::new(HashMap::new()),
            writes: Mutex::new(()),
        }
    }

    /// Loads every stored group (at unseal).
    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        let mut map = HashMap::new();
        for name in self.view.list("")? {
            let entry = self.view.get(&name)?.ok_or(CoreError::Integrity)?;
            let group: Group =
                serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
            map.insert(name, group);
        }
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    /// The groups `identity` is a member of: their names and all their policies.
    pub(crate) fn of(&self, identity: &str) -> (Vec<String>, Vec<String>) {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::new();
        let mut policies = Vec::new();
        for g in cache
            .values()
            .filter(|g| g.members.iter().any(|m| m == identity))
        {
            names.push(g.name.clone());
            policies.extend(g.policies.iter().cloned());
        }
        names.sort();
        (names, policies)
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Removes a deleted identity from every group, so a later identity with the same name
    /// does not inherit its memberships.
    pub(crate) fn remove_member(&self, identity: &str) -> Result<(), CoreError> {
        let names: Vec<String> = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .values()
                .filter(|g| g.members.iter().any(|m| m == identity))
                .map(|g| g.name.clone())
                .collect()
        };
        for name in names {
            let members: Vec<String> = self
                .cache
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .map(|g| {
                    g.members
                        .iter()
                        .filter(|m| *m != identity)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            self.upsert(&name, json!({ "members": members }), &|_| true)?;
        }
        Ok(())
    }

    fn upsert(
        &self,
        name: &str,
        input: Value,
        identity_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Group, CoreError> {
        check_name("group", name)?;
        let input: GroupInput = serde_json::from_value(input).map_err(|_| {
            CoreError::bad(
                "invalid group: expected {\"policies\": [\"…\"], \"members\": [\"<identity name>\"], \"metadata\": {\"k\": \"v\"}}",
            )
        })?;
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.view.get(name)?;
        let now = timefmt::now_rfc3339();
        let mut group = match &existing {
            Some(e) => serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
            None => Group {
                id: random_id()?,
                name: name.to_owned(),
                policies: vec![],
                members: vec![],
                metadata: BTreeMap::new(),
                creation_time: now.clone(),
                last_update_time: now.clone(),
            },
        };
        if let Some(p) = input.policies {
            group.policies = p.into_vec();
            for p in &group.policies {
                check_name("policy", p)?;
            }
        }
        if let Some(mut m) = input.members {
            for member in &m {
                check_name("identity", member)?;
                if !identity_exists(member) {
                    return Err(CoreError::bad(format!("no identity named {member:?}")));
                }
            }
            m.sort();
            m.dedup();
            group.members = m;
        }
        if let Some(m) = input.metadata {
            group.metadata = m;
        }
        group.last_update_time = now;
        let mut batch = ViewBatch::default();
        batch.expect(name, existing.as_ref());
        batch.put(name, serde_json::to_vec(&group).expect("group serializes"));
        self.view.apply(batch)?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), group.clone());
        Ok(group)
    }

    fn delete(&self, name: &str) -> Result<(), CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = ViewBatch::default();
        batch.delete(name);
        self.view.apply(batch)?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    /// Handles `identity/group/name/<rest>`; members must be existing identities.
    pub(crate) fn handle(
        &self,
        req: &Request,
        rest: &str,
        identity_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Response, CoreError> {
        let to_json = |g: &Group| serde_json::to_value(g).expect("group serializes");
        match (req.operation, rest) {
            (Operation::List, "") => list_response(children(0, self.view.list("")?)),
            (_, "") => Err(CoreError::UnsupportedOperation),
            (Operation::Read, name) => {
                let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
                let g = cache
                    .get(name)
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(to_json(g)))
            }
            (Operation::Create | Operation::Update, name) => {
                let input = req.data.clone().unwrap_or_else(|| json!({}));
                Ok(Response::data(to_json(&self.upsert(
                    name,
                    input,
                    identity_exists,
                )?)))
            }
            (Operation::Delete, name) => {
                self.delete(name)?;
                Ok(Response::no_content())
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }
}
