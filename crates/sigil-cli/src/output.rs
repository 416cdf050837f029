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
