//! Templated policy paths: `{{identity.name}}`, `{{identity.id}}`,
//! `{{identity.metadata.<key>}}` (Vault's `identity.entity.…` spellings too) and
//! `{{identity.groups.names}}`, filled in per caller when its ACL is built.
//!
//! A value that is missing, empty, or contains `/`, `*` or `+` (or is `.`/`..`) drops the rule
//! rather than widening it: a name like `a/*` must never turn into a glob.

use std::collections::BTreeMap;

/// What a template can refer to.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    /// Identity name.
    pub name: String,
    /// Identity id.
    pub id: String,
    /// Identity metadata.
    pub metadata: BTreeMap<String, String>,
    /// Names of the groups the identity belongs to.
    pub groups: Vec<String>,
}

/// A placeholder in a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Name,
    Id,
    Metadata(String),
    Groups,
}

fn placeholder(inner: &str) -> Option<Placeholder> {
    let inner = inner.trim();
    let rest = inner
        .strip_prefix("identity.entity.")
        .or_else(|| inner.strip_prefix("identity."))?;
    match rest {
        "name" => Some(Placeholder::Name),
        "id" => Some(Placeholder::Id),
        "groups.names" => Some(Placeholder::Groups),
        other => other
            .strip_prefix("metadata.")
            .filter(|k| !k.is_empty())
            .map(|k| Placeholder::Metadata(k.to_owned())),
    }
}

/// Splits a path into literal text and placeholders; `Err` names an unknown or malformed one.
fn parse(path: &str) -> Result<Vec<Result<String, Placeholder>>, String> {
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e)
            .ok_or_else(|| "unclosed {{".to_owned())?;
        if start > 0 {
            parts.push(Ok(rest[..start].to_owned()));
        }
        let inner = &rest[start + 2..end];
        parts.push(Err(placeholder(inner).ok_or_else(|| {
            format!("unknown template {{{{{inner}}}}} (use identity.name, identity.id, identity.metadata.<key> or identity.groups.names)")
        })?));
        rest = &rest[end + 2..];
    }
    if rest.contains("}}") {
        return Err("unmatched }}".to_owned());
    }
    if !rest.is_empty() {
        parts.push(Ok(rest.to_owned()));
    }
    Ok(parts)
}

/// Checks a templated path at policy-write time.
pub(crate) fn check(path: &str) -> Result<bool, String> {
    let parts = parse(path)?;
    // Each `identity.groups.names` multiplies the rule by the caller's groups: one per path,
    // or a policy could make every request build groups^k rules (found by the fuzzer).
    if parts
        .iter()
        .filter(|p| matches!(p, Err(Placeholder::Groups)))
        .count()
        > 1
    {
        return Err("{{identity.groups.names}} may appear once in a path".into());
    }
    Ok(parts.iter().any(Result::is_err))
}

fn safe(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && !value.contains(['/', '*', '+'])
        && !value.contains("{{")
}

/// Every concrete path `path` stands for under `ctx` (one per group for
/// `identity.groups.names`; none if a value is missing or unsafe).
pub(crate) fn render(path: &str, ctx: &TemplateContext) -> Vec<String> {
    let Ok(parts) = parse(path) else {
        return Vec::new();
    };
    let mut out = vec![String::new()];
    for part in parts {
        let values: Vec<&str> = match &part {
            Ok(text) => vec![text.as_str()],
            Err(Placeholder::Name) => vec![ctx.name.as_str()],
            Err(Placeholder::Id) => vec![ctx.id.as_str()],
            Err(Placeholder::Metadata(k)) => ctx
                .metadata
                .get(k)
                .map(String::as_str)
                .into_iter()
                .collect(),
            Err(Placeholder::Groups) => ctx.groups.iter().map(String::as_str).collect(),
        };
        if part.is_err() && !values.iter().all(|v| safe(v)) {
            return Vec::new();
        }
        out = out
            .iter()
            .flat_map(|prefix| values.iter().map(move |v| format!("{prefix}{v}")))
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        TemplateContext {
            name: "alice".into(),
            id: "id-1".into(),
            metadata: [
                ("team".to_owned(), "ops".to_owned()),
                ("evil".to_owned(), "a/*".to_owned()),
            ]
            .into_iter()
            .collect(),
            groups: vec!["dev".into(), "sre".into()],
        }
    }

    #[test]
    fn renders_known_placeholders() {
        assert_eq!(
            render("secret/data/users/{{identity.name}}/*", &ctx()),
            vec!["secret/data/users/alice/*"]
        );
        assert_eq!(
            render("s/{{identity.entity.name}}", &ctx()),
            vec!["s/alice"]
        );
        assert_eq!(
            render("s/{{identity.id}}/{{identity.metadata.team}}", &ctx()),
            vec!["s/id-1/ops"]
        );
        assert_eq!(
            render("g/{{identity.groups.names}}/*", &ctx()),
            vec!["g/dev/*", "g/sre/*"]
        );
    }

    /// Found by the fuzzer (fuzz/regressions/policy): a path with many group placeholders
    /// expanded to groups^k rules and ran the process out of memory.
    #[test]
    fn fail_more_than_one_group_placeholder() {
        let twice = "a/{{identity.groups.names}}/{{identity.groups.names}}";
        assert!(check(twice).is_err());
        assert!(check("a/{{identity.groups.names}}/x").is_ok());
    }

    #[test]
    fn fail_missing_or_unsafe_values_drop_the_rule() {
        assert!(render("s/{{identity.metadata.nope}}", &ctx()).is_empty());
        assert!(render("s/{{identity.metadata.evil}}", &ctx()).is_empty());
        let mut empty = ctx();
        empty.groups.clear();
        assert!(render("g/{{identity.groups.names}}", &empty).is_empty());
        for bad in [
            "s/{{identity.password}}",
            "s/{{identity.name",
            "s/}}x",
            "s/{{}}",
            "s/{{identity.metadata.}}",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert_eq!(check("plain/path"), Ok(false));
        assert_eq!(check("s/{{ identity.name }}"), Ok(true));
    }
}
