//! Execution: walks the tree with a dot and variables, as Go's text/template does. Errors
//! name the line and what failed (a field, a function, a type), never a value: the values
//! here are secrets.

use serde_json::Value;
use zeroize::Zeroizing;

use super::builtins;
use super::parse::{Arg, Branch, Cmd, Node, Pipe};
use super::value::{print_top, truthy, type_name};

/// What one execution may do: steps (nodes, loop iterations), bytes of output, and bytes of
/// values made or copied (every operand and function result is weighed), so a template cannot
/// keep the agent busy or fill its memory (`range 1000000000`, `$a = print $a $a` in a loop).
const MAX_STEPS: u64 = 10_000_000;
const MAX_OUTPUT: usize = 64 << 20;
const MAX_WORK: usize = 256 << 20;

type Fail = (usize, String);

/// The caller's functions (`secret`, `toJSON`, …).
pub trait Funcs {
    /// Calls `name` (one of the names given to [`super::Template::parse`]) with `args`.
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String>;
}

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    out: Zeroizing<String>,
    vars: Vec<(String, Value)>,
    funcs: &'a mut dyn Funcs,
    steps: u64,
    work: usize,
}

/// Runs `nodes` with `dot` (also `$`).
pub(super) fn execute(
    nodes: &[Node],
    dot: &Value,
    funcs: &mut dyn Funcs,
) -> Result<Zeroizing<String>, Fail> {
    let mut e = Exec {
        out: Zeroizing::new(String::new()),
        vars: vec![("$".into(), dot.clone())],
        funcs,
        steps: 0,
        work: 0,
    };
    e.walk(nodes, dot)?;
    Ok(e.out)
}

impl Exec<'_> {
    fn step(&mut self, line: usize) -> Result<(), Fail> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err((line, format!("more than {MAX_STEPS} steps")));
        }
        Ok(())
    }

    /// Counts `v` against the work budget.
    fn weigh(&mut self, v: Value, line: usize) -> Result<Value, Fail> {
        self.work = self.work.saturating_add(weight(&v));
        match self.work > MAX_WORK {
            true => Err((
                line,
                format!("more than {} MiB of values made", MAX_WORK >> 20),
            )),
            false => Ok(v),
        }
    }

    /// Appends to the output. A buffer that must grow is copied into a larger one and wiped.
    fn write(&mut self, text: &str, line: usize) -> Result<(), Fail> {
        if self.out.len() + text.len() > MAX_OUTPUT {
            return Err((line, format!("output over {} MiB", MAX_OUTPUT >> 20)));
        }
        if self.out.capacity() - self.out.len() < text.len() {
            let want = (self.out.len() + text.len()).max(self.out.capacity() * 2);
            let mut bigger = Zeroizing::new(String::with_capacity(want));
            bigger.push_str(&self.out);
            self.out = bigger;
        }
        self.out.push_str(text);
        Ok(())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, Fail> {
        for node in nodes {
            match node {
                Node::Text(t, line) => self.write(t, *line)?,
                Node::Action(pipe) => {
                    self.step(pipe.line)?;
                    let v = self.pipe(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        let text = Zeroizing::new(print_top(&v));
                        self.write(&text, pipe.line)?;
                    }
                }
                Node::If(b) | Node::With(b) => {
                    self.step(b.pipe.line)?;
                    let scope = self.vars.len();
                    let v = self.pipe(&b.pipe, dot)?;
                    let flow = match (truthy(&v), matches!(node, Node::With(_))) {
                        (true, true) => self.walk(&b.body, &v)?,
                        (true, false) => self.walk(&b.body, dot)?,
                        (false, _) => self.walk(&b.otherwise, dot)?,
                    };
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => {
                    self.step(b.pipe.line)?;
                    let scope = self.vars.len();
                    let flow = self.range(b, dot)?;
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    /// `range`: lists by index, maps by key in order (as Go sorts them), an integer N as
    /// 0…N-1; nothing (or an empty value) runs the `else` part, with the declared variables
    /// holding what was ranged over (as Go's do).
    fn range(&mut self, b: &Branch, dot: &Value) -> Result<Flow, Fail> {
        let line = b.pipe.line;
        let v = self.commands(&b.pipe, dot)?;
        let empty = match &v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Number(n) if n.as_i64().is_some_and(|i| i >= 0) => n.as_i64() == Some(0),
            other => {
                return Err((
                    line,
                    format!("range can't iterate over a {}", type_name(other)),
                ));
            }
        };
        if empty {
            for name in &b.pipe.vars {
                self.vars.push((name.clone(), v.clone()));
            }
            return self.walk(&b.otherwise, dot);
        }
        match &v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    if self.iteration(b, Value::from(i), x)? {
                        break;
                    }
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    if self.iteration(b, Value::String(k.clone()), x)? {
                        break;
                    }
                }
            }
            _ => {
                let n = v.as_i64().unwrap_or(0);
                if n.unsigned_abs() > MAX_STEPS {
                    return Err((line, format!("range over more than {MAX_STEPS} numbers")));
                }
                for i in 0..n {
                    if self.iteration(b, Value::from(i), &Value::from(i))? {
                        break;
                    }
                }
            }
        }
        Ok(Flow::Normal)
    }

    /// One turn of a `range` with `key` and `item`; says whether it ended with `break`.
    fn iteration(&mut self, b: &Branch, key: Value, item: &Value) -> Result<bool, Fail> {
        let line = b.pipe.line;
        self.step(line)?;
        let scope = self.vars.len();
        match b.pipe.vars.as_slice() {
            [] => {}
            [one] => {
                let item = self.weigh(item.clone(), line)?;
                self.vars.push((one.clone(), item));
            }
            [k, x, ..] => {
                let item = self.weigh(item.clone(), line)?;
                self.vars.push((k.clone(), key));
                self.vars.push((x.clone(), item));
            }
        }
        let flow = self.walk(&b.body, item)?;
        self.vars.truncate(scope);
        Ok(matches!(flow, Flow::Break))
    }

    /// A pipeline's value; declares or assigns its variable.
    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, Fail> {
        let v = self.commands(pipe, dot)?;
        if let Some(name) = pipe.vars.first() {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    /// The commands of a pipeline, each one's value passed as the last argument of the next.
    fn commands(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, Fail> {
        let mut last = None;
        for cmd in &pipe.cmds {
            last = Some(self.command(cmd, dot, last, pipe.line)?);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn command(
        &mut self,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value, Fail> {
        match &cmd.args[0] {
            Arg::Func(name) => self.call(name, &cmd.args[1..], dot, piped, line),
            Arg::Lit(Value::Null) => Err((line, "nil is not a command".into())),
            first if cmd.args.len() == 1 && piped.is_none() => self.arg(first, dot, line),
            _ => Err((line, "can't give an argument to a non-function".into())),
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value, Fail> {
        // `and` and `or` stop at the first argument that decides them, as Go's do.
        if name == "and" || name == "or" {
            if args.is_empty() && piped.is_none() {
                return Err((line, format!("{name}: needs at least one argument")));
            }
            let mut last = Value::Null;
            for a in args {
                last = self.arg(a, dot, line)?;
                if truthy(&last) == (name == "or") {
                    return Ok(last);
                }
            }
            return Ok(piped.unwrap_or(last));
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.arg(a, dot, line)?);
        }
        values.extend(piped);
        // What a function makes is about as large as what it is given (`print`, `toJSON`,
        // `base64Encode`): refused before it is made when that would pass the budget.
        let given: usize = values.iter().map(weight).sum();
        if self.work.saturating_add(given.saturating_mul(2)) > MAX_WORK {
            return Err((
                line,
                format!("more than {} MiB of values made", MAX_WORK >> 20),
            ));
        }
        let v = match builtins::call(name, &values) {
            Some(result) => result,
            None => self.funcs.call(name, values),
        }
        .map_err(|e| (line, e))?;
        self.weigh(v, line)
    }

    /// An operand's value; what it copies (a field, a variable) is weighed.
    fn arg(&mut self, arg: &Arg, dot: &Value, line: usize) -> Result<Value, Fail> {
        match arg {
            Arg::Dot(chain) => {
                let v = fields(dot, chain, line)?;
                self.weigh(v, line)
            }
            Arg::Var(name, chain) => {
                let (_, v) = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| (line, format!("undefined variable {name}")))?;
                let v = fields(v, chain, line)?;
                self.weigh(v, line)
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(name) => self.call(name, &[], dot, None, line),
            Arg::Sub(pipe, chain) => {
                let v = self.pipe(pipe, dot)?;
                fields(&v, chain, line)
            }
        }
    }
}

/// `.a.b` of `v`: a key missing from a map is null (`<no value>`), and so is a field of
/// null (Go: of a missing key; Go refuses a field of a key whose value is null); a field of
/// anything else but a map is an error naming the field and the type.
fn fields(v: &Value, chain: &[String], line: usize) -> Result<Value, Fail> {
    const NULL: &Value = &Value::Null;
    let mut v = v;
    for f in chain {
        v = match v {
            Value::Object(o) => o.get(f).unwrap_or(NULL),
            Value::Null => NULL,
            other => {
                return Err((
                    line,
                    format!("can't evaluate field {f} in a {}", type_name(other)),
                ));
            }
        };
    }
    Ok(v.clone())
}

/// About how many bytes `v` holds.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => a.iter().map(weight).sum::<usize>() + 24,
        Value::Object(o) => {
            o.iter()
                .map(|(k, x)| 48 + k.len() + weight(x))
                .sum::<usize>()
                + 24
        }
        _ => 16,
    }
}
