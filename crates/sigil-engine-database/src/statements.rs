//! Statement templates and generated credentials. Templates are written by operators (as in
//! Vault); the values put into them — user names, passwords, expirations — are generated here
//! from a small character set and checked again before substitution, so no value can close a
//! quote or end a statement, whatever a role's name or a caller's identity name contains.

use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::driver::Plugin;
use sigil_engine::CoreError;
use sigil_engine::lease::password_char_allowed;

/// Characters a substituted value may hold: printable ASCII and space, without quotes,
/// backtick, backslash, `;` or `$` (what a password policy's charsets may use, see
/// [`password_char_allowed`]). None of them can end a quoted string or a statement.
fn substitutable(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c == ' ' || password_char_allowed(c))
}

/// Whether `name` can be used as an existing user's name in a static role: letters, digits,
/// `-`, `_`, `.` and `@`, within the database's length limit.
pub(crate) fn valid_username(plugin: Plugin, name: &str) -> bool {
    !name.is_empty()
        && name.len() <= plugin.username_limit()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// Vault's forms of a statements field: a list of strings, or one string that may be
/// base64, or a JSON array (possibly base64 too). Each string is split at `;` unless it uses
/// PostgreSQL dollar quoting (a function body). Empty pieces are dropped.
pub(crate) fn parse(value: &Value, field: &str) -> Result<Vec<String>, CoreError> {
    let bad = || {
        CoreError::bad(format!(
            "{field} must be a string or a list of strings (SQL statements)"
        ))
    };
    let items: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Value::String(s) => {
            let text = decode_base64(s).unwrap_or_else(|| s.clone());
            match serde_json::from_str::<Vec<String>>(&text) {
                Ok(list) => list,
                Err(_) => vec![text],
            }
        }
        _ => return Err(bad()),
    };
    let mut out = Vec::new();
    for item in items {
        if item.contains("$$") {
            out.push(item.trim().to_owned());
        } else {
            out.extend(
                item.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out.retain(|s| !s.is_empty());
    if out.iter().map(String::len).sum::<usize>() > 64 * 1024 {
        return Err(CoreError::bad(format!("{field} are longer than 64 KiB")));
    }
    Ok(out)
}

/// A string that is entirely standard base64 of UTF-8 text (Vault accepts statements so).
fn decode_base64(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}

/// Fills `{{name}}` (also `{{username}}`), `{{password}}` and `{{expiration}}` in each
/// template. Every value must be substitutable; an unknown `{{…}}` is an error.
pub(crate) fn render(
    templates: &[String],
    values: &[(&str, &str)],
) -> Result<Vec<Zeroizing<String>>, CoreError> {
    for (key, value) in values {
        if !substitutable(value) {
            return Err(CoreError::bad(format!(
                "the value for {{{{{key}}}}} holds characters that cannot be substituted safely"
            )));
        }
    }
    templates
        .iter()
        .map(|t| {
            let mut out = Zeroizing::new(String::with_capacity(t.len() + 64));
            let mut rest = t.as_str();
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find("}}")
                    .ok_or_else(|| CoreError::bad("unterminated {{ in a statement"))?;
                let key = after[..end].trim();
                let key = if key == "username" { "name" } else { key };
                let (_, value) = values.iter().find(|(k, _)| *k == key).ok_or_else(|| {
                    CoreError::bad(format!(
                        "unknown placeholder {{{{{key}}}}}: statements may use {{{{name}}}}, {{{{password}}}} and {{{{expiration}}}}"
                    ))
                })?;
                out.push_str(value);
                rest = &after[end + 2..];
            }
            out.push_str(rest);
            Ok(out)
        })
        .collect()
}

/// Checks that `templates` use only the placeholders `keys` (what they get when they run).
pub(crate) fn check(templates: &[String], keys: &[&str]) -> Result<(), CoreError> {
    let sample: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "x")).collect();
    render(templates, &sample).map(drop)
}

/// Lower-case letters and digits of `s`, at most `max` of them (for the readable parts of a
/// generated user name).
fn slug(s: &str, max: usize) -> String {
    s.chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit()).then_some(c)
        })
        .take(max)
        .collect()
}

/// A new, unique user name: `v-<identity>-<role>-<random>[-<unix time>]`, letters, digits and
/// `-` only, within the database's length limit (Vault's scheme).
pub(crate) fn username(plugin: Plugin, identity: &str, role: &str) -> Result<String, CoreError> {
    let (part, random) = match plugin {
        Plugin::Postgres => (8, 20),
        Plugin::MySql => (4, 16),
    };
    let suffix = sigil_crypto::random::string_from(b"abcdefghijklmnopqrstuvwxyz0123456789", random)
        .map_err(|_| CoreError::rng())?;
    let mut name = format!(
        "v-{}-{}-{}",
        slug(identity, part),
        slug(role, part),
        suffix.as_str()
    );
    if plugin == Plugin::Postgres {
        name.push_str(&format!("-{}", sigil_engine::timefmt::unix_now()));
    }
    debug_assert!(name.len() <= plugin.username_limit());
    Ok(name)
}

/// A new password: 24 characters of letters and digits with at least one of each kind, after
/// a leading letter (Vault's default policy asks the same of its 20).
pub(crate) fn password() -> Result<Zeroizing<String>, CoreError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    loop {
        let p = sigil_crypto::random::string_from(ALPHABET, 24).map_err(|_| CoreError::rng())?;
        let b = p.as_bytes();
        if b[0].is_ascii_alphabetic()
            && b.iter().any(u8::is_ascii_lowercase)
            && b.iter().any(u8::is_ascii_uppercase)
            && b.iter().any(u8::is_ascii_digit)
        {
            return Ok(p);
        }
    }
}

/// An expiration time as the statements receive it (`2026-12-03 15:04:05+0000`, which both
/// PostgreSQL's `VALID UNTIL` and MySQL read).
pub(crate) fn expiration(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statement_forms() {
        let one = "CREATE ROLE \"{{name}}\"; GRANT SELECT ON t TO \"{{name}}\";";
        let want = [
            "CREATE ROLE \"{{name}}\"",
            "GRANT SELECT ON t TO \"{{name}}\"",
        ];
        assert_eq!(parse(&json!(one), "s").unwrap(), want);
        assert_eq!(parse(&json!([one]), "s").unwrap(), want);
        let b64 = base64::engine::general_purpose::STANDARD.encode(one);
        assert_eq!(parse(&json!(b64), "s").unwrap(), want);
        let array = serde_json::to_string(&want).unwrap();
        assert_eq!(parse(&json!(array), "s").unwrap(), want);
        let dollar = "DO $$ BEGIN CREATE ROLE x; END $$;";
        assert_eq!(parse(&json!([dollar]), "s").unwrap(), [dollar]);
        assert!(parse(&json!(5), "s").is_err());
        assert!(parse(&json!([1]), "s").is_err());
        assert!(parse(&json!("x".repeat(70_000)), "s").is_err());
    }

    #[test]
    fn rendering_refuses_what_could_escape_a_quote() {
        let t = vec![
            "CREATE USER '{{name}}' IDENTIFIED BY '{{password}}' -- {{ expiration }}".to_owned(),
        ];
        let out = render(
            &t,
            &[
                ("name", "v-a-b"),
                ("password", "Pw1"),
                ("expiration", "2026-01-01 00:00:00+0000"),
            ],
        )
        .unwrap();
        assert_eq!(
            out[0].as_str(),
            "CREATE USER 'v-a-b' IDENTIFIED BY 'Pw1' -- 2026-01-01 00:00:00+0000"
        );
        for evil in ["a'b", "a\"b", "a;b", "a\\b", "a`b", "a\nb", "", "ä"] {
            assert!(
                render(
                    &t,
                    &[("name", evil), ("password", "p"), ("expiration", "e")]
                )
                .is_err(),
                "{evil:?}"
            );
        }
        assert!(render(&["{{nope}}".to_owned()], &[]).is_err());
        assert!(render(&["{{name".to_owned()], &[("name", "a")]).is_err());
        assert_eq!(
            render(&["{{username}}".to_owned()], &[("name", "a")]).unwrap()[0].as_str(),
            "a"
        );
    }

    #[test]
    fn generated_names_fit_and_are_safe() {
        for plugin in [Plugin::Postgres, Plugin::MySql] {
            let a = username(plugin, "Ops'; DROP TABLE x;--", "r\"o'l`e").unwrap();
            let b = username(plugin, "Ops'; DROP TABLE x;--", "r\"o'l`e").unwrap();
            assert_ne!(a, b);
            assert!(a.len() <= plugin.username_limit(), "{a}");
            assert!(
                a.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{a}"
            );
            assert!(valid_username(plugin, &a));
        }
        assert!(!valid_username(Plugin::MySql, &"a".repeat(33)));
        assert!(!valid_username(Plugin::Postgres, "a b"));
        let p = password().unwrap();
        assert_eq!(p.len(), 24);
        assert!(substitutable(&p));
        assert_eq!(expiration(0), "1970-01-01 00:00:00+0000");
    }
}
