//! The logical router: existence check, policy check, dispatch.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sigil_crypto::{BarrierKey, KeyTerm, PublicIdentity, SecretIdentity};
use sigil_storage::Backend;
use zeroize::Zeroizing;

use crate::audit::{Broker, DeviceConfig};
use crate::barrier::{Barrier, View, ViewBatch};
use crate::cert_auth::{CertRoles, CertTrust};
use crate::grant::{self, Gate, Grant};
use crate::group::GroupStore;
use crate::identity::{Caller, IdentityStore};
use crate::lease::LeaseStore;
use crate::mounts::MountTable;
use crate::password_policy::PasswordPolicies;
use crate::plan::Plan;
use crate::policy::{ADMIN_POLICY, Acl, Capability, TemplateContext};
use crate::policy_store::PolicyStore;
use crate::replay::ReplayMark;
use crate::replay_marks::ReplayMarks;
use crate::route::{KEY_STATUS, REWRAP, ROTATE, Route, fixed_route};
use crate::wrap::WrapStore;
use crate::{CoreError, Operation, Request, Response};
use sigil_engine::EngineKinds;

/// Where the server's identity key file is kept, under the barrier (below `core/`).
const SERVER_IDENTITY: &str = "server-identity";

/// What the core needs at start.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    /// The init admins: `(identity name, public key)`. They get the built-in admin policy.
    pub admins: Vec<(String, PublicIdentity)>,
    /// Audit devices.
    pub audit: Vec<DeviceConfig>,
    /// The engine kinds the server registered (engine contract): mountable by name.
    pub engines: EngineKinds,
}

/// The core of a running, unsealed server.
#[derive(Debug)]
pub struct Core {
    barrier: Arc<Barrier>,
    server_identity: Arc<SecretIdentity>,
    audit: Broker,
    identities: IdentityStore,
    groups: GroupStore,
    cert_roles: CertRoles,
    policies: PolicyStore,
    pub(crate) mounts: MountTable,
    pub(crate) wraps: WrapStore,
    pub(crate) leases: Arc<LeaseStore>,
    passwords: Arc<PasswordPolicies>,
    replay: ReplayMarks,
}

/// A device's HMAC key, created on first use and kept under the barrier.
fn audit_key(keys: &View, name: &str) -> Result<Zeroizing<[u8; 32]>, CoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    match keys.get(name)? {
        Some(entry) if entry.plain.len() == 32 => key.copy_from_slice(&entry.plain),
        Some(_) => return Err(CoreError::Integrity),
        None => {
            sigil_crypto::random::fill(&mut key[..]).map_err(|_| CoreError::rng())?;
            let mut batch = ViewBatch::default();
            batch.expect(name, None);
            batch.put(name, key.to_vec());
            keys.apply(batch)?;
        }
    }
    Ok(key)
}

impl Core {
    /// Starts a core on an empty `backend` with a root key that exists only in memory
    /// (transient mode).
    pub fn start_transient(
        backend: Arc<dyn Backend>,
        config: CoreConfig,
    ) -> Result<Self, CoreError> {
        let root = BarrierKey::generate(KeyTerm(0)).map_err(|_| CoreError::rng())?;
        Self::create(backend, root, config)
    }

    /// Initializes an empty `backend`: the barrier under `root`, a new server identity key
    /// (kept under the barrier) and the init admins as identities with the admin policy.
    pub(crate) fn create(
        backend: Arc<dyn Backend>,
        root: BarrierKey,
        config: CoreConfig,
    ) -> Result<Self, CoreError> {
        let barrier = Arc::new(Barrier::initialize(backend, root)?);
        let server_identity = SecretIdentity::generate().map_err(|_| CoreError::rng())?;
        let mut batch = ViewBatch::default();
        batch.put(
            SERVER_IDENTITY,
            server_identity
                .to_key_file(&crate::timefmt::now_rfc3339())
                .as_bytes()
                .to_vec(),
        );
        barrier.view("core/").apply(batch)?;
        let core = Self::assemble(barrier, server_identity, &config.audit, config.engines)?;
        for (name, public) in config.admins {
            core.identities.upsert(
                &name,
                json!({ "public_key": public.to_string(), "policies": [ADMIN_POLICY] }),
                None,
            )?;
        }
        Ok(core)
    }

    /// Opens an initialized `backend` with the reconstructed `root` key (unseal). A wrong key
    /// fails with [`CoreError::Integrity`].
    pub(crate) fn open(
        backend: Arc<dyn Backend>,
        root: BarrierKey,
        audit: &[DeviceConfig],
        engines: EngineKinds,
    ) -> Result<Self, CoreError> {
        let barrier = Arc::new(Barrier::open(backend, root)?);
        let entry = barrier
            .view("core/")
            .get(SERVER_IDENTITY)?
            .ok_or(CoreError::Integrity)?;
        let text = std::str::from_utf8(&entry.plain).map_err(|_| CoreError::Integrity)?;
        let server_identity =
            SecretIdentity::from_key_file(text).map_err(|_| CoreError::Integrity)?;
        let core = Self::assemble(barrier, server_identity, audit, engines)?;
        core.identities.load_all()?;
        core.groups.load_all()?;
        core.cert_roles.load_all()?;
        core.policies.load_all()?;
        let started = std::time::Instant::now();
        let leases = core.leases.load_all()?;
        if leases > 0 {
            tracing::info!(
                leases,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "leases restored"
            );
        }
        Ok(core)
    }

    fn assemble(
        barrier: Arc<Barrier>,
        server_identity: SecretIdentity,
        audit: &[DeviceConfig],
        engines: EngineKinds,
    ) -> Result<Self, CoreError> {
        let server_identity = Arc::new(server_identity);
        let keys = barrier.view("sys/audit/");
        let audit = Broker::start(audit, |name| audit_key(&keys, name), &server_identity)?;
        let leases = Arc::new(LeaseStore::new(barrier.view("sys/lease/")));
        let passwords = Arc::new(PasswordPolicies::new(barrier.view("sys/password-policy/")));
        Ok(Core {
            server_identity,
            audit,
            identities: IdentityStore::new(barrier.view("sys/identity/")),
            groups: GroupStore::new(barrier.view("sys/group/")),
            cert_roles: CertRoles::new(barrier.view("sys/cert-role/")),
            policies: PolicyStore::new(barrier.view("sys/policy/")),
            mounts: MountTable::load(
                Arc::clone(&barrier),
                Arc::clone(&leases) as Arc<dyn sigil_engine::Leases>,
                Arc::clone(&passwords) as Arc<dyn sigil_engine::Passwords>,
                engines,
            )?,
            passwords,
            wraps: WrapStore::new(barrier.view("sys/wrap/")),
            replay: ReplayMarks::new(barrier.view(crate::replay::PREFIX)),
            leases,
            barrier,
        })
    }

    /// The documented endpoint (template) a canonical path belongs to, if the core routes it.
    pub fn endpoint_for(&self, path: &str) -> Option<&'static str> {
        self.plan(Operation::Read, path.to_owned()).template()
    }

    /// The enabled identity a response may be wrapped for (`to`: a name or keyid), after
    /// checking the TTL: called before the request runs, so a bad `wrap_to` changes nothing.
    pub fn wrap_recipient(&self, to: &str, ttl: Option<&str>) -> Result<Arc<Caller>, CoreError> {
        crate::wrap::response_ttl(ttl)?;
        self.identities
            .caller(to)
            .or_else(|| self.identities.caller_by_name(to))
            .filter(|c| !c.identity.disabled)
            .ok_or_else(|| CoreError::bad("wrap_to: no enabled identity has that name or keyid"))
    }

    /// Wraps a response for `recipient` at `requester`'s request: `body` is the JSON the
    /// requester would have received; the answer is the wrap's info instead (docs/e2e.md).
    pub fn wrap_response(
        &self,
        recipient: &Caller,
        requester: &Caller,
        ttl: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> Result<Response, CoreError> {
        self.wraps.wrap_response(
            &self.server_identity,
            &recipient.public,
            requester.public.keyid().as_str(),
            ttl,
            path,
            body,
        )
    }

    /// Rotates the keyring when its newest term has encrypted as much as it safely may (run
    /// periodically by the server). Returns how many terms it added (0 or 1).
    pub fn rotate_due_keys(&self) -> Result<usize, CoreError> {
        let mut rotated = 0;
        if self.barrier.rotation_due() {
            let (term, used) = self.barrier.encryptions();
            let next = self.barrier.rotate()?;
            tracing::info!(
                term,
                encryptions = used,
                new_term = next,
                "keyring rotated: the term reached its encryption limit"
            );
            rotated += 1;
        }
        Ok(rotated)
    }

    /// Every mounted engine's periodic work (transit keys and static database roles whose
    /// rotation is due), run every second by the server. A failing mount is logged and does
    /// not stop the others. Returns how many things were done.
    pub fn engine_periodic(&self) -> usize {
        let now = time::OffsetDateTime::now_utc();
        let mut done = 0;
        for mount in self.mounts.all() {
            match mount.engine.periodic(now) {
                Ok(n) => done += n,
                Err(e) => {
                    tracing::warn!(mount = %mount.path, error = %e, "an engine's periodic work failed")
                }
            }
        }
        done
    }

    /// The replay marks of signed requests that wrote, still in force at `now` (replay.rs):
    /// the server loads them into its replay cache at unseal.
    pub fn replay_marks(&self, now: i64) -> Result<Vec<ReplayMark>, CoreError> {
        self.replay.load(now)
    }

    /// Deletes replay marks no longer in force (run periodically by the server).
    pub fn purge_replay_marks(&self, now: i64) -> Result<usize, CoreError> {
        self.replay.purge(now)
    }

    /// Drops expired wraps' envelopes and old tombstones (run periodically by the server).
    pub fn purge_wraps(&self) -> Result<usize, CoreError> {
        self.wraps.purge()
    }

    /// The audit devices.
    pub fn audit(&self) -> &Broker {
        &self.audit
    }

    /// The barrier (keyring status and maintenance).
    pub fn barrier(&self) -> &Barrier {
        &self.barrier
    }

    /// The caller's ACL: its own policies and its groups', templates filled in.
    fn acl(&self, caller: &Caller) -> Acl {
        let id = &caller.identity;
        let (groups, policies) = self.held_policies(id);
        let ctx = TemplateContext {
            name: id.name.clone(),
            id: id.id.clone(),
            metadata: id.metadata.clone(),
            groups,
        };
        self.policies.acl_for(&policies, &ctx)
    }

    /// The names of `id`'s groups, and the policies it holds: its own and its groups'.
    fn held_policies(&self, id: &crate::Identity) -> (Vec<String>, Vec<String>) {
        let (groups, mut policies) = self.groups.of(&id.name);
        policies.extend(id.policies.iter().cloned());
        (groups, policies)
    }

    /// Whether `caller` holds `cap` (and, when `sudo`, also `cap` itself) at `path`.
    pub fn authorize(
        &self,
        caller: &Caller,
        path: &str,
        caps: &[Capability],
    ) -> Result<(), CoreError> {
        let acl = self.acl(caller);
        if caps.iter().all(|c| acl.allows(path, *c)) {
            Ok(())
        } else {
            Err(CoreError::Forbidden)
        }
    }

    /// The server's own identity key: seals responses, opens requests, signs audit
    /// checkpoints and snapshots.
    pub fn server_identity(&self) -> &SecretIdentity {
        &self.server_identity
    }

    /// A snapshot of the whole storage at one instant, signed by the server key (snapshot.rs).
    /// Writes go on meanwhile.
    pub fn snapshot(&self) -> Result<Vec<u8>, CoreError> {
        let (header, mut file) = self.snapshot_to(Vec::new())?;
        // The header goes first: moved in front of the entries within their buffer, not
        // copied with them into a second one.
        let prefix = header.prefix();
        file.splice(0..0, prefix);
        Ok(file)
    }

    /// [`Core::snapshot`]'s entries written to `out` an entry at a time (the storage is not
    /// held in memory), and the signed header that goes before them in the file.
    pub fn snapshot_to<W: std::io::Write>(
        &self,
        out: W,
    ) -> Result<(crate::snapshot::Header, W), CoreError> {
        let term = self.barrier.terms().last().copied().unwrap_or(0);
        let mut body = crate::snapshot::BodyWriter::new(out);
        self.barrier.raw_snapshot_each(&mut |k, v| {
            body.add(k, v).map_err(|e| sigil_storage::StorageError::Io {
                verb: "snapshot",
                subject: String::new(),
                reason: e.to_string(),
            })
        })?;
        Ok(body.finish(
            self.barrier.backend_kind(),
            term,
            crate::now_rfc3339(),
            &self.server_identity,
        ))
    }

    /// Makes sure an identity with `public` exists; if none does, creates `name` with the admin
    /// policy (as at init). Existing identities are left as they are.
    pub(crate) fn ensure_admin(
        &self,
        name: &str,
        public: &PublicIdentity,
    ) -> Result<(), CoreError> {
        if self.identities.caller(public.keyid().as_str()).is_some() {
            return Ok(());
        }
        self.identities.upsert(
            name,
            json!({ "public_key": public.to_string(), "policies": [ADMIN_POLICY] }),
            None,
        )?;
        Ok(())
    }

    /// The trust material of the certificate roles, for the TLS layer.
    pub fn cert_trust(&self) -> CertTrust {
        self.cert_roles.trust()
    }

    /// Changes whenever a certificate role changes.
    pub fn cert_generation(&self) -> u64 {
        self.cert_roles.generation()
    }

    /// The enabled identity `role` maps a client certificate (DER) to, and its name. The caller
    /// must have verified the certificate against that role's CA and CRL. The mapping holds
    /// until [`Core::cert_generation`] changes (a role written or deleted, an identity deleted).
    pub fn caller_for_certificate(&self, role: &str, leaf: &[u8]) -> Option<(String, Arc<Caller>)> {
        let name = self.cert_roles.identity_for(role, leaf)?;
        let caller = self.identities.caller_by_name(&name)?;
        Some((name, caller))
    }

    /// The enabled identity named `name`, if any.
    pub fn caller_by_name(&self, name: &str) -> Option<Arc<Caller>> {
        self.identities.caller_by_name(name)
    }

    /// Keyids of the enabled identities holding the admin policy.
    pub fn admin_keyids(&self) -> Vec<String> {
        self.identities.admin_keyids()
    }

    /// The storage backend's kind.
    pub fn storage_kind(&self) -> &'static str {
        self.barrier.backend_kind()
    }

    /// The enabled identity with this keyid, if any (the authenticator's lookup).
    pub fn caller(&self, keyid: &str) -> Option<Arc<Caller>> {
        self.identities.caller(keyid)
    }

    /// Ends every lease of the deleted identity `id`, as revoking a Vault token ends the
    /// token's: they are due now and the sweeper revokes them (retrying while a database is
    /// down). What cannot be done is logged, never returned: the identity is already gone.
    fn end_leases_of(&self, id: &str) {
        match self.leases.expire_owned_by(id, crate::lease::now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "a deleted identity's leases end now"),
            Err(e) => tracing::error!(
                error = %e,
                "the leases of a deleted identity could not be listed; revoke them by prefix"
            ),
        }
    }

    /// Handles an authenticated request: plans it, then [`Core::handle_plan`].
    pub fn handle(&self, caller: &Caller, req: Request) -> Result<Response, CoreError> {
        // The server sends canonical paths already; this keeps every caller of the core to
        // the one form the policy and the engines agree on (path.rs).
        let path = crate::path::for_operation(req.path, req.operation);
        let plan = self.plan(req.operation, path);
        self.handle_plan(caller, plan, req.data, req.query)
    }

    /// Runs a planned request for `caller`: decides create vs update (if the plan is not
    /// settled yet), checks the caller's policies, then dispatches.
    pub fn handle_plan(
        &self,
        caller: &Caller,
        mut plan: Plan,
        data: Option<serde_json::Value>,
        query: Vec<(String, String)>,
    ) -> Result<Response, CoreError> {
        self.settle(&mut plan)?;
        let route = plan.route();
        let cap = plan.capability();
        let req = Request {
            operation: plan.operation(),
            path: plan.path().to_owned(),
            data,
            query,
        };
        let sudo = matches!(route, Route::Keyring(_));
        let acl = self.acl(caller);
        // Lease operations check ownership or policy on the lease itself (lease_api.rs); a
        // wrap's recipient may unwrap and look it up, and its sender look it up, without a
        // policy (wrap.rs): the wrap id carries no authority, being the recipient does.
        // Which mounts there are is answered for those the caller may use (ui_mounts).
        let checked_later = matches!(
            route,
            Route::Leases(_) | Route::Wrapping("unwrap" | "lookup") | Route::UiMounts(_)
        );
        if !checked_later
            && (!acl.allows(&req.path, cap) || (sudo && !acl.allows(&req.path, Capability::Sudo)))
        {
            return Err(CoreError::Forbidden);
        }
        match route {
            Route::Keyring(path) => self.keyring(path, req.operation),
            Route::AuditHash(device) => self.audit_hash(device, &req),
            Route::Policies(rest) => self.policies.handle(&req, rest),
            Route::Identities(rest) if req.operation == Operation::Delete && !rest.is_empty() => {
                if let Some(id) = self.identities.delete(rest)? {
                    self.end_leases_of(&id);
                }
                self.groups.remove_member(rest)?;
                self.cert_roles.remove_identity(rest)?;
                Ok(Response::no_content())
            }
            Route::Identities(rest) => {
                let gate = self.gate(caller, &acl, &req.path);
                let resp = self.identities.handle(&req, rest, caller, &gate)?;
                Ok(self.warn_unknown_policies(&req, resp))
            }
            Route::Groups(rest) => {
                let gate = self.gate(caller, &acl, &req.path);
                let resp = self.groups.handle(&req, rest, &gate)?;
                Ok(self.warn_unknown_policies(&req, resp))
            }
            Route::CertRoles(rest) => {
                let gate = self.gate(caller, &acl, &req.path);
                self.cert_roles.handle(&req, rest, &gate)
            }
            Route::Mounts(rest) => {
                // Disabling a mount revokes its leases first (as Vault), so none outlive it.
                if req.operation == Operation::Delete && self.mounts.exists(rest) {
                    self.revoke_prefix(rest.trim_matches('/'), false)?;
                    if let Some((mount, _)) = self.mounts.resolve(rest.trim_matches('/')) {
                        mount.engine.unmount();
                    }
                }
                self.mounts.handle(&req, rest)
            }
            Route::Wrapping(op) => {
                self.wraps
                    .handle(&req, op, caller, acl.allows(&req.path, cap), &|keyid| {
                        self.identities
                            .caller(keyid)
                            .is_some_and(|c| !c.identity.disabled)
                    })
            }
            Route::Mount(mount, _) if mount.retired() => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\": its mount was disabled",
                req.path
            ))),
            Route::Mount(_, None) => Err(sigil_engine::route::no_route(&req.path)),
            Route::Mount(mount, Some(at)) => {
                let cx = sigil_engine::Context {
                    caller,
                    limits: mount.limits(),
                };
                let response = mount.engine.handle(&req, &at, &cx)?;
                // A lease issued to an identity deleted while this request ran (after the
                // delete looked for its leases) ends as well.
                if response.lease.is_some() && !self.identities.has_id(&caller.identity.id) {
                    self.end_leases_of(&caller.identity.id);
                }
                Ok(response)
            }
            Route::Leases(rest) => self.leases_request(caller, &req, rest),
            Route::UiMounts(rest) => self.ui_mounts(&acl, &req, rest),
            Route::PasswordPolicies(rest) => self.passwords.handle(&req, rest),
            Route::Unknown => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\"",
                req.path
            ))),
        }
    }

    /// `sys/internal/ui/mounts[/<path>]`: the mounts `acl` may use, or the one serving
    /// `path`. A mount the caller may not use answers as one that does not exist.
    fn ui_mounts(&self, acl: &Acl, req: &Request, rest: &str) -> Result<Response, CoreError> {
        if req.operation != Operation::Read {
            return Err(CoreError::UnsupportedOperation);
        }
        if rest.is_empty() {
            let secret = self.mounts.entries(|p| acl.may_use(p))?;
            return Ok(Response::data(json!({ "secret": secret, "auth": {} })));
        }
        let first = rest.split('/').next().unwrap_or(rest);
        let not_found = || CoreError::NotFound(format!("no mount at {first}/ that you may use"));
        let (mount, _) = self.mounts.resolve(rest).ok_or_else(not_found)?;
        if !acl.may_use(&mount.path) {
            return Err(not_found());
        }
        let mut info = self
            .mounts
            .entries(|p| p == mount.path)?
            .remove(&mount.path)
            .ok_or_else(not_found)?;
        info["path"] = json!(mount.path);
        Ok(Response::data(info))
    }

    /// A write that attaches policies nobody has written yet succeeds (as in Vault: they may
    /// be written later), with a warning for each, so that a typo does not pass unnoticed.
    fn warn_unknown_policies(&self, req: &Request, mut resp: Response) -> Response {
        let named = req
            .data
            .as_ref()
            .and_then(|d| d.get("policies"))
            .cloned()
            .and_then(|p| serde_json::from_value::<crate::identity::PolicyList>(p).ok());
        for p in named
            .map(crate::identity::PolicyList::into_vec)
            .unwrap_or_default()
        {
            if p != crate::policy::ADMIN_POLICY && !self.policies.exists(&p) {
                resp.warnings.push(format!(
                    "policy {p:?} does not exist (yet): it grants nothing until it is written"
                ));
            }
        }
        // As Vault: an answer with warnings has a body (200), not 204.
        if !resp.warnings.is_empty() && resp.status == 204 {
            resp.status = 200;
        }
        resp
    }

    /// What a write to an identity, a group or a certificate role at `path` by `caller` may
    /// hand out (grant.rs).
    fn gate<'a>(&'a self, caller: &'a Caller, acl: &Acl, path: &str) -> CallerGate<'a> {
        CallerGate {
            core: self,
            caller,
            sudo: acl.allows(path, Capability::Sudo),
        }
    }

    fn keyring(&self, path: &str, op: Operation) -> Result<Response, CoreError> {
        match (path, op) {
            (ROTATE, Operation::Create | Operation::Update) => {
                let term = self.barrier.rotate()?;
                tracing::info!(term, "keyring rotated");
                Ok(Response::data(json!({ "term": term })))
            }
            (REWRAP, Operation::Create | Operation::Update) => {
                let rewrapped = self.barrier.rewrap()?;
                tracing::info!(rewrapped, "entries rewrapped under the newest term");
                Ok(Response::data(json!({ "rewrapped": rewrapped })))
            }
            (KEY_STATUS, Operation::Read) => {
                let usage = self.barrier.term_usage()?;
                let terms: Vec<_> = usage
                    .iter()
                    .map(|(t, n)| json!({ "term": t, "entries": n }))
                    .collect();
                let (term, encryptions) = self.barrier.encryptions();
                Ok(Response::data(json!({
                    "term": usage.last().map_or(0, |(t, _)| *t),
                    "terms": terms,
                    // Vault's sys/key-status field: encryptions under the current term.
                    "encryptions": if usage.last().is_some_and(|(t, _)| *t == term) { encryptions } else { 0 },
                })))
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }

    fn audit_hash(&self, device: &str, req: &Request) -> Result<Response, CoreError> {
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return Err(CoreError::UnsupportedOperation);
        }
        let input = req
            .data
            .as_ref()
            .and_then(|d| d.get("input"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| CoreError::bad("expected {\"input\": \"<value>\"}"))?;
        let hash = self
            .audit
            .hash(device, input)
            .ok_or_else(|| CoreError::NotFound(format!("no audit device named {device:?}")))?;
        Ok(Response::data(json!({ "hash": hash })))
    }

    pub(crate) fn exists(&self, route: &Route<'_>) -> Result<bool, CoreError> {
        match route {
            Route::Policies(rest) => Ok(self.policies.exists(rest)),
            Route::Identities(rest) if !rest.is_empty() => self.identities.exists(rest),
            Route::Groups(rest) if !rest.is_empty() => Ok(self.groups.exists(rest)),
            Route::CertRoles(rest) if !rest.is_empty() => Ok(self.cert_roles.exists(rest)),
            Route::Mounts(rest) => Ok(self.mounts.exists(rest)),
            Route::PasswordPolicies(rest) => Ok(self.passwords.exists(rest)),
            Route::Mount(mount, Some(at)) => mount.engine.exists(at),
            // As Vault: a POST to sys/wrapping/* is an update.
            Route::Wrapping(_) => Ok(true),
            _ => Ok(false),
        }
    }
}

impl Core {
    /// Resolves `operation` on `path` (canonical: [`crate::canonical_path`]) once: the route
    /// and its mount. Touches no storage; create vs update is decided by [`Core::settle`],
    /// once the caller is authenticated.
    pub fn plan(&self, operation: Operation, path: String) -> Plan {
        let mount = match fixed_route(&path) {
            Route::Unknown => self
                .mounts
                .resolve(&path)
                .map(|(mount, rest)| (mount, path.len() - rest.len())),
            _ => None,
        };
        Plan::new(operation, path, mount)
    }

    /// Vault's existence check, once per plan: a write (`Update`) to a path that does not
    /// exist yet is a `Create`.
    pub fn settle(&self, plan: &mut Plan) -> Result<(), CoreError> {
        if !plan.is_settled() {
            let creates = plan.operation() == Operation::Update && !self.exists(&plan.route())?;
            plan.settle_as(if creates {
                Operation::Create
            } else {
                plan.operation()
            });
        }
        Ok(())
    }

    /// The answer to an unauthenticated read ([`Plan::is_public_read`]).
    pub fn public_read(&self, plan: &Plan) -> Result<crate::PublicBody, CoreError> {
        match plan.route() {
            Route::Mount(mount, Some(at)) if plan.operation() == Operation::Read => {
                mount.engine.public_read(&at)
            }
            _ => None,
        }
        .unwrap_or_else(|| Err(CoreError::NotFound(String::new())))
    }
}

/// The caller's side of [`Gate`]: the policies it holds, and whether it holds `sudo` on the
/// path it writes.
struct CallerGate<'a> {
    core: &'a Core,
    caller: &'a Caller,
    sudo: bool,
}

impl Gate for CallerGate<'_> {
    fn identity_exists(&self, name: &str) -> bool {
        self.core.identities.exists(name).unwrap_or(false)
    }

    fn check(&self, grant: &Grant<'_>) -> Result<(), CoreError> {
        if grant.is_empty() {
            return Ok(());
        }
        let mut wanted: BTreeSet<String> = grant.policies.iter().map(|p| (*p).to_owned()).collect();
        for name in &grant.identities {
            if let Some(id) = self.core.identities.get(name)? {
                wanted.extend(self.core.held_policies(&id).1);
            }
        }
        let held: BTreeSet<String> = self
            .core
            .held_policies(&self.caller.identity)
            .1
            .into_iter()
            .collect();
        grant::decide(&wanted, &held, self.sudo)
    }
}

/// The engine kinds the core's tests mount (the server registers the same).
#[cfg(test)]
pub(crate) fn test_engines() -> EngineKinds {
    EngineKinds::new(vec![
        Arc::new(sigil_engine_kv::Kv),
        Arc::new(sigil_engine_kv::E2e),
        Arc::new(sigil_engine_transit::Transit),
        Arc::new(sigil_engine_pki::Pki),
        Arc::new(sigil_engine_database::Database::without_drivers()),
    ])
}

/// A transient core on `backend` with one admin, and that admin's key (for tests).
#[cfg(test)]
pub(crate) fn admin_core(backend: Arc<dyn Backend>) -> (Core, SecretIdentity) {
    let admin = SecretIdentity::generate().unwrap();
    let core = Core::start_transient(
        backend,
        CoreConfig {
            admins: vec![("admin".into(), admin.public())],
            engines: test_engines(),
            ..CoreConfig::default()
        },
    )
    .unwrap();
    (core, admin)
}

#[cfg(test)]
mod tests {
    use sigil_storage::MemoryBackend;

    use super::*;
    use crate::route::ENDPOINTS;

    #[test]
    fn every_route_is_documented_and_every_endpoint_routes() {
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        for engine in ["e2e", "transit", "pki", "database"] {
            let body = Some(json!({ "type": engine }));
            let path = format!("sys/mounts/{engine}");
            core.handle(&caller, request(Operation::Update, &path, body))
                .unwrap();
        }
        for e in ENDPOINTS {
            // An engine's paths are in its own route table, never in the core's.
            assert!(!e.path.contains("{mount}"), "{}", e.path);
            let sample = e
                .path
                .replace("{name}", "x")
                .replace("{role}", "r")
                .replace("{path}", "a/b");
            assert_eq!(core.endpoint_for(&sample), Some(e.path), "{sample}");
        }
        // A registered engine's routes are its own: each maps back to itself. Each kind is
        // mounted at its name, kv at the default `secret/`.
        let mount_of = |name: &'static str| if name == "kv" { "secret" } else { name };
        for kind in test_engines().iter() {
            for e in kind.routes() {
                // Each parameter by a value no literal segment has.
                let sample: Vec<String> = e
                    .path
                    .split('/')
                    .map(|s| match s {
                        "{mount}" => mount_of(kind.name()).to_owned(),
                        "{kind}" => "plaintext".to_owned(),
                        "{path}" => "a/b".to_owned(),
                        s if s.starts_with('{') => format!("x{}", s.len()),
                        s => s.to_owned(),
                    })
                    .collect();
                let sample = sample.join("/");
                assert_eq!(core.endpoint_for(&sample), Some(e.path), "{sample}");
            }
        }
        for sample in [
            "sys/policies/acl/",
            "sys/policies/acl/p",
            "identity/entity/name/",
            "identity/entity/name/n",
            "identity/group/name/",
            "identity/group/name/g",
            "auth/cert/certs/",
            "auth/cert/certs/r",
            "secret/data/a",
            "secret/metadata/",
            "secret/metadata",
            "secret/destroy/a",
            "secret/config",
            "secret/subkeys/a",
            "sys/rotate",
            "sys/rewrap",
            "sys/key-status",
            "sys/audit-hash/file",
            "sys/mounts",
            "sys/mounts/kv",
            "sys/mounts/a/b/tune",
            "database/config",
            "database/roles",
            "database/roles/r",
            "sys/leases/lookup",
            "sys/leases/lookup/database/creds/",
            "sys/leases/revoke/database/creds/r/x",
            "sys/leases/renew/database/creds/r/x",
            "sys/policies/password/",
            "sys/policies/password/p",
            "sys/policies/password/p/generate",
        ] {
            let documented = core.endpoint_for(sample).expect(sample);
            let registered = test_engines();
            let mut routes = registered.iter().flat_map(|k| k.routes());
            assert!(
                ENDPOINTS.iter().any(|e| e.path == documented)
                    || routes.any(|e| e.path == documented),
                "{sample} → {documented}"
            );
        }
        assert_eq!(core.endpoint_for("nope/x"), None);
        // Below a mount, a path none of its engine's routes matches has no endpoint.
        assert_eq!(core.endpoint_for("secret/other/a"), None);
        assert_eq!(core.endpoint_for("transit/keys/k/other"), None);
    }

    fn request(operation: Operation, path: &str, data: Option<serde_json::Value>) -> Request {
        Request {
            operation,
            path: path.into(),
            data,
            query: vec![],
        }
    }

    /// How many KV versions (ciphertexts) the backend holds.
    fn stored_versions(backend: &MemoryBackend) -> usize {
        backend
            .list("")
            .unwrap()
            .into_iter()
            .filter(|k| k.starts_with("logical/") && k.contains("/ver/"))
            .count()
    }

    use super::admin_core;

    /// A core created (not transient) on `backend` with one admin; the root key it was made
    /// with, to open it again; the admin's key.
    fn created_core(backend: Arc<MemoryBackend>) -> (Core, Zeroizing<[u8; 32]>, SecretIdentity) {
        let root = BarrierKey::generate(KeyTerm(0)).unwrap();
        let kept = Zeroizing::new(*root.expose_secret());
        let admin = SecretIdentity::generate().unwrap();
        let config = CoreConfig {
            admins: vec![("admin".into(), admin.public())],
            engines: test_engines(),
            ..CoreConfig::default()
        };
        (Core::create(backend, root, config).unwrap(), kept, admin)
    }

    #[test]
    fn mounts_enable_route_tune_persist_and_disable() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, root, admin) = created_core(backend.clone());
        let root_copy = || BarrierKey::from_secret(KeyTerm(0), root.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let run = |core: &Core, op, path: &str, data| core.handle(&caller, request(op, path, data));
        let bad = |r: Result<Response, CoreError>| {
            assert!(matches!(r, Err(CoreError::BadRequest(_))), "{r:?}");
        };

        // Enabling: overlapping, reserved, malformed and unknown engines are refused.
        let enable = |core: &Core, path: &str, body| {
            run(
                core,
                Operation::Update,
                &format!("sys/mounts/{path}"),
                Some(body),
            )
        };
        enable(
            &core,
            "team/kv",
            json!({ "type": "kv", "description": "team" }),
        )
        .unwrap();
        enable(&core, "team-kv", json!({ "type": "kv-v2" })).unwrap();
        bad(enable(&core, "team/kv/sub", json!({ "type": "kv" })));
        bad(enable(&core, "team", json!({ "type": "kv" })));
        bad(enable(&core, "secret", json!({ "type": "kv" })));
        bad(enable(&core, "sys/x", json!({ "type": "kv" })));
        bad(enable(&core, "x", json!({ "type": "transitt" })));
        bad(enable(
            &core,
            "x",
            json!({ "type": "kv", "options": { "version": "1" } }),
        ));
        bad(enable(&core, "x", json!({ "type": "kv", "bogus": 1 })));
        let list = run(&core, Operation::Read, "sys/mounts", None)
            .unwrap()
            .data
            .unwrap();
        let paths: Vec<&String> = list.as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            ["identity/", "secret/", "sys/", "team-kv/", "team/kv/"]
        );
        assert_eq!(list["team/kv/"]["type"], "kv");
        assert_eq!(list["team/kv/"]["description"], "team");
        assert_eq!(list["team/kv/"]["options"]["version"], "2");

        // Routing by mount: the same secret name in three mounts holds three values.
        for (mount, v) in [("secret", 1), ("team/kv", 2), ("team-kv", 3)] {
            let path = format!("{mount}/data/app");
            run(
                &core,
                Operation::Update,
                &path,
                Some(json!({ "data": { "v": v } })),
            )
            .unwrap();
        }
        let read = |core: &Core, mount: &str| {
            run(core, Operation::Read, &format!("{mount}/data/app"), None)
                .map(|r| r.data.unwrap()["data"]["v"].clone())
        };
        assert_eq!(read(&core, "team/kv").unwrap(), 2);
        assert!(matches!(read(&core, "team"), Err(CoreError::NotFound(_))));

        // Tune.
        run(
            &core,
            Operation::Update,
            "sys/mounts/team/kv/tune",
            Some(
                json!({ "description": "tuned", "default_lease_ttl": "1h", "max_lease_ttl": 7200 }),
            ),
        )
        .unwrap();
        bad(run(
            &core,
            Operation::Update,
            "sys/mounts/team/kv/tune",
            Some(json!({ "default_lease_ttl": "3h" })),
        ));
        bad(run(
            &core,
            Operation::Update,
            "sys/mounts/team/kv/tune",
            Some(json!({ "seal_wrap": true })),
        ));
        let tune = run(&core, Operation::Read, "sys/mounts/team/kv/tune", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(tune["default_lease_ttl"], 3600);
        assert_eq!(tune["max_lease_ttl"], 7200);
        assert_eq!(tune["description"], "tuned");

        // The table and the data survive a restart.
        drop(core);
        let core = Core::open(backend.clone(), root_copy(), &[], test_engines()).unwrap();
        for (mount, v) in [("secret", 1), ("team/kv", 2), ("team-kv", 3)] {
            assert_eq!(read(&core, mount).unwrap(), v, "{mount}");
        }
        let tune = run(&core, Operation::Read, "sys/mounts/team/kv/tune", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(tune["description"], "tuned");

        // Disable removes the mount and exactly its data; enabling again starts empty.
        let before = stored_versions(&backend);
        run(&core, Operation::Delete, "sys/mounts/team/kv", None).unwrap();
        assert_eq!(stored_versions(&backend), before - 1);
        assert!(matches!(
            read(&core, "team/kv"),
            Err(CoreError::NotFound(_))
        ));
        assert_eq!(read(&core, "team-kv").unwrap(), 3);
        enable(&core, "team/kv", json!({ "type": "kv" })).unwrap();
        assert!(matches!(
            read(&core, "team/kv"),
            Err(CoreError::NotFound(_))
        ));
        // Built-in paths cannot be disabled.
        bad(run(&core, Operation::Delete, "sys/mounts/sys", None));
    }

    #[test]
    fn a_store_from_before_the_mount_table_keeps_its_secrets() {
        let backend = Arc::new(MemoryBackend::new());
        let root = BarrierKey::generate(KeyTerm(0)).unwrap();
        let copy = || BarrierKey::from_secret(KeyTerm(0), Zeroizing::new(*root.expose_secret()));
        let admin = SecretIdentity::generate().unwrap();
        let config = CoreConfig {
            admins: vec![("admin".into(), admin.public())],
            engines: test_engines(),
            ..CoreConfig::default()
        };
        let core = Core::create(backend.clone(), copy(), config).unwrap();
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let data = Some(json!({ "data": { "v": "old" } }));
        core.handle(&caller, request(Operation::Update, "secret/data/app", data))
            .unwrap();
        drop(core);
        // As an older release left it: KV data under logical/secret/, no mount table.
        assert!(backend.list("logical/secret/meta/").unwrap().len() == 1);
        backend
            .apply(sigil_storage::Batch::new().delete("core/mounts".to_owned()))
            .unwrap();
        let core = Core::open(backend.clone(), copy(), &[], test_engines()).unwrap();
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let read = core
            .handle(&caller, request(Operation::Read, "secret/data/app", None))
            .unwrap();
        assert_eq!(read.data.unwrap()["data"]["v"], "old");
        // Disabling another mount leaves it alone.
        let enable = Some(json!({ "type": "kv" }));
        core.handle(
            &caller,
            request(Operation::Update, "sys/mounts/other", enable),
        )
        .unwrap();
        core.handle(
            &caller,
            request(Operation::Delete, "sys/mounts/other", None),
        )
        .unwrap();
        assert!(backend.list("logical/secret/meta/").unwrap().len() == 1);
    }

    #[test]
    fn kv_delete_version_after_hides_versions_when_due() {
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let run = |op, path: &str, data| core.handle(&caller, request(op, path, data));
        run(
            Operation::Update,
            "secret/metadata/t",
            Some(json!({ "delete_version_after": "1s" })),
        )
        .unwrap();
        run(
            Operation::Update,
            "secret/data/t",
            Some(json!({ "data": { "a": 1 } })),
        )
        .unwrap();
        let meta = run(Operation::Read, "secret/metadata/t", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(meta["delete_version_after"], "1s");
        assert_ne!(
            meta["versions"]["1"]["deletion_time"], "",
            "set in the future"
        );
        assert!(
            run(Operation::Read, "secret/data/t", None).is_ok(),
            "readable until then"
        );
        // Until the deletion time has passed (polled, not slept for): then it reads as deleted.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while run(Operation::Read, "secret/data/t", None).is_ok() {
            assert!(std::time::Instant::now() < end, "never deleted");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(matches!(
            run(Operation::Read, "secret/data/t", None),
            Err(CoreError::NotFound(_))
        ));
        // Undelete makes it readable again, for good.
        run(
            Operation::Update,
            "secret/undelete/t",
            Some(json!({ "versions": [1] })),
        )
        .unwrap();
        assert!(run(Operation::Read, "secret/data/t", None).is_ok());
    }

    #[test]
    fn kv_versions_delete_undelete_destroy_and_metadata() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, admin) = admin_core(backend.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let run = |op, path: &str, data| core.handle(&caller, request(op, path, data));
        for i in 1..=3 {
            run(
                Operation::Update,
                "secret/data/app",
                Some(json!({ "data": { "v": i } })),
            )
            .unwrap();
        }
        let read = |v: u64| {
            let mut req = request(Operation::Read, "secret/data/app", None);
            req.query = vec![("version".into(), v.to_string())];
            core.handle(&caller, req)
        };
        let stored_versions = || stored_versions(&backend);
        assert_eq!(stored_versions(), 3);

        // Bad bodies change nothing.
        for bad in [
            json!({}),
            json!({ "versions": [] }),
            json!({ "versions": ["x"] }),
        ] {
            let err = run(Operation::Update, "secret/delete/app", Some(bad)).unwrap_err();
            assert!(matches!(err, CoreError::BadRequest(_)), "{err:?}");
        }
        assert_eq!(read(1).unwrap().data.unwrap()["data"]["v"], 1);

        run(
            Operation::Update,
            "secret/delete/app",
            Some(json!({ "versions": [1, 2, 99] })),
        )
        .unwrap();
        assert!(matches!(read(1), Err(CoreError::NotFound(_))));
        assert!(matches!(read(2), Err(CoreError::NotFound(_))));
        assert_eq!(read(3).unwrap().data.unwrap()["data"]["v"], 3);

        run(
            Operation::Update,
            "secret/undelete/app",
            Some(json!({ "versions": "1" })),
        )
        .unwrap();
        assert_eq!(read(1).unwrap().data.unwrap()["data"]["v"], 1);
        assert!(matches!(read(2), Err(CoreError::NotFound(_))));

        run(
            Operation::Update,
            "secret/destroy/app",
            Some(json!({ "versions": [2] })),
        )
        .unwrap();
        assert_eq!(stored_versions(), 2, "destroy removes the ciphertext");
        // A destroyed version cannot be undeleted.
        run(
            Operation::Update,
            "secret/undelete/app",
            Some(json!({ "versions": [2] })),
        )
        .unwrap();
        assert!(matches!(read(2), Err(CoreError::NotFound(_))));

        let meta = run(Operation::Read, "secret/metadata/app", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(meta["current_version"], 3);
        assert_eq!(
            meta["oldest_version"], 0,
            "as Vault: 0 until a version is trimmed"
        );
        assert_eq!(meta["versions"]["2"]["destroyed"], true);
        assert_ne!(meta["versions"]["2"]["deletion_time"], "");
        assert_eq!(meta["versions"]["1"]["deletion_time"], "");
        assert_eq!(meta["versions"]["3"]["destroyed"], false);

        run(Operation::Delete, "secret/metadata/app", None).unwrap();
        assert_eq!(stored_versions(), 0);
        assert!(matches!(
            run(Operation::Read, "secret/metadata/app", None),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(read(3), Err(CoreError::NotFound(_))));
        // A new write starts again at version 1.
        let v = run(
            Operation::Update,
            "secret/data/app",
            Some(json!({ "data": { "v": 4 } })),
        )
        .unwrap();
        assert_eq!(v.data.unwrap()["version"], 1);
    }

    #[test]
    fn kv_config_metadata_patch_and_max_versions() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, admin) = admin_core(backend.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let run = |op, path: &str, data| core.handle(&caller, request(op, path, data));
        let data = |v: serde_json::Value| Some(json!({ "data": v }));
        let stored_versions = || stored_versions(&backend);

        // PATCH needs an existing secret, then merges (RFC 7386) into a new version.
        let err = run(Operation::Patch, "secret/data/p", data(json!({ "a": 1 }))).unwrap_err();
        assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
        run(
            Operation::Update,
            "secret/data/p",
            data(json!({ "a": 1, "b": { "c": 2, "d": 3 } })),
        )
        .unwrap();
        let v = run(
            Operation::Patch,
            "secret/data/p",
            data(json!({ "a": null, "b": { "d": 4 }, "e": "x" })),
        )
        .unwrap();
        assert_eq!(v.data.unwrap()["version"], 2);
        let read = run(Operation::Read, "secret/data/p", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(read["data"], json!({ "b": { "c": 2, "d": 4 }, "e": "x" }));
        let sub = run(Operation::Read, "secret/subkeys/p", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            sub["subkeys"],
            json!({ "b": { "c": null, "d": null }, "e": null })
        );
        assert_eq!(sub["metadata"]["version"], 2);
        // A patch with a stale cas changes nothing.
        let stale = Some(json!({ "data": { "z": 1 }, "options": { "cas": 1 } }));
        assert!(matches!(
            run(Operation::Patch, "secret/data/p", stale),
            Err(CoreError::Conflict(_))
        ));
        // A deleted latest version cannot be patched.
        run(Operation::Delete, "secret/data/p", None).unwrap();
        let err = run(Operation::Patch, "secret/data/p", data(json!({ "z": 1 }))).unwrap_err();
        assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");

        // Engine config: cas_required refuses writes without cas.
        run(
            Operation::Update,
            "secret/config",
            Some(json!({ "cas_required": true, "max_versions": 5 })),
        )
        .unwrap();
        let config = run(Operation::Read, "secret/config", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            config,
            json!({
                "cas_required": true,
                "delete_version_after": "0s",
                "max_versions": 5,
                "metadata_cas_required": false,
            })
        );
        let err = run(Operation::Update, "secret/data/c", data(json!({ "a": 1 }))).unwrap_err();
        assert!(matches!(err, CoreError::BadRequest(_)), "{err:?}");
        for cas in 0..7 {
            run(
                Operation::Update,
                "secret/data/c",
                Some(json!({ "data": { "n": cas }, "options": { "cas": cas } })),
            )
            .unwrap();
        }
        let meta = run(Operation::Read, "secret/metadata/c", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(meta["current_version"], 7);
        assert_eq!(
            meta["oldest_version"], 3,
            "config max_versions 5 keeps 3..=7"
        );
        run(
            Operation::Update,
            "secret/config",
            Some(json!({ "cas_required": false, "max_versions": 0 })),
        )
        .unwrap();

        // Secret metadata: POST creates it before any data; max_versions trims on the next write.
        run(
            Operation::Update,
            "secret/metadata/m",
            Some(json!({ "max_versions": 2, "custom_metadata": { "owner": "ops", "tier": "1" } })),
        )
        .unwrap();
        let before = stored_versions();
        for i in 0..4 {
            run(Operation::Update, "secret/data/m", data(json!({ "i": i }))).unwrap();
        }
        assert_eq!(
            stored_versions(),
            before + 2,
            "trimmed versions leave storage"
        );
        let read = run(Operation::Read, "secret/data/m", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            read["metadata"]["custom_metadata"],
            json!({ "owner": "ops", "tier": "1" })
        );
        let meta = run(Operation::Read, "secret/metadata/m", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(meta["oldest_version"], 3);
        assert_eq!(meta["max_versions"], 2);
        assert_eq!(meta["versions"].as_object().unwrap().len(), 2);

        // PATCH merges custom_metadata (null removes); POST replaces it.
        run(
            Operation::Patch,
            "secret/metadata/m",
            Some(json!({ "custom_metadata": { "tier": null, "team": "a" } })),
        )
        .unwrap();
        let meta = run(Operation::Read, "secret/metadata/m", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            meta["custom_metadata"],
            json!({ "owner": "ops", "team": "a" })
        );
        assert_eq!(meta["max_versions"], 2, "patch keeps what it does not name");
        run(
            Operation::Update,
            "secret/metadata/m",
            Some(json!({ "custom_metadata": { "x": "y" } })),
        )
        .unwrap();
        let meta = run(Operation::Read, "secret/metadata/m", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(meta["custom_metadata"], json!({ "x": "y" }));

        // Bad metadata changes nothing; PATCH of a missing secret is 404.
        for bad in [
            json!({ "custom_metadata": { "k": 1 } }),
            json!({ "delete_version_after": "soon" }),
            json!({ "max_versions": "many" }),
        ] {
            let err = run(Operation::Update, "secret/metadata/m", Some(bad)).unwrap_err();
            assert!(matches!(err, CoreError::BadRequest(_)), "{err:?}");
        }
        let after = run(Operation::Read, "secret/metadata/m", None)
            .unwrap()
            .data
            .unwrap();
        assert_eq!(after, meta);
        let err = run(
            Operation::Patch,
            "secret/metadata/none",
            Some(json!({ "max_versions": 1 })),
        )
        .unwrap_err();
        assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");

        // Per-secret cas_required.
        run(
            Operation::Update,
            "secret/metadata/m",
            Some(json!({ "cas_required": true })),
        )
        .unwrap();
        let err = run(Operation::Update, "secret/data/m", data(json!({ "a": 1 }))).unwrap_err();
        assert!(matches!(err, CoreError::BadRequest(_)), "{err:?}");
    }

    #[test]
    fn storage_holds_only_ciphertext() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, admin) = admin_core(backend.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let secret = "plaintext-that-must-not-be-stored";
        core.handle(
            &caller,
            request(
                Operation::Update,
                "secret/data/app",
                Some(json!({ "data": { "password": secret } })),
            ),
        )
        .unwrap();
        let read = core
            .handle(&caller, request(Operation::Read, "secret/data/app", None))
            .unwrap();
        assert_eq!(read.data.unwrap()["data"]["password"], secret);

        let keys = backend.list("").unwrap();
        assert!(keys.iter().any(|k| k == "core/keyring"));
        assert!(keys.iter().any(|k| k == "core/server-identity"));
        for key in &keys {
            let value = backend.get(key).unwrap().unwrap();
            let text = String::from_utf8_lossy(&value);
            assert!(!text.contains(secret), "{key}");
            assert!(!text.contains("password"), "{key}");
            assert!(!text.contains("SIGIL-SECRET-KEY"), "{key}");
        }
        // A value moved to another key no longer opens.
        let meta = keys.iter().find(|k| k.contains("meta/app")).unwrap();
        let other = backend.get("sys/identity/admin").unwrap().unwrap();
        backend.put(meta, &other).unwrap();
        let err = core
            .handle(&caller, request(Operation::Read, "secret/data/app", None))
            .unwrap_err();
        assert!(matches!(err, CoreError::Integrity));
    }

    #[test]
    fn policy_is_checked_before_dispatch() {
        let bob = SecretIdentity::generate().unwrap();
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let root = core.caller(admin.public().keyid().as_str()).unwrap();
        core.handle(
            &root,
            request(
                Operation::Update,
                "sys/policies/acl/writer",
                Some(json!({ "policy": "path \"secret/data/w\" { capabilities = [\"create\"] }" })),
            ),
        )
        .unwrap();
        core.handle(
            &root,
            request(
                Operation::Update,
                "identity/entity/name/bob",
                Some(json!({ "public_key": bob.public().to_string(), "policies": ["writer"] })),
            ),
        )
        .unwrap();
        let bob = core.caller(bob.public().keyid().as_str()).unwrap();
        let write = || {
            request(
                Operation::Update,
                "secret/data/w",
                Some(json!({ "data": { "a": "1" } })),
            )
        };
        // create is granted, update is not: the second write is refused.
        core.handle(&bob, write()).unwrap();
        assert!(matches!(
            core.handle(&bob, write()),
            Err(CoreError::Forbidden)
        ));
        assert!(matches!(
            core.handle(&bob, request(Operation::Read, "secret/data/w", None)),
            Err(CoreError::Forbidden)
        ));
        // An unknown route is 403 for bob (policy first) and 404 for the admin.
        assert!(matches!(
            core.handle(&bob, request(Operation::Read, "nope/x", None)),
            Err(CoreError::Forbidden)
        ));
        assert!(matches!(
            core.handle(&root, request(Operation::Read, "nope/x", None)),
            Err(CoreError::NotFound(_))
        ));
    }

    /// Finding 1 of the security review: a trailing `/` must not step around a deny rule, on
    /// any engine or system path, and create-vs-update is decided on the path the ACL saw.
    #[test]
    fn a_trailing_slash_never_steps_around_a_deny() {
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let root = core.caller(admin.public().keyid().as_str()).unwrap();
        let admin_does = |op, path: &str, data: serde_json::Value| {
            core.handle(&root, request(op, path, Some(data)))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        };
        for engine in ["transit", "pki", "database"] {
            admin_does(
                Operation::Update,
                &format!("sys/mounts/{engine}"),
                json!({ "type": engine }),
            );
        }
        admin_does(
            Operation::Update,
            "sys/mounts/e2e",
            json!({ "type": "e2e" }),
        );
        admin_does(Operation::Update, "transit/keys/k", json!({}));
        admin_does(
            Operation::Update,
            "secret/data/x",
            json!({ "data": { "a": "1" } }),
        );
        let denied = [
            "secret/config",
            "secret/data/x",
            "secret/metadata/x",
            "secret/destroy/x",
            "e2e/config",
            "transit/keys/k",
            "transit/encrypt/k",
            "pki/roles/r",
            "pki/root/generate/internal",
            "database/roles/admin",
            "database/config/main",
            "database/creds/admin",
            "sys/mounts/secret",
            "sys/policies/acl/admin",
            "identity/entity/name/root",
            "identity/group/name/g",
            "auth/cert/certs/c",
            "sys/leases/revoke-prefix/database",
            "sys/rotate",
            "sys/password-policies/p",
        ];
        let policy: String = std::iter::once(
            "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\", \"list\", \"sudo\"] }\n"
                .to_owned(),
        )
        .chain(
            denied
                .iter()
                .map(|p| format!("path \"{p}\" {{ capabilities = [\"deny\"] }}\n")),
        )
        .collect();
        admin_does(
            Operation::Update,
            "sys/policies/acl/almost",
            json!({ "policy": policy }),
        );
        let bob = SecretIdentity::generate().unwrap();
        admin_does(
            Operation::Update,
            "identity/entity/name/bob",
            json!({ "public_key": bob.public().to_string(), "policies": ["almost"] }),
        );
        let bob = core.caller(bob.public().keyid().as_str()).unwrap();
        for path in denied {
            // Lease endpoints check their policy per operation (an owner needs none): only
            // writes reach the check there.
            let ops: &[Operation] = if path.starts_with("sys/leases/") {
                &[Operation::Update]
            } else {
                &[
                    Operation::Read,
                    Operation::Update,
                    Operation::Patch,
                    Operation::Delete,
                ]
            };
            for &op in ops {
                for sent in [path.to_owned(), format!("{path}/")] {
                    let r = core.handle(&bob, request(op, &sent, Some(json!({}))));
                    assert!(
                        matches!(r, Err(CoreError::Forbidden)),
                        "{op:?} {sent}: {r:?}"
                    );
                }
            }
        }
        // The policy is not a blanket refusal: next to a denied path, the same requests run.
        assert!(matches!(
            core.handle(&bob, request(Operation::Read, "transit/keys/k2/", None)),
            Err(CoreError::NotFound(_))
        ));

        // Create vs update is decided on the path the policy sees: carol may create database
        // roles but not update them, and `roles/admin/` is the existing `roles/admin`.
        admin_does(
            Operation::Update,
            "sys/policies/acl/creator",
            json!({ "policy": "path \"secret/data/*\" { capabilities = [\"create\"] }" }),
        );
        let carol = SecretIdentity::generate().unwrap();
        admin_does(
            Operation::Update,
            "identity/entity/name/carol",
            json!({ "public_key": carol.public().to_string(), "policies": ["creator"] }),
        );
        let carol = core.caller(carol.public().keyid().as_str()).unwrap();
        for sent in ["secret/data/x", "secret/data/x/"] {
            let r = core.handle(
                &carol,
                request(
                    Operation::Update,
                    sent,
                    Some(json!({ "data": { "a": "2" } })),
                ),
            );
            assert!(matches!(r, Err(CoreError::Forbidden)), "{sent}: {r:?}");
        }
        core.handle(
            &carol,
            request(
                Operation::Update,
                "secret/data/new/",
                Some(json!({ "data": { "a": "2" } })),
            ),
        )
        .unwrap();
        let read = core
            .handle(&root, request(Operation::Read, "secret/data/new", None))
            .unwrap();
        assert_eq!(read.data.unwrap()["data"]["a"], "2");
    }

    /// Finding 2 of the security review: whoever may edit a group, an identity or a
    /// certificate role could hand anyone (itself) any policy, `admin` included.
    #[test]
    fn only_held_policies_can_be_granted() {
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let root = core.caller(admin.public().keyid().as_str()).unwrap();
        let admin_does = |path: &str, data: serde_json::Value| {
            core.handle(&root, request(Operation::Update, path, Some(data)))
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let editor = r#"
path "identity/group/name/team-a" { capabilities = ["create", "update", "read"] }
path "identity/entity/name/*" { capabilities = ["create", "update", "read"] }
path "auth/cert/certs/*" { capabilities = ["create", "update", "read"] }
path "identity/group/name/opsg" { capabilities = ["update", "sudo"] }
"#;
        admin_does("sys/policies/acl/editor", json!({ "policy": editor }));
        admin_does(
            "sys/policies/acl/ops",
            json!({ "policy": "path \"sys/*\" { capabilities = [\"read\"] }" }),
        );
        let identity = |name: &str, policies: &[&str]| {
            let key = SecretIdentity::generate().unwrap();
            admin_does(
                &format!("identity/entity/name/{name}"),
                json!({ "public_key": key.public().to_string(), "policies": policies }),
            );
            core.caller(key.public().keyid().as_str()).unwrap()
        };
        let mallory = identity("mallory", &["editor"]);
        identity("bob", &[]);
        admin_does(
            "identity/group/name/admins",
            json!({ "policies": ["admin"], "members": ["admin"] }),
        );
        admin_does("identity/group/name/opsg", json!({ "policies": ["ops"] }));
        let refused = |path: &str, data: serde_json::Value| {
            let r = core.handle(&mallory, request(Operation::Update, path, Some(data)));
            assert!(
                matches!(r, Err(CoreError::GrantRefused(_))),
                "{path}: {r:?}"
            );
        };
        let allowed = |path: &str, data: serde_json::Value| {
            core.handle(&mallory, request(Operation::Update, path, Some(data)))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        };
        // The reported attack: a group she may edit, herself in it, with the admin policy.
        refused(
            "identity/group/name/team-a",
            json!({ "policies": ["admin"], "members": ["mallory"] }),
        );
        refused("identity/group/name/team-a", json!({ "policies": ["ops"] }));
        // Policies she holds herself she may hand on.
        allowed(
            "identity/group/name/team-a",
            json!({ "policies": ["editor"], "members": ["mallory", "bob"] }),
        );
        // Identities: no policy she does not hold, and no new key for one that holds more.
        refused("identity/entity/name/bob", json!({ "policies": ["admin"] }));
        refused("identity/entity/name/bob", json!({ "policies": ["ops"] }));
        refused(
            "identity/entity/name/mallory",
            json!({ "policies": ["editor", "ops"] }),
        );
        let other = SecretIdentity::generate().unwrap();
        refused(
            "identity/entity/name/admin",
            json!({ "public_key": other.public().to_string() }),
        );
        allowed(
            "identity/entity/name/bob",
            json!({ "policies": ["editor"] }),
        );
        allowed(
            "identity/entity/name/bob",
            json!({ "metadata": { "team": "a" } }),
        );
        allowed(
            "identity/entity/name/bob",
            json!({ "public_key": other.public().to_string() }),
        );
        // sudo on the path lets her grant what she does not hold, but never admin.
        allowed(
            "identity/group/name/opsg",
            json!({ "policies": ["ops"], "members": ["bob"] }),
        );
        refused("identity/group/name/opsg", json!({ "policies": ["admin"] }));
        // Certificate roles: mapping a certificate to an identity hands out what it holds.
        let ca = {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "mallory's CA");
            p.self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap()
                .pem()
        };
        let role = |identity: &str| json!({ "certificate": ca, "mappings": [{ "uri": "spiffe://x/m", "identity": identity }] });
        refused("auth/cert/certs/m", role("admin"));
        identity("opsg-member", &["ops"]);
        refused("auth/cert/certs/m", role("opsg-member"));
        allowed("auth/cert/certs/m", role("mallory"));
        // Nothing she was refused took effect.
        let bob = core.identities.get("bob").unwrap().unwrap();
        assert_eq!(bob.policies, vec!["editor"]);
        assert!(
            !core
                .groups
                .of("mallory")
                .1
                .iter()
                .any(|p| p == "admin" || p == "ops")
        );
    }

    /// Finding 4: a signed write's mark is stored with the write it causes, comes back at
    /// unseal, and is purged once it no longer matters; a request that writes nothing leaves
    /// none.
    #[test]
    fn replay_marks_travel_with_writes_and_are_purged() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, admin) = admin_core(backend.clone());
        let root = core.caller(admin.public().keyid().as_str()).unwrap();
        let marks = |b: &MemoryBackend| b.list(crate::replay::PREFIX).unwrap().len();
        let base = marks(&backend);
        let now = 1_000_000;
        let write = ReplayMark::new("k", "n1", now + 120);
        crate::replay::carried_by_writes_of(Some(write), || {
            core.handle(
                &root,
                request(
                    Operation::Update,
                    "secret/data/a",
                    Some(json!({ "data": { "x": "1" } })),
                ),
            )
            .unwrap();
        });
        // The same request carried out again — by a node that had not loaded the marks (a new
        // leader): refused when its batch applies, and nothing of it is written.
        let again = crate::replay::carried_by_writes_of(Some(write), || {
            core.handle(
                &root,
                request(
                    Operation::Update,
                    "secret/data/a",
                    Some(json!({ "data": { "x": "2" } })),
                ),
            )
        });
        match again {
            Err(CoreError::Conflict(m)) => assert!(m.contains("replayed"), "{m}"),
            other => panic!("a replayed write was carried out: {:?}", other.map(|_| ())),
        }
        let current = core
            .handle(&root, request(Operation::Read, "secret/data/a", None))
            .unwrap();
        assert_eq!(current.data.unwrap()["data"]["x"], "1");
        let read = ReplayMark::new("k", "n2", now + 120);
        crate::replay::carried_by_writes_of(Some(read), || {
            core.handle(&root, request(Operation::Read, "secret/data/a", None))
                .unwrap();
        });
        assert_eq!(marks(&backend), base + 1);
        let loaded = core.replay_marks(now).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].digest, write.digest);
        assert!(loaded[0].until >= write.until);
        // Not yet due, then gone.
        assert_eq!(core.purge_replay_marks(now + 60).unwrap(), 0);
        assert_eq!(core.purge_replay_marks(now + 400).unwrap(), 1);
        assert_eq!(marks(&backend), base);
        assert!(core.replay_marks(now).unwrap().is_empty());
    }

    /// Finding 6: the barrier never rotated by use; AES-GCM with random nonces must not go past
    /// about 2^32 encryptions under one key. The count survives a restart (it resumes from the
    /// stored reservation, never lower) and the keyring rotates at the limit.
    #[test]
    fn the_keyring_rotates_when_a_term_has_encrypted_enough() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, root, admin) = created_core(backend.clone());
        let root_copy = || BarrierKey::from_secret(KeyTerm(0), root.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let write = |core: &Core, i: usize| {
            core.handle(
                &caller,
                request(
                    Operation::Update,
                    &format!("secret/data/k{i}"),
                    Some(json!({ "data": { "i": i } })),
                ),
            )
            .unwrap();
        };
        for i in 0..5 {
            write(&core, i);
        }
        let (term, used) = core.barrier().encryptions();
        assert_eq!(term, 1);
        assert!(used >= 10, "{used}");
        // Reopened: counting on from the stored reservation, never below.
        drop(core);
        let core = Core::open(backend, root_copy(), &[], test_engines()).unwrap();
        let resumed = core.barrier().encryptions().1;
        assert!(resumed >= used);
        core.barrier().set_rotation_limit(resumed + 3);
        assert_eq!(core.rotate_due_keys().unwrap(), 0, "not due yet");
        for i in 5..10 {
            write(&core, i);
        }
        assert!(core.barrier().rotation_due());
        assert_eq!(core.rotate_due_keys().unwrap(), 1);
        assert_eq!(core.barrier().terms(), vec![1, 2]);
        assert!(!core.barrier().rotation_due());
        write(&core, 10);
        assert_eq!(core.barrier().encryptions().0, 2);
        // Everything written under term 1 still reads.
        let read = core
            .handle(&caller, request(Operation::Read, "secret/data/k0", None))
            .unwrap();
        assert_eq!(read.data.unwrap()["data"]["i"], 0);
    }
}
