//! Vault-like table and JSON output.

use serde_json::Value;

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

/// Pretty JSON.
pub(crate) fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
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
