//! Groups: named sets of identities that carry policies, at Vault's
//! `identity/group/name/<name>`. A caller's policies are its own plus its groups'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::barrier::View;
use crate::grant::{Gate, Grant, added};
use crate::identity::{PolicyList, random_id};
use crate::named::Named;
use crate::path::check_name;
use crate::{CoreError, Request, Response, timefmt};

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
    groups: Named<Group>,
}

impl std::fmt::Debug for GroupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStore").finish_non_exhaustive()
    }
}

impl GroupStore {
    pub(crate) fn new(view: View) -> Self {
        GroupStore {
            groups: Named::new(view),
        }
    }

    /// Loads every stored group (at unseal).
    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        self.groups.load_all()
    }

    /// The groups `identity` is a member of: their names and all their policies.
    pub(crate) fn of(&self, identity: &str) -> (Vec<String>, Vec<String>) {
        let mut names = Vec::new();
        let mut policies = Vec::new();
        for (_, g) in self.groups.all() {
            if g.members.iter().any(|m| m == identity) {
                names.push(g.name.clone());
                policies.extend(g.policies.iter().cloned());
            }
        }
        (names, policies)
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.groups.exists(name)
    }

    /// Removes a deleted identity from every group, so a later identity with the same name
    /// does not inherit its memberships.
    pub(crate) fn remove_member(&self, identity: &str) -> Result<(), CoreError> {
        let _guard = self.groups.lock();
        for (name, mut g) in self.groups.all() {
            if g.members.iter().any(|m| m == identity) {
                g.members.retain(|m| m != identity);
                g.last_update_time = timefmt::now_rfc3339();
                self.groups.put(&name, &g)?;
            }
        }
        Ok(())
    }

    fn upsert(&self, name: &str, input: Value, gate: &dyn Gate) -> Result<Group, CoreError> {
        check_name("group", name)?;
        let input: GroupInput = serde_json::from_value(input).map_err(|_| {
            CoreError::bad(
                "invalid group: expected {\"policies\": [\"…\"], \"members\": [\"<identity name>\"], \"metadata\": {\"k\": \"v\"}}",
            )
        })?;
        let _guard = self.groups.lock();
        let now = timefmt::now_rfc3339();
        let mut group = match self.groups.get(name) {
            Some(g) => g,
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
        let before = group.clone();
        if let Some(p) = input.policies {
            group.policies = p.into_vec();
            for p in &group.policies {
                check_name("policy", p)?;
            }
        }
        if let Some(mut m) = input.members {
            for member in &m {
                check_name("identity", member)?;
                if !gate.identity_exists(member) {
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
        // New policies go to every member; a new member gets all of them (grant.rs).
        let joined = group.members.iter().any(|m| !before.members.contains(m));
        let grant = Grant {
            policies: if joined {
                group.policies.iter().map(String::as_str).collect()
            } else {
                added(&before.policies, &group.policies)
            },
            identities: Vec::new(),
        };
        gate.check(&grant)?;
        group.last_update_time = now;
        self.groups.put(name, &group)?;
        Ok(group)
    }

    /// Handles `identity/group/name/<rest>`; members must be existing identities.
    pub(crate) fn handle(
        &self,
        req: &Request,
        rest: &str,
        gate: &dyn Gate,
    ) -> Result<Response, CoreError> {
        self.groups
            .handle(req, rest, |name, input| self.upsert(name, input, gate))
    }
}
