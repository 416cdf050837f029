//! Values as Go's text/template sees JSON decoded into `interface{}`: printing (`fmt.Sprint`
//! rules, maps in key order), truth, comparison. `null` (a JSON null, or a key that is not
//! there) prints as `<no value>` at the top of an action, as Go prints a missing map key.

use serde_json::{Number, Value};

/// A number literal as Go writes it (`42`, `-1.5`, `0x1f`, `1e3`, `1_000`).
pub(super) fn parse_number(text: &str) -> Option<Value> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = |prefix: &[&str], radix: u32| {
        prefix
            .iter()
            .find_map(|p| digits.strip_prefix(p))
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    if let Some(i) = radix(&["0x", "0X"], 16)
        .or_else(|| radix(&["0o", "0O"], 8))
        .or_else(|| radix(&["0b", "0B"], 2))
    {
        return Some(Value::from(if neg { -i } else { i }));
    }
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    // A leading 0 makes an integer octal, as in Go (`0644` is 420; `08` is refused).
    if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        let i = i64::from_str_radix(&digits[1..], 8).ok()?;
        return Some(Value::from(if neg { -i } else { i }));
    }
    if let Ok(i) = clean.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(u) = clean.parse::<u64>() {
        return Some(Value::from(u));
    }
    clean
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(Number::from_f64)
        .map(Value::Number)
}

/// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What `{{ v }}` prints: `<no value>` for null, else [`sprint`].
pub(super) fn print_top(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        v => sprint(v),
    }
}

/// `fmt.Sprint` of one value: strings as they are, lists `[a b]`, maps `map[k:v]` in key
/// order, null `<nil>`.
pub(super) fn sprint(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push_str("map[");
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, x);
            }
            out.push(']');
        }
    }
}

/// A number as a secret's JSON number prints in Vault Agent (Go's `json.Number`: its text):
/// integers plainly, floats in the shortest form JSON writes (`1.5`, `3`, `1e+21`). (Go prints
/// a float64 from the template text itself in `%g` form, `1e+06`; that is not followed.)
pub(super) fn number_text(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{f:.0}");
    }
    let plain = format!("{f}");
    if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) {
        let e = format!("{f:e}");
        // Rust writes `1e21` and `1.5e-7`; Go `1e+21` and `1.5e-07`.
        return match e.split_once('e') {
            Some((m, x)) => {
                let (sign, digits) = match x.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', x),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => e,
        };
    }
    plain
}

/// The name of a value's type, for errors (values themselves are never put in errors).
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// `eq` of two values: numbers by value (1 equals 1.0); a number and a string by the number's
/// text (Vault Agent's numbers are `json.Number` strings: `eq .Data.data.n "3"`); others as
/// JSON.
pub(super) fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            Ok(number_text(n) == *s || n.to_string() == *s)
        }
        (Value::Number(x), Value::Number(y)) => Ok(match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        }),
        (Value::Null, _) | (_, Value::Null) => Ok(a == b),
        _ if std::mem::discriminant(a) == std::mem::discriminant(b) => match a {
            Value::Array(_) | Value::Object(_) => {
                Err(format!("a {} cannot be compared with eq", type_name(a)))
            }
            _ => Ok(a == b),
        },
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// `lt` and friends: numbers with numbers, strings with strings.
pub(super) fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Ok(i.cmp(&j)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(f, g)| f.partial_cmp(&g))
                .ok_or_else(|| "numbers that cannot be ordered".to_owned()),
        },
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_parse_and_print_as_go_does() {
        for (text, want) in [
            ("42", json!(42)),
            ("-7", json!(-7)),
            ("0x1f", json!(31)),
            ("1_000", json!(1000)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("0644", json!(420)),
            ("18446744073709551615", json!(u64::MAX)),
        ] {
            assert_eq!(parse_number(text), Some(want), "{text}");
        }
        for bad in ["-", "x1", "1x", "0xg", "1e999", "08"] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
        let f = |x: f64| number_text(&Number::from_f64(x).unwrap());
        assert_eq!(f(3.0), "3");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1.5e-7), "1.5e-07");
    }

    #[test]
    fn printing_truth_and_comparison() {
        assert_eq!(print_top(&Value::Null), "<no value>");
        assert_eq!(
            sprint(&json!({ "b": [1, "x", null], "a": true })),
            "map[a:true b:[1 x <nil>]]"
        );
        for v in [
            json!(null),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
            json!(false),
        ] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [
            json!(1),
            json!("0"),
            json!([0]),
            json!({ "a": 1 }),
            json!(0.5),
        ] {
            assert!(truthy(&v), "{v}");
        }
        assert!(equal(&json!(1), &json!(1.0)).unwrap());
        assert!(!equal(&json!("a"), &json!("b")).unwrap());
        assert!(!equal(&json!(null), &json!("b")).unwrap());
        assert!(equal(&json!("1"), &json!(1)).unwrap());
        assert!(!equal(&json!("1.0"), &json!(2)).unwrap());
        assert!(equal(&json!(true), &json!(1)).is_err());
        assert!(equal(&json!([1]), &json!([1])).is_err());
        assert_eq!(
            order(&json!(2), &json!(10)).unwrap(),
            std::cmp::Ordering::Less
        );
        assert_eq!(
            order(&json!("b"), &json!("a")).unwrap(),
            std::cmp::Ordering::Greater
        );
        assert!(order(&json!(true), &json!(false)).is_err());
    }
}
