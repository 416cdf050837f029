//! Go's built-in template functions (`and` and `or`, which stop early, are in the executor):
//! `not`, `len`, `index`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`.

use std::cmp::Ordering;

use serde_json::Value;

use super::value::{equal, number_text, order, sprint, truthy, type_name};

/// Every built-in's name.
pub(super) const NAMES: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge",
];

/// Calls built-in `name`, or `None` if there is none by that name.
pub(super) fn call(name: &str, args: &[Value]) -> Option<Result<Value, String>> {
    Some(match name {
        "not" => exactly(name, args, 1).map(|_| Value::Bool(!truthy(&args[0]))),
        "len" => exactly(name, args, 1).and_then(|_| len(&args[0])),
        "index" => index(args),
        "print" => Ok(Value::String(print(args, false))),
        "println" => Ok(Value::String(print(args, true))),
        "printf" => printf(args),
        "eq" => eq(args),
        "ne" => exactly(name, args, 2)
            .and_then(|_| equal(&args[0], &args[1]))
            .map(|e| Value::Bool(!e)),
        "lt" | "le" | "gt" | "ge" => exactly(name, args, 2)
            .and_then(|_| order(&args[0], &args[1]))
            .map(|o| {
                Value::Bool(match name {
                    "lt" => o == Ordering::Less,
                    "le" => o != Ordering::Greater,
                    "gt" => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                })
            }),
        _ => return None,
    })
}

fn exactly(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    match args.len() == n {
        true => Ok(()),
        false => Err(format!(
            "{name}: wants {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            args.len()
        )),
    }
}

fn len(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => Ok(Value::from(s.len())),
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Object(o) => Ok(Value::from(o.len())),
        other => Err(format!("len of a {}", type_name(other))),
    }
}

/// `index x k1 k2 …`: `x[k1][k2]…`; a key missing from a map is null, as in Go.
fn index(args: &[Value]) -> Result<Value, String> {
    let (first, keys) = args
        .split_first()
        .ok_or_else(|| "index: wants at least 1 argument".to_owned())?;
    let mut v = first;
    for k in keys {
        v = match (v, k) {
            (Value::Object(o), Value::String(key)) => o.get(key).unwrap_or(&Value::Null),
            (Value::Array(a), Value::Number(n)) => {
                let i = n
                    .as_u64()
                    .ok_or_else(|| "index: a list index must be a whole number".to_owned())?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| a.get(i))
                    .ok_or_else(|| "index: out of range".to_owned())?
            }
            (Value::Null, _) => return Err("index of untyped nil".into()),
            (x, k) => {
                return Err(format!(
                    "index: can't index a {} with a {}",
                    type_name(x),
                    type_name(k)
                ));
            }
        };
    }
    Ok(v.clone())
}

/// `fmt.Sprint` (spaces between operands when neither is a string) or `fmt.Sprintln`
/// (spaces always, and a newline).
fn print(args: &[Value], line: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && (line || !(a.is_string() || args[i - 1].is_string())) {
            out.push(' ');
        }
        out.push_str(&sprint(a));
    }
    if line {
        out.push('\n');
    }
    out
}

fn eq(args: &[Value]) -> Result<Value, String> {
    let (first, rest) = args
        .split_first()
        .filter(|(_, rest)| !rest.is_empty())
        .ok_or_else(|| "eq: wants at least 2 arguments".to_owned())?;
    for other in rest {
        if equal(first, other)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

/// The largest width and precision a `printf` directive may ask for.
const MAX_WIDTH: usize = 10_000;

/// One `%` directive: flags, width, precision, verb.
struct Spec {
    minus: bool,
    zero: bool,
    plus: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
    verb: char,
}

/// `printf`: Go's verbs `%v %s %d %q %t %x %X %f %e %g %%`, with `-`, `+`, `0`, a width and
/// a precision. A missing argument prints `%!v(MISSING)`, as Go's does.
fn printf(args: &[Value]) -> Result<Value, String> {
    let (format, args) = match args.split_first() {
        Some((Value::String(f), rest)) => (f, rest),
        _ => return Err("printf: the first argument must be a format string".into()),
    };
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec {
            minus: false,
            zero: false,
            plus: false,
            space: false,
            width: None,
            precision: None,
            verb: 'v',
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let digits = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        // Bounded (Rust's formatter refuses a precision above 65 535; found by the fuzzer).
        spec.width = digits(&mut chars).map(|w| w.min(MAX_WIDTH));
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(digits(&mut chars).unwrap_or(0).min(MAX_WIDTH));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        spec.verb = verb;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match next.next() {
            Some(v) => out.push_str(&pad(&spec, signed(&spec, format_one(&spec, v)?))),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
    }
    if next.len() > 0 {
        let extra: Vec<String> = next.map(|v| type_name(v).to_owned()).collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(Value::String(out))
}

fn format_one(spec: &Spec, v: &Value) -> Result<String, String> {
    let float = |v: &Value| v.as_f64().ok_or_else(|| bad_verb(spec.verb, v));
    Ok(match spec.verb {
        'v' | 's' => {
            let s = sprint(v);
            match spec.precision {
                Some(p) if spec.verb == 's' => s.chars().take(p).collect(),
                _ => s,
            }
        }
        'd' => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => return Err(bad_verb('d', other)),
        },
        'q' => match v {
            Value::String(s) => quote(s),
            other => return Err(bad_verb('q', other)),
        },
        't' => match v {
            Value::Bool(b) => b.to_string(),
            other => return Err(bad_verb('t', other)),
        },
        'x' | 'X' => {
            let hex = match v {
                Value::String(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                Value::Number(n) if n.is_i64() => {
                    let i = n.as_i64().unwrap_or(0);
                    match i < 0 {
                        true => format!("-{:x}", i.unsigned_abs()),
                        false => format!("{i:x}"),
                    }
                }
                Value::Number(n) if n.is_u64() => format!("{:x}", n.as_u64().unwrap_or(0)),
                other => return Err(bad_verb(spec.verb, other)),
            };
            match spec.verb {
                'X' => hex.to_uppercase(),
                _ => hex,
            }
        }
        'f' | 'F' => format!("{:.*}", spec.precision.unwrap_or(6), float(v)?),
        'e' => {
            let s = format!("{:.*e}", spec.precision.unwrap_or(6), float(v)?);
            // Go writes the exponent with a sign and at least two digits.
            match s.split_once('e') {
                Some((m, x)) => match x.strip_prefix('-') {
                    Some(d) => format!("{m}e-{d:0>2}"),
                    None => format!("{m}e+{x:0>2}"),
                },
                None => s,
            }
        }
        'g' if spec.precision.is_some() => {
            return Err("printf: %g with a precision is not supported".into());
        }
        'g' => match v {
            Value::Number(n) => number_text(n),
            other => return Err(bad_verb('g', other)),
        },
        // The verb is not repeated: the format may come from a secret.
        _ => {
            return Err(
                "printf: a verb that is not supported (%v %s %d %q %t %x %X %f %e %g are)".into(),
            );
        }
    })
}

/// The `+` and space flags of a number: a sign or a space before a non-negative one.
fn signed(spec: &Spec, s: String) -> String {
    let numeric = matches!(spec.verb, 'd' | 'f' | 'F' | 'e' | 'g');
    match (numeric && !s.starts_with('-'), spec.plus, spec.space) {
        (true, true, _) => format!("+{s}"),
        (true, false, true) => format!(" {s}"),
        _ => s,
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    format!("printf: %{verb} of a {}", type_name(v))
}

fn pad(spec: &Spec, s: String) -> String {
    let Some(width) = spec.width else { return s };
    let n = s.chars().count();
    if n >= width {
        return s;
    }
    let fill = width - n;
    match (
        spec.minus,
        spec.zero && matches!(spec.verb, 'd' | 'f' | 'F' | 'e' | 'g' | 'x' | 'X'),
    ) {
        (true, _) => format!("{s}{}", " ".repeat(fill)),
        // Zeros go after the sign (`%+05d` of 42 is `+0042`).
        (false, true) => match s.strip_prefix(['-', '+', ' ']) {
            Some(rest) => format!("{}{}{rest}", &s[..1], "0".repeat(fill)),
            None => format!("{}{s}", "0".repeat(fill)),
        },
        (false, false) => format!("{}{s}", " ".repeat(fill)),
    }
}

/// A Go double-quoted string (`strconv.Quote`).
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if !printable(c) && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if !printable(c) => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether Go's `strconv.Quote` leaves `c` as it is: not a control character, not a space
/// other than ASCII's, not an invisible format character.
fn printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(args: &[Value]) -> String {
        printf(args).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn printf_formats_as_go() {
        assert_eq!(
            f(&[
                json!("%s=%v %d%% %q %t"),
                json!("a"),
                json!([1, 2]),
                json!(42),
                json!("x\"y\n"),
                json!(true)
            ]),
            "a=[1 2] 42% \"x\\\"y\\n\" true"
        );
        assert_eq!(
            f(&[
                json!("[%5s|%-5s|%05d|%.2f|%x|%X]"),
                json!("ab"),
                json!("cd"),
                json!(-42),
                json!(1.23456),
                json!("hi"),
                json!(255)
            ]),
            "[   ab|cd   |-0042|1.23|6869|FF]"
        );
        assert_eq!(f(&[json!("%e"), json!(1234.5)]), "1.234500e+03");
        assert_eq!(f(&[json!("%.3s"), json!("abcdef")]), "abc");
        assert_eq!(
            f(&[
                json!("%+05d|% d|%+.1f|%+d"),
                json!(42),
                json!(7),
                json!(1.25),
                json!(-3)
            ]),
            "+0042| 7|+1.2|-3"
        );
        assert_eq!(
            f(&[json!("%q"), json!("a\u{a0}b\u{2028}\u{feff}")]),
            "\"a\\u00a0b\\u2028\\ufeff\""
        );
        assert!(printf(&[json!("%.3g"), json!(1.5)]).is_err());
        let err = printf(&[json!("x%Qy"), json!(1)]).unwrap_err();
        assert!(!err.contains('Q'), "{err}");
        assert_eq!(f(&[json!("%s %s"), json!("a")]), "a %!s(MISSING)");
        assert_eq!(f(&[json!("%s"), json!("a"), json!(1)]), "a%!(EXTRA int)");
        assert!(
            printf(&[json!("%d"), json!("secret-text")])
                .unwrap_err()
                .contains("string")
        );
        assert!(
            !printf(&[json!("%d"), json!("secret-text")])
                .unwrap_err()
                .contains("secret")
        );
        assert!(printf(&[json!("%p"), json!(1)]).is_err());
        // A huge precision or width is capped, not a panic (found by the fuzzer).
        let long = f(&[json!("%.99999999999f|%99999999d"), json!(1.5), json!(1)]);
        assert_eq!(long.len(), 2 + MAX_WIDTH + 1 + MAX_WIDTH);
        assert!(printf(&[json!(1)]).is_err());
    }

    #[test]
    fn the_other_builtins() {
        let c = |name: &str, args: &[Value]| call(name, args).unwrap();
        assert_eq!(c("len", &[json!("héllo")]).unwrap(), json!(6));
        assert_eq!(c("len", &[json!({ "a": 1 })]).unwrap(), json!(1));
        assert!(c("len", &[json!(1)]).is_err());
        let m = json!({ "a": [10, { "b": "x" }] });
        assert_eq!(
            c("index", &[m.clone(), json!("a"), json!(1), json!("b")]).unwrap(),
            json!("x")
        );
        assert_eq!(
            c("index", &[m.clone(), json!("nope")]).unwrap(),
            Value::Null
        );
        assert!(c("index", &[m, json!("a"), json!(5)]).is_err());
        assert!(c("index", &[json!("s"), json!(0)]).is_err());
        assert_eq!(
            c("print", &[json!("a"), json!(1), json!(2), json!("b")]).unwrap(),
            json!("a1 2b")
        );
        assert_eq!(
            c("println", &[json!("a"), json!(1)]).unwrap(),
            json!("a 1\n")
        );
        assert_eq!(
            c("eq", &[json!("b"), json!("a"), json!("b")]).unwrap(),
            json!(true)
        );
        assert_eq!(c("ne", &[json!(1), json!(2)]).unwrap(), json!(true));
        assert_eq!(c("le", &[json!(2), json!(2)]).unwrap(), json!(true));
        assert_eq!(c("gt", &[json!("b"), json!("a")]).unwrap(), json!(true));
        assert!(c("lt", &[json!("b"), json!(1)]).is_err());
        assert!(c("eq", &[json!(1)]).is_err());
        assert_eq!(c("not", &[json!("")]).unwrap(), json!(true));
        assert!(call("nosuch", &[]).is_none());
    }
}
