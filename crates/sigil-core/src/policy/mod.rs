//! ACL policies in Vault's HCL syntax with Vault's semantics.
//!
//! A policy is a list of `path "…" { capabilities = [...] }` blocks. A path ending in `*` is a
//! prefix glob; a `+` segment matches exactly one path segment. When several rules match,
//! Vault's priority order picks one (see [`Acl`]); rules for the same path in several policies
//! are merged, and `deny` at that path wins over everything. No rule → denied.

mod acl;
mod capability;
mod fmt;
#[cfg(test)]
mod model;
mod parse;
mod rule;
mod template;

pub use acl::Acl;
pub use capability::{Capabilities, Capability};
pub use fmt::format_policy;
pub use parse::{PolicyError, parse_policy};
pub use rule::{PathRule, Policy};
pub use template::TemplateContext;

/// The name of the built-in policy held by the init admins. It cannot be changed or deleted.
pub const ADMIN_POLICY: &str = "admin";

/// The text of the built-in admin policy.
pub const ADMIN_POLICY_HCL: &str = r#"# Built-in: full access, held by the init admins. Sigil has no root token.
path "*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}
"#;
