//! Request path canonicalisation (`sigil_core::canonical_path`), which the policy check, the
//! existence check, the audit log and every engine rely on. Asserted for every path it
//! accepts: it is idempotent (canonicalising the result again gives the same string), and the
//! result has no `//`, no `.` or `..` segment, no control character, no leading `/`, and a
//! trailing `/` exactly for LIST. The canonical path is then matched, as the rest below a
//! mount, against every engine's route table (`sigil_engine::route::find`): a route that
//! matches has each one-segment parameter non-empty and without `/`, and putting the values
//! back into its template gives the path again.
//!
//! Input: a byte choosing the operation, then the raw path (UTF-8, still percent-encoded).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::{Operation, canonical_path};

const OPERATIONS: [Operation; 6] = [
    Operation::Read,
    Operation::List,
    Operation::Create,
    Operation::Update,
    Operation::Patch,
    Operation::Delete,
];

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let op = OPERATIONS[usize::from(op) % OPERATIONS.len()];
    let Ok(path) = canonical_path(raw, op) else {
        return;
    };
    assert!(!path.contains("//"), "{raw:?} -> {path:?} has //");
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "{raw:?} -> {path:?} has a . or .. segment"
    );
    assert!(
        !path.chars().any(char::is_control),
        "{raw:?} -> {path:?} has a control character"
    );
    assert!(!path.starts_with('/'), "{raw:?} -> {path:?} starts with /");
    assert_eq!(
        path.ends_with('/'),
        op == Operation::List,
        "{raw:?} -> {path:?}: trailing / for {op:?}"
    );
    let again = canonical_path(&path, op);
    assert_eq!(
        again.as_deref().ok(),
        Some(path.as_str()),
        "not idempotent: {raw:?} -> {path:?} -> {again:?}"
    );
    for (template, params) in sigil_server::fuzzing::routes_matching(&path) {
        let mut values = params.iter();
        let mut rebuilt = Vec::new();
        for segment in template.split('/').skip(1) {
            if !segment.starts_with('{') {
                rebuilt.push(segment.to_owned());
                continue;
            }
            let (name, value) = values.next().expect("a value for each parameter");
            assert_eq!(format!("{{{name}}}"), segment, "{template}: parameters in order");
            if *name == "path" {
                if !value.is_empty() {
                    rebuilt.push((*value).to_owned());
                }
            } else {
                assert!(
                    !value.is_empty() && !value.contains('/'),
                    "{path:?} -> {template}: {name} = {value:?}"
                );
                rebuilt.push((*value).to_owned());
            }
        }
        let rebuilt = rebuilt.join("/");
        assert!(
            rebuilt == path || format!("{rebuilt}/") == path,
            "{path:?} -> {template} -> {rebuilt:?}"
        );
    }
});
