//! Who may hand out policies. A write to an identity, a group or a certificate role can give
//! someone policies: an identity's own list, a group's list (to every member), membership of a
//! group (its list, to the new member), a new public key for an identity (everything the
//! identity holds, to the holder of the new key), a certificate role (everything each mapped
//! identity holds, to whoever holds a certificate from its CA). Vault lets anyone with `update`
//! on such a path hand out any policy, `root` included; Sigil does not:
//!
//! - a caller may grant only policies it holds itself (its own and its groups'),
//! - unless it holds `sudo` on the path it writes,
//! - and the built-in `admin` policy only an admin may grant, `sudo` or not.

use std::collections::BTreeSet;

use crate::CoreError;
use crate::policy::ADMIN_POLICY;

/// What one write hands out: `policies` directly, and everything each of `identities` holds.
#[derive(Debug, Default)]
pub(crate) struct Grant<'a> {
    pub(crate) policies: Vec<&'a str>,
    pub(crate) identities: Vec<&'a str>,
}

impl Grant<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.identities.is_empty()
    }
}

/// The policies in `new` that `old` does not have.
pub(crate) fn added<'a>(old: &[String], new: &'a [String]) -> Vec<&'a str> {
    new.iter()
        .filter(|p| !old.contains(p))
        .map(String::as_str)
        .collect()
}

/// What the stores ask of the core while they write: whether an identity exists, and whether
/// the caller may hand out a [`Grant`].
pub(crate) trait Gate {
    /// Whether an identity named `name` exists.
    fn identity_exists(&self, name: &str) -> bool;
    /// Refuses (403) a grant the caller may not make.
    fn check(&self, grant: &Grant<'_>) -> Result<(), CoreError>;
}

/// The decision, given the policies granted (expanded), the caller's own and whether it holds
/// `sudo` on the path it writes.
pub(crate) fn decide(
    wanted: &BTreeSet<String>,
    held: &BTreeSet<String>,
    sudo: bool,
) -> Result<(), CoreError> {
    if wanted.contains(ADMIN_POLICY) && !held.contains(ADMIN_POLICY) {
        return Err(CoreError::GrantRefused(
            "only an admin may grant the admin policy".into(),
        ));
    }
    if sudo || wanted.is_subset(held) {
        return Ok(());
    }
    let missing: Vec<&str> = wanted.difference(held).map(String::as_str).collect();
    Err(CoreError::GrantRefused(format!(
        "this would grant policies you do not hold yourself ({}); that takes sudo on this path",
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_held_policies_unless_sudo_and_admin_only_by_admins() {
        decide(&set(&[]), &set(&[]), false).unwrap();
        decide(&set(&["a"]), &set(&["a", "b"]), false).unwrap();
        assert!(decide(&set(&["c"]), &set(&["a"]), false).is_err());
        decide(&set(&["c"]), &set(&["a"]), true).unwrap();
        assert!(decide(&set(&["admin"]), &set(&["a"]), true).is_err());
        decide(&set(&["admin", "x"]), &set(&["admin"]), false).unwrap_err();
        decide(&set(&["admin", "x"]), &set(&["admin"]), true).unwrap();
        assert_eq!(added(&["a".into()], &["a".into(), "b".into()]), vec!["b"]);
    }
}
