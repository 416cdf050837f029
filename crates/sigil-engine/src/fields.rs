//! Reading request fields the way Vault's engines take them (`sigil write` sends strings).

use serde_json::{Map, Value};

use crate::{CoreError, duration};

/// A 400 from anything printable.
pub fn bad(e: impl std::fmt::Display) -> CoreError {
    CoreError::bad(e.to_string())
}

/// A list given as a JSON array of strings or as a comma-separated string.
pub fn list_of(v: Option<&Value>) -> Result<Vec<String>, CoreError> {
    Ok(match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("lists hold strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("expected a list or a comma-separated string")),
    })
}

/// A boolean as Vault's fields take one: `true`/`false`, or the strings `"true"`/`"false"` that
/// `vault write path flag=true` (and `sigil write`) send.
fn as_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The boolean field `name` of `body` (`true`/`false`, also as strings), or `default`.
pub fn flag(body: &Map<String, Value>, name: &str, default: bool) -> Result<bool, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => as_flag(v).ok_or_else(|| bad(format!("{name} must be true or false"))),
    }
}

/// [`flag`] for a serde field: `#[serde(default, deserialize_with = "fields::de_flag")]`.
pub fn de_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = <Option<Value> as serde::Deserialize>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_flag(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected true or false")),
    }
}

/// A duration in seconds (`"72h"`, `3600`); 0 when absent.
pub fn ttl(body: &Map<String, Value>, name: &str) -> Result<u64, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(v) => duration::seconds(v, name),
    }
}

/// A whole number given as a JSON number or a string of digits (`-1` allowed); `None` when
/// absent.
pub fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, CoreError> {
    let wrong = || bad(format!("{name} must be a whole number"));
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(wrong),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| wrong()),
        Some(_) => Err(wrong()),
    }
}

/// A non-negative number; 0 when absent.
pub fn number(body: &Map<String, Value>, name: &str) -> Result<u64, CoreError> {
    match integer(body, name)? {
        None => Ok(0),
        Some(n) => u64::try_from(n).map_err(|_| bad(format!("{name} must not be negative"))),
    }
}

/// A string field; `default` when absent or empty.
pub fn text<'a>(
    body: &'a Map<String, Value>,
    name: &str,
    default: &'a str,
) -> Result<&'a str, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) if s.is_empty() => Ok(default),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("{name} must be a string"))),
    }
}

/// Refuses fields an endpoint does not implement, so none is silently ignored.
pub fn only(body: &Map<String, Value>, known: &[&str]) -> Result<(), CoreError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "{k} is not supported here (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The request body as an object (an empty one when there is none).
pub fn body_of(req: &crate::Request) -> Result<Map<String, Value>, CoreError> {
    match &req.data {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(CoreError::bad("the request body must be a JSON object")),
    }
}
