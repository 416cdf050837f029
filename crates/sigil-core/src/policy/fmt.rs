//! `sigil policy fmt`: a policy file laid out canonically, comments kept.
//!
//! The policy is checked first with the server's parser; then each line is re-indented by two
//! spaces per open brace or bracket, `key=value` gets one space on each side of `=`, a block's
//! `{` one space before it, trailing whitespace and repeated blank lines go. Lines inside a
//! `/* … */` comment are left as written. The result must parse to exactly the same syntax
//! tree as the input, or nothing is returned: formatting never changes what a policy means.
//! A JSON policy is checked and returned as it is.

use super::parse::{PolicyError, parse_policy};
use crate::vault_hcl;

/// The canonical layout of `text`, a valid policy (HCL or JSON).
pub fn format_policy(text: &str) -> Result<String, PolicyError> {
    parse_policy("fmt", text)?;
    if text.trim_start().starts_with('{') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut blank_run = 0;
    for raw in text.lines() {
        let line = raw.trim_end();
        if in_comment {
            // Inside `/* … */`: as written.
            let scan = scan(line, true);
            in_comment = scan.in_comment;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            blank_run += 1;
            continue;
        }
        if blank_run > 0 && !out.is_empty() {
            out.push('\n');
        }
        blank_run = 0;
        let scan = scan(trimmed, false);
        let indent = depth.saturating_sub(scan.leading_closers);
        out.push_str(&"  ".repeat(indent));
        out.push_str(&normalize(trimmed));
        out.push('\n');
        depth = (depth + scan.opens).saturating_sub(scan.closes);
        in_comment = scan.in_comment;
    }
    let before =
        vault_hcl::parse(text).map_err(|e| PolicyError(format!("HCL syntax error: {e}")))?;
    match vault_hcl::parse(&out) {
        Ok(after) if after == before => Ok(out),
        _ => Err(PolicyError(
            "this file's layout could not be formatted without changing it; it is left as it is"
                .into(),
        )),
    }
}

/// What a line holds outside strings and comments.
struct Scan {
    opens: usize,
    closes: usize,
    /// Closing braces or brackets before anything else on the line.
    leading_closers: usize,
    /// The line ends inside a `/* … */` comment.
    in_comment: bool,
}

fn scan(line: &str, mut in_comment: bool) -> Scan {
    let mut s = Scan {
        opens: 0,
        closes: 0,
        leading_closers: 0,
        in_comment,
    };
    let mut in_string = false;
    let mut leading = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_comment = false;
            }
            continue;
        }
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '#' => break,
            '/' if chars.peek() == Some(&'/') => break,
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                in_comment = true;
            }
            '{' | '[' => s.opens += 1,
            '}' | ']' => {
                s.closes += 1;
                if leading {
                    s.leading_closers += 1;
                }
            }
            _ => {}
        }
        if !matches!(c, '}' | ']' | ' ' | '\t' | ',') {
            leading = false;
        }
    }
    s.in_comment = in_comment;
    s
}

/// One space around the first `=` and before a `{`, outside strings and comments.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 4);
    let mut in_string = false;
    let mut seen_equals = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            // A comment: the rest of the line as written.
            '#' => {
                out.push(c);
                out.extend(chars.by_ref());
            }
            '/' if matches!(chars.peek(), Some('/' | '*')) => {
                out.push(c);
                out.extend(chars.by_ref());
            }
            '=' if !seen_equals => {
                seen_equals = true;
                let kept = out.trim_end().len();
                out.truncate(kept);
                out.push_str(" = ");
                while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    chars.next();
                }
            }
            '{' if !out.is_empty() && !out.ends_with([' ', '[', '{']) => out.push_str(" {"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_and_keeps_comments() {
        let text = "\n\n# Read the app's secrets\npath \"secret/data/app\"{\ncapabilities=[\"read\",\n    \"list\"]   \n     }\n\n\n\n/* ops:\n   everything */\npath \"ops/*\" {   policy = \"write\"  # legacy\n}\npath \"a\" { capabilities = [\"read\"] }\n";
        let want = "# Read the app's secrets\npath \"secret/data/app\" {\n  capabilities = [\"read\",\n    \"list\"]\n}\n\n/* ops:\n   everything */\npath \"ops/*\" {   policy = \"write\"  # legacy\n}\npath \"a\" { capabilities = [\"read\"] }\n";
        let got = format_policy(text).unwrap();
        assert_eq!(got, want);
        // Formatting what is formatted changes nothing.
        assert_eq!(format_policy(&got).unwrap(), got);
    }

    #[test]
    fn strings_with_braces_equals_and_hashes_are_left_alone() {
        let text =
            "path \"secret/{{identity.name}}/#=x\" {\n  capabilities=[\"read\"] # a { b\n}\n";
        let got = format_policy(text).unwrap();
        assert!(got.contains("\"secret/{{identity.name}}/#=x\" {"), "{got}");
        assert!(got.contains("  capabilities = [\"read\"]"), "{got}");
        assert_eq!(format_policy(&got).unwrap(), got);
    }

    #[test]
    fn fail_invalid_policies_and_keep_json() {
        assert!(format_policy("path \"a\" { capabilities = [\"fly\"] }").is_err());
        assert!(format_policy("path \"a\" {").is_err());
        let json = "{\"path\": {\"a\": {\"capabilities\": [\"read\"]}}}";
        assert_eq!(format_policy(json).unwrap(), json);
    }
}
