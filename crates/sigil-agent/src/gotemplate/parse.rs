//! The parser: tokens into a tree of text, actions and control structures (`if`, `with`,
//! `range`, each with `else` and `else if`/`else with`, `break`, `continue`), pipelines of
//! commands, and variables declared and assigned as Go scopes them (to the `end` of the
//! structure they are declared in).

use serde_json::Value;

use super::lex::{Tok, Token};

/// Structures nested deeper than this (or parentheses) are refused: the parser recurses.
const MAX_DEPTH: usize = 100;

/// A node of the tree.
#[derive(Debug)]
pub(super) enum Node {
    /// Text and the line it starts on.
    Text(String, usize),
    /// `{{ pipeline }}`: printed unless it declares or assigns a variable.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// `if`/`with`/`range`: the pipeline, the body, the `else` part.
#[derive(Debug)]
pub(super) struct Branch {
    pub(super) pipe: Pipe,
    pub(super) body: Vec<Node>,
    pub(super) otherwise: Vec<Node>,
}

/// A pipeline: variables it declares (`:=`) or assigns (`=`), then commands joined by `|`.
#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) line: usize,
    pub(super) vars: Vec<String>,
    pub(super) assign: bool,
    pub(super) cmds: Vec<Cmd>,
}

/// A command: a function and its arguments, or one operand.
#[derive(Debug)]
pub(super) struct Cmd {
    pub(super) args: Vec<Arg>,
}

/// An operand.
#[derive(Debug)]
pub(super) enum Arg {
    /// `.` or `.a.b` (fields of dot).
    Dot(Vec<String>),
    /// `$x` or `$x.a.b`.
    Var(String, Vec<String>),
    /// A literal.
    Lit(Value),
    /// A function (called, with the command's arguments when it comes first).
    Func(String),
    /// `(pipeline)` and fields of its result.
    Sub(Box<Pipe>, Vec<String>),
}

/// What ended a list of nodes: `end` or `else`, and its line; `None` at the end of input.
type Ending = Option<(String, usize)>;

struct Parser<'a> {
    toks: &'a [Token],
    at: usize,
    funcs: &'a dyn Fn(&str) -> bool,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    /// How many `range` bodies enclose the current node.
    ranges: usize,
    depth: usize,
}

/// Parses `toks`; `is_func` says whether a name is a function the template may call.
pub(super) fn parse(toks: &[Token], is_func: &dyn Fn(&str) -> bool) -> Result<Vec<Node>, String> {
    let mut p = Parser {
        toks,
        at: 0,
        funcs: is_func,
        vars: vec!["$".into()],
        ranges: 0,
        depth: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        None => Ok(nodes),
        Some((word, line)) => Err(format!("line {line}: unexpected {{{{{word}}}}}")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.at)
            .or(self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn expect_close(&mut self, what: &str) -> Result<(), String> {
        match self.next() {
            Some(Token {
                tok: Tok::Close, ..
            }) => Ok(()),
            Some(t) => Err(format!(
                "line {}: unexpected {} in {what}",
                t.line,
                describe(&t.tok)
            )),
            None => Err(format!("line {}: unclosed action", self.line())),
        }
    }

    /// Nodes up to an `{{end}}`, `{{else …}}` or the end of input; says which ended them
    /// (the keyword and its line), leaving `else`'s remainder unread.
    fn list(&mut self) -> Result<(Vec<Node>, Ending), String> {
        let mut nodes = Vec::new();
        while let Some(t) = self.next() {
            match t.tok {
                Tok::Text(s) => nodes.push(Node::Text(s, t.line)),
                Tok::Open => {
                    let line = t.line;
                    if let Some(Token {
                        tok: Tok::Ident(word),
                        ..
                    }) = self.peek().cloned()
                    {
                        match word.as_str() {
                            "end" => {
                                self.at += 1;
                                self.expect_close("end")?;
                                return Ok((nodes, Some(("end".into(), line))));
                            }
                            "else" => {
                                self.at += 1;
                                return Ok((nodes, Some(("else".into(), line))));
                            }
                            "if" | "with" | "range" => {
                                self.at += 1;
                                nodes.push(self.control(&word, line)?);
                                continue;
                            }
                            "break" | "continue" => {
                                self.at += 1;
                                self.expect_close(&word)?;
                                if self.ranges == 0 {
                                    return Err(format!(
                                        "line {line}: {{{{{word}}}}} outside range"
                                    ));
                                }
                                nodes.push(match word.as_str() {
                                    "break" => Node::Break,
                                    _ => Node::Continue,
                                });
                                continue;
                            }
                            "define" | "template" | "block" => {
                                return Err(format!(
                                    "line {line}: {{{{{word}}}}} is not supported (one template per file)"
                                ));
                            }
                            _ => {}
                        }
                    }
                    let pipe = self.pipe(line, false)?;
                    self.expect_close("command")?;
                    nodes.push(Node::Action(pipe));
                }
                other => {
                    return Err(format!("line {}: unexpected {}", t.line, describe(&other)));
                }
            }
        }
        Ok((nodes, None))
    }

    /// `if`/`with`/`range` after its keyword, through its `{{end}}`.
    fn control(&mut self, word: &str, line: usize) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("line {line}: structures nested too deep"));
        }
        let scope = self.vars.len();
        let pipe = self.pipe(line, word == "range")?;
        self.expect_close(word)?;
        if word == "range" {
            self.ranges += 1;
        }
        let (body, end) = self.list()?;
        if word == "range" {
            self.ranges -= 1;
        }
        let otherwise = match end {
            None => return Err(format!("line {line}: {{{{{word}}}}} has no {{{{end}}}}")),
            Some((e, _)) if e == "end" => Vec::new(),
            Some((_, else_line)) => self.else_part(word, else_line)?,
        };
        self.vars.truncate(scope);
        self.depth -= 1;
        let branch = Branch {
            pipe,
            body,
            otherwise,
        };
        Ok(match word {
            "if" => Node::If(branch),
            "with" => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    /// After `{{else`: `}}` and nodes to `{{end}}`, or `if …`/`with …` (a chain ending at the
    /// same `{{end}}`).
    fn else_part(&mut self, word: &str, line: usize) -> Result<Vec<Node>, String> {
        if let Some(Token {
            tok: Tok::Ident(next),
            ..
        }) = self.peek().cloned()
            && (next == "if" || next == "with")
        {
            self.at += 1;
            // `else if` inside a `range`'s else part is outside the loop body.
            return Ok(vec![self.control(&next, line)?]);
        }
        self.expect_close("else")?;
        let (nodes, end) = self.list()?;
        match end {
            Some((e, _)) if e == "end" => Ok(nodes),
            Some((_, l)) => Err(format!("line {l}: a second {{{{else}}}} in {{{{{word}}}}}")),
            None => Err(format!("line {line}: {{{{{word}}}}} has no {{{{end}}}}")),
        }
    }

    /// A pipeline, with its declaration (`range` may declare two variables).
    fn pipe(&mut self, line: usize, range: bool) -> Result<Pipe, String> {
        // Errors name the line the pipeline starts on (an action may span lines).
        let line = match self.peek() {
            Some(t) if !matches!(t.tok, Tok::Close) => t.line,
            _ => line,
        };
        let mut vars = Vec::new();
        let mut assign = false;
        // `$x :=`, `$x =`, `$i, $v :=` (range only).
        let decl_end = self.toks[self.at..].iter().position(|t| {
            matches!(
                t.tok,
                Tok::Declare | Tok::Assign | Tok::Close | Tok::Pipe | Tok::RParen | Tok::LParen
            )
        });
        if let Some(n) = decl_end
            && matches!(self.toks[self.at + n].tok, Tok::Declare | Tok::Assign)
        {
            let names = &self.toks[self.at..self.at + n];
            let ok = match names {
                [
                    Token {
                        tok: Tok::Var(a), ..
                    },
                ] => {
                    vars.push(a.clone());
                    true
                }
                [
                    Token {
                        tok: Tok::Var(a), ..
                    },
                    Token {
                        tok: Tok::Comma, ..
                    },
                    Token {
                        tok: Tok::Var(b), ..
                    },
                ] if range => {
                    vars.extend([a.clone(), b.clone()]);
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(format!("line {line}: a bad variable declaration"));
            }
            assign = matches!(self.toks[self.at + n].tok, Tok::Assign);
            self.at += n + 1;
        }
        let mut cmds = Vec::new();
        loop {
            cmds.push(self.command(line)?);
            match self.peek().map(|t| &t.tok) {
                Some(Tok::Pipe) => {
                    self.at += 1;
                }
                _ => break,
            }
        }
        for v in &vars {
            if assign {
                if v == "$" || !self.vars.contains(v) {
                    return Err(format!("line {line}: undefined variable {v}"));
                }
            } else {
                self.vars.push(v.clone());
            }
        }
        Ok(Pipe {
            line,
            vars,
            assign,
            cmds,
        })
    }

    /// Operands up to `|`, `)` or `}}`.
    fn command(&mut self, line: usize) -> Result<Cmd, String> {
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            if matches!(t.tok, Tok::Pipe | Tok::RParen | Tok::Close) {
                break;
            }
            if !args.is_empty() && !t.spaced && !matches!(t.tok, Tok::LParen) {
                return Err(format!(
                    "line {}: missing space before {}",
                    t.line,
                    describe(&t.tok)
                ));
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return Err(format!("line {line}: missing value for command"));
        }
        Ok(Cmd { args })
    }

    /// Field names chained right after an operand (`.a.b` with no space).
    fn fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            ..
        }) = self.peek()
        {
            fields.push(f.clone());
            self.at += 1;
        }
        fields
    }

    fn operand(&mut self) -> Result<Arg, String> {
        let t = self.next().expect("peeked");
        Ok(match t.tok {
            Tok::Dot => Arg::Dot(Vec::new()),
            Tok::Field(f) => {
                let mut chain = vec![f];
                chain.extend(self.fields());
                Arg::Dot(chain)
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(format!("line {}: undefined variable {v}", t.line));
                }
                Arg::Var(v, self.fields())
            }
            Tok::Str(s) => Arg::Lit(Value::String(s)),
            Tok::Number(n) => Arg::Lit(super::value::parse_number(&n).expect("lexed as a number")),
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Lit(Value::Null),
                _ if (self.funcs)(&name) => Arg::Func(name),
                _ => return Err(format!("line {}: function {name:?} not defined", t.line)),
            },
            Tok::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("line {}: parentheses nested too deep", t.line));
                }
                let pipe = self.pipe(t.line, false)?;
                self.depth -= 1;
                match self.next() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => {}
                    _ => return Err(format!("line {}: unclosed left paren", t.line)),
                }
                Arg::Sub(Box::new(pipe), self.fields())
            }
            other => {
                return Err(format!(
                    "line {}: unexpected {} in operand",
                    t.line,
                    describe(&other)
                ));
            }
        })
    }
}

/// A token in an error message (text and strings are not quoted: they may be long).
fn describe(t: &Tok) -> String {
    match t {
        Tok::Text(_) => "text".into(),
        Tok::Open => "{{".into(),
        Tok::Close => "}}".into(),
        Tok::Ident(s) => format!("{s:?}"),
        Tok::Field(f) => format!(".{f}"),
        Tok::Dot => "\".\"".into(),
        Tok::Var(v) => v.clone(),
        Tok::Str(_) => "a string".into(),
        Tok::Number(n) => n.clone(),
        Tok::Pipe => "\"|\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
    }
}
