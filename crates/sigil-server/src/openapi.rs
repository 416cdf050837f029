//! The OpenAPI 3 document of the whole API, generated from the route tables: the core's
//! [`sigil_core::ENDPOINTS`] and this crate's own endpoints below. Served at
//! `GET /v1/sys/openapi.json`.

use serde_json::{Map, Value, json};

/// How an endpoint authenticates and what its bodies are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Anyone; plain JSON.
    None,
    /// An RFC 9421 signature by an admin key; plain JSON (seal and rekey approvals).
    Signed,
    /// An RFC 9421 signature; bodies HPKE-sealed.
    Sealed,
    /// Anyone; a raw certificate or CRL (DER or PEM), as Vault's PKI serves them.
    Raw,
}

/// An endpoint the server handles itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerEndpoint {
    pub(crate) path: &'static str,
    pub(crate) methods: &'static [&'static str],
    pub(crate) auth: Auth,
    pub(crate) summary: &'static str,
}

const fn ep(
    path: &'static str,
    methods: &'static [&'static str],
    auth: Auth,
    summary: &'static str,
) -> ServerEndpoint {
    ServerEndpoint {
        path,
        methods,
        auth,
        summary,
    }
}

/// Every endpoint the server (`api/`) handles before (or instead of) the core's router.
pub(crate) const SERVER_ENDPOINTS: &[ServerEndpoint] = &[
    ep(
        "sys/health",
        &["GET"],
        Auth::None,
        "Health: 200 unsealed, 503 sealed, 501 not initialized",
    ),
    ep(
        "sys/seal-status",
        &["GET"],
        Auth::None,
        "Seal status, unseal key and attempt nonce",
    ),
    ep(
        "sys/server-key",
        &["GET"],
        Auth::None,
        "The server's public identity, to pin",
    ),
    ep("sys/openapi.json", &["GET"], Auth::None, "This document"),
    ep(
        "sys/init",
        &["POST", "PUT"],
        Auth::None,
        "Initialize with admin public keys",
    ),
    ep(
        "sys/unseal/share",
        &["GET"],
        Auth::Signed,
        "An admin's sealed unseal share",
    ),
    ep(
        "sys/unseal",
        &["POST", "PUT"],
        Auth::Signed,
        "Submit an unseal share",
    ),
    ep("sys/rekey", &["GET"], Auth::None, "The open rekey proposal"),
    ep(
        "sys/rekey",
        &["DELETE"],
        Auth::Sealed,
        "Cancel the rekey proposal (sudo)",
    ),
    ep(
        "sys/rekey/init",
        &["POST", "PUT"],
        Auth::Sealed,
        "Propose a rekey (sudo)",
    ),
    ep(
        "sys/rekey/approve",
        &["POST", "PUT"],
        Auth::Signed,
        "Approve the rekey proposal",
    ),
    ep(
        "sys/seal",
        &["POST", "PUT"],
        Auth::Sealed,
        "Seal the server (sudo)",
    ),
    ep("sys/metrics", &["GET"], Auth::Sealed, "Prometheus metrics"),
    ep(
        "sys/storage/snapshot",
        &["GET"],
        Auth::Sealed,
        "A signed snapshot of the whole storage for `sigil operator backup` (sudo)",
    ),
    ep(
        "sys/reload",
        &["POST", "PUT"],
        Auth::Sealed,
        "Reload the TLS certificate, limits and audit devices, as SIGHUP (sudo)",
    ),
    ep(
        "sys/leader",
        &["GET"],
        Auth::None,
        "Cluster: which node leads (Vault's shape)",
    ),
    ep(
        "sys/storage/raft/peers",
        &["GET"],
        Auth::None,
        "Cluster: each member's API address (what `sigil operator unseal` walks)",
    ),
    ep(
        "sys/storage/raft/join",
        &["POST", "PUT"],
        Auth::None,
        "Cluster: ask to be admitted; the package once an admin approved (docs/protocol.md §13)",
    ),
    ep(
        "sys/storage/raft/snapshot",
        &["GET", "POST", "PUT"],
        Auth::Sealed,
        "Cluster: GET a signed snapshot of the whole storage (sudo); POST one into a new, uninitialized cluster (no key needed then), or stage it over the running cluster (sudo; it runs once the seal admins approve)",
    ),
    ep(
        "sys/storage/raft/snapshot/restore",
        &["GET", "DELETE"],
        Auth::Sealed,
        "Cluster: the staged restore and its approvals, or drop it (sudo)",
    ),
    ep(
        "sys/storage/raft/snapshot/approve",
        &["POST", "PUT"],
        Auth::Signed,
        "Cluster: a seal admin approves the staged restore; the last approval needed carries it out",
    ),
    ep(
        "sys/storage/raft/approve",
        &["POST", "PUT"],
        Auth::Sealed,
        "Cluster: admit a node that asked to join (sudo)",
    ),
    ep(
        "sys/storage/raft/remove-peer",
        &["POST", "PUT"],
        Auth::Sealed,
        "Cluster: remove a member (sudo)",
    ),
    ep(
        "sys/storage/raft/configuration",
        &["GET"],
        Auth::Sealed,
        "Cluster: the members, their state, last contact and index",
    ),
    ep(
        "sys/storage/raft/autopilot/state",
        &["GET"],
        Auth::Sealed,
        "Cluster: each member's health and the failure tolerance (Vault's shape)",
    ),
    ep(
        "sys/storage/raft/autopilot/configuration",
        &["GET", "POST", "PUT"],
        Auth::Sealed,
        "Cluster: dead-server cleanup settings (POST: sudo)",
    ),
    ep(
        "sys/ha-status",
        &["GET"],
        Auth::Sealed,
        "Cluster: the nodes and which is active",
    ),
    ep(
        "sys/step-down",
        &["POST", "PUT"],
        Auth::Sealed,
        "Cluster: the leader hands leadership to another voter (sudo)",
    ),
];

fn operation(summary: &str, method: &str, auth: Auth) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), summary.into());
    let mut responses = Map::new();
    match auth {
        Auth::Raw => {
            let binary = json!({ "schema": { "type": "string", "format": "binary" } });
            responses.insert(
                "200".into(),
                json!({ "description": "DER or PEM", "content": {
                    "application/pkix-cert": binary,
                    "application/pem-certificate-chain": binary,
                    "application/pkix-crl": binary,
                    "application/x-pem-file": binary,
                } }),
            );
        }
        Auth::None => {
            responses.insert(
                "200".into(),
                json!({ "description": "plain JSON", "content": { "application/json": { "schema": { "type": "object" } } } }),
            );
        }
        Auth::Signed => {
            op.insert("security".into(), json!([{ "httpSignature": [] }]));
            responses.insert(
                "200".into(),
                json!({ "description": "plain JSON", "content": { "application/json": { "schema": { "type": "object" } } } }),
            );
        }
        Auth::Sealed => {
            op.insert("security".into(), json!([{ "httpSignature": [] }]));
            responses.insert(
                "200".into(),
                json!({ "description": "sealed to the caller", "content": { "application/vnd.sigil.sealed+json": { "schema": { "$ref": "#/components/schemas/Sealed" } } } }),
            );
            responses.insert("204".into(), json!({ "description": "done, no body" }));
            if matches!(method, "POST" | "PUT" | "PATCH") {
                op.insert(
                    "requestBody".into(),
                    json!({ "content": { "application/vnd.sigil.sealed+json": { "schema": { "$ref": "#/components/schemas/Sealed" } } } }),
                );
            }
        }
    }
    if (method == "POST" || method == "PUT") && auth != Auth::Sealed {
        op.insert(
            "requestBody".into(),
            json!({ "content": { "application/json": { "schema": { "type": "object" } } } }),
        );
    }
    for (code, what) in [
        ("400", "bad input"),
        ("401", "not authenticated"),
        ("403", "denied by policy"),
        ("404", "not found"),
        ("429", "rate limited"),
        ("503", "sealed, not initialized, or not audited"),
    ] {
        responses.insert(
            code.into(),
            json!({ "description": what, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Errors" } } } }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn add(paths: &mut Map<String, Value>, path: &str, methods: &[&str], auth: Auth, summary: &str) {
    let template = format!("/v1/{path}");
    let item = paths
        .entry(template.clone())
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("path items are objects");
    let mut params = Vec::new();
    // Every `{name}` of the template, in order: `{mount}` and a last `{path}` are special
    // (sigil_engine::route), any other takes one segment.
    let names = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
    for name in names {
        let style = match name {
            "mount" | "path" => name,
            _ => "segment",
        };
        params.push(json!({
            "name": name, "in": "path", "required": true,
            // Bounded and without '.'/'..' segments: a fuzzer generating from these
            // patterns then rarely has to discard a value that would change the URL.
            "schema": match style {
                "mount" => json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
                "segment" => json!({ "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$" }),
                _ => json!({ "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}){0,7}$" }),
            },
            "description": match style {
                "mount" => "the path an engine is mounted at (e.g. secret; a mount of several segments, such as team/kv, works too)",
                "segment" => "one path segment",
                _ => "one or more segments",
            },
        }));
    }
    if !params.is_empty() {
        item.insert("parameters".into(), Value::Array(params));
    }
    for m in methods {
        // LIST is reachable as GET ?list=true; OpenAPI has no custom methods.
        let (method, summary) = match *m {
            "LIST" => ("get", format!("{summary} (GET ?list=true, or LIST)")),
            other => (other, summary.to_owned()),
        };
        // Two engines serving the same template (PKI's and transit's `{mount}/keys`): one
        // operation, both summaries (once when they are the same: `kv` and `e2e`).
        let summary = match item
            .get(&method.to_lowercase())
            .and_then(|op| op["summary"].as_str())
        {
            Some(earlier) if earlier.split("; ").any(|s| s == summary) => earlier.to_owned(),
            Some(earlier) => format!("{earlier}; {summary}"),
            None => summary,
        };
        let mut op = operation(&summary, method, auth);
        op["operationId"] = format!(
            "{}_{}",
            method.to_lowercase(),
            template.replace(['/', '{', '}', '.', '-'], "_")
        )
        .into();
        if *m == "LIST" {
            op["parameters"] = json!([{ "name": "list", "in": "query", "required": true, "schema": { "type": "string", "enum": ["true"] } }]);
        }
        item.insert(method.to_lowercase(), op);
    }
}

/// The OpenAPI 3.0 document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for e in SERVER_ENDPOINTS {
        add(&mut paths, e.path, e.methods, e.auth, e.summary);
    }
    for e in sigil_core::ENDPOINTS {
        add(&mut paths, e.path, e.methods, Auth::Sealed, e.summary);
    }
    for kind in crate::node::engines().iter() {
        for e in kind.routes() {
            let auth = if e.public { Auth::Raw } else { Auth::Sealed };
            add(&mut paths, e.path, e.methods, auth, e.summary);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Sigil",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Keys replace tokens: every authenticated request carries an RFC 9421 signature; bodies are HPKE-sealed (see docs/protocol.md).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "httpSignature": {
                    "type": "apiKey", "in": "header", "name": "Signature",
                    "description": "RFC 9421 signature (label sig1) with Signature-Input; see docs/protocol.md §3",
                },
            },
            "schemas": {
                "Sealed": {
                    "type": "object", "required": ["enc", "ct"],
                    "properties": { "enc": { "type": "string" }, "ct": { "type": "string" } },
                },
                "Errors": {
                    "type": "object", "required": ["errors"],
                    "properties": { "errors": { "type": "array", "items": { "type": "string" } } },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let kinds = crate::node::engines();
        let registered = kinds.iter().flat_map(|k| k.routes());
        for e in sigil_core::ENDPOINTS.iter().chain(registered) {
            let item = &paths[&format!("/v1/{}", e.path)];
            for m in e.methods {
                let m = if *m == "LIST" { "get" } else { m };
                assert!(item.get(m.to_lowercase()).is_some(), "{} {m}", e.path);
            }
        }
        for p in crate::api::UNAUTHENTICATED {
            assert!(paths.contains_key(&format!("/v1/{p}")), "{p}");
        }
        // The paths the server (`api/sys.rs`) handles itself after authentication.
        for p in [
            "sys/seal",
            "sys/metrics",
            "sys/rekey/init",
            "sys/rekey",
            "sys/reload",
            "sys/storage/snapshot",
            "sys/storage/raft/approve",
            "sys/storage/raft/remove-peer",
            "sys/storage/raft/snapshot/restore",
            "sys/storage/raft/configuration",
            "sys/ha-status",
            "sys/step-down",
            "sys/storage/raft/autopilot/state",
            "sys/storage/raft/autopilot/configuration",
        ] {
            assert!(paths.contains_key(&format!("/v1/{p}")), "{p}");
        }
    }
}
