//! The agent's template language (`sigil-agent` `gotemplate/`, Go's text/template): lexed,
//! parsed and, when it parses, executed against secret-shaped data with functions that
//! answer or fail. It must refuse bad input with an error and stop runaway templates (its
//! step and output budgets), never panic or hang.
//!
//! Input: UTF-8 template text.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[path = "../../crates/sigil-agent/src/gotemplate/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod gotemplate;

/// `secret` answers a KV read's shape; `fail` fails.
struct Funcs;

impl gotemplate::Funcs for Funcs {
    fn call(&mut self, name: &str, _args: Vec<Value>) -> Result<Value, String> {
        match name {
            "secret" => Ok(json!({
                "Data": { "data": { "password": "p", "user": "u", "n": 3, "list": [1, "x"] } }
            })),
            _ => Err("failed".into()),
        }
    }
}

fn data() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    CELL.get_or_init(|| json!({ "s": "str", "n": 2, "m": { "b": [true, null], "a": 1.5 } }))
}

fuzz_target!(|data_in: &[u8]| {
    let Ok(text) = std::str::from_utf8(data_in) else {
        return;
    };
    if let Ok(t) = gotemplate::Template::parse("fuzz", text, &["secret", "fail"]) {
        let _ = t.execute(data(), &mut Funcs);
    }
});
