//! Where a path goes: the core's own routes (policies, identities, groups, certificate roles,
//! mounts, wrapping, leases, password policies, the keyring, audit hashes) told apart by
//! prefix, and every endpoint the core documents. Paths below a mount go to its engine, whose
//! routes are its own (the engine contract).

use std::sync::Arc;

use sigil_engine::Matched;

use crate::mounts::Mount;

const POLICIES: &str = "sys/policies/acl";
const IDENTITIES: &str = "identity/entity/name";
const GROUPS: &str = "identity/group/name";
const CERT_ROLES: &str = "auth/cert/certs";
const MOUNTS: &str = "sys/mounts";
const UI_MOUNTS: &str = "sys/internal/ui/mounts";
const WRAPPING: &str = "sys/wrapping";
const LEASES: &str = "sys/leases";
const PASSWORD_POLICIES: &str = "sys/policies/password";
/// Keyring maintenance, `sudo` required (as Vault's `sys/rotate`).
pub(crate) const ROTATE: &str = "sys/rotate";
pub(crate) const REWRAP: &str = "sys/rewrap";
pub(crate) const KEY_STATUS: &str = "sys/key-status";
/// Vault's path for computing an audit device's HMAC of a value.
const AUDIT_HASH: &str = "sys/audit-hash/";

/// Where a canonical path goes; the `&str` is the rest of the path below the route.
pub(crate) enum Route<'a> {
    Policies(&'a str),
    Identities(&'a str),
    Groups(&'a str),
    CertRoles(&'a str),
    Mounts(&'a str),
    /// `sys/internal/ui/mounts[/<path>]`: which mount serves a path (Vault's CLI asks this).
    UiMounts(&'a str),
    Wrapping(&'a str),
    /// `sys/leases/<rest>`.
    Leases(&'a str),
    /// `sys/policies/password/<rest>`.
    PasswordPolicies(&'a str),
    /// A path below a mount: the mount and the engine's route the rest matched (`None`:
    /// none did).
    Mount(Arc<Mount>, Option<Matched<'a>>),
    Keyring(&'a str),
    AuditHash(&'a str),
    Unknown,
}

/// Splits `path` into a mount and the rest below it (`mount`, `mount/`, `mount/rest`).
fn below<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// The routes that do not depend on the mount table.
pub(crate) fn fixed_route(path: &str) -> Route<'_> {
    if let Some(rest) = below(path, POLICIES) {
        Route::Policies(rest)
    } else if let Some(rest) = below(path, IDENTITIES) {
        Route::Identities(rest)
    } else if let Some(rest) = below(path, GROUPS) {
        Route::Groups(rest)
    } else if let Some(rest) = below(path, CERT_ROLES) {
        Route::CertRoles(rest)
    } else if let Some(rest) = below(path, MOUNTS) {
        Route::Mounts(rest)
    } else if let Some(rest) = below(path, UI_MOUNTS) {
        Route::UiMounts(rest)
    } else if let Some(rest) = below(path, PASSWORD_POLICIES) {
        Route::PasswordPolicies(rest)
    } else if let Some(rest) = below(path, LEASES) {
        Route::Leases(rest)
    } else if let Some(op @ ("wrap" | "unwrap" | "lookup")) = below(path, WRAPPING) {
        Route::Wrapping(op)
    } else if [ROTATE, REWRAP, KEY_STATUS].contains(&path) {
        Route::Keyring(path)
    } else if let Some(device) = path.strip_prefix(AUDIT_HASH) {
        Route::AuditHash(device)
    } else {
        Route::Unknown
    }
}

/// One documented endpoint of the core (path template below `/v1/`, `{name}` for one
/// segment, `{path}` for several): the engine contract's [`sigil_engine::Route`].
pub use sigil_engine::Route as Endpoint;

const fn endpoint(
    path: &'static str,
    methods: &'static [&'static str],
    summary: &'static str,
) -> Endpoint {
    Endpoint::new(path, methods, summary)
}

/// Every endpoint the core routes (all authenticated and sealed). Documentation (OpenAPI) is
/// generated from this; `endpoint_of` maps every route to one of these, and a test checks both.
pub const ENDPOINTS: &[Endpoint] = &[
    endpoint("sys/policies/acl", &["LIST"], "List ACL policies"),
    endpoint(
        "sys/policies/acl/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "Read, write or delete an ACL policy",
    ),
    endpoint("identity/entity/name", &["LIST"], "List identities"),
    endpoint(
        "identity/entity/name/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "Read, create/update or delete an identity",
    ),
    endpoint("identity/group/name", &["LIST"], "List groups"),
    endpoint(
        "identity/group/name/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "Read, create/update or delete a group",
    ),
    endpoint("auth/cert/certs", &["LIST"], "List certificate roles"),
    endpoint(
        "auth/cert/certs/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "Read, write or delete a certificate role (trusted CA, CRL, certificate-to-identity mappings)",
    ),
    endpoint(
        "sys/mounts",
        &["GET"],
        "List the mounted engines (and the built-in sys/ and identity/)",
    ),
    endpoint(
        "sys/mounts/{path}",
        &["GET", "POST", "PUT", "DELETE"],
        "Read a mount, enable an engine at a path (kv, e2e), or disable it and remove its data",
    ),
    endpoint(
        "sys/internal/ui/mounts",
        &["GET"],
        "The secrets engines the caller may use (Vault's shape: {\"secret\": {path: mount}})",
    ),
    endpoint(
        "sys/internal/ui/mounts/{path}",
        &["GET"],
        "The mount serving a path (longest prefix), if the caller may use it; 404 otherwise",
    ),
    endpoint(
        "sys/mounts/{path}/tune",
        &["GET", "POST", "PUT"],
        "Read or change a mount's description, default_lease_ttl, max_lease_ttl",
    ),
    endpoint(
        "sys/wrapping/wrap",
        &["POST", "PUT"],
        "Store a one-time wrap: an age envelope for one recipient keyid, signed by the sender",
    ),
    endpoint(
        "sys/wrapping/unwrap",
        &["POST", "PUT"],
        "Fetch a wrap once, as its recipient; it becomes a tombstone (consumed at T by K)",
    ),
    endpoint(
        "sys/wrapping/lookup",
        &["POST", "PUT"],
        "A wrap's status, for its sender or recipient: pending, consumed (when, by whom), expired",
    ),
    endpoint("sys/policies/password", &["LIST"], "List password policies"),
    endpoint(
        "sys/policies/password/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "A password policy (HCL: length, charset rules)",
    ),
    endpoint(
        "sys/policies/password/{name}/generate",
        &["GET"],
        "A password from a policy",
    ),
    endpoint(
        "sys/leases/lookup",
        &["POST", "PUT"],
        "A lease's times (owner, or update on sys/leases/lookup/<id>)",
    ),
    endpoint(
        "sys/leases/lookup/{path}",
        &["LIST"],
        "Lease ids under a prefix (sudo)",
    ),
    endpoint(
        "sys/leases/renew",
        &["POST", "PUT"],
        "Renew a lease (owner, or update on sys/leases/renew/<id>)",
    ),
    endpoint(
        "sys/leases/revoke",
        &["POST", "PUT"],
        "Revoke a lease (owner, or update on sys/leases/revoke/<id>)",
    ),
    endpoint(
        "sys/leases/revoke/{path}",
        &["POST", "PUT"],
        "Revoke the lease in the path (owner, or update on that path)",
    ),
    endpoint(
        "sys/leases/renew/{path}",
        &["POST", "PUT"],
        "Renew the lease in the path (owner, or update on that path)",
    ),
    endpoint(
        "sys/leases/revoke-prefix/{path}",
        &["POST", "PUT"],
        "Revoke every lease under a prefix (sudo)",
    ),
    endpoint(
        "sys/leases/revoke-force/{path}",
        &["POST", "PUT"],
        "Forget every lease under a prefix, revoked or not (sudo)",
    ),
    endpoint(
        "sys/leases/tidy",
        &["POST", "PUT"],
        "Drop unreadable lease entries and reload the expiry queue (sudo)",
    ),
    endpoint("sys/rotate", &["POST", "PUT"], "Add a keyring term (sudo)"),
    endpoint(
        "sys/rewrap",
        &["POST", "PUT"],
        "Re-encrypt every entry under the newest term (sudo)",
    ),
    endpoint(
        "sys/key-status",
        &["GET"],
        "Keyring terms and their use (sudo)",
    ),
    endpoint(
        "sys/audit-hash/{name}",
        &["POST", "PUT"],
        "HMAC of a value as an audit device records it",
    ),
];

/// The documented endpoint a route belongs to (`None` for unknown paths). Exhaustive: a new
/// route does not compile until it is documented.
pub(crate) fn endpoint_of(route: &Route<'_>) -> Option<&'static str> {
    Some(match route {
        Route::Policies("") => "sys/policies/acl",
        Route::Policies(_) => "sys/policies/acl/{name}",
        Route::Identities("") => "identity/entity/name",
        Route::Identities(_) => "identity/entity/name/{name}",
        Route::Groups("") => "identity/group/name",
        Route::Groups(_) => "identity/group/name/{name}",
        Route::CertRoles("") => "auth/cert/certs",
        Route::CertRoles(_) => "auth/cert/certs/{name}",
        Route::Mounts("") => "sys/mounts",
        Route::Mounts(rest) if rest.ends_with("/tune") => "sys/mounts/{path}/tune",
        Route::Mounts(_) => "sys/mounts/{path}",
        Route::UiMounts("") => "sys/internal/ui/mounts",
        Route::UiMounts(_) => "sys/internal/ui/mounts/{path}",
        Route::Wrapping(op) => match *op {
            "wrap" => "sys/wrapping/wrap",
            "unwrap" => "sys/wrapping/unwrap",
            _ => "sys/wrapping/lookup",
        },
        Route::Mount(_, at) => at.as_ref()?.route.path,
        Route::Keyring(path) => [ROTATE, REWRAP, KEY_STATUS]
            .into_iter()
            .find(|p| p == path)
            .unwrap_or(KEY_STATUS),
        Route::AuditHash(_) => "sys/audit-hash/{name}",
        Route::PasswordPolicies("") => "sys/policies/password",
        Route::PasswordPolicies(rest) if rest.ends_with("/generate") => {
            "sys/policies/password/{name}/generate"
        }
        Route::PasswordPolicies(_) => "sys/policies/password/{name}",
        Route::Leases(rest) => match rest.split_once('/').map_or(*rest, |(op, _)| op) {
            "lookup" if rest.contains('/') => "sys/leases/lookup/{path}",
            "lookup" => "sys/leases/lookup",
            "renew" if rest.contains('/') => "sys/leases/renew/{path}",
            "renew" => "sys/leases/renew",
            "revoke" if rest.contains('/') => "sys/leases/revoke/{path}",
            "revoke" => "sys/leases/revoke",
            "revoke-prefix" => "sys/leases/revoke-prefix/{path}",
            "revoke-force" => "sys/leases/revoke-force/{path}",
            "tidy" => "sys/leases/tidy",
            _ => return None,
        },
        Route::Unknown => return None,
    })
}
