//! `sys/leases/…` (Vault's paths) and the expiry sweep. A lease id is not a credential: the
//! lease's owner may look it up, renew and revoke it; anyone else needs `update` on
//! `sys/leases/<lookup|renew|revoke>/<lease id>`. Listing and prefix revocation need `sudo`,
//! as in Vault.

use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::fields::{body_of, text};
use crate::identity::Caller;
use crate::lease::{self, Lease, check_id};
use crate::policy::Capability;
use crate::request::{LeaseInfo, list_response};
use crate::{CoreError, Operation, Request, Response, duration};

/// Most leases one sweep revokes (the rest wait for the next one, a second later).
const SWEEP_BATCH: usize = 256;

impl Core {
    pub(crate) fn leases_request(
        &self,
        caller: &Caller,
        req: &Request,
        rest: &str,
    ) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let (op, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (op, req.operation) {
            ("lookup", Operation::List) => {
                self.authorize(caller, &req.path, &[Capability::List, Capability::Sudo])?;
                let prefix = if tail.is_empty() {
                    String::new()
                } else {
                    format!("{}/", tail.trim_end_matches('/'))
                };
                list_response(self.leases.children_under(&prefix)?)
            }
            ("lookup", _) if write && tail.is_empty() => {
                let body = body_of(req)?;
                let lease = self.lease_for(caller, "lookup", lease_id(&body, "")?)?;
                Ok(Response::data(lease.to_json(lease::now())))
            }
            ("renew", _) if write => {
                let body = body_of(req)?;
                let lease = self.lease_for(caller, "renew", lease_id(&body, tail)?)?;
                // As Vault: no increment, or 0 (what `vault lease renew` sends), means the
                // lease's own TTL.
                let increment = match body.get("increment") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(duration::seconds(v, "increment")?).filter(|s| *s > 0),
                };
                self.renew(lease, increment)
            }
            ("revoke", _) if write => {
                let body = body_of(req)?;
                let lease = self.lease_for(caller, "revoke", lease_id(&body, tail)?)?;
                self.revoke(&lease)?;
                Ok(Response::no_content())
            }
            ("revoke-prefix" | "revoke-force", _) if write => {
                self.authorize(caller, &req.path, &[Capability::Update, Capability::Sudo])?;
                if tail.trim_matches('/').is_empty() {
                    return Err(CoreError::bad("a prefix is required"));
                }
                let revoked = self.revoke_prefix(tail, op == "revoke-force")?;
                tracing::info!(
                    prefix = tail,
                    revoked,
                    force = op == "revoke-force",
                    "leases revoked by prefix"
                );
                Ok(Response::no_content())
            }
            ("tidy", _) if write && tail.is_empty() => {
                self.authorize(caller, &req.path, &[Capability::Update, Capability::Sudo])?;
                let dropped = self.leases.tidy()?;
                tracing::info!(dropped, "lease tidy");
                Ok(Response::data(
                    json!({ "dropped": dropped, "leases": self.leases.len() }),
                ))
            }
            ("lookup" | "renew" | "revoke" | "revoke-prefix" | "revoke-force" | "tidy", _) => {
                Err(CoreError::UnsupportedOperation)
            }
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\"",
                req.path
            ))),
        }
    }

    /// The lease `id` if `caller` owns it or holds `update` on `sys/leases/<op>/<id>`. Someone
    /// who may not act on it learns nothing, not even whether it exists.
    fn lease_for(&self, caller: &Caller, op: &str, id: &str) -> Result<Lease, CoreError> {
        let id = check_id(id)?;
        let found = self.leases.get(id)?.map(|(lease, _)| lease);
        let owner = found
            .as_ref()
            .is_some_and(|l| l.owner == caller.identity.id);
        if !owner {
            self.authorize(
                caller,
                &format!("sys/leases/{op}/{id}"),
                &[Capability::Update],
            )?;
        }
        found.ok_or_else(|| CoreError::bad("invalid lease"))
    }

    fn renew(&self, lease: Lease, increment: Option<u64>) -> Result<Response, CoreError> {
        if !lease.renewable {
            return Err(CoreError::bad("lease is not renewable"));
        }
        let now = lease::now();
        if lease.expire_time <= now {
            return Err(CoreError::bad("lease expired"));
        }
        let wanted = now.saturating_add(increment.unwrap_or(lease.ttl) as i64);
        let expire = wanted.min(lease.max_expire_time);
        let mut warnings = Vec::new();
        if expire < wanted {
            warnings.push(format!(
                "TTL of {}s exceeded the effective max_ttl; TTL value is capped accordingly ({}s)",
                wanted - now,
                expire - now
            ));
        }
        self.with_engine(&lease, |e| e.renew(&lease.secret, expire))?;
        let (mut stored, entry) = self
            .leases
            .get(&lease.id)?
            .ok_or_else(|| CoreError::bad("invalid lease"))?;
        // Ended meanwhile (its owner deleted, or a revocation under way): the lease as stored
        // decides, not the copy read before the engine was asked.
        if stored.expire_time <= now {
            return Err(CoreError::bad("lease expired"));
        }
        let expire = expire.min(stored.max_expire_time);
        stored.expire_time = expire;
        stored.last_renewal = Some(now);
        self.leases.update(&stored, &entry)?;
        let mut resp = Response::no_content();
        resp.status = 200;
        resp.warnings = warnings;
        resp.lease = Some(LeaseInfo {
            id: lease.id,
            duration: u64::try_from(expire - now).unwrap_or(0),
            renewable: true,
        });
        Ok(resp)
    }

    /// Runs `f` on the engine mounted where `lease` was issued.
    fn with_engine<T>(
        &self,
        lease: &Lease,
        f: impl FnOnce(&dyn sigil_engine::Engine) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        match self.mount_of(&lease.path) {
            Some(mount) => f(mount.engine.as_ref()),
            None => Err(gone()),
        }
    }

    /// Revokes the lease's secret, then forgets the lease.
    fn revoke(&self, lease: &Lease) -> Result<(), CoreError> {
        self.with_engine(lease, |e| e.revoke(&lease.secret))?;
        self.leases.remove(&lease.id)?;
        tracing::info!(lease = %lease.id, "lease revoked");
        Ok(())
    }

    /// Revokes the lease `prefix` or every lease below `prefix/`; with `force`, leases whose
    /// secret cannot be revoked (a database that is gone) are forgotten anyway. Returns how
    /// many. Without `force`, stops at the first failure.
    pub(crate) fn revoke_prefix(&self, prefix: &str, force: bool) -> Result<usize, CoreError> {
        let prefix = prefix.trim_matches('/');
        let mut ids = Vec::new();
        if !prefix.is_empty() && self.leases.get(prefix)?.is_some() {
            ids.push(prefix.to_owned());
        }
        let under = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        ids.extend(self.leases.ids_under(&under)?);
        let mut n = 0;
        for id in ids {
            let Some((lease, _)) = self.leases.get(&id)? else {
                continue;
            };
            match self.revoke(&lease) {
                Ok(()) => {}
                Err(e) if force => {
                    tracing::warn!(lease = %id, error = %e, "lease forgotten without revoking its secret (revoke-force)");
                    self.leases.remove(&id)?;
                }
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(n)
    }

    /// Revokes the leases that are due (run every second by the server). A lease whose
    /// revocation fails is retried later with backoff; once one lease of a mount fails this
    /// round, the mount's other due leases wait for the next round instead of each waiting
    /// on the same dead database. Returns how many were revoked.
    pub fn revoke_due_leases(&self) -> usize {
        let now = lease::now();
        let mut failed_mounts: Vec<String> = Vec::new();
        let mut revoked = 0;
        for id in self.leases.due(now, SWEEP_BATCH) {
            let lease = match self.leases.get(&id) {
                Ok(Some((lease, _))) => lease,
                Ok(None) => {
                    self.leases.forget(&id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "reading a due lease failed");
                    self.leases.retry_later(&id, now);
                    continue;
                }
            };
            let mount = self
                .mount_of(&lease.path)
                .map(|m| m.path.clone())
                .unwrap_or_default();
            if failed_mounts.contains(&mount) {
                self.leases.retry_later(&id, now);
                continue;
            }
            match self.revoke(&lease) {
                Ok(()) => revoked += 1,
                Err(e) => {
                    let failures = self.leases.retry_later(&id, now);
                    tracing::warn!(lease = %id, failures, error = %e, "revoking an expired lease failed; will retry");
                    failed_mounts.push(mount);
                }
            }
        }
        revoked
    }

    fn mount_of(&self, path: &str) -> Option<std::sync::Arc<crate::mounts::Mount>> {
        self.mounts.resolve(path).map(|(mount, _)| mount)
    }
}

fn gone() -> CoreError {
    CoreError::Unavailable(
        "the mount that issued this lease is gone; sys/leases/revoke-force forgets it".into(),
    )
}

/// The lease id from the URL (`sys/leases/renew/<id>`) or the body's `lease_id`.
fn lease_id<'a>(body: &'a Map<String, Value>, from_url: &'a str) -> Result<&'a str, CoreError> {
    if !from_url.is_empty() {
        return Ok(from_url);
    }
    match text(body, "lease_id", "")? {
        "" => Err(CoreError::bad("lease_id is required")),
        id => Ok(id),
    }
}
