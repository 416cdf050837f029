//! The audit log's line format: every line is a JSON object whose last member is
//! `"hash"`, the SHA-256 of the line without it; every line's `"prev"` is the previous line's
//! hash; checkpoint lines are signed by the server's identity key. Editing, deleting or
//! reordering a line breaks the chain at that line.

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{PublicIdentity, SecretIdentity, b64url_decode, b64url_encode};

use super::Entry;

const HASH_FIELD: &str = ",\"hash\":\"";
const CHECKPOINT_LABEL: &[u8] = b"sigil/v1/audit-checkpoint\0";

fn digest(bytes: &[u8]) -> String {
    b64url_encode(&Sha256::digest(bytes))
}

/// Appends the chain's line number `seq` to `out`: `{"seq":…,"prev":…,BODY,"hash":…}` and a
/// newline, where `body` is an entry's members (JSON, no braces) and the hash is that of the
/// line without its `hash` member. Returns the hash.
pub(crate) fn append_line(out: &mut Vec<u8>, seq: u64, prev: &str, body: &[u8]) -> String {
    let start = out.len();
    out.extend_from_slice(format!("{{\"seq\":{seq},\"prev\":").as_bytes());
    super::entry::json_str(out, prev);
    if !body.is_empty() {
        out.push(b',');
        out.extend_from_slice(body);
    }
    out.push(b'}');
    let hash = digest(&out[start..]);
    out.pop();
    out.extend_from_slice(HASH_FIELD.as_bytes());
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    hash
}

/// The message a checkpoint signs: it commits to everything up to `prev`.
pub(crate) fn checkpoint_message(prev: &str, seq: u64) -> Vec<u8> {
    let mut m = CHECKPOINT_LABEL.to_vec();
    m.extend_from_slice(prev.as_bytes());
    m.extend_from_slice(format!("\0{seq}").as_bytes());
    m
}

/// A checkpoint signed by `server`, to be line `seq` after `prev`.
pub(crate) fn checkpoint(server: &SecretIdentity, prev: &str, seq: u64) -> Entry<'static> {
    let sig = server.sign(&checkpoint_message(prev, seq));
    let mut entry = Entry::new("checkpoint");
    entry
        .now("time")
        .str("server_key", &server.public().to_string())
        .str("signature", &b64url_encode(&sig));
    entry
}

/// Reads the `hash` and `seq` of a sealed line (to continue a chain after a restart).
pub(crate) fn tail_of(line: &str) -> Option<(String, u64)> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some((v.get("hash")?.as_str()?.to_owned(), v.get("seq")?.as_u64()?))
}

/// What `verify` found in a good log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Lines checked.
    pub lines: usize,
    /// Signed checkpoints among them.
    pub checkpoints: usize,
    /// Lines after the last checkpoint (their truncation could not be detected).
    pub unsigned_tail: usize,
    /// The last signed checkpoint: its line (1-based) and sequence number.
    pub last_checkpoint: Option<(usize, u64)>,
    /// The first line's `seq` and `prev` (what it links to: empty at a chain's start).
    pub first: (u64, String),
    /// The last line's `seq` and hash (what a continuing file's first line links to).
    pub last: (u64, String),
}

/// The first bad line of a log, 1-based, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct VerifyError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Verifies a whole audit log: every line's own hash, the chain of `prev` hashes, consecutive
/// `seq` numbers, and every checkpoint's signature by the server key (which must be
/// `expected_server` when given: a `sigil1…` identity or a keyid). The first line must start a
/// chain (`prev` empty) unless `continued` (a log rotated away from its beginning).
pub fn verify(
    text: &str,
    expected_server: Option<&str>,
    continued: bool,
) -> Result<VerifySummary, VerifyError> {
    let mut prev = String::new();
    let mut prev_seq: Option<u64> = None;
    let mut summary = VerifySummary {
        lines: 0,
        checkpoints: 0,
        unsigned_tail: 0,
        last_checkpoint: None,
        first: (0, String::new()),
        last: (0, String::new()),
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let bad = |reason: &str| VerifyError {
            line: n,
            reason: reason.to_owned(),
        };
        // The hash member must end the line; a member found overlapping the closing `"}` is
        // no hash (the fuzzer's `,"hash":"}`).
        let cut = line
            .rfind(HASH_FIELD)
            .filter(|c| line.ends_with("\"}") && c + HASH_FIELD.len() <= line.len() - 2)
            .ok_or_else(|| bad("not an audit line (no trailing hash)"))?;
        let claimed = &line[cut + HASH_FIELD.len()..line.len() - 2];
        let body = format!("{}}}", &line[..cut]);
        if digest(body.as_bytes()) != claimed {
            return Err(bad("the line does not match its hash: it was changed"));
        }
        let entry: Map<String, Value> =
            serde_json::from_str(&body).map_err(|_| bad("the line is not a JSON object"))?;
        let first_of_continued = n == 1 && continued;
        if entry.get("prev").and_then(Value::as_str) != Some(prev.as_str()) && !first_of_continued {
            return Err(bad(
                "the line does not follow the previous one: a line was removed, inserted or moved",
            ));
        }
        let seq = entry
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no seq"))?;
        if n == 1 {
            let links_to = entry
                .get("prev")
                .and_then(Value::as_str)
                .unwrap_or_default();
            summary.first = (seq, links_to.to_owned());
        }
        if prev_seq.is_some_and(|p| seq != p + 1) {
            return Err(bad(
                "seq is not consecutive: a line was removed, inserted or moved",
            ));
        }
        if entry.get("type").and_then(Value::as_str) == Some("checkpoint") {
            let key = entry
                .get("server_key")
                .and_then(Value::as_str)
                .and_then(|k| PublicIdentity::parse(k).ok())
                .ok_or_else(|| bad("checkpoint without a valid server_key"))?;
            if expected_server
                .is_some_and(|e| e != key.keyid().as_str() && e != key.to_string().as_str())
            {
                return Err(bad("checkpoint signed by another server key"));
            }
            let sig = entry
                .get("signature")
                .and_then(Value::as_str)
                .and_then(|s| b64url_decode(s).ok())
                .ok_or_else(|| bad("checkpoint without a signature"))?;
            let cp_prev = entry
                .get("prev")
                .and_then(Value::as_str)
                .unwrap_or_default();
            key.verify(&checkpoint_message(cp_prev, seq), &sig)
                .map_err(|_| bad("checkpoint signature does not verify"))?;
            summary.checkpoints += 1;
            summary.unsigned_tail = 0;
            summary.last_checkpoint = Some((n, seq));
        } else {
            summary.unsigned_tail += 1;
        }
        prev = claimed.to_owned();
        prev_seq = Some(seq);
        summary.lines += 1;
    }
    summary.last = (prev_seq.unwrap_or(0), prev);
    if summary.lines == 0 {
        return Err(VerifyError {
            line: 1,
            reason: "the log is empty".into(),
        });
    }
    // A log with no checkpoint yet (a live one) verifies as a chain; that the server vouches
    // for none of it is in the summary (`checkpoints == 0`), for the caller to judge.
    Ok(summary)
}

/// Where a set of files failed: the file (its index) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SetError {
    /// The index of the file at fault.
    pub file: usize,
    /// What is wrong (with the line, for a broken file).
    pub reason: String,
}

/// Verifies rotated files as one log, oldest first (`names` label them in messages): each
/// on its own (see [`verify`]; every file but the first is a continuation, and the first is
/// one too if `continued`), and each file's first line linked to the previous file's last
/// (its `seq` next, its `prev` that line's hash). A file missing from the set, or two files
/// given in the wrong order, is named. Returns each file's summary.
pub fn verify_files(
    files: &[(&str, &str)],
    expected_server: Option<&str>,
    continued: bool,
) -> Result<Vec<VerifySummary>, SetError> {
    let mut out: Vec<VerifySummary> = Vec::with_capacity(files.len());
    for (i, (name, text)) in files.iter().enumerate() {
        out.push(
            verify(text, expected_server, continued || i > 0).map_err(|e| SetError {
                file: i,
                reason: format!("{name}: {e}"),
            })?,
        );
    }
    for (i, pair) in out.windows(2).enumerate() {
        let (before, s) = (&pair[0], &pair[1]);
        let (prev_name, name) = (files[i].0, files[i + 1].0);
        let (last_seq, last_hash) = &before.last;
        let (first_seq, links_to) = &s.first;
        let next = last_seq + 1;
        let reason = if *first_seq <= *last_seq {
            format!(
                "{name} (seq {first_seq}–{}) is older than {prev_name} (seq {}–{last_seq}), which is given before it: the files are out of order (give them oldest first)",
                s.last.0, before.first.0
            )
        } else if *first_seq > next {
            match out[i + 2..].iter().position(|later| later.first.0 == next) {
                Some(j) => format!(
                    "{} continues {prev_name} but is given after {name}: the files are out of order (give them oldest first)",
                    files[i + 2 + j].0
                ),
                None => format!(
                    "a file is missing between {prev_name} (ends at seq {last_seq}) and {name} (starts at seq {first_seq}): {} lines are not in the set",
                    first_seq - next
                ),
            }
        } else if links_to != last_hash {
            format!(
                "{name} does not continue {prev_name}: its first line links to another line than {prev_name}'s last (a file was replaced or rewritten)"
            )
        } else {
            continue;
        };
        return Err(SetError {
            file: i + 1,
            reason,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(server: &SecretIdentity, n: usize) -> Vec<String> {
        let mut prev = String::new();
        let mut out = Vec::new();
        for seq in 1..=n as u64 {
            let entry = if seq % 4 == 0 {
                checkpoint(server, &prev, seq)
            } else {
                let mut e = Entry::new("request");
                e.str("path", &format!("secret/data/{seq}"));
                e
            };
            prev = append_line(&mut out, seq, &prev, &entry.members);
        }
        let text = String::from_utf8(out).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_line_is_json_with_its_hash_last() {
        let mut out = b"before\n".to_vec();
        let mut e = Entry::new("request");
        e.str("path", "p");
        let hash = append_line(&mut out, 7, "abc", &e.members);
        let line = std::str::from_utf8(&out[7..]).unwrap();
        assert_eq!(
            line,
            format!(
                "{{\"seq\":7,\"prev\":\"abc\",\"type\":\"request\",\"path\":\"p\",\"hash\":\"{hash}\"}}\n"
            )
        );
        assert_eq!(
            hash,
            digest(b"{\"seq\":7,\"prev\":\"abc\",\"type\":\"request\",\"path\":\"p\"}")
        );
        assert_eq!(tail_of(line.trim_end()), Some((hash, 7)));
    }

    /// Lines written before the members were put in writing order (sorted by name, `seq` and
    /// `prev` among them) verify, and a log continued after them chains on.
    #[test]
    fn a_log_begun_in_the_earlier_member_order_verifies_and_continues() {
        let server = SecretIdentity::generate().unwrap();
        let mut old = Map::new();
        old.insert("type".into(), "request".into());
        old.insert("seq".into(), 1.into());
        old.insert("prev".into(), "".into());
        old.insert("path".into(), "secret/data/old".into());
        let body = serde_json::to_string(&old).unwrap();
        assert!(body.starts_with("{\"path\""), "sorted by name: {body}");
        let hash = digest(body.as_bytes());
        let first = format!("{}{HASH_FIELD}{hash}\"}}\n", &body[..body.len() - 1]);
        assert_eq!(tail_of(first.trim_end()), Some((hash.clone(), 1)));

        let mut out = first.into_bytes();
        let mut e = Entry::new("request");
        e.str("path", "secret/data/new");
        let prev = append_line(&mut out, 2, &hash, &e.members);
        append_line(&mut out, 3, &prev, &checkpoint(&server, &prev, 3).members);
        let text = String::from_utf8(out).unwrap();
        let s = verify(&text, Some(server.public().keyid().as_str()), false).unwrap();
        assert_eq!((s.lines, s.checkpoints), (3, 1));
    }

    #[test]
    fn a_good_log_verifies() {
        let server = SecretIdentity::generate().unwrap();
        let text = log(&server, 10).join("\n");
        let s = verify(&text, Some(server.public().keyid().as_str()), false).unwrap();
        assert_eq!(
            s,
            VerifySummary {
                lines: 10,
                checkpoints: 2,
                unsigned_tail: 2,
                last_checkpoint: Some((8, 8)),
                first: (1, String::new()),
                last: (10, lines_hash(text.lines().last().unwrap()).to_owned()),
            }
        );
    }

    fn lines_hash(line: &str) -> &str {
        &line[line.rfind(HASH_FIELD).unwrap() + HASH_FIELD.len()..line.len() - 2]
    }

    /// A log cut into files: verified as one in order; a missing, reordered or replaced
    /// file is named.
    #[test]
    fn rotated_files_verify_in_order_and_gaps_or_reorders_are_named() {
        let server = SecretIdentity::generate().unwrap();
        let keyid = server.public().keyid().to_string();
        let lines = log(&server, 12);
        let parts: Vec<String> = lines.chunks(4).map(|c| c.join("\n")).collect();
        let set = |order: &[usize]| {
            let files: Vec<(String, &str)> = order
                .iter()
                .map(|i| (format!("f{i}"), parts[*i].as_str()))
                .collect();
            let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), *t)).collect();
            verify_files(&files, Some(&keyid), false)
        };
        let good = set(&[0, 1, 2]).unwrap();
        assert_eq!(good.iter().map(|s| s.lines).sum::<usize>(), 12);
        assert_eq!(good[2].last.0, 12);
        let missing = set(&[0, 2]).unwrap_err();
        assert_eq!(missing.file, 1);
        assert!(
            missing.reason.contains("a file is missing between f0"),
            "{}",
            missing.reason
        );
        let reordered = set(&[0, 2, 1]).unwrap_err();
        assert!(
            reordered
                .reason
                .contains("f1 continues f0 but is given after f2"),
            "{}",
            reordered.reason
        );
        let files = [("f1", parts[1].as_str()), ("f0", parts[0].as_str())];
        let backwards = verify_files(&files, Some(&keyid), true).unwrap_err();
        assert!(
            backwards.reason.contains("out of order"),
            "{}",
            backwards.reason
        );
        // The first file alone is a chain's start; a later one alone only as a continuation.
        assert!(set(&[1, 2]).is_err());
        let files = [("f1", parts[1].as_str()), ("f2", parts[2].as_str())];
        assert!(verify_files(&files, Some(&keyid), true).is_ok());
        // A file from another log with the right seq numbers does not link.
        let other = log(&server, 12);
        let foreign: String = other[4..8].join("\n");
        let files = [("f0", parts[0].as_str()), ("x", foreign.as_str())];
        let replaced = verify_files(&files, Some(&keyid), false).unwrap_err();
        assert!(
            replaced.reason.contains("does not continue f0"),
            "{}",
            replaced.reason
        );
    }

    #[test]
    fn fail_edits_deletions_reorders_and_forged_checkpoints() {
        let server = SecretIdentity::generate().unwrap();
        let lines = log(&server, 10);
        let at = |lines: Vec<String>| {
            verify(
                &lines.join("\n"),
                Some(server.public().keyid().as_str()),
                false,
            )
            .unwrap_err()
            .line
        };

        let mut edited = lines.clone();
        edited[4] = edited[4].replace("secret/data/5", "secret/data/X");
        assert_eq!(at(edited), 5);
        let mut deleted = lines.clone();
        deleted.remove(5);
        assert_eq!(at(deleted), 6);
        let mut swapped = lines.clone();
        swapped.swap(5, 6);
        assert_eq!(at(swapped), 6);
        // A checkpoint re-signed by another key.
        let other = SecretIdentity::generate().unwrap();
        let text = log(&other, 10).join("\n");
        assert_eq!(
            verify(&text, Some(server.public().keyid().as_str()), false)
                .unwrap_err()
                .line,
            4
        );
        // Removing the first line is caught, unless the log is declared a continuation.
        let tail = lines[1..].join("\n");
        assert_eq!(
            verify(&tail, Some(server.public().keyid().as_str()), false)
                .unwrap_err()
                .line,
            1
        );
        assert!(verify(&tail, Some(server.public().keyid().as_str()), true).is_ok());
        // A log without any checkpoint (a live one) is an intact chain the server vouches
        // for nowhere yet: the summary says so; `sigil audit verify --strict` refuses it.
        let unsigned: Vec<String> = lines[..3].to_vec();
        let s = verify(
            &unsigned.join("\n"),
            Some(server.public().keyid().as_str()),
            false,
        )
        .unwrap();
        assert_eq!(
            (s.checkpoints, s.unsigned_tail, s.last_checkpoint),
            (0, 3, None)
        );
        assert_eq!(
            verify("", Some(server.public().keyid().as_str()), false)
                .unwrap_err()
                .reason,
            "the log is empty"
        );
        // Garbage.
        assert_eq!(at(vec!["{}".into()]), 1);
        assert_eq!(at(vec!["not json at all".into()]), 1);
    }

    /// Found by reading the code, confirmed by the fuzzer (fuzz/regressions/audit_verify): a
    /// hash member overlapping the line's end made `verify` slice backwards and panic.
    #[test]
    fn fail_a_hash_member_that_overlaps_the_line_end() {
        for text in ["\0,\"hash\":\"}", ",\"hash\":\"}", "{\"hash\":\"}"] {
            assert!(verify(text, None, false).is_err(), "{text:?}");
        }
    }
}
