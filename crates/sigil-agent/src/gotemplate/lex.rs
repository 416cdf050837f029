//! The lexer: a template's text into text runs and action tokens, as Go's text/template
//! splits them — `{{`/`}}` delimiters, `{{- ` and ` -}}` trimming the whitespace beside them,
//! `{{/* comments */}}`, and inside actions fields, variables, literals and punctuation.

/// One token of an action, or a run of text between actions.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// Text outside actions (trimmed as the markers beside it say).
    Text(String),
    /// `{{` (the start of an action).
    Open,
    /// `}}`.
    Close,
    /// A name: a function or a keyword (`if`, `range`, `end`, …).
    Ident(String),
    /// `.name` (a field of what comes before it, or of dot).
    Field(String),
    /// `.` alone.
    Dot,
    /// `$name` (`$` alone is the template's data).
    Var(String),
    /// A quoted or raw string, unescaped.
    Str(String),
    /// A number as written (`42`, `-1.5`, `0x1f`, `1e3`).
    Number(String),
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
}

/// A token, the line it starts on, and whether space separated it from the one before
/// (`.a.b` is one chain; `.a .b` two arguments).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) spaced: bool,
}

/// Splits `src` into tokens. Errors name a line and never quote the template's text beyond
/// a short token.
pub(super) fn lex(src: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut line = 1;
    // Whether the action just closed asked for the following text's leading space trimmed.
    let mut trim_next = false;
    loop {
        let (text, after) = match rest.find("{{") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        let left_trim = after.is_some_and(trim_marker);
        let mut t = text;
        if trim_next {
            t = t.trim_start_matches(is_space);
        }
        if left_trim {
            t = t.trim_end_matches(is_space);
        }
        if !t.is_empty() {
            out.push(Token {
                tok: Tok::Text(t.to_owned()),
                line,
                spaced: false,
            });
        }
        line += text.matches('\n').count();
        let Some(after) = after else {
            return Ok(out);
        };
        let body = if left_trim { &after[2..] } else { after };
        // The space of a `{{-` marker may be a newline: the action's tokens are a line on.
        let lead = usize::from(left_trim && after.as_bytes()[1] == b'\n');
        let (rest_after, right_trim, lines) = action(body, line, lead, &mut out)?;
        line += lines;
        trim_next = right_trim;
        rest = rest_after;
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Whether the text after `{{` starts with the trim marker (`-` and a space).
fn trim_marker(after: &str) -> bool {
    let mut c = after.chars();
    c.next() == Some('-') && c.next().is_some_and(is_space)
}

/// Where an action closes at the start of `s`: `}}`, or ` -}}` (space, trim), as
/// (length, trims).
fn close_at(s: &str) -> Option<(usize, bool)> {
    if s.starts_with("}}") {
        return Some((2, false));
    }
    let mut c = s.chars();
    let first = c.next()?;
    if is_space(first) && s[first.len_utf8()..].starts_with("-}}") {
        return Some((first.len_utf8() + 3, true));
    }
    None
}

/// Lexes one action (after `{{` and its trim marker, which held `lead` newlines) into `out`;
/// returns what follows it, whether it trims the text after it, and the newlines it spans.
fn action<'a>(
    body: &'a str,
    line: usize,
    lead: usize,
    out: &mut Vec<Token>,
) -> Result<(&'a str, bool, usize), String> {
    // A comment: `/*` right after the delimiter, `*/` right before the closing one.
    if let Some(comment) = body.strip_prefix("/*") {
        let end = comment
            .find("*/")
            .ok_or_else(|| format!("line {line}: a comment is never closed"))?;
        let lines = lead + comment[..end].matches('\n').count();
        let after = &comment[end + 2..];
        let (len, trims) = close_at(after)
            .ok_or_else(|| format!("line {}: a comment must end with */}}}}", line + lines))?;
        return Ok((
            &after[len..],
            trims,
            lines + after[..len].matches('\n').count(),
        ));
    }
    out.push(Token {
        tok: Tok::Open,
        line,
        spaced: false,
    });
    let mut s = body;
    let mut lines = lead;
    let mut spaced = true;
    loop {
        let at = line + lines;
        if let Some((len, trims)) = close_at(s) {
            out.push(Token {
                tok: Tok::Close,
                line: at,
                spaced,
            });
            return Ok((&s[len..], trims, lines + s[..len].matches('\n').count()));
        }
        let Some(c) = s.chars().next() else {
            return Err(format!(
                "line {line}: an action opened with {{{{ is never closed"
            ));
        };
        if is_space(c) {
            if c == '\n' {
                lines += 1;
            }
            s = &s[1..];
            spaced = true;
            continue;
        }
        if s.starts_with("{{") {
            return Err(format!(
                "line {at}: an action opens before the one on line {line} is closed"
            ));
        }
        let (tok, len) = token(s, at)?;
        lines += s[..len].matches('\n').count();
        out.push(Token {
            tok,
            line: at,
            spaced,
        });
        spaced = false;
        s = &s[len..];
    }
}

/// The token at the start of `s` (not space, not a delimiter) and its length in bytes.
fn token(s: &str, line: usize) -> Result<(Tok, usize), String> {
    let c = s.chars().next().expect("not empty");
    let word = |from: usize| {
        from + s[from..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len() - from)
    };
    Ok(match c {
        '|' => (Tok::Pipe, 1),
        '(' => (Tok::LParen, 1),
        ')' => (Tok::RParen, 1),
        ',' => (Tok::Comma, 1),
        '=' => (Tok::Assign, 1),
        ':' if s.starts_with(":=") => (Tok::Declare, 2),
        '"' => quoted(s, line)?,
        '`' => {
            let end = s[1..]
                .find('`')
                .ok_or_else(|| format!("line {line}: a raw string is never closed"))?;
            // Go drops carriage returns from raw strings.
            (Tok::Str(s[1..1 + end].replace('\r', "")), end + 2)
        }
        '$' => {
            let end = word(1);
            (Tok::Var(s[..end].to_owned()), end)
        }
        '.' if s[1..].starts_with(|c: char| c.is_ascii_digit()) => number(s, line)?,
        '.' => {
            let end = word(1);
            match end {
                1 => (Tok::Dot, 1),
                _ => (Tok::Field(s[1..end].to_owned()), end),
            }
        }
        '-' | '+' | '0'..='9' => number(s, line)?,
        c if c.is_alphabetic() || c == '_' => {
            let end = word(0);
            (Tok::Ident(s[..end].to_owned()), end)
        }
        '\'' => {
            return Err(format!(
                "line {line}: character constants ('x') are not supported"
            ));
        }
        _ => return Err(format!("line {line}: unexpected {c:?} in an action")),
    })
}

fn number(s: &str, line: usize) -> Result<(Tok, usize), String> {
    let end = s
        .char_indices()
        .skip(1)
        .find(|&(i, c)| {
            let prev = s[..i].chars().last().unwrap_or(' ');
            !(c.is_ascii_alphanumeric()
                || c == '.'
                || c == '_'
                || ((c == '-' || c == '+') && matches!(prev, 'e' | 'E')))
        })
        .map_or(s.len(), |(i, _)| i);
    let text = &s[..end];
    if super::value::parse_number(text).is_none() {
        return Err(format!("line {line}: {text:?} is not a number"));
    }
    Ok((Tok::Number(text.to_owned()), end))
}

/// A double-quoted string with Go's escapes (`\n`, `\t`, `\\`, `\"`, `\xNN` and `\NNN`
/// bytes, `\uNNNN`, `\UNNNNNNNN`, …); the bytes must be UTF-8.
fn quoted(s: &str, line: usize) -> Result<(Tok, usize), String> {
    let mut out: Vec<u8> = Vec::new();
    let mut chars = s.char_indices().skip(1).peekable();
    let unclosed = || format!("line {line}: a quoted string is never closed");
    let bad = || format!("line {line}: a bad escape in a quoted string");
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let text = String::from_utf8(out)
                    .map_err(|_| format!("line {line}: a quoted string is not UTF-8"))?;
                return Ok((Tok::Str(text), i + 1));
            }
            '\n' => return Err(unclosed()),
            '\\' => {
                let (_, e) = chars.next().ok_or_else(unclosed)?;
                let mut digits = |n: usize, radix: u32| -> Result<u32, String> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        let d = chars
                            .next()
                            .and_then(|(_, c)| c.to_digit(radix))
                            .ok_or_else(bad)?;
                        v = v * radix + d;
                    }
                    Ok(v)
                };
                let simple = match e {
                    'n' => Some(b'\n'),
                    't' => Some(b'\t'),
                    'r' => Some(b'\r'),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'v' => Some(0x0b),
                    _ => None,
                };
                match (simple, e) {
                    (Some(b), _) => out.push(b),
                    (None, 'x') => out.push(u8::try_from(digits(2, 16)?).map_err(|_| bad())?),
                    (None, '0'..='7') => {
                        let first = e.to_digit(8).unwrap_or(0);
                        let v = first * 64 + digits(2, 8)?;
                        out.push(u8::try_from(v).map_err(|_| bad())?);
                    }
                    (None, 'u' | 'U') => {
                        let c = char::from_u32(digits(if e == 'u' { 4 } else { 8 }, 16)?)
                            .ok_or_else(bad)?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => {
                        return Err(format!(
                            "line {line}: unknown escape \\{e} in a quoted string"
                        ));
                    }
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Err(unclosed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn text_actions_and_trim_markers() {
        assert_eq!(
            toks("a {{ .x }} b"),
            [
                Tok::Text("a ".into()),
                Tok::Open,
                Tok::Field("x".into()),
                Tok::Close,
                Tok::Text(" b".into())
            ]
        );
        assert_eq!(
            toks("a \n {{- .x -}} \n b"),
            [
                Tok::Text("a".into()),
                Tok::Open,
                Tok::Field("x".into()),
                Tok::Close,
                Tok::Text("b".into())
            ]
        );
        // `{{-3}}` is the number -3, not a trim marker.
        assert_eq!(
            toks("a {{-3}}"),
            [
                Tok::Text("a ".into()),
                Tok::Open,
                Tok::Number("-3".into()),
                Tok::Close
            ]
        );
        assert_eq!(
            toks("a {{/* c\n */}} b"),
            [Tok::Text("a ".into()), Tok::Text(" b".into())]
        );
        assert_eq!(
            toks("a {{- /* c */ -}} b"),
            [Tok::Text("a".into()), Tok::Text("b".into())]
        );
    }

    #[test]
    fn tokens_in_actions() {
        assert_eq!(
            toks(r#"{{ $v := index .a.b "k\n" `r\n` 1.5 | f (g) }}"#),
            [
                Tok::Open,
                Tok::Var("$v".into()),
                Tok::Declare,
                Tok::Ident("index".into()),
                Tok::Field("a".into()),
                Tok::Field("b".into()),
                Tok::Str("k\n".into()),
                Tok::Str("r\\n".into()),
                Tok::Number("1.5".into()),
                Tok::Pipe,
                Tok::Ident("f".into()),
                Tok::LParen,
                Tok::Ident("g".into()),
                Tok::RParen,
                Tok::Close
            ]
        );
        let spaced: Vec<bool> = lex("{{ .a.b .c }}")
            .unwrap()
            .iter()
            .map(|t| t.spaced)
            .collect();
        assert_eq!(spaced, [false, true, false, true, true]);
        assert_eq!(
            toks(r#"{{ "}}" }}"#),
            [Tok::Open, Tok::Str("}}".into()), Tok::Close]
        );
    }

    #[test]
    fn broken_actions_are_errors_with_a_line() {
        for (src, want) in [
            ("a\n{{ .x", "line 2"),
            ("{{ \"abc }}", "never closed"),
            ("{{ .a {{ .b }}", "opens before"),
            ("{{/* x }}", "comment"),
            ("{{/* x */ }}", "*/}}"),
            ("{{ 'a' }}", "character"),
            ("{{ 1x }}", "not a number"),
            ("{{ \"\\q\" }}", "escape"),
            ("{{ # }}", "unexpected"),
        ] {
            let err = lex(src).unwrap_err();
            assert!(err.contains(want), "{src:?}: {err}");
        }
    }
}
