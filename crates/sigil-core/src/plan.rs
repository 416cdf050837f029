//! A request resolved once: its canonical path, the operation it will run as (create or
//! update decided by one existence check), the mount that serves it, and what follows from
//! those — the documented endpoint, the metrics label, the capability the policy must grant,
//! whether it may write (and so runs on a blocking thread), whether it is a public read. The
//! server builds the plan before it authenticates a request and carries it through rate
//! limits, authentication, the audit entry and [`crate::Core::handle_plan`]; nothing resolves the
//! path again. System routes are told apart by prefix from the plan's path (a few string
//! comparisons, no lock and no storage). The core makes plans ([`crate::Core::plan`]).

use std::sync::Arc;

use crate::Operation;
use crate::mounts::Mount;
use crate::policy::Capability;
use crate::route::{Route, endpoint_of, fixed_route};

/// A request resolved once ([`crate::Core::plan`]).
pub struct Plan {
    operation: Operation,
    path: String,
    /// The mount serving the path and where the rest below it starts.
    mount: Option<(Arc<Mount>, usize)>,
    /// The mount's engine's route the rest matched.
    endpoint: Option<&'static sigil_engine::Route>,
    /// Whether create vs update is decided ([`crate::Core::settle`]).
    settled: bool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// A plan of `operation` on `path`, served by `mount` (with where the rest of the path
    /// below it starts) or by the core itself.
    pub(crate) fn new(
        operation: Operation,
        path: String,
        mount: Option<(Arc<Mount>, usize)>,
    ) -> Self {
        let endpoint = mount.as_ref().and_then(|(m, at)| {
            let rest = path.get(*at..).unwrap_or("");
            sigil_engine::route::find(m.engine.routes(), rest).map(|found| found.route)
        });
        Plan {
            operation,
            path,
            mount,
            endpoint,
            settled: false,
        }
    }

    /// Create vs update is decided: `operation` is what runs.
    pub(crate) fn settle_as(&mut self, operation: Operation) {
        self.operation = operation;
        self.settled = true;
    }

    /// Whether create vs update is decided.
    pub(crate) fn is_settled(&self) -> bool {
        self.settled
    }

    /// The operation (after [`crate::Core::settle`]: `Create` for a write to what does not exist).
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The canonical path: what the policy, the audit log and the engine see.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn route(&self) -> Route<'_> {
        match &self.mount {
            Some((mount, at)) => {
                let rest = self.path.get(*at..).unwrap_or("");
                Route::Mount(
                    Arc::clone(mount),
                    self.endpoint.and_then(|e| e.matches(rest)),
                )
            }
            None => fixed_route(&self.path),
        }
    }

    /// The documented endpoint (template) of the path, if the core routes it.
    pub fn template(&self) -> Option<&'static str> {
        endpoint_of(&self.route())
    }

    /// A metrics label: the endpoint template with `{mount}` filled in by the mount's path
    /// (operators choose mounts, so the label set stays bounded; secret names never appear).
    pub fn label(&self) -> Option<String> {
        let template = self.template()?;
        Some(match &self.mount {
            Some((m, _)) => template.replace("{mount}", m.path.trim_end_matches('/')),
            None => template.to_owned(),
        })
    }

    /// Whether running it may write to storage and so wait on an fsync: the server runs the
    /// others on its async workers instead of handing them to a blocking thread. Reads and
    /// lists do not write; an engine says for itself (PKI's CRL reads may sign a fresh CRL,
    /// transit's cryptography on an existing key writes nothing).
    pub fn writes(&self) -> bool {
        match self.endpoint {
            Some(endpoint) => endpoint.writes.may_write(self.operation),
            None => !matches!(self.operation, Operation::Read | Operation::List),
        }
    }

    /// Whether it is one of Vault's unauthenticated reads (PKI's CA certificates and CRLs,
    /// raw DER or PEM). Touches no storage.
    pub fn is_public_read(&self) -> bool {
        self.operation == Operation::Read && self.endpoint.is_some_and(|e| e.public)
    }

    /// The capability the caller's policy must grant on the path (besides `sudo` on the
    /// keyring's endpoints).
    pub fn capability(&self) -> Capability {
        match self.operation {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Create => Capability::Create,
            Operation::Update => Capability::Update,
            Operation::Patch => Capability::Patch,
            Operation::Delete => Capability::Delete,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sigil_storage::{Backend as _, MemoryBackend};

    use crate::core::admin_core;
    use crate::{CoreError, Operation, Request};

    #[test]
    fn a_plan_resolves_route_label_writes_and_public_once() {
        let (core, admin) = admin_core(Arc::new(MemoryBackend::new()));
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let enable = |path: &str, kind: &str| {
            let req = Request {
                operation: Operation::Update,
                path: format!("sys/mounts/{path}"),
                data: Some(json!({ "type": kind })),
                query: vec![],
            };
            core.handle(&caller, req).unwrap();
        };
        enable("team/pki", "pki");
        enable("transit", "transit");
        enable("database", "database");

        let read = core.plan(Operation::Read, "secret/data/app".into());
        assert_eq!(read.template(), Some("{mount}/data/{path}"));
        assert_eq!(read.label().as_deref(), Some("secret/data/{path}"));
        assert!(!read.writes() && !read.is_public_read());

        let ca = core.plan(Operation::Read, "team/pki/ca/pem".into());
        assert!(
            ca.is_public_read(),
            "a CA certificate is read without a key"
        );
        assert_eq!(ca.label().as_deref(), Some("team/pki/ca/pem"));
        let issue = core.plan(Operation::Update, "team/pki/issue/web".into());
        assert!(!issue.is_public_read() && issue.writes());

        // Create vs update is settled once, by one existence check.
        let mut write = core.plan(Operation::Update, "transit/keys/k".into());
        core.settle(&mut write).unwrap();
        assert_eq!(write.operation(), Operation::Create);
        assert!(write.writes(), "creating a key writes");
        core.handle_plan(&caller, write, Some(json!({})), vec![])
            .unwrap();
        let mut encrypt = core.plan(Operation::Update, "transit/encrypt/k".into());
        core.settle(&mut encrypt).unwrap();
        assert_eq!(encrypt.operation(), Operation::Update);
        assert!(
            !encrypt.writes(),
            "encrypting with an existing key writes nothing"
        );

        // What may write comes from each engine's route table (Route::writes).
        let writes = |op, path: &str| core.plan(op, path.to_owned()).writes();
        assert!(
            writes(Operation::Read, "team/pki/crl"),
            "a CRL read may re-sign it"
        );
        assert!(writes(Operation::Read, "team/pki/issuer/default/crl/pem"));
        assert!(!writes(Operation::Read, "team/pki/ca/pem"));
        assert!(!writes(Operation::List, "team/pki/certs/"));
        assert!(
            writes(Operation::Read, "database/creds/app"),
            "a database is waited on"
        );
        assert!(writes(Operation::List, "database/roles/"));
        assert!(!writes(Operation::Read, "secret/data/app"));
        assert!(writes(Operation::Delete, "secret/metadata/app"));
        assert!(!writes(Operation::Update, "transit/hmac/k/sha2-256"));

        let system = core.plan(Operation::Read, "sys/mounts".into());
        assert_eq!(system.label().as_deref(), Some("sys/mounts"));
        assert!(!system.writes());
        assert_eq!(core.plan(Operation::Read, "nope/x".into()).label(), None);
    }

    #[test]
    fn a_request_planned_before_its_mount_is_disabled_finds_it_gone() {
        let backend = Arc::new(MemoryBackend::new());
        let (core, admin) = admin_core(backend.clone());
        let caller = core.caller(admin.public().keyid().as_str()).unwrap();
        let plan = core.plan(Operation::Update, "secret/data/late".into());
        let disable = Request {
            operation: Operation::Delete,
            path: "sys/mounts/secret".into(),
            data: None,
            query: vec![],
        };
        core.handle(&caller, disable).unwrap();
        let data = Some(json!({ "data": { "a": "1" } }));
        assert!(matches!(
            core.handle_plan(&caller, plan, data, vec![]),
            Err(CoreError::NotFound(_))
        ));
        let logical = backend.list("logical/").unwrap();
        assert!(
            logical.is_empty(),
            "nothing was written into the removed mount's data: {logical:?}"
        );
    }
}
