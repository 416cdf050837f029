//! Normalization of request paths and validation of names.
//!
//! A request path has one canonical form, and the policy check, the existence check
//! (create vs update) and every engine see exactly that form: a LIST names a folder and its
//! path ends in one `/`; every other operation names an object and its path has no trailing
//! `/` (one sent is dropped, so `DELETE sys/mounts/secret/` works as in Vault and
//! `secret/config/` is `secret/config` to the policy as well as to the engine).

use crate::CoreError;
use crate::request::Operation;

/// The canonical path of a request below `/v1/` as received (still percent-encoded): see
/// [`normalize`] for what is refused, then [`for_operation`].
pub fn canonical(raw: &str, op: Operation) -> Result<String, CoreError> {
    normalize(raw).map(|path| for_operation(path, op))
}

/// Puts a normalized path into the canonical form for `op`: with one trailing `/` for a LIST,
/// without one for everything else. Idempotent.
pub fn for_operation(mut path: String, op: Operation) -> String {
    if op == Operation::List {
        if !path.ends_with('/') {
            path.push('/');
        }
    } else if path.ends_with('/') {
        path.pop();
    }
    path
}

/// Normalizes a path below `/v1/` as received (still percent-encoded): decodes it, and refuses
/// `.`/`..` segments, empty segments (`//`), control characters, invalid UTF-8 and an encoded
/// `%`. A single trailing `/` is kept; [`for_operation`] decides what it means.
fn normalize(raw: &str) -> Result<String, CoreError> {
    let decoded = percent_decode(raw)?;
    // A `%` left after decoding came from `%25`: whatever decoded the path again would see a
    // different one (`%252e%252e` is `..` to it). Refused, so a canonical path decodes to itself.
    if decoded.contains('%') {
        return Err(CoreError::bad("path has an encoded '%' (%25)"));
    }
    let trimmed = decoded.strip_prefix('/').unwrap_or(&decoded);
    let body = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if body.is_empty() {
        return Err(CoreError::bad("empty path"));
    }
    for segment in body.split('/') {
        match segment {
            "" => return Err(CoreError::bad("path has an empty segment (//)")),
            "." | ".." => return Err(CoreError::bad("path has a '.' or '..' segment")),
            s if s.chars().any(char::is_control) => {
                return Err(CoreError::bad("path has a control character"));
            }
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

fn percent_decode(raw: &str) -> Result<String, CoreError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CoreError::bad("path has a malformed percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CoreError::bad("path is not valid UTF-8"))
}

/// Checks a name for identities and policies: 1–128 of `[A-Za-z0-9._-]`, not starting with
/// `.` or `-`.
pub fn check_name(kind: &str, name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::bad(format!(
            "invalid {kind} name: use 1-128 letters, digits, '.', '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_tricks() {
        assert_eq!(normalize("secret/data/app").unwrap(), "secret/data/app");
        assert_eq!(normalize("secret/metadata/").unwrap(), "secret/metadata/");
        assert_eq!(normalize("secret/data/a%20b").unwrap(), "secret/data/a b");
        for bad in [
            "secret/../sys",
            "secret/%2e%2e/sys",
            "secret/%2E%2E/sys",
            "secret/./x",
            "secret//x",
            "secret/%2f/x",
            "secret/x%00",
            "secret/%ff",
            "secret/%zz",
            "secret/%2",
            "secret/%252e%252e/sys",
            "secret/a%25b",
            "",
            "/",
            "//",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_canonical_form_per_operation() {
        use Operation::*;
        for op in [Read, Create, Update, Patch, Delete] {
            assert_eq!(canonical("secret/config/", op).unwrap(), "secret/config");
            assert_eq!(canonical("secret/config", op).unwrap(), "secret/config");
        }
        assert_eq!(
            canonical("secret/metadata", List).unwrap(),
            "secret/metadata/"
        );
        assert_eq!(
            canonical("secret/metadata/", List).unwrap(),
            "secret/metadata/"
        );
        assert!(canonical("secret/config//", Read).is_err());
        assert!(canonical("/", Read).is_err());
    }

    #[test]
    fn names() {
        check_name("policy", "ops-team_1.x").unwrap();
        for bad in ["", ".x", "-x", "a/b", "a b", &"x".repeat(129), "é"] {
            assert!(check_name("policy", bad).is_err(), "{bad}");
        }
    }
}
