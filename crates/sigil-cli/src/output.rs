//! Vault-like table and JSON output.

use serde_json::Value;

use crate::args::Format;

/// A value as a table cell: strings bare, null as `n/a`, everything else as compact JSON.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        other => other.to_string(),
    }
}

/// A centered `=== title ===` header, as Vault prints above sections.
pub(crate) fn header(title: &str, width: usize) {
    let width = width.max(title.len() + 2);
    let pad = width - title.len() - 2;
    let left = pad / 2;
    println!("{} {} {}", "=".repeat(left), title, "=".repeat(pad - left));
}

/// A two-column `Key / Value` table.
pub(crate) fn table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max(3) + 4;
    println!("{:width$}Value", "Key");
    println!("{:width$}-----", "---");
    for (k, v) in rows {
        println!("{k:width$}{v}");
    }
}

/// A table with named columns, each as wide as its widest cell.
pub(crate) fn columns(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:w$}    ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    line(
        headers
            .iter()
            .map(|h| "-".repeat(h.len()))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Rows of a JSON object, keys sorted.
pub(crate) fn rows(obj: Option<&Value>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = obj
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
        .unwrap_or_default();
    rows.sort();
    rows
}

/// Seconds as Vault prints a lease duration: `30s`, `1m30s`, `1h`, `768h`.
pub(crate) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// An answer's rows as `vault read` prints them: the lease first when there is one, then the
/// data's keys, sorted.
pub(crate) fn answer_rows(body: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(id) = body
        .get("lease_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let secs = body
            .get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        out.push(("lease_id".into(), id.to_owned()));
        out.push(("lease_duration".into(), duration(secs)));
        out.push((
            "lease_renewable".into(),
            cell(body.get("renewable").unwrap_or(&Value::Bool(false))),
        ));
    }
    out.extend(rows(body.get("data")));
    out
}

/// Vault's `warnings`, on standard error.
pub(crate) fn warnings(body: &Value) {
    if let Some(w) = body
        .get("warnings")
        .and_then(Value::as_array)
        .filter(|w| !w.is_empty())
    {
        eprintln!("WARNING! The following warnings were returned from Sigil:\n");
        for line in w {
            eprintln!("  * {}\n", cell(line));
        }
    }
}

/// `-format=json` (pretty) or `-format=yaml`; a table is the caller's to print.
pub(crate) fn structured(format: Format, v: &Value) {
    match format {
        Format::Yaml => print!("{}", yaml(v)),
        Format::Json | Format::Table => println!(
            "{}",
            serde_json::to_string_pretty(v).expect("JSON serializes")
        ),
    }
}

/// A JSON value as YAML (1.2, block style). Every string and key is written double-quoted with
/// JSON's escapes, which YAML reads the same way: no value can turn into another type
/// (`"no"`, `"1e3"`, `"null"` stay strings) or break the layout (newlines stay `\n`).
pub(crate) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_block(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_block(v, 0, &mut out),
        _ => {
            out.push_str(&yaml_scalar(v));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        // JSON's string, number, true, false and null are YAML's too.
        v => v.to_string(),
    }
}

/// A non-empty mapping or sequence, each entry on its own line at `indent`.
fn yaml_block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut entry = |prefix: String, value: &Value| {
        out.push_str(&pad);
        out.push_str(&prefix);
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                yaml_block(value, indent + 2, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_block(value, indent + 2, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    };
    match v {
        Value::Object(m) => {
            for (k, value) in m {
                entry(format!("{}:", Value::String(k.clone())), value);
            }
        }
        Value::Array(a) => {
            for value in a {
                entry("-".to_owned(), value);
            }
        }
        _ => {}
    }
}

/// Vault's list output: `Keys` then one per line.
pub(crate) fn keys(v: &Value) {
    println!("Keys\n----");
    if let Some(keys) = v.pointer("/data/keys").and_then(Value::as_array) {
        for k in keys {
            println!("{}", cell(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_types_and_layout() {
        let v = serde_json::json!({
            "s": "no", "n": 1, "f": 1.5, "t": true, "z": null, "multi": "a\nb: c",
            "list": ["x", 2, {"k": "v"}, []], "empty": {}, "nested": {"a": {"b": [1]}}
        });
        let text = yaml(&v);
        // Keys in serde_json's (sorted) order.
        let expected = [
            r#""empty": {}"#,
            r#""f": 1.5"#,
            r#""list":"#,
            r#"  - "x""#,
            r#"  - 2"#,
            r#"  -"#,
            r#"    "k": "v""#,
            r#"  - []"#,
            r#""multi": "a\nb: c""#,
            r#""n": 1"#,
            r#""nested":"#,
            r#"  "a":"#,
            r#"    "b":"#,
            r#"      - 1"#,
            r#""s": "no""#,
            r#""t": true"#,
            r#""z": null"#,
        ];
        assert_eq!(text, expected.join("\n") + "\n");
        assert_eq!(yaml(&serde_json::json!("x")), "\"x\"\n");
        assert_eq!(yaml(&serde_json::json!([])), "[]\n");
    }
}
