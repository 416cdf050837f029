//! A request for the core, once unsealed: authenticate, open the sealed body, settle the
//! plan, audit (fail closed), run (inline or on a blocking thread), wrap if asked, seal.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::Value;
use sigil_core::{Caller, Core, Operation, Plan};
use zeroize::Zeroizing;

use super::authn;
use super::state::AppState;
use super::sys;
use crate::audit_trail::Trail;
use crate::audit_trail::audit_request;
use crate::error::ApiError;
use crate::sealing::{Reply, Sealing, open_body, vault_envelope};

/// The operation an HTTP method asks for (`GET ?list=true` and `LIST` list).
fn operation_of(method: &Method, query: &[(String, String)]) -> Option<Operation> {
    let list_flag = query.iter().any(|(k, v)| k == "list" && v == "true");
    Some(match method.as_str() {
        "GET" if list_flag => Operation::List,
        "LIST" => Operation::List,
        "GET" => Operation::Read,
        "POST" | "PUT" => Operation::Update,
        "PATCH" => Operation::Patch,
        "DELETE" => Operation::Delete,
        _ => return None,
    })
}

/// A request resolved once against the unsealed core (sigil_core::Plan): its canonical path,
/// operation and mount. A path that does not canonicalize, or an unknown method, is refused
/// where it always was, after authentication.
type Planned = Result<Plan, ApiError>;

pub(super) fn plan(
    core: &Core,
    method: &Method,
    raw_path: &str,
    query: &[(String, String)],
) -> Planned {
    let operation = operation_of(method, query)
        .ok_or_else(|| ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported method"))?;
    let path = sigil_core::canonical_path(raw_path, operation)?;
    Ok(core.plan(operation, path))
}

/// Response wrapping asked for in the query (`wrap_to`, `wrap_ttl`).
pub(super) struct Wrap {
    pub(super) to: Option<String>,
    pub(super) ttl: Option<String>,
}

/// A request for the core, planned, before it is authenticated.
pub(super) struct Incoming<'a> {
    pub(super) parts: &'a Parts,
    pub(super) planned: Planned,
    /// The query without the server's own parameters.
    pub(super) query: Vec<(String, String)>,
    pub(super) wrap: Wrap,
}

/// Everything a request does once the core is unsealed. Returns the response and, for the
/// audit log, the data it carried.
pub(super) async fn handle(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    request: Incoming<'_>,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, Option<Value>), ApiError> {
    let Incoming {
        parts,
        planned,
        query,
        wrap,
    } = request;
    let (authn, body) = authn::caller(state, core, parts, body, trail).await?;
    let sealing = Sealing::of(&state.channels, &parts.headers, &authn.caller);
    let mut data = open_body(core, &authn, &sealing, &parts.headers, &body)?;
    let reply = Reply {
        core,
        channels: &state.channels,
        authn: &authn,
        sealing: &sealing,
        request_id: &trail.request_id.clone(),
        headers: &parts.headers,
    };
    // The plan holds the one canonical form of the path (the policy, the existence check, the
    // audit log and the engine all see it) and, once settled, the operation that will run.
    let mut plan = planned?;
    core.settle(&mut plan)?;
    record(trail, parts, &plan);
    // Response wrapping is checked before anything runs: a bad recipient or TTL changes
    // nothing, and the paths that are never wrapped refuse it rather than answer in clear.
    let recipient = wrap_recipient(core, &wrap, plan.path())?;
    // Fail-closed: nothing happens unless an audit device recorded the request.
    audit_request(core, || trail.request_entry(data.as_ref())).await?;
    let (path, operation) = (plan.path().to_owned(), plan.operation());
    if let Some(answer) = sys::handle(state, &reply, &path, operation, &mut data, trail).await {
        return Ok((answer?, None));
    }
    let run = Run {
        state: Arc::clone(state),
        caller: Arc::clone(&authn.caller),
        mark: authn.mark,
        wrap: recipient.map(|r| (r, wrap.ttl)),
        request_id: trail.request_id.clone(),
    };
    let (response, lease_id) = run.execute(core, plan, data, query).await?;
    // The lease of what was handed out, wrapped or not: the audit's response entry names it.
    trail.lease_id = lease_id;
    let response = response?;
    // The data goes into the audit log's response entry only when a device records it.
    let audit_data = if core.audit().enabled() {
        response.data.clone()
    } else {
        None
    };
    Ok((reply.seal(response)?, audit_data))
}

/// The settled plan in the audit trail; the signature of every write too (non-repudiation).
fn record(trail: &mut Trail, parts: &Parts, plan: &Plan) {
    trail.operation = Some(plan.operation());
    trail.path = plan.path().to_owned();
    if !trail.mtls && !matches!(plan.operation(), Operation::Read | Operation::List) {
        trail.record_signature(parts);
    }
}

/// The identity a response is to be wrapped for, if the query asks.
fn wrap_recipient(core: &Core, wrap: &Wrap, path: &str) -> Result<Option<Arc<Caller>>, ApiError> {
    match &wrap.to {
        None => Ok(None),
        Some(_) if UNWRAPPABLE.iter().any(|p| path.starts_with(p)) => Err(ApiError::bad_request(
            "wrap_to: this path's responses cannot be wrapped",
        )),
        Some(to) => Ok(Some(core.wrap_recipient(to, wrap.ttl.as_deref())?)),
    }
}

/// How a planned request runs in the core.
struct Run {
    /// The node, to seal when the core finds its keyring unreadable.
    state: Arc<AppState>,
    caller: Arc<Caller>,
    /// A signed request's replay mark: it leaves it with the first write it causes (a read
    /// that issues a lease writes too), so that it stays refused after a restart (replay.rs).
    mark: Option<sigil_core::ReplayMark>,
    /// The identity to wrap the response for, and the wrap's TTL.
    wrap: Option<(Arc<Caller>, Option<String>)>,
    request_id: String,
}

/// The core's response (or why wrapping it failed), and the lease it issued apart from it,
/// so that the audit names the lease even when wrapping the answer fails.
type Ran = (Result<sigil_core::Response, ApiError>, Option<String>);

impl Run {
    /// What may wait on an fsync runs on a blocking thread; the rest (reads, transit's
    /// cryptography) right here, which saves two thread hand-offs per request.
    async fn execute(
        self,
        core: &Arc<Core>,
        plan: Plan,
        data: Option<Value>,
        query: Vec<(String, String)>,
    ) -> Result<Ran, ApiError> {
        let inline = self.wrap.is_none() && !plan.writes();
        let worker = Arc::clone(core);
        let mark = self.mark;
        let run =
            move || sigil_core::carried_by_writes_of(mark, || self.run(&worker, plan, data, query));
        if inline {
            run()
        } else {
            tokio::task::spawn_blocking(run).await.map_err(|_| {
                ApiError::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "request handler failed",
                )
            })?
        }
    }

    fn run(
        self,
        core: &Core,
        plan: Plan,
        data: Option<Value>,
        query: Vec<(String, String)>,
    ) -> Result<Ran, ApiError> {
        let path = plan.path().to_owned();
        let response = core
            .handle_plan(&self.caller, plan, data, query)
            .inspect_err(|e| {
                // The keyring no longer decrypts: nothing can be served; seal, and say why.
                if matches!(e, sigil_core::CoreError::Keyring(_))
                    && let Err(sealing) = self.state.node.seal_for_fault(e)
                {
                    tracing::error!(error = %sealing, "could not seal after a keyring fault");
                }
            })?;
        let lease_id = response.lease.as_ref().map(|l| l.id.clone());
        let response = match self.wrap {
            // A response without data (204) has nothing to wrap, as in Vault.
            Some((recipient, ttl)) if response.status == 200 => {
                let body = Zeroizing::new(
                    serde_json::to_vec(&vault_envelope(&self.request_id, &response))
                        .expect("response serializes"),
                );
                drop(response);
                core.wrap_response(&recipient, &self.caller, ttl.as_deref(), &path, &body)
                    .map_err(ApiError::from)
            }
            _ => Ok(response),
        };
        Ok((response, lease_id))
    }
}

/// Paths whose responses are never wrapped: the server's own endpoints answered before the
/// core, and the wrapping endpoints themselves (a consumed wrap must not turn into another).
const UNWRAPPABLE: &[&str] = &[
    "sys/wrapping/",
    "sys/rekey",
    "sys/metrics",
    "sys/seal",
    "sys/reload",
    "sys/storage/snapshot",
];

/// Removes a query parameter the server handles itself; returns its value.
pub(super) fn take_query(query: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = query.iter().position(|(k, _)| k == name)?;
    Some(query.remove(i).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods whose signatures are verified in batches are exactly ones whose operation
    /// is a read or a list, whose signature [`record`] does not keep in the audit log.
    #[test]
    fn batched_signatures_are_never_kept_for_non_repudiation() {
        for method in crate::auth::BATCHED_METHODS {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            for query in [vec![], vec![("list".to_owned(), "true".to_owned())]] {
                let operation = operation_of(&method, &query);
                assert!(
                    matches!(operation, Some(Operation::Read | Operation::List)),
                    "{method} {query:?}: {operation:?}"
                );
            }
        }
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(!crate::auth::BATCHED_METHODS.contains(&method.as_str()));
        }
    }
}
