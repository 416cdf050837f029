//! Password policies (Vault's `sys/policies/password/<name>`): HCL giving a length and
//! charset rules, used by the database engine (`password_policy` on a connection) and by
//! `sys/policies/password/<name>/generate`.
//!
//! ```hcl
//! length = 24
//! rule "charset" {
//!   charset   = "abcdefghijklmnopqrstuvwxyz"
//!   min-chars = 1
//! }
//! ```
//!
//! Generated passwords go into SQL statements, so a charset may not hold characters that can
//! end a quoted string or a statement (`'`, `"`, `` ` ``, `\`, `;`, `$`, space, controls).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::barrier::{View, ViewBatch};
use crate::fields::body_of;
use crate::path::check_name;
use crate::request::list_response;
use crate::vault_hcl::{self, Item, Value as Hcl};
use crate::{CoreError, Operation, Request, Response};
// Characters a policy's charsets may use: those a generated password may hold.
use sigil_engine::lease::password_char_allowed as allowed;

/// Attempts before giving up on a policy whose rules are hard to satisfy.
const ATTEMPTS: usize = 1000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rule {
    charset: String,
    min_chars: usize,
}

impl Rule {
    /// The body of a `rule "charset" { … }` block.
    fn parse(body: Vec<Item>) -> Result<Rule, CoreError> {
        let mut charset = None;
        let mut min_chars = 0;
        for attr in body {
            match (attr.keys.as_slice(), attr.value) {
                ([k], Hcl::String(s)) if k == "charset" => charset = Some(s),
                ([k], n) if k == "min-chars" => {
                    min_chars = n
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad("min-chars must be a whole number"))?;
                }
                (keys, _) => {
                    return Err(bad(format!(
                        "unknown or mistyped field {} in a rule",
                        keys.join(" ")
                    )));
                }
            }
        }
        let charset = charset.ok_or_else(|| bad("a charset rule needs charset"))?;
        if charset.is_empty() || !charset.chars().all(allowed) {
            return Err(bad(
                "a charset holds printable ASCII without quotes, backslash, ';', '$' or space",
            ));
        }
        Ok(Rule { charset, min_chars })
    }
}

/// A parsed policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PasswordPolicy {
    /// The HCL as written (returned by reads).
    source: String,
    length: usize,
    rules: Vec<Rule>,
}

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::bad(format!("invalid password policy: {}", msg.into()))
}

impl PasswordPolicy {
    /// Parses Vault's HCL. Rules other than `charset` are refused rather than ignored.
    pub(crate) fn parse(source: &str) -> Result<Self, CoreError> {
        let items = vault_hcl::parse(source).map_err(|e| bad(format!("not valid HCL: {e}")))?;
        let mut length = None;
        let mut rules = Vec::new();
        for item in items {
            match item.keys[0].as_str() {
                "length" if item.keys.len() == 1 => {
                    let n = item.value.as_u64();
                    length = Some(n.ok_or_else(|| bad("length must be a whole number"))?);
                }
                "rule" => {
                    let blocks = vault_hcl::labelled_blocks(item).ok_or_else(|| {
                        bad("a rule block takes one label: rule \"charset\" { … }")
                    })?;
                    for (kind, body) in blocks {
                        if kind != "charset" {
                            return Err(bad("only rule \"charset\" is supported"));
                        }
                        rules.push(Rule::parse(body)?);
                    }
                }
                _ => return Err(bad("expected length and rule \"charset\" blocks")),
            }
        }
        let length = length.ok_or_else(|| bad("length is required"))?;
        if !(4..=100).contains(&length) {
            return Err(bad("length must be between 4 and 100"));
        }
        let length = length as usize;
        if rules.is_empty() {
            return Err(bad("at least one charset rule is required"));
        }
        if rules.iter().map(|r| r.min_chars).sum::<usize>() > length {
            return Err(bad("the rules' min-chars add up to more than length"));
        }
        Ok(PasswordPolicy {
            source: source.to_owned(),
            length,
            rules,
        })
    }

    /// A password from the union of the rules' charsets that meets every rule.
    pub(crate) fn generate(&self) -> Result<Zeroizing<String>, CoreError> {
        let mut alphabet: Vec<u8> = self.rules.iter().flat_map(|r| r.charset.bytes()).collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        for _ in 0..ATTEMPTS {
            let p = sigil_crypto::random::string_from(&alphabet, self.length)
                .map_err(|_| CoreError::rng())?;
            let meets = self
                .rules
                .iter()
                .all(|r| p.chars().filter(|c| r.charset.contains(*c)).count() >= r.min_chars);
            if meets {
                return Ok(p);
            }
        }
        Err(CoreError::bad(
            "the password policy's rules could not be met; loosen min-chars",
        ))
    }
}

/// The stored policies (`sys/password-policy/<name>` under the barrier).
#[derive(Debug)]
pub(crate) struct PasswordPolicies {
    view: View,
}

impl PasswordPolicies {
    pub(crate) fn new(view: View) -> Self {
        PasswordPolicies { view }
    }

    /// The policy `name`.
    pub(crate) fn get(&self, name: &str) -> Result<PasswordPolicy, CoreError> {
        let entry = self
            .view
            .get(name)?
            .ok_or_else(|| CoreError::bad(format!("no password policy named {name:?}")))?;
        serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)
    }

    pub(crate) fn exists(&self, rest: &str) -> bool {
        self.view.get(rest).ok().flatten().is_some()
    }

    /// `sys/policies/password/<rest>`.
    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        match (rest.strip_suffix("/generate"), req.operation) {
            (Some(name), Operation::Read) => {
                check_name("password policy", name)?;
                let p = self.get(name)?.generate()?;
                return Ok(Response::data(json!({ "password": p.as_str() })));
            }
            (Some(_), _) => return Err(CoreError::UnsupportedOperation),
            (None, _) => {}
        }
        match (rest, req.operation) {
            ("", Operation::List) => list_response(self.view.list_children("")?),
            ("", _) => Err(CoreError::UnsupportedOperation),
            (name, Operation::Read) => {
                check_name("password policy", name)?;
                let p = self
                    .get(name)
                    .map_err(|_| CoreError::NotFound(String::new()))?;
                Ok(Response::data(json!({ "policy": p.source })))
            }
            (name, _) if write => {
                check_name("password policy", name)?;
                let body = body_of(req)?;
                let source = match body.get("policy") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(CoreError::bad("policy (the HCL text) is required")),
                };
                let policy = PasswordPolicy::parse(&source)?;
                let mut batch = ViewBatch::default();
                batch.put(
                    name,
                    serde_json::to_vec(&policy).expect("a policy serializes"),
                );
                self.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (name, Operation::Delete) => {
                check_name("password policy", name)?;
                let mut batch = ViewBatch::default();
                batch.delete(name);
                self.view.apply(batch)?;
                Ok(Response::no_content())
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }
}

/// What the database engine sees of the policies.
impl sigil_engine::Passwords for PasswordPolicies {
    fn check(&self, name: &str) -> Result<(), CoreError> {
        self.get(name).map(drop)
    }

    fn generate(&self, name: &str) -> Result<Zeroizing<String>, CoreError> {
        self.get(name)?.generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_policies_generate_what_they_say() {
        let p = PasswordPolicy::parse(
            r#"
length = 30
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset = "0123456789"
  min-chars = 5
}
rule "charset" {
  charset = "!#%&*+-=?@^_~"
  min-chars = 2
}
"#,
        )
        .unwrap();
        for _ in 0..50 {
            let pw = p.generate().unwrap();
            assert_eq!(pw.len(), 30);
            assert!(
                pw.bytes().filter(u8::is_ascii_digit).count() >= 5,
                "{}",
                pw.as_str()
            );
            assert!(pw.bytes().filter(|b| b"!#%&*+-=?@^_~".contains(b)).count() >= 2);
            assert!(pw.chars().all(allowed));
        }
        for bad in [
            "length = 20",
            "rule \"charset\" {\n charset = \"abc\"\n}",
            "length = 2\nrule \"charset\" {\n charset = \"abc\"\n}",
            "length = 20\nrule \"charset\" {\n charset = \"ab'c\"\n}",
            "length = 20\nrule \"charset\" {\n charset = \"ab c\"\n}",
            "length = 20\nrule \"charset\" {\n charset = \"a;b\"\n}",
            "length = 20\nrule \"charset\" {\n charset = \"abc\"\n min-chars = 21\n}",
            "length = 20\nrule \"charset\" {\n charset = \"abc\"\n max-chars = 3\n}",
            "length = 20\nrule \"allowed\" {\n charset = \"abc\"\n}",
            "length = \"20\"\nrule \"charset\" {\n charset = \"abc\"\n}",
            "not hcl {",
        ] {
            assert!(PasswordPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
