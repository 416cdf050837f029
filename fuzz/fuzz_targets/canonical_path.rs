//! Request path canonicalisation (`sigil_core::canonical_path`), which the policy check, the
//! existence check, the audit log and every engine rely on. Asserted for every path it
//! accepts: it is idempotent (canonicalising the result again gives the same string), and the
//! result has no `//`, no `.` or `..` segment, no control character, no leading `/`, and a
//! trailing `/` exactly for LIST.
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
});
