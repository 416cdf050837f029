//! Fixtures shared by Sigil's fuzz targets (`fuzz_targets/`) and the seed generator
//! (`examples/seeds.rs`); see `docs/security/fuzzing.md`.
//!
//! It holds fixed identities (key files in `keys/`, published on purpose: they protect nothing),
//! the nonce and channel key the sealed bodies are opened with, and the framing that lets the
//! fuzzer past checks it cannot forge: the audit chain's hashes and the write-ahead log's
//! digests. The framing only wraps the fuzzer's bytes; every parser under test is Sigil's own.
//!
//! It does not parse anything itself and never fixes up what a parser under test would refuse.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};
use sigil_crypto::{ChannelKeys, PublicIdentity, SealInfo, SecretIdentity};

/// The server's key file (fuzzing only).
pub const SERVER_KEY_FILE: &str = include_str!("../keys/server.key");
/// The client's key file (fuzzing only): the signer of requests and recipient of envelopes.
pub const CLIENT_KEY_FILE: &str = include_str!("../keys/client.key");
/// A third identity, never the one a fixture is addressed to.
pub const OTHER_KEY_FILE: &str = include_str!("../keys/other.key");

/// The request nonce every sealed body is opened under (base64url of 21 bytes).
pub const NONCE: &str = "c2lnaWwtZnV6ei1ub25jZS0wMDAx";

/// The time signatures are checked at (2027-01-15T08:00:00Z), Unix seconds.
pub const NOW: i64 = 1_800_000_000;

/// The target URI requests are signed for in the seeds.
pub const TARGET_URI: &str = "https://127.0.0.1:8200/v1/secret/data/app";

/// A response the server sealed to the client under [`NONCE`] with `seal_to_exporting`; both
/// sides export the channel keys of [`channel_keys`] from it.
pub const CHANNEL_GRANT_ENVELOPE: &str = include_str!("../keys/channel-grant.json");

/// The epoch of the log `wal_replay` writes beside a fresh database (the first a new
/// `FileBackend` opens).
pub const WAL_EPOCH: u64 = 1;

fn identity(cell: &'static OnceLock<SecretIdentity>, file: &str) -> &'static SecretIdentity {
    cell.get_or_init(|| SecretIdentity::from_key_file(file).expect("fixture key file parses"))
}

/// The server's identity.
pub fn server() -> &'static SecretIdentity {
    static CELL: OnceLock<SecretIdentity> = OnceLock::new();
    identity(&CELL, SERVER_KEY_FILE)
}

/// The client's identity.
pub fn client() -> &'static SecretIdentity {
    static CELL: OnceLock<SecretIdentity> = OnceLock::new();
    identity(&CELL, CLIENT_KEY_FILE)
}

/// The third identity.
pub fn other() -> &'static SecretIdentity {
    static CELL: OnceLock<SecretIdentity> = OnceLock::new();
    identity(&CELL, OTHER_KEY_FILE)
}

/// The public halves of [`server`], [`client`] and [`other`], computed once.
pub fn publics() -> &'static [PublicIdentity; 3] {
    static CELL: OnceLock<[PublicIdentity; 3]> = OnceLock::new();
    CELL.get_or_init(|| [server().public(), client().public(), other().public()])
}

/// The channel keys exported from [`CHANNEL_GRANT_ENVELOPE`] (as the client opens it).
pub fn channel_keys() -> &'static ChannelKeys {
    static CELL: OnceLock<ChannelKeys> = OnceLock::new();
    CELL.get_or_init(|| {
        channel_keys_from(CHANNEL_GRANT_ENVELOPE).expect("the channel grant fixture opens")
    })
}

/// The channel keys a grant envelope (JSON) carries for the client, if it opens.
pub fn channel_keys_from(grant: &str) -> Option<ChannelKeys> {
    let sigil_proto::body::Sealed::Hpke(envelope) =
        sigil_proto::body::parse(grant.trim().as_bytes()).ok()?
    else {
        return None;
    };
    sigil_crypto::open_from_exporting(
        client().encryption_key(),
        publics()[0].encryption_key(),
        SealInfo::Response,
        NONCE.as_bytes(),
        &envelope,
    )
    .ok()
    .map(|(_, key)| key)
}

/// Splits `text` at its first `N - 1` newlines; missing fields are empty.
pub fn fields<const N: usize>(text: &str) -> [&str; N] {
    let mut out = [""; N];
    for (slot, field) in out.iter_mut().zip(text.splitn(N, '\n')) {
        *slot = field;
    }
    out
}

/// base64url (no padding) of SHA-256, the audit chain's digest.
fn digest(bytes: &[u8]) -> String {
    sigil_crypto::b64url_encode(&Sha256::digest(bytes))
}

/// The placeholder [`seal_audit_template`] replaces by the previous line's hash.
pub const PREV: &str = "@PREV@";
/// The placeholder [`seal_audit_template`] replaces by a checkpoint signature of [`server`].
pub const SIG: &str = "@SIG@";

/// Turns a template into a chained audit log, so the fuzzer's edits get past the hashes to the
/// JSON and checkpoint checks behind them: in each line, [`PREV`] becomes the previous line's
/// hash and [`SIG`] the server's signature over the checkpoint message of the line's `prev`
/// and `seq` (as `sigil-core`'s `audit/chain.rs` writes them); a line ending in `}` then gets
/// its `"hash"` member. Other lines are left as they are.
pub fn seal_audit_template(template: &str) -> String {
    let mut prev = String::new();
    let mut out = String::with_capacity(template.len() + 64 * template.lines().count());
    for line in template.lines() {
        let mut line = line.replace(PREV, &prev);
        if line.contains(SIG) {
            let parsed: Option<serde_json::Value> = serde_json::from_str(&line).ok();
            let seq = parsed.as_ref().and_then(|v| v.get("seq")?.as_u64());
            let cp_prev = parsed
                .as_ref()
                .and_then(|v| v.get("prev")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            if let Some(seq) = seq {
                let mut message = b"sigil/v1/audit-checkpoint\0".to_vec();
                message.extend_from_slice(cp_prev.as_bytes());
                message.extend_from_slice(format!("\0{seq}").as_bytes());
                let signature = sigil_crypto::b64url_encode(&server().sign(&message));
                line = line.replace(SIG, &signature);
            }
        }
        if let Some(open) = line.strip_suffix('}') {
            prev = digest(line.as_bytes());
            out.push_str(open);
            out.push_str(",\"hash\":\"");
            out.push_str(&prev);
            out.push_str("\"}");
        } else {
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

/// One write-ahead log record as `sigil-storage`'s `wal.rs` frames it:
/// `len: u32 LE | epoch: u64 LE | payload | SHA-256 of what precedes it`.
pub fn wal_record(epoch: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut record = Vec::with_capacity(12 + payload.len() + 32);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&epoch.to_le_bytes());
    record.extend_from_slice(payload);
    let digest = Sha256::digest(&record);
    record.extend_from_slice(&digest);
    record
}

/// A record payload: `count: u32 LE`, then per write `1 | klen | key | vlen | value` (a put)
/// or `0 | klen | key` (a delete). For seeds.
pub fn wal_payload(writes: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut p = (writes.len() as u32).to_le_bytes().to_vec();
    for (key, value) in writes {
        p.push(u8::from(value.is_some()));
        p.extend_from_slice(&(key.len() as u32).to_le_bytes());
        p.extend_from_slice(key.as_bytes());
        if let Some(v) = value {
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v);
        }
    }
    p
}

/// The logs `wal_replay` writes beside a fresh database: the one of epoch [`WAL_EPOCH`] − 1
/// (if any chunk asks for it) and the one of [`WAL_EPOCH`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WalFiles {
    /// `<db>.wal.0`, when present.
    pub older: Option<Vec<u8>>,
    /// `<db>.wal.1`.
    pub newest: Vec<u8>,
}

/// Builds the logs from fuzz input. The first byte chooses the mode: even, the rest is the
/// newest log's bytes as they are; odd, the rest is a list of chunks `ctl: u8 | len: u16 LE |
/// payload`, each framed as a record with a correct length and digest, so the fuzzer reaches
/// the payload decoder. `ctl` bit 0 puts the record in the older log, bit 1 gives it the other
/// log's epoch, bit 2 flips a bit of its digest, bit 3 cuts its last byte off (a torn append).
pub fn wal_files(data: &[u8]) -> WalFiles {
    let Some((&mode, mut rest)) = data.split_first() else {
        return WalFiles::default();
    };
    if mode & 1 == 0 {
        return WalFiles {
            older: None,
            newest: rest.to_vec(),
        };
    }
    let mut files = WalFiles::default();
    while let [ctl, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let older = ctl & 1 == 1;
        let file_epoch = if older { WAL_EPOCH - 1 } else { WAL_EPOCH };
        let epoch = if ctl & 2 == 2 {
            file_epoch ^ 1
        } else {
            file_epoch
        };
        let mut record = wal_record(epoch, payload);
        if ctl & 4 == 4 {
            let last = record.len() - 1;
            record[last] ^= 1;
        }
        if ctl & 8 == 8 {
            record.pop();
        }
        let file = if older {
            files.older.get_or_insert_with(Vec::new)
        } else {
            &mut files.newest
        };
        file.extend_from_slice(&record);
    }
    files
}
