use std::cmp::Ordering;
use std::collections::HashMap;

use super::capability::{Capabilities, Capability};
use super::rule::Policy;
use super::template::{TemplateContext, render};

/// The merged rules of a set of policies, ready to answer "may this caller do X at path P?".
///
/// Matching follows Vault: an exact rule wins; otherwise (for `list`, see
/// [`Acl::capabilities`]) the best of the longest matching glob and every matching `+` rule, ranked by
/// (1) the later the first `+`/`*`, the better; (2) not a glob beats a glob; (3) fewer `+`
/// segments; (4) longer path; (5) lexicographically greater.
#[derive(Debug, Default, Clone)]
pub struct Acl {
    exact: HashMap<String, Capabilities>,
    prefix: HashMap<String, Capabilities>,
    segment: HashMap<String, Capabilities>,
}

#[derive(Debug)]
struct Candidate<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    path: &'a str,
    caps: Capabilities,
}

/// Whether a `+` pattern can match some path at or below `mount` (no trailing `/`): segment by
/// segment over the mount's segments, `+` matches any, a final `…*` a prefix, others equal.
fn segments_overlap(pattern: &str, mount: &str) -> bool {
    let mut pattern = pattern.split('/');
    for seg in mount.split('/') {
        match pattern.next() {
            // The pattern ends inside the mount's path: it names the mount or above it.
            None => return false,
            Some("+") => {}
            Some(p) if p.ends_with('*') => return seg.starts_with(p.trim_end_matches('*')),
            Some(p) if p == seg => {}
            Some(_) => return false,
        }
    }
    true
}

fn priority(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    a.first_wildcard
        .cmp(&b.first_wildcard)
        .then_with(|| b.is_prefix.cmp(&a.is_prefix))
        .then_with(|| b.wildcards.cmp(&a.wildcards))
        .then_with(|| a.path.len().cmp(&b.path.len()))
        .then_with(|| a.path.cmp(b.path))
}

impl Acl {
    /// Merges the rules of `policies`; templated rules are dropped (see [`Acl::for_caller`]).
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Self {
        Self::build(policies, None)
    }

    /// Merges the rules of `policies` with templated paths filled in from `ctx`.
    pub fn for_caller<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        ctx: &TemplateContext,
    ) -> Self {
        Self::build(policies, Some(ctx))
    }

    fn build<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        ctx: Option<&TemplateContext>,
    ) -> Self {
        let mut acl = Acl::default();
        for policy in policies {
            for rule in &policy.rules {
                let table = if rule.has_segment_wildcards {
                    &mut acl.segment
                } else if rule.is_prefix {
                    &mut acl.prefix
                } else {
                    &mut acl.exact
                };
                let paths = match (rule.templated, ctx) {
                    (false, _) => vec![rule.path.clone()],
                    (true, Some(ctx)) => render(&rule.path, ctx),
                    (true, None) => Vec::new(),
                };
                for path in paths {
                    table
                        .entry(path)
                        .and_modify(|c| *c = c.merge(rule.capabilities))
                        .or_insert(rule.capabilities);
                }
            }
        }
        acl
    }

    /// Whether some rule grants something (not `deny`) at a path at or below `mount` (which
    /// ends in `/`): the caller may use the mount, so it may learn that it exists (Vault's
    /// `sys/internal/ui/mounts`). Rules that cannot match below the mount do not count.
    pub fn may_use(&self, mount: &str) -> bool {
        let grants = |c: &Capabilities| !c.is_deny() && *c != Capabilities::NONE;
        let bare = mount.trim_end_matches('/');
        self.exact
            .iter()
            .any(|(p, c)| grants(c) && (p.starts_with(mount) || p == bare))
            || self
                .prefix
                .iter()
                .any(|(p, c)| grants(c) && (p.starts_with(mount) || mount.starts_with(p.as_str())))
            || self
                .segment
                .iter()
                .any(|(p, c)| grants(c) && segments_overlap(p, bare))
    }

    /// Whether `cap` is allowed at `path`. `cap == List` enables Vault's list fallbacks.
    pub fn allows(&self, path: &str, cap: Capability) -> bool {
        self.capabilities(path, cap == Capability::List).allows(cap)
    }

    /// The capabilities that apply at `path` (empty if no rule matches).
    ///
    /// For a LIST (`path` ends in `/`), as OpenBao since GHSA-xp3c-3jw3-4vcr: the exact rule
    /// for the path with its `/`, then for the path without it, then the globs and `+` rules
    /// for the path with its `/`, and only when none matches, for the path without it. So a
    /// deny on `a/*` is not stepped around by a LIST of `a` through a grant on `*`.
    pub fn capabilities(&self, path: &str, list: bool) -> Capabilities {
        let path = path.trim_start_matches('/');
        let bare = path.strip_suffix('/').filter(|_| list);
        if let Some(c) = self.exact.get(path) {
            return *c;
        }
        if let Some(c) = bare.and_then(|b| self.exact.get(b)) {
            return *c;
        }
        self.non_exact(path)
            .or_else(|| bare.and_then(|b| self.non_exact(b)))
            .unwrap_or(Capabilities::NONE)
    }

    fn non_exact(&self, path: &str) -> Option<Capabilities> {
        let glob = self
            .prefix
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len());
        if self.segment.is_empty() {
            return glob.map(|(_, c)| *c);
        }
        let mut best = glob.map(|(p, c)| Candidate {
            first_wildcard: p.len(),
            is_prefix: true,
            wildcards: 0,
            path: p,
            caps: *c,
        });
        let parts: Vec<&str> = path.split('/').collect();
        for (full, caps) in &self.segment {
            let Some(candidate) = match_segments(full, &parts, *caps) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|b| priority(&candidate, b) == Ordering::Greater)
            {
                best = Some(candidate);
            }
        }
        best.map(|b| b.caps)
    }
}

fn match_segments<'a>(full: &'a str, parts: &[&str], caps: Capabilities) -> Option<Candidate<'a>> {
    let first_wildcard = full.find('+')?;
    let (pattern, is_prefix) = match full.strip_suffix('*') {
        Some(p) => (p, true),
        None => (full, false),
    };
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() < pattern_parts.len() || (!is_prefix && parts.len() != pattern_parts.len()) {
        return None;
    }
    let mut wildcards = 0;
    for (i, want) in pattern_parts.iter().enumerate() {
        let last = i == pattern_parts.len() - 1;
        if *want == "+" {
            wildcards += 1;
        } else if *want == parts[i] || (is_prefix && last && parts[i].starts_with(want)) {
        } else {
            return None;
        }
    }
    Some(Candidate {
        first_wildcard,
        is_prefix,
        wildcards,
        path: pattern,
        caps,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_mount_may_be_used_when_some_rule_grants_below_it() {
        let acl = |hcl: &str| Acl::new([&parse_policy("p", hcl).unwrap()]);
        let uses = |hcl: &str, mount: &str| acl(hcl).may_use(mount);
        assert!(uses(
            r#"path "secret/data/*" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(uses(
            r#"path "secret/data/app" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(uses(r#"path "*" { capabilities = ["list"] }"#, "team/kv/"));
        assert!(uses(
            r#"path "team/*" { capabilities = ["read"] }"#,
            "team/kv/"
        ));
        assert!(uses(
            r#"path "+/data/app" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(uses(
            r#"path "team/+/data/*" { capabilities = ["read"] }"#,
            "team/kv/"
        ));
        assert!(!uses(
            r#"path "secret/data/*" { capabilities = ["read"] }"#,
            "other/"
        ));
        assert!(!uses(
            r#"path "secret/*" { capabilities = ["deny"] }"#,
            "secret/"
        ));
        assert!(!uses(
            r#"path "team/+/data/*" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(!uses(
            r#"path "sec*" { capabilities = ["read"] }"#,
            "other/"
        ));
        assert!(!uses(r#"path "+" { capabilities = ["read"] }"#, "team/kv/"));
    }

    use super::*;
    use crate::policy::parse_policy;
    use Capability::*;

    fn acl(texts: &[&str]) -> Acl {
        let policies: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse_policy(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(&policies)
    }

    fn rule(path: &str, caps: &str) -> String {
        format!("path \"{path}\" {{ capabilities = [{caps}] }}\n")
    }

    #[test]
    fn default_deny() {
        let a = acl(&[&rule("secret/data/app", "\"read\"")]);
        assert!(a.allows("secret/data/app", Read));
        assert!(!a.allows("secret/data/app", Update));
        assert!(!a.allows("secret/data/app2", Read));
        assert!(!a.allows("secret/data", Read));
        assert!(!Acl::default().allows("anything", Read));
    }

    #[test]
    fn glob_is_a_prefix_and_longest_glob_wins() {
        let a = acl(&[&format!(
            "{}{}",
            rule("secret/*", "\"read\""),
            rule("secret/data/team-*", "\"create\"")
        )]);
        assert!(a.allows("secret/anything/deep/path", Read));
        assert!(a.allows("secret/", Read));
        assert!(!a.allows("secret", Read));
        // Longest glob wins outright: no read there.
        assert!(a.allows("secret/data/team-a/x", Create));
        assert!(!a.allows("secret/data/team-a/x", Read));
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let a = acl(&[&rule("secret/data/+/app", "\"read\"")]);
        assert!(a.allows("secret/data/team1/app", Read));
        assert!(!a.allows("secret/data/app", Read));
        assert!(!a.allows("secret/data/a/b/app", Read));
        assert!(!a.allows("secret/data/team1/app/x", Read));
        let b = acl(&[&rule("secret/+/config*", "\"read\"")]);
        assert!(b.allows("secret/x/config", Read));
        assert!(b.allows("secret/x/configs/more", Read));
        assert!(!b.allows("secret/x/other", Read));
    }

    #[test]
    fn exact_beats_everything() {
        let a = acl(&[&format!(
            "{}{}{}",
            rule("secret/*", "\"deny\""),
            rule("secret/+/x", "\"deny\""),
            rule("secret/data/x", "\"read\""),
        )]);
        assert!(a.allows("secret/data/x", Read));
        assert!(!a.allows("secret/data/y", Read));
    }

    #[test]
    fn vault_priority_order() {
        // (1) later first wildcard wins: foo/bar/+ over foo/+/baz... via position
        let a = acl(&[&format!(
            "{}{}",
            rule("foo/+/bar/baz", "\"read\""),
            rule("foo/bar/+/baz", "\"update\"")
        )]);
        assert!(a.allows("foo/bar/bar/baz", Update));
        assert!(!a.allows("foo/bar/bar/baz", Read));
        // (1) a glob whose '*' comes later beats an earlier '+': foo/a* over foo/+
        let a = acl(&[&format!(
            "{}{}",
            rule("foo/+", "\"read\""),
            rule("foo/a*", "\"update\"")
        )]);
        assert!(a.allows("foo/ab", Update));
        assert!(!a.allows("foo/ab", Read));
        assert!(a.allows("foo/zz", Read));
        // (2) not a glob beats a glob at the same position: foo/+ over foo/*
        let a = acl(&[&format!(
            "{}{}",
            rule("foo/*", "\"read\""),
            rule("foo/+", "\"update\"")
        )]);
        assert!(a.allows("foo/x", Update));
        assert!(!a.allows("foo/x", Read));
        assert!(a.allows("foo/x/y", Read));
        // (3) fewer '+' wins: foo/+/bar/baz over foo/+/+/baz
        let a = acl(&[&format!(
            "{}{}",
            rule("foo/+/+/baz", "\"read\""),
            rule("foo/+/bar/baz", "\"update\"")
        )]);
        assert!(a.allows("foo/x/bar/baz", Update));
        assert!(!a.allows("foo/x/bar/baz", Read));
        // (4) longer wins: foo/+/bar/ba* over foo/+/bar/b*
        let a = acl(&[&format!(
            "{}{}",
            rule("foo/+/bar/b*", "\"read\""),
            rule("foo/+/bar/ba*", "\"update\"")
        )]);
        assert!(a.allows("foo/x/bar/baz", Update));
        assert!(!a.allows("foo/x/bar/baz", Read));
        assert!(a.allows("foo/x/bar/bz", Read));
    }

    #[test]
    fn deny_wins_when_merged_across_policies() {
        let allow = rule("secret/data/*", "\"read\", \"create\"");
        let deny = rule("secret/data/*", "\"deny\"");
        let a = acl(&[&allow, &deny]);
        assert!(!a.allows("secret/data/x", Read));
        let a = acl(&[&deny, &allow]);
        assert!(!a.allows("secret/data/x", Read));
        assert_eq!(a.capabilities("secret/data/x", false).names(), vec!["deny"]);
        // Deny also beats sudo in the same rule.
        let a = acl(&[&rule("sys/x", "\"sudo\", \"read\", \"deny\"")]);
        assert!(!a.allows("sys/x", Sudo));
        // Non-conflicting capabilities are unioned.
        let a = acl(&[&rule("a", "\"read\""), &rule("a", "\"list\"")]);
        assert_eq!(a.capabilities("a", false).names(), vec!["read", "list"]);
    }

    #[test]
    fn list_fallbacks() {
        // LIST secret/metadata/ is allowed by an exact rule on secret/metadata.
        let a = acl(&[&rule("secret/metadata", "\"list\"")]);
        assert!(a.allows("secret/metadata/", List));
        assert!(!a.allows("secret/metadata/", Read));
        // And by a `+` rule matching the path without its trailing slash, which the path with
        // the slash (one more, empty segment) does not match.
        let a = acl(&[&rule("secret/metadata/+", "\"list\"")]);
        assert!(a.allows("secret/metadata/app/", List));
        assert!(!a.allows("secret/metadata/app/", Read));
        assert_eq!(
            a.capabilities("secret/metadata/app/", false),
            Capabilities::NONE
        );
    }

    #[test]
    fn list_matches_globs_with_the_slash_first() {
        // GHSA-xp3c-3jw3-4vcr: a more specific deny on `a/*` is not stepped around by the
        // grant on `*` through the slashless path.
        let a = acl(&[&format!(
            "{}{}",
            rule("secret/metadata/*", "\"list\""),
            rule("secret/metadata/a/*", "\"deny\"")
        )]);
        assert!(!a.allows("secret/metadata/a/", List));
        assert!(a.allows("secret/metadata/b/", List));
        let a = acl(&[&format!(
            "{}{}",
            rule("secret/metadata/+", "\"list\""),
            rule("secret/metadata/+/*", "\"deny\"")
        )]);
        assert!(!a.allows("secret/metadata/a/", List));
        // The two swapped: the grant on `a/*` applies.
        let a = acl(&[&format!(
            "{}{}",
            rule("secret/metadata/*", "\"deny\""),
            rule("secret/metadata/a/*", "\"list\"")
        )]);
        assert!(a.allows("secret/metadata/a/", List));
        // A grant on the folder's glob beats a deny on everything.
        let a = acl(&[&format!(
            "{}{}",
            rule("*", "\"deny\""),
            rule("secret/metadata/*", "\"list\"")
        )]);
        assert!(a.allows("secret/metadata/", List));
        assert!(!a.allows("secret/", List));
    }
}
