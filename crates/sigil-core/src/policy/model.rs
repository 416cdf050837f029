//! A property test: the ACL decides as a small reference model of Vault's documented rules
//! (https://developer.hashicorp.com/vault/docs/concepts/policies, "Priority matching"), written
//! as plainly as possible — every rule tried, the matches ranked by the five documented
//! criteria — and OpenBao's LIST order (GHSA-xp3c-3jw3-4vcr).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Acl, Capabilities, Capability, parse_policy};

/// One rule as written: segments, the last possibly ending in `*`.
#[derive(Clone, Debug)]
struct Rule {
    path: String,
    caps: Vec<&'static str>,
}

/// Whether `pattern` (as written) matches `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (body, glob) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    if !body.contains('+') {
        return if glob {
            path.starts_with(body)
        } else {
            path == body
        };
    }
    let want: Vec<&str> = body.split('/').collect();
    let have: Vec<&str> = path.split('/').collect();
    if have.len() < want.len() || (!glob && have.len() != want.len()) {
        return false;
    }
    want.iter().enumerate().all(|(i, w)| {
        let last = i == want.len() - 1;
        *w == "+" || *w == have[i] || (glob && last && have[i].starts_with(w))
    })
}

/// Vault's priority between two matching patterns: `Greater` when `a` wins.
fn priority(a: &str, b: &str) -> Ordering {
    let first = |p: &str| p.find(['+', '*']).unwrap_or(usize::MAX);
    let glob = |p: &str| p.ends_with('*');
    let pluses = |p: &str| p.split('/').filter(|s| *s == "+").count();
    // (1) the later the first wildcard, the higher; (2) no trailing `*` beats one;
    // (3) fewer `+` segments; (4) longer; (5) lexicographically greater.
    first(a)
        .cmp(&first(b))
        .then(glob(b).cmp(&glob(a)))
        .then(pluses(b).cmp(&pluses(a)))
        .then(a.len().cmp(&b.len()))
        .then(a.cmp(b))
}

/// The capabilities the model grants at `path`: the best matching pattern's, merged over
/// every policy that lists that pattern; `deny` there takes everything.
fn model_caps(rules: &[Rule], path: &str) -> Option<Vec<&'static str>> {
    let mut merged: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for r in rules.iter().filter(|r| matches(&r.path, path)) {
        merged
            .entry(&r.path)
            .or_default()
            .extend(r.caps.iter().copied());
    }
    let best = merged.keys().copied().max_by(|a, b| priority(a, b))?;
    let caps = merged.remove(best)?;
    Some(if caps.contains(&"deny") { vec![] } else { caps })
}

fn exact(rules: &[Rule], path: &str) -> Option<Vec<&'static str>> {
    let mut caps = None::<Vec<&'static str>>;
    for r in rules
        .iter()
        .filter(|r| r.path == path && !r.path.contains(['+', '*']))
    {
        caps.get_or_insert_with(Vec::new)
            .extend(r.caps.iter().copied());
    }
    caps.map(|c| if c.contains(&"deny") { vec![] } else { c })
}

/// The model's decision for `cap` at `path` (a LIST path ends in `/`).
fn model_allows(rules: &[Rule], path: &str, cap: &str) -> bool {
    let caps = if cap == "list" {
        let bare = path.strip_suffix('/').unwrap_or(path);
        exact(rules, path)
            .or_else(|| exact(rules, bare))
            .or_else(|| model_caps(rules, path))
            .or_else(|| model_caps(rules, bare))
    } else {
        model_caps(rules, path)
    };
    caps.is_some_and(|c| c.contains(&cap))
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "ba"])
}

fn pattern() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => segment(), 1 => Just("+")], 1..4),
        prop::sample::select(vec!["", "*", "/*"]),
    )
        .prop_map(|(segs, tail)| {
            let mut p = segs.join("/");
            // `+*` is not a pattern Vault accepts.
            if !(tail == "*" && p.ends_with('+')) {
                p.push_str(tail);
            }
            p
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        pattern(),
        prop::sample::subsequence(vec!["read", "list", "update", "deny"], 1..3),
    )
        .prop_map(|(path, caps)| Rule { path, caps })
}

fn request() -> impl Strategy<Value = (String, bool)> {
    (prop::collection::vec(segment(), 1..5), any::<bool>()).prop_map(|(segs, list)| {
        let mut p = segs.join("/");
        if list {
            p.push('/');
        }
        (p, list)
    })
}

fn acl_of(policies: &[Vec<Rule>]) -> Acl {
    let parsed: Vec<_> = policies
        .iter()
        .enumerate()
        .map(|(i, rules)| {
            let text: String = rules
                .iter()
                .map(|r| {
                    let caps: Vec<String> = r.caps.iter().map(|c| format!("{c:?}")).collect();
                    format!(
                        "path {:?} {{ capabilities = [{}] }}\n",
                        r.path,
                        caps.join(", ")
                    )
                })
                .collect();
            parse_policy(&format!("p{i}"), &text).unwrap()
        })
        .collect();
    Acl::new(&parsed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_acl_decides_as_the_model(
        policies in prop::collection::vec(prop::collection::vec(rule(), 1..5), 1..3),
        requests in prop::collection::vec(request(), 1..8),
    ) {
        let acl = acl_of(&policies);
        let all: Vec<Rule> = policies.iter().flatten().cloned().collect();
        for (path, list) in &requests {
            for (cap, name) in [
                (Capability::Read, "read"),
                (Capability::Update, "update"),
                (Capability::List, "list"),
            ] {
                if (cap == Capability::List) != *list {
                    continue;
                }
                prop_assert_eq!(
                    acl.allows(path, cap),
                    model_allows(&all, path, name),
                    "{} {} with {:?}", name, path, all
                );
            }
        }
    }
}

#[test]
fn the_model_knows_the_documented_examples() {
    let r = |path: &str, caps: &[&'static str]| Rule {
        path: path.into(),
        caps: caps.to_vec(),
    };
    // From Vault's docs: "secret/+/x" vs "secret/a/*" — the later wildcard wins.
    let rules = [r("secret/+/x", &["read"]), r("secret/a/*", &["update"])];
    assert!(model_allows(&rules, "secret/a/x", "update"));
    assert!(!model_allows(&rules, "secret/a/x", "read"));
    // LIST with a more specific deny (the advisory).
    let rules = [r("m/*", &["list"]), r("m/a/*", &["deny"])];
    assert!(!model_allows(&rules, "m/a/", "list"));
    let acl = acl_of(&[rules.to_vec()]);
    assert!(!acl.allows("m/a/", Capability::List));
    let _ = Capabilities::NONE;
}
