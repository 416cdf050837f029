//! Audit logs as `sigil audit verify` reads them (`sigil_core::audit::verify`).
//!
//! Input: a flags byte, then the log as UTF-8 text. Flags: bit 0 `--continued`; bits 1–2 the
//! expected server key (none, the fixed server's keyid, its `sigil1…` string, another key's
//! keyid); bit 3 template mode, where the text is a template that `seal_audit_template`
//! chains (`@PREV@`, `@SIG@` and every line's hash filled in) so the fuzzer's edits reach the
//! JSON, sequence and checkpoint checks behind the hashes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let continued = flags & 1 == 1;
    let [server, _, other] = sigil_fuzz::publics();
    let expected = match (flags >> 1) & 3 {
        0 => None,
        1 => Some(server.keyid().to_string()),
        2 => Some(server.to_string()),
        _ => Some(other.keyid().to_string()),
    };
    let sealed;
    let log = if flags & 8 == 8 {
        sealed = sigil_fuzz::seal_audit_template(text);
        sealed.as_str()
    } else {
        text
    };
    if let Ok(summary) = sigil_core::audit::verify(log, expected.as_deref(), continued) {
        assert!(summary.lines >= 1);
        assert_eq!(summary.checkpoints == 0, summary.last_checkpoint.is_none());
        assert!(summary.checkpoints + summary.unsigned_tail <= summary.lines);
        assert!(summary.lines <= log.lines().count());
    }
});
