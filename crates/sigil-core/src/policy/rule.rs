//! A parsed policy and its path rules.

use super::capability::Capabilities;

/// One `path` block, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    /// The path as written, minus a leading `/` (and, for plain globs, minus the trailing
    /// `*`, as Vault stores it).
    pub path: String,
    /// Whether it is a prefix match (ends in `*`).
    pub is_prefix: bool,
    /// Whether it contains a `+` (segment wildcard).
    pub has_segment_wildcards: bool,
    /// Whether it has `{{…}}` placeholders, filled in per caller.
    pub templated: bool,
    /// Granted capabilities (just `deny` if `deny` was listed).
    pub capabilities: Capabilities,
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// Its source text, returned on read.
    pub text: String,
    /// Its rules, in source order.
    pub rules: Vec<PathRule>,
}
