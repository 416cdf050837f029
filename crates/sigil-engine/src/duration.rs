//! Durations as Vault accepts them: a number of seconds (JSON number or digits), or a string of
//! `<integer><unit>` parts with units `s`, `m`, `h`, `d` (`"1h30m"`, `"768h"`, `"10s"`).

use serde_json::Value;

use crate::CoreError;

/// Ten years: no TTL in Sigil is longer.
const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// Parses a duration field named `name`. Messages never echo the value.
pub fn seconds(value: &Value, name: &str) -> Result<u64, CoreError> {
    let bad = || {
        CoreError::bad(format!(
            "{name} must be a duration: seconds, or a string such as \"90s\", \"15m\", \"1h30m\", \"7d\""
        ))
    };
    let secs = match value {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => parse(s.trim()).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs > MAX_SECONDS {
        return Err(CoreError::bad(format!("{name} is longer than ten years")));
    }
    Ok(secs)
}

/// A duration written in a configuration (`"24h"`, `"90s"`, `"1h30m"`, or seconds), named
/// `name` in the error.
pub fn from_text(text: &str, name: &str) -> Result<std::time::Duration, CoreError> {
    seconds(&Value::String(text.to_owned()), name).map(std::time::Duration::from_secs)
}

/// Seconds as Go prints a duration, as Vault shows TTLs: `0s`, `30s`, `1m30s`, `1h0m0s`.
pub fn go_format(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn parse(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest.as_bytes().get(digits)? {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn go_formatting() {
        for (secs, text) in [
            (0, "0s"),
            (30, "30s"),
            (90, "1m30s"),
            (3600, "1h0m0s"),
            (90061, "25h1m1s"),
        ] {
            assert_eq!(go_format(secs), text);
        }
    }

    #[test]
    fn vault_durations() {
        for (input, want) in [
            (json!(30), 30),
            (json!("30"), 30),
            (json!("90s"), 90),
            (json!("15m"), 900),
            (json!("1h30m"), 5400),
            (json!("768h"), 768 * 3600),
            (json!("7d"), 7 * 86400),
            (json!(" 2h "), 7200),
        ] {
            assert_eq!(seconds(&input, "ttl").unwrap(), want, "{input}");
        }
        for bad in [
            json!(""),
            json!("h"),
            json!("1x"),
            json!("1h30"),
            json!("-5s"),
            json!(-5),
            json!(1.5),
            json!(true),
            json!("99999999999999999999s"),
            json!("11000d"),
        ] {
            let err = seconds(&bad, "ttl").unwrap_err();
            assert!(matches!(err, CoreError::BadRequest(_)), "{bad}");
        }
    }
}
