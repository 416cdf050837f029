use super::capability::{Capabilities, Capability};
use super::rule::{PathRule, Policy};
use crate::vault_hcl::{self, Item, Value};

/// Why a policy was refused. The message names the construct and what was expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy is invalid: {0}")]
pub struct PolicyError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// Rule attributes Vault knows that Sigil does not enforce yet. Refused rather than ignored:
/// a silently ignored restriction would grant more than the author meant.
const UNSUPPORTED_RULE_KEYS: &[&str] = &[
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "control_group",
    "mfa_methods",
    "subscribe_event_types",
    "pagination_limit",
    "list_scan_response_keys_filter_path",
    "expiration",
];

/// The longest policy text accepted.
const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The deepest nesting of brackets accepted (a policy needs 2).
const MAX_NESTING: usize = 16;

/// Refuses texts the HCL parser should not see: too long, or nested deep enough to exhaust
/// the stack. Brackets inside strings and comments are counted too, which only errs on the
/// safe side.
fn check_shape(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return err(format!("policy is longer than {MAX_POLICY_BYTES} bytes"));
    }
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return err("policy is nested too deeply");
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a policy: HCL as Vault reads it, or its JSON form (`{"path": {"secret/*":
/// {"capabilities": ["read"]}}}`), with the same checks.
pub fn parse_policy(name: &str, text: &str) -> Result<Policy, PolicyError> {
    check_shape(text)?;
    let items =
        vault_hcl::parse(text).map_err(|e| PolicyError(format!("HCL syntax error: {e}")))?;
    let mut rules = Vec::new();
    for item in items {
        let kind = item.keys[0].clone();
        if kind != "path" {
            return match (item.keys.len(), &item.value) {
                (1, v) if !matches!(v, Value::Object(_)) => err(format!(
                    "unsupported top-level attribute {kind:?}: only \"path\" blocks are allowed"
                )),
                _ => err(format!(
                    "unsupported block {kind:?}: only \"path\" blocks are allowed"
                )),
            };
        }
        let Some(blocks) = vault_hcl::labelled_blocks(item) else {
            return err("a path block takes exactly one label: path \"secret/data/*\" { … }");
        };
        for (raw_path, body) in blocks {
            rules.push(parse_rule(&raw_path, body)?);
        }
    }
    if rules.is_empty() {
        return err("policy has no path blocks");
    }
    Ok(Policy {
        name: name.to_owned(),
        text: text.to_owned(),
        rules,
    })
}

fn parse_rule(raw_path: &str, body: Vec<Item>) -> Result<PathRule, PolicyError> {
    let path = raw_path.trim_start_matches('/');
    let templated =
        super::template::check(path).map_err(|e| PolicyError(format!("path {raw_path:?}: {e}")))?;
    if path.chars().any(|c| c.is_control()) {
        return err(format!("path {raw_path:?} contains a control character"));
    }
    if let Some(pos) = path.find('*')
        && pos != path.len() - 1
    {
        return err(format!(
            "path {raw_path:?}: '*' is only allowed as the last character"
        ));
    }
    // As OpenBao: a `+` segment cannot also be a glob.
    if path.contains("+*") {
        return err(format!("path {raw_path:?}: '+*' is forbidden"));
    }
    let mut caps: Option<Capabilities> = None;
    for attr in body {
        let [key] = attr.keys.as_slice() else {
            return err(format!(
                "path {raw_path:?}: unsupported block {:?}",
                attr.keys[0]
            ));
        };
        let parsed = match key.as_str() {
            "capabilities" => parse_capabilities(raw_path, &attr.value)?,
            "policy" => parse_legacy_policy(raw_path, &attr.value)?,
            k if UNSUPPORTED_RULE_KEYS.contains(&k) => {
                return err(format!("path {raw_path:?}: {k:?} is not supported yet"));
            }
            k => return err(format!("path {raw_path:?}: unknown attribute {k:?}")),
        };
        caps = Some(caps.map_or(parsed, |c| c.merge(parsed)));
    }
    let Some(capabilities) = caps else {
        return err(format!("path {raw_path:?}: no capabilities given"));
    };
    if templated && capabilities.is_deny() {
        // A templated rule is dropped for callers whose values are missing or unsafe: for a
        // deny that would widen access, so it is not allowed.
        return err(format!(
            "path {raw_path:?}: deny cannot be used on a templated path (it would not apply to callers whose template values are missing)"
        ));
    }
    let has_segment_wildcards = path.contains('+');
    let ends_glob = path.ends_with('*');
    // As Vault: plain globs are stored without the '*'; segment-wildcard paths keep it.
    let (path, is_prefix) = match (ends_glob, has_segment_wildcards) {
        (true, false) => (path.trim_end_matches('*').to_owned(), true),
        (glob, _) => (path.to_owned(), glob),
    };
    Ok(PathRule {
        path,
        is_prefix,
        has_segment_wildcards,
        templated,
        capabilities,
    })
}

fn parse_capabilities(path: &str, value: &Value) -> Result<Capabilities, PolicyError> {
    let Value::List(items) = value else {
        return err(format!(
            "path {path:?}: capabilities must be a list of strings"
        ));
    };
    let mut caps = Capabilities::NONE;
    for item in items {
        let Value::String(name) = item else {
            return err(format!(
                "path {path:?}: capabilities must be a list of strings"
            ));
        };
        match Capability::parse(name) {
            Some(c) => caps.insert(c),
            None if name == "scan" || name == "root" => {
                return err(format!(
                    "path {path:?}: capability {name:?} is not supported"
                ));
            }
            None => {
                return err(format!(
                    "path {path:?}: unknown capability {name:?} (expected create, read, update, patch, delete, list, sudo or deny)"
                ));
            }
        }
    }
    Ok(caps.merge(Capabilities::NONE))
}

/// Vault's pre-0.9 `policy = "read"` shorthand.
fn parse_legacy_policy(path: &str, value: &Value) -> Result<Capabilities, PolicyError> {
    use Capability::*;
    let Value::String(name) = value else {
        return err(format!("path {path:?}: policy must be a string"));
    };
    let list: &[Capability] = match name.as_str() {
        "deny" => &[Deny],
        "read" => &[Read, List],
        // As Vault's mapping: no `patch` in the legacy shorthands.
        "write" => &[Create, Read, Update, Delete, List],
        "sudo" => &[Create, Read, Update, Delete, List, Sudo],
        other => {
            return err(format!(
                "path {path:?}: unknown policy {other:?} (expected deny, read, write or sudo)"
            ));
        }
    };
    let mut caps = Capabilities::NONE;
    list.iter().for_each(|c| caps.insert(*c));
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vault_syntax() {
        let p = parse_policy(
            "p",
            r#"
            # comment
            path "secret/data/*" { capabilities = ["create", "read"] }
            path "/secret/data/+/app" {
              capabilities = ["deny", "read"]
            }
            path "secret/metadata" { policy = "read" }
            "#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 3);
        assert_eq!(p.rules[0].path, "secret/data/");
        assert!(p.rules[0].is_prefix);
        assert_eq!(p.rules[0].capabilities.names(), vec!["create", "read"]);
        assert_eq!(p.rules[1].path, "secret/data/+/app");
        assert!(p.rules[1].has_segment_wildcards);
        assert_eq!(p.rules[1].capabilities.names(), vec!["deny"]);
        assert_eq!(p.rules[2].capabilities.names(), vec!["read", "list"]);
    }

    #[test]
    fn hcl1_items_may_share_a_line_or_take_commas() {
        // Valid HCL 1, as Vault and OpenBao read it.
        for text in [
            r#"path "a" { policy = "read" capabilities = ["update"] }"#,
            r#"path "a" { policy = "read", capabilities = ["update"] }"#,
            r#"path "a" { capabilities = ["update"], policy = "read", }"#,
            "path \"a\" {\n policy = \"read\"\n capabilities = [\"update\"]\n}",
        ] {
            let p = parse_policy("p", text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                p.rules[0].capabilities.names(),
                vec!["read", "update", "list"],
                "{text}"
            );
        }
    }

    #[test]
    fn json_policies_parse_as_their_hcl() {
        let hcl = parse_policy(
            "p",
            r#"
            path "secret/data/*" { capabilities = ["create", "read"] }
            path "secret/data/+/app" { capabilities = ["deny"] }
            path "sys/mounts" { policy = "read" }
            "#,
        )
        .unwrap();
        for json in [
            r#"{"path": {"secret/data/*": {"capabilities": ["create", "read"]},
                         "secret/data/+/app": {"capabilities": ["deny"]},
                         "sys/mounts": {"policy": "read"}}}"#,
            r#"{"path": [{"secret/data/*": {"capabilities": ["create", "read"]}},
                         {"secret/data/+/app": [{"capabilities": ["deny"]}]},
                         {"sys/mounts": {"policy": "read"}}]}"#,
        ] {
            let p = parse_policy("p", json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(p.rules, hcl.rules, "{json}");
        }
        // The same checks as HCL.
        for (json, needle) in [
            (
                r#"{"path": {"a": {"capabilities": ["raed"]}}}"#,
                "unknown capability",
            ),
            (
                r#"{"path": {"a+*": {"capabilities": ["read"]}}}"#,
                "'+*' is forbidden",
            ),
            (r#"{"path": {"a": {}}}"#, "no capabilities"),
            (
                r#"{"path": {"a": {"capabilities": ["read"], "denied_parameters": {}}}}"#,
                "not supported yet",
            ),
            (
                r#"{"path": {"a": {"capabilities": "read"}}}"#,
                "list of strings",
            ),
            (r#"{"path": {"a": "read"}}"#, "exactly one label"),
            (r#"{"name": "x"}"#, "top-level attribute"),
            (r#"{"path": {"a": {"capabilities": ["read"]}}"#, "syntax"),
            (r#"{"path": {}}"#, "no path blocks"),
        ] {
            let e = parse_policy("p", json).unwrap_err();
            assert!(e.0.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn fail_unsupported_and_malformed() {
        for (text, needle) in [
            (
                "path \"secret/data/+*\" { capabilities = [\"read\"] }",
                "'+*' is forbidden",
            ),
            (
                "path \"a\" {\n capabilities = [\"read\"]\n allowed_parameters = {}\n}",
                "not supported yet",
            ),
            (
                "path \"a/{{identity.password}}\" { capabilities = [\"read\"] }",
                "unknown template",
            ),
            (
                "path \"a/{{identity.name}}\" { capabilities = [\"deny\"] }",
                "deny cannot be used on a templated path",
            ),
            (
                "path \"a\" { capabilities = [\"raed\"] }",
                "unknown capability",
            ),
            ("path \"a\" { capabilities = \"read\" }", "list of strings"),
            ("path \"a\" { }", "no capabilities"),
            (
                "path \"a\" {\n capabilities = [\"read\"]\n frobnicate = 1\n}",
                "unknown attribute",
            ),
            (
                "path \"a*b\" { capabilities = [\"read\"] }",
                "last character",
            ),
            ("name = \"x\"", "top-level attribute"),
            ("resource \"a\" { }", "unsupported block"),
            ("path { capabilities = [\"read\"] }", "exactly one label"),
            (
                "path \"a\" \"b\" { capabilities = [\"read\"] }",
                "exactly one label",
            ),
            ("path \"a\" { capabilities = [\"read\"]", "syntax"),
            ("", "no path blocks"),
            ("path \"a\" { policy = \"admin\" }", "unknown policy"),
            (&"[".repeat(1000), "nested too deeply"),
            (&"#".repeat(70_000), "longer than"),
        ] {
            let e = parse_policy("p", text).unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
    }
}
