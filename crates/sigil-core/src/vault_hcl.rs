//! The configuration language of Vault's ACL and password policies: HCL version 1 (the
//! language Vault and OpenBao parse policies with) and its JSON form.
//!
//! HCL 1 differs from HCL 2 in ways policy authors rely on: items in a block may share a line
//! or be separated by commas (`{ policy = "read", capabilities = ["read"] }`), and a document
//! whose first character is `{` is JSON (`{"path": {"secret/*": {"capabilities": ["read"]}}}`).
//! This module reads the syntax into a small tree ([`Item`], [`Value`]) without giving it a
//! meaning; the policy parsers decide what is allowed where.
//!
//! Supported: `#`, `//` and `/* … */` comments; identifiers; double-quoted strings with JSON's
//! escapes; numbers; `true`, `false` and (JSON) `null`; lists; objects; an item with several
//! keys (`path "secret/*" { … }`), which HCL treats as nested single-key objects. Refused with
//! a message: heredocs, unknown escapes, newlines inside strings, anything after the document.
//! Items are kept in order and never merged, so a repeated key is visible to the caller.

use std::fmt;

/// The deepest nesting of lists and objects read (a policy needs 2, JSON 3).
const MAX_DEPTH: usize = 16;

/// A syntax error, with the line and column it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column (in characters).
    pub(crate) column: usize,
    /// What was wrong.
    pub(crate) message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// `keys… = value` or `keys… { … }`: one or more keys, then the value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// The keys: `["path", "secret/*"]` for `path "secret/*" { … }`.
    pub(crate) keys: Vec<String>,
    /// The value (an object for a block).
    pub(crate) value: Value,
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A string.
    String(String),
    /// A number, as written.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// JSON's `null`.
    Null,
    /// `[…]`.
    List(Vec<Value>),
    /// `{…}`: items in order.
    Object(Vec<Item>),
}

impl Value {
    /// The value as a whole number, if it is one.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// The blocks of a labelled block type, whichever way they are written: `path "a" { … }` (two
/// keys), HCL's nested form `path = { "a" = { … } }`, and JSON's `{"path": {"a": { … }}}`,
/// `{"path": [{"a": { … }}]}` and `{"path": {"a": [{ … }]}}`. Takes an item whose first key
/// is the block type; returns (label, body) pairs in order, or `None` when the item is not
/// shaped as labelled blocks with one label each.
pub(crate) fn labelled_blocks(item: Item) -> Option<Vec<(String, Vec<Item>)>> {
    fn bodies(value: Value) -> Option<Vec<Vec<Item>>> {
        match value {
            Value::Object(body) => Some(vec![body]),
            Value::List(values) => values
                .into_iter()
                .map(|v| match v {
                    Value::Object(body) => Some(body),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
    let mut keys = item.keys.into_iter().skip(1);
    match (keys.next(), keys.next()) {
        (Some(label), None) => Some(vec![(label, as_object(item.value)?)]),
        (Some(_), Some(_)) => None,
        (None, _) => {
            let mut out = Vec::new();
            for inner in bodies(item.value)?.into_iter().flatten() {
                let [label] = <[String; 1]>::try_from(inner.keys).ok()?;
                for body in bodies(inner.value)? {
                    out.push((label.clone(), body));
                }
            }
            Some(out)
        }
    }
}

fn as_object(value: Value) -> Option<Vec<Item>> {
    match value {
        Value::Object(items) => Some(items),
        _ => None,
    }
}

/// Parses a document: JSON when its first non-blank character is `{`, HCL 1 otherwise.
/// Returns the top-level items.
pub(crate) fn parse(text: &str) -> Result<Vec<Item>, SyntaxError> {
    let mut p = Parser {
        text,
        pos: 0,
        json: false,
    };
    p.skip_blank()?;
    if p.peek() == Some('{') {
        p.json = true;
        p.bump();
        let items = p.items(Some('}'), 1)?;
        p.skip_blank()?;
        if p.peek().is_some() {
            return Err(p.error("unexpected text after the JSON document"));
        }
        return Ok(items);
    }
    p.items(None, 0)
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// JSON: `:` separates a key from its value, keys are strings, one key per item.
    json: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        let before = &self.text[..self.pos];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        SyntaxError {
            line,
            column,
            message: message.into(),
        }
    }

    /// Skips white space and comments.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.error("");
                    match self.text[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => {
                            return Err(SyntaxError {
                                message: "a /* comment is not closed".into(),
                                ..start
                            });
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Items up to `end` (`}`), or to the end of the text.
    fn items(&mut self, end: Option<char>, depth: usize) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                None if end.is_none() => return Ok(items),
                None => return Err(self.error("expected '}' before the end of the text")),
                Some(c) if Some(c) == end => {
                    self.bump();
                    return Ok(items);
                }
                _ => {}
            }
            items.push(self.item(depth)?);
            self.skip_blank()?;
            if !self.json {
                // HCL allows one comma, or nothing, between items.
                if self.peek() == Some(',') {
                    self.bump();
                }
            } else {
                match self.peek() {
                    Some(',') => {
                        self.bump();
                        self.skip_blank()?;
                        if self.peek() == end {
                            return Err(self.error("a trailing comma is not JSON"));
                        }
                    }
                    c if c == end => {}
                    _ => return Err(self.error("expected ',' or '}' after a JSON member")),
                }
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item, SyntaxError> {
        let mut keys = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some('"') => keys.push(self.string()?),
                Some(c) if !self.json && (c.is_ascii_alphabetic() || c == '_') => {
                    keys.push(self.identifier())
                }
                Some('=') if !self.json && !keys.is_empty() => {
                    self.bump();
                    if keys.len() > 1 {
                        return Err(self.error("'=' after more than one key"));
                    }
                    let value = self.value(depth)?;
                    return Ok(Item { keys, value });
                }
                Some(':') if self.json && !keys.is_empty() => {
                    self.bump();
                    let value = self.value(depth)?;
                    return Ok(Item { keys, value });
                }
                Some('{') if !self.json && !keys.is_empty() => {
                    let value = self.value(depth)?;
                    return Ok(Item { keys, value });
                }
                _ if keys.is_empty() => return Err(self.error("expected a key")),
                _ if self.json => return Err(self.error("expected ':' after a JSON key")),
                _ => return Err(self.error("expected '=' or '{' after a key")),
            }
            if self.json && keys.len() > 1 {
                return Err(self.error("expected ':' after a JSON key"));
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.skip_blank()?;
        match self.peek() {
            Some('"') => Ok(Value::String(self.string()?)),
            Some('{') | Some('[') if depth >= MAX_DEPTH => Err(self.error("nested too deeply")),
            Some('{') => {
                self.bump();
                Ok(Value::Object(self.items(Some('}'), depth + 1)?))
            }
            Some('[') => {
                self.bump();
                self.list(depth + 1)
            }
            Some('<') if self.peek2() == Some('<') => {
                Err(self.error("heredoc strings are not supported"))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => Ok(self.number()),
            Some(c) if c.is_ascii_alphabetic() => {
                let at = self.error("");
                match self.identifier().as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" if self.json => Ok(Value::Null),
                    other => Err(SyntaxError {
                        message: format!("unexpected {other:?} where a value was expected"),
                        ..at
                    }),
                }
            }
            Some(c) => Err(self.error(format!("unexpected {c:?} where a value was expected"))),
            None => Err(self.error("expected a value before the end of the text")),
        }
    }

    /// After `[`: values separated by commas (a trailing comma allowed outside JSON).
    fn list(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        let mut values = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some(']') {
                if self.json && !values.is_empty() {
                    return Err(self.error("a trailing comma is not JSON"));
                }
                self.bump();
                return Ok(Value::List(values));
            }
            values.push(self.value(depth)?);
            self.skip_blank()?;
            match self.bump() {
                Some(',') => {}
                Some(']') => return Ok(Value::List(values)),
                _ => return Err(self.error("expected ',' or ']' in a list")),
            }
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                self.bump();
            } else {
                break;
            }
        }
        self.text[start..self.pos].to_owned()
    }

    fn number(&mut self) -> Value {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+') {
                self.bump();
            } else {
                break;
            }
        }
        Value::Number(self.text[start..self.pos].to_owned())
    }

    /// A double-quoted string with JSON's escapes (`\uXXXX` with surrogate pairs).
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump(); // "
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("a string is not closed")),
                Some('"') => return Ok(out),
                Some('\\') => {
                    let c = match self.bump() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => self.unicode_escape()?,
                        _ => return Err(self.error("unknown escape in a string")),
                    };
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.text.get(self.pos..self.pos + 4).unwrap_or("");
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("\\u takes four hex digits"));
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("\\u takes four hex digits"))
    }

    /// After `\u`.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error("a lone surrogate in a \\u escape"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("a lone surrogate in a \\u escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("a lone surrogate in a \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn item(keys: &[&str], value: Value) -> Item {
        Item {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            value,
        }
    }

    #[test]
    fn reads_hcl1_as_vault_writes_it() {
        let text = r#"
            # comment
            // another
            /* and
               a block */
            path "secret/*" { policy = "read" capabilities = ["list",] }
            path "a" { capabilities = ["read"], policy = "deny" }
            length = 20
            rule "charset" {
              charset = "abc\"\u00e9"
              min-chars = 1
            }
        "#;
        let caps = Value::List(vec![s("list")]);
        assert_eq!(
            parse(text).unwrap(),
            vec![
                item(
                    &["path", "secret/*"],
                    Value::Object(vec![
                        item(&["policy"], s("read")),
                        item(&["capabilities"], caps)
                    ])
                ),
                item(
                    &["path", "a"],
                    Value::Object(vec![
                        item(&["capabilities"], Value::List(vec![s("read")])),
                        item(&["policy"], s("deny")),
                    ])
                ),
                item(&["length"], Value::Number("20".into())),
                item(
                    &["rule", "charset"],
                    Value::Object(vec![
                        item(&["charset"], s("abc\"é")),
                        item(&["min-chars"], Value::Number("1".into())),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn reads_json() {
        let text = r#" {"path": {"secret/*": {"capabilities": ["read", "list"]}},
                        "x": [true, null, 1.5, {"k": "\ud83d\ude00"}]} "#;
        assert_eq!(
            parse(text).unwrap(),
            vec![
                item(
                    &["path"],
                    Value::Object(vec![item(
                        &["secret/*"],
                        Value::Object(vec![item(
                            &["capabilities"],
                            Value::List(vec![s("read"), s("list")])
                        )])
                    )])
                ),
                item(
                    &["x"],
                    Value::List(vec![
                        Value::Bool(true),
                        Value::Null,
                        Value::Number("1.5".into()),
                        Value::Object(vec![item(&["k"], s("😀"))]),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn fail_malformed() {
        for (text, needle) in [
            ("path \"a\" { capabilities = [\"read\"]", "expected '}'"),
            (
                "path \"a\" { capabilities = [\"read\" \"x\"] }",
                "expected ',' or ']'",
            ),
            ("path \"a\nb\" {}", "not closed"),
            ("a = \"\\q\"", "unknown escape"),
            ("a = \"\\ud800\"", "lone surrogate"),
            ("a = \"\\u12\"", "four hex digits"),
            ("a = <<EOF\nx\nEOF", "heredoc"),
            ("a = nope", "unexpected \"nope\""),
            ("a = null", "unexpected \"null\""),
            ("/* open", "not closed"),
            ("= 1", "expected a key"),
            ("a = 1,, b = 2", "expected a key"),
            ("{\"a\": 1,, \"b\": 2}", "expected a key"),
            ("a b = 1", "more than one key"),
            ("a \"b\"", "expected '=' or '{'"),
            ("{\"a\": 1,}", "trailing comma"),
            ("{\"a\": [1,]}", "trailing comma"),
            ("{\"a\": 1 \"b\": 2}", "expected ','"),
            ("{a: 1}", "expected a key"),
            ("{\"a\" \"b\": 1}", "expected ':'"),
            ("{\"a\" = 1}", "expected ':'"),
            ("{\"a\": 1} x", "after the JSON document"),
            (&format!("a = {}", "[".repeat(40)), "nested too deeply"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn labelled_blocks_in_every_form() {
        let body = |c: &str| vec![item(&["capabilities"], Value::List(vec![s(c)]))];
        let want = vec![
            ("a".to_owned(), body("read")),
            ("b".to_owned(), body("list")),
        ];
        for text in [
            r#"path "a" { capabilities = ["read"] } path "b" { capabilities = ["list"] }"#,
            r#"path = { "a" = { capabilities = ["read"] }, b { capabilities = ["list"] } }"#,
            r#"{"path": {"a": {"capabilities": ["read"]}, "b": {"capabilities": ["list"]}}}"#,
            r#"{"path": [{"a": {"capabilities": ["read"]}}, {"b": [{"capabilities": ["list"]}]}]}"#,
        ] {
            let got: Vec<_> = parse(text)
                .unwrap()
                .into_iter()
                .flat_map(|i| labelled_blocks(i).expect(text))
                .collect();
            assert_eq!(got, want, "{text}");
        }
        for text in [
            r#"path "a" "b" { capabilities = ["read"] }"#,
            r#"path { capabilities = ["read"] }"#,
            r#"path = "a""#,
            r#"{"path": {"a": "read"}}"#,
            r#"{"path": ["a"]}"#,
        ] {
            let item = parse(text).unwrap().remove(0);
            assert_eq!(labelled_blocks(item), None, "{text}");
        }
    }

    #[test]
    fn errors_say_where() {
        let e = parse("a = 1\nb = %").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5), "{e}");
    }
}
