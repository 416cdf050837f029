//! The HTTP API: one handler for `/v1/…`. Seal endpoints first, then — only when unsealed —
//! authenticate, open, dispatch to the core, and seal the response.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use sigil_core::policy::Capability;
use sigil_core::{Caller, Core, Node, Operation, Plan};
use sigil_crypto::PublicIdentity;
use sigil_proto::sys::{InitRequest, RekeyApproval, RekeyRequest};
use sigil_proto::{headers, sys};
use zeroize::Zeroizing;

use crate::audit_trail::{PeerCerts, RemoteAddr, Trail};
use crate::auth::{self, Authenticated};
use crate::channels::Channels;
use crate::error::ApiError;
use crate::limits::{Limits, address_key};
use crate::sealing::{Sealing, open_body, receipt, seal_response, vault_envelope};
use crate::telemetry;
use crate::tls::ClientTrust;

/// How long a client may take to send its body (408 after).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) struct AppState {
    /// The TLS identity new connections get (replaced by a reload).
    pub(crate) tls: std::sync::RwLock<Arc<crate::tls::TlsIdentity>>,
    /// The client-certificate trust for the current certificate roles, by their generation
    /// and the identity it was built on.
    pub(crate) tls_cache: std::sync::Mutex<Option<TrustCache>>,
    pub(crate) node: Node,
    pub(crate) fresh: auth::Freshness,
    pub(crate) limits: Limits,
    pub(crate) connections: Arc<crate::connections::Connections>,
    pub(crate) channels: Channels,
    /// Where a reload gets what may change (`None`: only the audit devices are reopened).
    pub(crate) reload_source: Option<Arc<dyn crate::reload::ReloadSource>>,
    /// One reload at a time.
    pub(crate) reloading: std::sync::Mutex<()>,
}

/// A built client-certificate trust and what it was built from.
pub(crate) struct TrustCache {
    generation: u64,
    identity: Arc<crate::tls::TlsIdentity>,
    trust: Arc<ClientTrust>,
}

impl AppState {
    /// The identity new connections get.
    pub(crate) fn tls_identity(&self) -> Arc<crate::tls::TlsIdentity> {
        Arc::clone(&self.tls.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The client-certificate trust for the current roles (rebuilt only when they or the
    /// server's identity change; an unchanged set costs one atomic read and a pointer
    /// comparison). `None` while sealed.
    fn client_trust(&self, identity: &Arc<crate::tls::TlsIdentity>) -> Option<Arc<ClientTrust>> {
        let core = self.node.core()?;
        let generation = core.cert_generation();
        let mut cache = self.tls_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref()
            && c.generation == generation
            && Arc::ptr_eq(&c.identity, identity)
        {
            return Some(Arc::clone(&c.trust));
        }
        let trust = core.cert_trust();
        let built = identity.with_client_roots(&trust).unwrap_or_else(|e| {
            tracing::error!(error = %e, "certificate roles unusable; not asking for client certificates");
            ClientTrust {
                config: Arc::clone(&identity.server_config),
                roles: Vec::new(),
            }
        });
        let built = Arc::new(built);
        *cache = Some(TrustCache {
            generation: trust.generation,
            identity: Arc::clone(identity),
            trust: Arc::clone(&built),
        });
        Some(built)
    }

    /// The TLS configuration for a new connection: client certificates are requested once
    /// certificate roles exist (and only while unsealed).
    pub(crate) fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        let identity = self.tls_identity();
        match self.client_trust(&identity) {
            Some(t) => Arc::clone(&t.config),
            None => Arc::clone(&identity.server_config),
        }
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    // The server's own endpoints by name; a core path gets its label from the request's plan.
    let mut route = telemetry::server_route(req.uri().path().strip_prefix("/v1/").unwrap_or(""));
    let method = req.method().as_str().to_owned();
    let (req, leftover) = crate::leftover::Leftover::split(req);
    // A body refused as too large may be up to ~1.4 times the limit once sealed and encoded:
    // read that much of it (within the time limit) so the client gets to see the 413.
    let drain_too_large = state.limits.max_request_bytes().saturating_mul(2);
    let resp = match dispatch(state, req, &mut route).await {
        Ok(r) => r,
        Err(e) => {
            // Answered early: the client sees the status, not a reset (leftover.rs).
            if let Some(leftover) = leftover {
                let (bytes, time) = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    (drain_too_large, crate::leftover::DRAIN_TIME_TOO_LARGE)
                } else {
                    (0, std::time::Duration::ZERO)
                };
                leftover.drain(bytes, time).await;
            }
            e.into_response()
        }
    };
    telemetry::request(route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// `sys/metrics` for an authenticated caller with `read` on it (the plain listener is
/// `--metrics-listen`).
fn metrics_response(
    state: &AppState,
    core: &Core,
    authn: &Authenticated<Arc<Caller>>,
    sealing: &Sealing,
    request_id: &str,
) -> Result<Response, ApiError> {
    core.authorize(&authn.caller, "sys/metrics", &[Capability::Read])?;
    let text = telemetry::render(&state.node);
    let response = sigil_core::Response::data(json!({ "format": "prometheus", "text": text }));
    seal_response(core, &state.channels, authn, sealing, request_id, response)
}

fn plain_json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut resp = (
        status,
        serde_json::to_string(value).expect("plain JSON serializes"),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn unavailable(node: &Node) -> ApiError {
    if node.initialized() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Sigil is sealed")
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sigil is not initialized: run `sigil operator init`",
        )
    }
}

/// How much of a body is read, and for how long: the full budget only once the request is
/// authenticated (a verified signature or a client certificate).
#[derive(Clone, Copy)]
struct Budget {
    bytes: usize,
    time: std::time::Duration,
    /// Where the limit is set, for the 413's message.
    setting: &'static str,
}

impl AppState {
    /// An authenticated caller's budget: `[limits] max_request_bytes`.
    fn authenticated(&self) -> Budget {
        Budget {
            bytes: self.limits.max_request_bytes(),
            time: BODY_TIMEOUT,
            setting: "the server's [limits] max_request_bytes",
        }
    }
}

/// For the endpoints anyone may call with a body (`sys/init`): init certificates and admin
/// keys fit with room to spare.
const UNAUTHENTICATED_BODY: Budget = Budget {
    bytes: 64 * 1024,
    time: std::time::Duration::from_secs(10),
    setting: "fixed for requests without a signature",
};

async fn read_body(parts: &Parts, body: Body, budget: Budget) -> Result<Bytes, ApiError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        let size = declared.map_or_else(|| "more than that".to_owned(), |n| format!("{n} bytes"));
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: {size}, the limit is {} bytes ({}; the body is measured as sent, sealed)",
                budget.bytes, budget.setting
            ),
        )
    };
    if declared.is_some_and(|n| n > budget.bytes) {
        return Err(too_large());
    }
    match tokio::time::timeout(budget.time, axum::body::to_bytes(body, budget.bytes)).await {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
    }
}

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

fn plan(core: &Core, method: &Method, raw_path: &str, query: &[(String, String)]) -> Planned {
    let operation = operation_of(method, query)
        .ok_or_else(|| ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported method"))?;
    let path = sigil_core::canonical_path(raw_path, operation)?;
    Ok(core.plan(operation, path))
}

async fn dispatch(
    state: Arc<AppState>,
    req: Request,
    route: &mut String,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    auth::refuse_tokens(&parts.headers)?;
    let Some(raw_path) = parts.uri.path().strip_prefix("/v1/") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Sigil's API is under /v1/",
        ));
    };
    let node = &state.node;
    let write = parts.method == Method::POST || parts.method == Method::PUT;
    let addr = address_key(parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip()));
    let limits = &state.limits;
    limits.address.take(&addr).map_err(ApiError::rate_limited)?;
    limits
        .auth_failures
        .peek(&addr)
        .map_err(ApiError::rate_limited)?;
    if UNAUTHENTICATED.contains(&raw_path) {
        limits
            .unauthenticated
            .take(&addr)
            .map_err(ApiError::rate_limited)?;
    }
    if parts.method == Method::GET {
        match raw_path {
            "sys/health" => return Ok(health(node)),
            "sys/openapi.json" => {
                return Ok(plain_json(StatusCode::OK, &crate::openapi::document()));
            }
            "sys/seal-status" => return Ok(plain_json(StatusCode::OK, &node.status())),
            "sys/rekey" => {
                node.core().ok_or_else(|| unavailable(node))?;
                return Ok(plain_json(StatusCode::OK, &node.rekey_status(now())));
            }
            "sys/server-key" => {
                let public = node.server_key().ok_or_else(|| unavailable(node))?;
                return Ok(plain_json(
                    StatusCode::OK,
                    &sys::ServerKey {
                        public_key: public.to_string(),
                        keyid: public.keyid().to_string(),
                    },
                ));
            }
            _ => {}
        }
    }
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let core = node.core();
    let mut planned = core
        .as_deref()
        .map(|core| plan(core, &parts.method, raw_path, &query));
    if let Some(Ok(plan)) = &planned
        && let Some(label) = plan.label()
    {
        *route = label;
    }
    if let Some(core) = &core
        && let Some(Ok(plan)) = planned.take_if(|p| p.as_ref().is_ok_and(|p| p.is_public_read()))
    {
        // A CA certificate or CRL: public, served raw to anyone (relying parties fetch
        // them), under the unauthenticated per-address limit.
        limits
            .unauthenticated
            .take(&addr)
            .map_err(ApiError::rate_limited)?;
        let core = Arc::clone(core);
        return blocking(move || {
            let raw = core.public_read(&plan).map_err(ApiError::from)?;
            let mut resp = (StatusCode::OK, raw.body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(raw.content_type),
            );
            Ok(resp)
        })
        .await;
    }

    // The body is read only once the request is authenticated (below, and in
    // `authenticated`), except for init, under a small budget.
    match raw_path {
        "sys/init" if write => {
            let body = read_body(&parts, body, UNAUTHENTICATED_BODY).await?;
            let worker = Arc::clone(&state);
            return blocking(move || init(&worker.node, &body)).await;
        }
        "sys/unseal/share" if parts.method == Method::GET => {
            let (authn, _) = authenticate(&state, node, &parts, body).await?;
            let share = node
                .sealed_share(&authn.caller.0)
                .ok_or_else(|| unavailable(node))?;
            return Ok(plain_json(StatusCode::OK, &share));
        }
        "sys/rekey/approve" if write => {
            let core = node.core().ok_or_else(|| unavailable(node))?;
            let mut trail = Trail::new(&parts, raw_path)?;
            let outcome = approve_rekey(&state, &core, &parts, body, &mut trail).await;
            return trail.finish(&core, outcome).await;
        }
        "sys/unseal" if write => {
            let (authn, body) = authenticate(&state, node, &parts, body).await?;
            let worker = Arc::clone(&state);
            return blocking(move || {
                let status = worker.node.submit_share(&authn.caller.0, &body)?;
                if let Some(core) = worker.node.core().filter(|_| !status.sealed) {
                    // The requests that wrote before the restart stay refused (replay.rs).
                    let t = now();
                    let marks = core.replay_marks(t)?;
                    worker.fresh.replay.restore(&marks, t);
                    tracing::info!(marks = marks.len(), "replay marks restored");
                }
                Ok(plain_json(StatusCode::OK, &status))
            })
            .await;
        }
        _ => {}
    }

    let (Some(core), Some(planned)) = (core, planned) else {
        return Err(unavailable(node));
    };
    let mut trail = Trail::new(&parts, raw_path)?;
    // Response wrapping (docs/e2e.md): in the query, so the request's signature covers it.
    let wrap = Wrap {
        to: take_query(&mut query, "wrap_to"),
        ttl: take_query(&mut query, "wrap_ttl"),
    };
    let request = Incoming {
        parts: &parts,
        planned,
        query,
        wrap,
    };
    let outcome = authenticated(&state, &core, request, body, &mut trail).await;
    trail.finish(&core, outcome).await
}

/// Response wrapping asked for in the query (`wrap_to`, `wrap_ttl`).
struct Wrap {
    to: Option<String>,
    ttl: Option<String>,
}

/// A request for the core, planned, before it is authenticated.
struct Incoming<'a> {
    parts: &'a Parts,
    planned: Planned,
    /// The query without the server's own parameters.
    query: Vec<(String, String)>,
    wrap: Wrap,
}

/// Records a request entry before anything happens (fail-closed). The entry is built only when
/// a device records it.
async fn audit_request<'a>(
    core: &Arc<Core>,
    entry: impl FnOnce() -> sigil_core::audit::Entry<'a>,
) -> Result<(), ApiError> {
    if !core.audit().enabled() {
        return Ok(());
    }
    core.audit().log(entry()).await.map_err(ApiError::from)
}

/// `sys/rekey/approve`: signed by a current seal admin, audited like every other write.
async fn approve_rekey(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, Option<Value>), ApiError> {
    let (authn, body) = authenticate(state, &state.node, parts, body).await?;
    let keyid = authn.caller.0.clone();
    let name = core
        .caller(&keyid)
        .map(|c| c.identity.name.clone())
        .unwrap_or_default();
    trail.identity = Some((keyid.clone(), name));
    trail.operation = Some(Operation::Update);
    trail.signature = Some((
        header(parts, headers::SIGNATURE_INPUT),
        header(parts, headers::SIGNATURE),
    ));
    let approval: RekeyApproval = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("expected {\"digest\": \"<proposal digest>\"}"))?;
    let data = json!({ "digest": approval.digest });
    audit_request(core, || trail.request_entry(Some(&data))).await?;
    let worker = Arc::clone(state);
    let response = blocking(move || {
        let status = worker.node.rekey_approve(&keyid, &approval.digest, now())?;
        Ok(plain_json(StatusCode::OK, &status))
    })
    .await?;
    Ok((response, None))
}

/// Everything a request does once the core is unsealed: authenticate, open, audit (fail
/// closed), dispatch, seal. Returns the response and, for the audit log, the data it carried.
async fn authenticated(
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
    let (authn, body) = match parts.extensions.get::<Arc<PeerCerts>>() {
        // A client certificate authenticates the connection; a signature, if present, wins.
        Some(certs) if !parts.headers.contains_key(headers::SIGNATURE_INPUT) => {
            trail.mtls = true;
            let authn = authenticate_mtls(state, core, parts, certs)?;
            (authn, read_body(parts, body, state.authenticated()).await?)
        }
        _ => authenticate(state, core.as_ref(), parts, body).await?,
    };
    let body = &body[..];
    trail.identity = Some((
        authn.caller.identity.keyid.clone(),
        authn.caller.identity.name.clone(),
    ));
    let sealing = Sealing::of(&state.channels, &parts.headers, &authn.caller);
    let data = open_body(core, &authn, &sealing, &parts.headers, body)?;
    let request_id = trail.request_id.clone();
    let seal = |response| {
        seal_response(
            core,
            &state.channels,
            &authn,
            &sealing,
            &request_id,
            response,
        )
    };
    // The plan holds the one canonical form of the path (the policy, the existence check, the
    // audit log and the engine all see it) and, once settled, the operation that will run.
    let mut plan = planned?;
    core.settle(&mut plan)?;
    let (operation, path) = (plan.operation(), plan.path().to_owned());
    trail.operation = Some(operation);
    trail.path.clone_from(&path);
    if !trail.mtls && operation != Operation::Read && operation != Operation::List {
        // Non-repudiation: the signature of every write goes into the audit log.
        trail.signature = Some((
            header(parts, headers::SIGNATURE_INPUT),
            header(parts, headers::SIGNATURE),
        ));
    }
    // Response wrapping is checked before anything runs: a bad recipient or TTL changes
    // nothing, and the paths that are never wrapped refuse it rather than answer in clear.
    let wrap_recipient = match &wrap.to {
        None => None,
        Some(_) if UNWRAPPABLE.iter().any(|p| path.starts_with(p)) => {
            return Err(ApiError::bad_request(
                "wrap_to: this path's responses cannot be wrapped",
            ));
        }
        Some(to) => Some(core.wrap_recipient(to, wrap.ttl.as_deref())?),
    };
    // Fail-closed: nothing happens unless an audit device recorded the request.
    audit_request(core, || trail.request_entry(data.as_ref())).await?;
    match (path.as_str(), operation) {
        ("sys/rekey/init", Operation::Create | Operation::Update) => {
            core.authorize(
                &authn.caller,
                &path,
                &[Capability::Update, Capability::Sudo],
            )?;
            let req: RekeyRequest = serde_json::from_value(data.unwrap_or_default()).map_err(|_| {
                ApiError::bad_request(
                    "expected {\"admins\":[\"sigil1…\"],\"threshold\":K,\"names\":[…],\"ttl_seconds\":N}",
                )
            })?;
            let admins = parse_admins(&req.admins, &req.names)?;
            let status = state
                .node
                .rekey_start(admins, req.threshold, req.ttl_seconds, now())?;
            let response = sigil_core::Response::data(
                serde_json::to_value(status).expect("status serializes"),
            );
            return Ok((seal(response)?, None));
        }
        ("sys/reload", Operation::Create | Operation::Update) => {
            core.authorize(
                &authn.caller,
                &path,
                &[Capability::Update, Capability::Sudo],
            )?;
            let worker = Arc::clone(state);
            let report = blocking(move || {
                worker
                    .reload()
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            })
            .await?;
            let response = sigil_core::Response::data(
                serde_json::to_value(report).expect("report serializes"),
            );
            return Ok((seal(response)?, None));
        }
        ("sys/storage/snapshot", Operation::Read) => {
            core.authorize(&authn.caller, &path, &[Capability::Read, Capability::Sudo])?;
            let worker = Arc::clone(core);
            let bytes = blocking(move || worker.snapshot().map_err(ApiError::from)).await?;
            // Checked as a restore would check it (and to report its header).
            let header = sigil_core::snapshot::decode(&bytes, None)
                .map_err(|e| {
                    tracing::error!(error = %e, "a snapshot just taken does not read back");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the snapshot failed its own check",
                    )
                })?
                .header;
            let response = sigil_core::Response::data(json!({
                "snapshot": sigil_crypto::b64url_encode(&bytes),
                "created": header.created,
                "entries": header.entries,
                "keyring_term": header.keyring_term,
                "body_sha256": header.body_sha256,
            }));
            return Ok((seal(response)?, None));
        }
        ("sys/metrics", Operation::Read) => {
            return Ok((
                metrics_response(state, core, &authn, &sealing, &trail.request_id)?,
                None,
            ));
        }
        ("sys/rekey", Operation::Delete) => {
            core.authorize(
                &authn.caller,
                &path,
                &[Capability::Delete, Capability::Sudo],
            )?;
            state.node.rekey_cancel();
            return Ok((
                receipt(core, &authn, &sealing, StatusCode::NO_CONTENT)?,
                None,
            ));
        }
        _ => {}
    }
    if path == "sys/seal" && matches!(operation, Operation::Create | Operation::Update) {
        core.authorize(
            &authn.caller,
            &path,
            &[Capability::Update, Capability::Sudo],
        )?;
        // Sealing closes the audit devices (with a signed checkpoint): no response entry. The
        // receipt is made first, while the server key is still at hand.
        let answer = receipt(core, &authn, &sealing, StatusCode::NO_CONTENT)?;
        let worker = Arc::clone(state);
        let sealed = blocking(move || {
            worker.node.seal()?;
            worker.channels.clear();
            Ok(answer)
        })
        .await?;
        // The devices are closed now (with a signed checkpoint): no response entry.
        trail.closed = true;
        return Ok((sealed, None));
    }
    let caller = Arc::clone(&authn.caller);
    let worker = Arc::clone(core);
    let request_id = trail.request_id.clone();
    // What may wait on an fsync runs on a blocking thread; the rest (reads, transit's
    // cryptography) right here, which saves two thread hand-offs per request.
    let inline = wrap_recipient.is_none() && !plan.writes();
    // Returns the lease the engine issued apart from the answer, so that the audit names it
    // even when wrapping the answer fails.
    // A signed request leaves its mark with the first write it causes (a read that issues a
    // lease writes too), so that it stays refused after a restart (replay.rs).
    let mark = authn.mark;
    let handle = move || {
        let response = worker.handle_plan(&caller, plan, data, query)?;
        let lease_id = response.lease.as_ref().map(|l| l.id.clone());
        let response = match wrap_recipient {
            // A response without data (204) has nothing to wrap, as in Vault.
            Some(recipient) if response.status == 200 => {
                let body = Zeroizing::new(
                    serde_json::to_vec(&vault_envelope(&request_id, &response))
                        .expect("response serializes"),
                );
                drop(response);
                worker
                    .wrap_response(&recipient, &caller, wrap.ttl.as_deref(), &path, &body)
                    .map_err(ApiError::from)
            }
            _ => Ok(response),
        };
        Ok::<_, ApiError>((response, lease_id))
    };
    let run = move || sigil_core::carried_by_writes_of(mark, handle);
    let (response, lease_id) = if inline {
        run()?
    } else {
        tokio::task::spawn_blocking(run).await.map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed")
        })??
    };
    // The lease of what was handed out, wrapped or not: the audit's response entry names it.
    trail.lease_id = lease_id;
    let response = response?;
    // The data goes into the audit log's response entry only when a device records it.
    let audit_data = if core.audit().enabled() {
        response.data.clone()
    } else {
        None
    };
    Ok((seal(response)?, audit_data))
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
fn take_query(query: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = query.iter().position(|(k, _)| k == name)?;
    Some(query.remove(i).1)
}

fn header(parts: &Parts, name: &str) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Endpoints anyone may call (stricter per-address limit).
pub(crate) const UNAUTHENTICATED: &[&str] = &[
    "sys/openapi.json",
    "sys/health",
    "sys/seal-status",
    "sys/server-key",
    "sys/rekey",
    "sys/init",
    "sys/unseal",
    "sys/unseal/share",
    "sys/rekey/approve",
];

/// Verifies the signature, counting a failure against the source address and a success
/// against the signer's own limit.
/// Verifies the signature from the headers, then reads the body (only then, under the full
/// budget) and checks it against the signed digest.
async fn authenticate<S: auth::Signers>(
    state: &AppState,
    signers: &S,
    parts: &Parts,
    body: Body,
) -> Result<(Authenticated<S::Signer>, Bytes), ApiError> {
    let verified = auth::authenticate(signers, &state.fresh, parts, now())
        .map_err(|e| auth_failed(state, parts, e))?;
    let body = read_body(parts, body, state.authenticated()).await?;
    let authn = verified
        .body(&body, &state.fresh.replay)
        .map_err(|e| auth_failed(state, parts, e))?;
    let authn = account(state, parts, Ok(authn), |c| {
        S::public_key(c).keyid().to_string()
    })?;
    Ok((authn, body))
}

/// Counts a failed authentication against the source address (and in the metrics).
fn auth_failed(state: &AppState, parts: &Parts, e: ApiError) -> ApiError {
    let addr = address_key(parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip()));
    let _ = state.limits.auth_failures.take(&addr);
    telemetry::auth_failure(e.message());
    e
}

/// Counts a failed authentication against the source address (and in the metrics), a
/// success against the signer's own rate limit.
fn account<C>(
    state: &AppState,
    parts: &Parts,
    result: Result<Authenticated<C>, ApiError>,
    keyid: impl Fn(&C) -> String,
) -> Result<Authenticated<C>, ApiError> {
    match result {
        Ok(authn) => {
            state
                .limits
                .identity
                .take(&keyid(&authn.caller))
                .map_err(ApiError::rate_limited)?;
            Ok(authn)
        }
        Err(e) => Err(auth_failed(state, parts, e)),
    }
}

/// How long an mTLS connection's chain verification is reused when the roles do not change.
const MTLS_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// mTLS (docs/protocol.md §7): the handshake verified the chain against the certificate roles'
/// CAs (dates, CRLs); a role maps it to an identity; the `Sigil-Nonce` header is the AAD of
/// the sealed bodies and is refused if seen before.
fn authenticate_mtls(
    state: &AppState,
    core: &Core,
    parts: &Parts,
    certs: &PeerCerts,
) -> Result<Authenticated<Arc<Caller>>, ApiError> {
    let result = (|| {
        state.fresh.hosts.check(parts)?;
        // Verified per role: the role is the one whose own CA (and CRL) accepts the chain,
        // never one picked from names the client sent. The result, and the identity the role
        // maps the leaf to, hold for this connection until the roles or their mappings change
        // (a new CA, CRL or mapping, a deleted identity) or a minute has passed (dates). The
        // identity itself (enabled, policies) is looked up at every request.
        let generation = core.cert_generation();
        let (leaf, intermediates) = certs
            .chain
            .split_first()
            .ok_or_else(|| ApiError::unauthorized("no client certificate"))?;
        let cached = certs
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|(g, _, at)| *g == generation && at.elapsed() < MTLS_RECHECK);
        let caller = match cached.and_then(|(_, name, _)| core.caller_by_name(&name)) {
            Some(caller) => caller,
            None => {
                let trust = state.client_trust(&state.tls_identity()).ok_or_else(|| {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Sigil is sealed")
                })?;
                let leaf_der = rustls::pki_types::CertificateDer::from(leaf.clone());
                let intermediates: Vec<_> = intermediates
                    .iter()
                    .map(|c| rustls::pki_types::CertificateDer::from(c.clone()))
                    .collect();
                let at = rustls::pki_types::UnixTime::now();
                let (name, caller) = trust
                    .roles
                    .iter()
                    .filter(|(_, v)| v.verify_client_cert(&leaf_der, &intermediates, at).is_ok())
                    .find_map(|(role, _)| core.caller_for_certificate(role, leaf))
                    .ok_or_else(|| {
                        ApiError::unauthorized(
                            "the client certificate maps to no identity (see auth/cert/certs)",
                        )
                    })?;
                *certs.verified.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((generation, name, std::time::Instant::now()));
                caller
            }
        };
        let nonce = parts
            .headers
            .get(headers::SIGIL_NONCE)
            .and_then(|v| v.to_str().ok())
            .filter(|n| n.len() <= 128)
            .filter(|n| sigil_crypto::b64url_decode(n).is_ok_and(|b| b.len() >= 16))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "mTLS requests need a Sigil-Nonce header (at least 16 random bytes, base64url)",
                )
            })?
            .to_owned();
        // Remembered as long as a default signature's nonce (2 minutes with the grace): a
        // replay over mTLS needs the client's TLS key anyway, and at tens of thousands of
        // requests a second every minute of memory costs tens of MiB.
        let t = now();
        if state
            .fresh
            .replay
            .check_and_insert(
                &caller.identity.keyid,
                &nonce,
                t + sigil_proto::signature::DEFAULT_VALIDITY_SECS,
                t,
            )
            .is_none()
        {
            return Err(ApiError::unauthorized(
                "replayed request: this nonce was already used",
            ));
        }
        // No durable mark: only the holder of the client's TLS key can send it again.
        Ok(Authenticated {
            caller,
            nonce,
            mark: None,
        })
    })();
    account(state, parts, result, |c| c.identity.keyid.clone())
}

/// Runs `f` (which may wait on an fsync or a lock) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"))?
}

fn health(node: &Node) -> Response {
    let status = node.status();
    // Vault's codes: 200 unsealed, 503 sealed, 501 not initialized; and 503 when the storage
    // stopped taking writes (a load balancer must not send writes here).
    let code = match (status.initialized, status.sealed) {
        (false, _) => StatusCode::NOT_IMPLEMENTED,
        (true, true) => StatusCode::SERVICE_UNAVAILABLE,
        (true, false) if status.storage_error.is_some() => StatusCode::SERVICE_UNAVAILABLE,
        (true, false) => StatusCode::OK,
    };
    plain_json(
        code,
        &sys::Health {
            initialized: status.initialized,
            sealed: status.sealed,
            standby: false,
            server_time_utc: now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            storage: if status.storage_error.is_some() {
                "failed"
            } else {
                "ok"
            }
            .to_owned(),
            storage_error: status.storage_error,
        },
    )
}

/// Admin public keys with their names (`admin-N` when not given).
fn parse_admins(
    admins: &[String],
    names: &[String],
) -> Result<Vec<(String, PublicIdentity)>, ApiError> {
    if !names.is_empty() && names.len() != admins.len() {
        return Err(ApiError::bad_request("names must match admins one to one"));
    }
    admins
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let public = PublicIdentity::parse(text)
                .map_err(|e| ApiError::bad_request(format!("admins[{i}]: {e}")))?;
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("admin-{}", i + 1));
            Ok((name, public))
        })
        .collect()
}

fn init(node: &Node, body: &[u8]) -> Result<Response, ApiError> {
    let req: InitRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"admins\":[\"sigil1…\"],\"threshold\":K}}: {e}"
        ))
    })?;
    let admins = parse_admins(&req.admins, &req.names)?;
    let response = node.init(admins, req.threshold)?;
    Ok(plain_json(StatusCode::OK, &response))
}
