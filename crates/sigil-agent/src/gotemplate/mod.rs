//! Go's text/template language, the part Vault Agent and consul-template users write, over
//! JSON values: text and `{{ actions }}` with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines of commands (`a | b`), fields (`.Data.data.x`), variables (`$x := …`,
//! `$x = …`, `$`), literals (strings, raw strings, numbers, `true`, `false`, `nil`),
//! parentheses; `if`, `with`, `range` (lists, maps in key order, integers), each with `else`
//! and `else if`/`else with`, `break`, `continue`; Go's built-in functions (but `html`,
//! `js`, `urlquery`, `slice` and `call`) and the caller's own.
//!
//! It exists because the Go-template crate we used ranged over maps in hash order (a
//! re-render changed the file for nothing) and hung on an unclosed action. Not here:
//! `define`, `template` and `block`, methods, character constants, and custom delimiters.
//! Errors name the line and what failed, never a value (the values are secrets).

mod builtins;
mod exec;
mod lex;
mod parse;
mod value;

use serde_json::Value;
use zeroize::Zeroizing;

pub use exec::Funcs;

/// A parsed template.
pub struct Template {
    name: String,
    nodes: Vec<parse::Node>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Parses `text`, which may call Go's built-ins and `funcs`; `name` begins errors.
    pub fn parse(name: &str, text: &str, funcs: &[&str]) -> Result<Template, String> {
        let fail = |e: String| format!("template {name}: {e}");
        let tokens = lex::lex(text).map_err(fail)?;
        let is_func = |n: &str| builtins::NAMES.contains(&n) || funcs.contains(&n);
        let nodes = parse::parse(&tokens, &is_func).map_err(fail)?;
        Ok(Template {
            name: name.to_owned(),
            nodes,
        })
    }

    /// Runs the template with `dot` as its data, calling `funcs` for the caller's functions.
    pub fn execute(&self, dot: &Value, funcs: &mut dyn Funcs) -> Result<Zeroizing<String>, String> {
        exec::execute(&self.nodes, dot, funcs)
            .map_err(|(line, e)| format!("template {}: line {line}: {e}", self.name))
    }
}

#[cfg(test)]
mod tests;
