//! Snapshots: every storage entry at one instant in one file, for backups and restores (and,
//! with the cluster, for Raft snapshots: one format, one restore path).
//!
//! What is inside is what the storage holds: barrier ciphertext, and the seal configuration
//! whose root-key shares are sealed to the admins. A snapshot is useless until a quorum of the
//! admins it was taken under unseals the node it is restored into. The file is checksummed
//! (SHA-256 of the entries) and its header is signed by the server key, so a restore can
//! check that the file is whole and was made by the server it expects.
//!
//! ```text
//! SIGIL-SNAPSHOT-1\n
//! {"created":…,"storage":…,"entries":N,"body_bytes":B,"body_sha256":…,"keyring_term":T,
//!  "server_key":"sigil1…","signature":…}\n
//! N × ( u32 key length, key (UTF-8), u32 value length, value ), big-endian, keys ascending
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{PublicIdentity, SecretIdentity, b64url_decode, b64url_encode};

/// The first line of every snapshot file.
pub const MAGIC: &[u8] = b"SIGIL-SNAPSHOT-1\n";
const SIGNATURE_LABEL: &[u8] = b"sigil/v1/snapshot\0";
/// The longest header line read.
const MAX_HEADER: usize = 16 * 1024;
/// The longest storage key accepted.
const MAX_KEY: usize = 64 * 1024;

/// A snapshot's header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The storage it was taken from (`file`, `memory`).
    pub storage: String,
    /// How many entries follow.
    pub entries: u64,
    /// How many bytes they take.
    pub body_bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub body_sha256: String,
    /// The newest keyring term when it was taken.
    pub keyring_term: u32,
    /// The server key that signed it (`sigil1…`).
    pub server_key: String,
    /// Ed25519 over [`Header::message`], base64url.
    pub signature: String,
}

impl Header {
    /// Signs the header with `server` (its `server_key` set to match).
    pub fn sign(&mut self, server: &SecretIdentity) {
        self.server_key = server.public().to_string();
        self.signature = b64url_encode(&server.sign(&self.message()));
    }

    /// The snapshot file: [`Header::prefix`], then `body`.
    pub fn file(&self, body: &[u8]) -> Vec<u8> {
        let mut out = self.prefix();
        out.extend_from_slice(body);
        out
    }

    /// What comes before the entries in the file: the magic line and this header's line.
    pub fn prefix(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&serde_json::to_vec(self).expect("a header serializes"));
        out.push(b'\n');
        out
    }

    /// What the signature covers: every other field.
    fn message(&self) -> Vec<u8> {
        let mut m = SIGNATURE_LABEL.to_vec();
        for part in [
            self.created.as_str(),
            self.storage.as_str(),
            &self.entries.to_string(),
            &self.body_bytes.to_string(),
            &self.body_sha256,
            &self.keyring_term.to_string(),
            &self.server_key,
        ] {
            m.extend_from_slice(part.as_bytes());
            m.push(0);
        }
        m
    }
}

/// A snapshot read back and checked.
#[derive(Debug)]
pub struct Snapshot {
    /// Its header.
    pub header: Header,
    /// Every storage entry, keys ascending.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// Why a file is not a snapshot that can be restored. Says what is wrong, never echoes data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable snapshot: {0}")]
pub struct SnapshotError(pub String);

fn bad(why: impl Into<String>) -> SnapshotError {
    SnapshotError(why.into())
}

/// Writes a snapshot's entries to `out` one at a time, counting them and hashing them, so
/// that a snapshot of any size is written without holding it in memory; the header, which
/// comes first in the file, is made from what it counted ([`BodyWriter::finish`]).
pub struct BodyWriter<W: std::io::Write> {
    out: W,
    entries: u64,
    bytes: u64,
    hash: Sha256,
}

impl<W: std::io::Write> std::fmt::Debug for BodyWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyWriter")
            .field("entries", &self.entries)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<W: std::io::Write> BodyWriter<W> {
    /// A writer of entries to `out`.
    pub fn new(out: W) -> Self {
        BodyWriter {
            out,
            entries: 0,
            bytes: 0,
            hash: Sha256::new(),
        }
    }

    /// Adds one entry (keys must come in ascending order, as a backend's snapshot gives them).
    pub fn add(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        for part in [
            &(key.len() as u32).to_be_bytes()[..],
            key.as_bytes(),
            &(value.len() as u32).to_be_bytes()[..],
            value,
        ] {
            self.out.write_all(part)?;
            self.hash.update(part);
            self.bytes += part.len() as u64;
        }
        self.entries += 1;
        Ok(())
    }

    /// The header for what was written, signed by `server`, and `out` back.
    pub fn finish(
        self,
        storage: &str,
        keyring_term: u32,
        created: String,
        server: &SecretIdentity,
    ) -> (Header, W) {
        let mut header = Header {
            created,
            storage: storage.to_owned(),
            entries: self.entries,
            body_bytes: self.bytes,
            body_sha256: sigil_crypto::hex(&self.hash.finalize()),
            keyring_term,
            server_key: String::new(),
            signature: String::new(),
        };
        header.sign(server);
        (header, self.out)
    }
}

/// Writes `entries` (sorted by key, as [`sigil_storage::Backend::snapshot`] gives them) as a
/// snapshot signed by `server`.
pub fn encode(
    entries: &[(String, Vec<u8>)],
    storage: &str,
    keyring_term: u32,
    created: String,
    server: &SecretIdentity,
) -> Vec<u8> {
    let mut body = BodyWriter::new(Vec::new());
    for (k, v) in entries {
        body.add(k, v).expect("writing to memory");
    }
    let (header, body) = body.finish(storage, keyring_term, created, server);
    header.file(&body)
}

/// Reads and checks a snapshot: its format, its checksum, its signature, and — when `pinned`
/// (a keyid or a `sigil1…` identity) is given — that the server it expects signed it.
pub fn decode(bytes: &[u8], pinned: Option<&str>) -> Result<Snapshot, SnapshotError> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let header = read_from(bytes, pinned, &mut |k, v| {
        entries.push((k.to_owned(), v.to_vec()));
        Ok(())
    })?;
    Ok(Snapshot { header, entries })
}

/// Checks a snapshot as [`decode`] does, entries included, without keeping them: its header.
pub fn check(bytes: &[u8], pinned: Option<&str>) -> Result<Header, SnapshotError> {
    read_from(bytes, pinned, &mut |_, _| Ok(()))
}

/// [`check`] of a snapshot read from `file` as it goes, an entry at a time: a snapshot of any
/// size is checked without holding it in memory.
pub fn check_file(file: &std::path::Path, pinned: Option<&str>) -> Result<Header, SnapshotError> {
    let f = std::fs::File::open(file)
        .map_err(|e| bad(format!("{} cannot be read: {e}", file.display())))?;
    read_from(std::io::BufReader::new(f), pinned, &mut |_, _| Ok(()))
}

/// What [`read_from`] hands each entry to; an error stops the reading.
pub type Visit<'a> = dyn FnMut(&str, &[u8]) -> Result<(), SnapshotError> + 'a;

/// Reads a snapshot from `r`: the magic line, the header (its signature, and its signer
/// against `pinned`), then each entry, handed to `visit`, then the entries' length and checksum
/// against the header's, and the end of the file. `visit` sees every entry before the checksum
/// is known: it may act on them only when reading a file already checked that nobody else can
/// change (a restore's private spool, read a second time).
pub fn read_from<R: std::io::BufRead>(
    r: R,
    pinned: Option<&str>,
    visit: &mut Visit<'_>,
) -> Result<Header, SnapshotError> {
    use std::io::{BufRead as _, Read as _};
    let mut r = r;
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(bad("it does not start with SIGIL-SNAPSHOT-1"));
    }
    let mut line = Vec::new();
    (&mut r)
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| bad(format!("the header cannot be read: {e}")))?;
    if line.pop() != Some(b'\n') {
        return Err(bad("no header line"));
    }
    let header: Header =
        serde_json::from_slice(&line).map_err(|e| bad(format!("the header is not valid: {e}")))?;
    check_signer(&header, pinned)?;
    let mut body = Hashing {
        inner: r,
        hash: Sha256::new(),
        bytes: 0,
    };
    walk_entries(&mut body, header.entries, header.body_bytes, visit)?;
    if body.bytes != header.body_bytes {
        return Err(bad(format!(
            "it holds {} bytes of entries, the header says {}: the file is cut short or has bytes added",
            body.bytes, header.body_bytes
        )));
    }
    let mut more = [0u8; 1];
    if !matches!(body.inner.read(&mut more), Ok(0)) {
        return Err(bad("bytes after the last entry: the file has bytes added"));
    }
    if sigil_crypto::hex(&body.hash.finalize()) != header.body_sha256 {
        return Err(bad(
            "the entries do not match their SHA-256: the file was damaged or changed",
        ));
    }
    Ok(header)
}

/// The header's signature, by the server key it names, and that key against `pinned`.
fn check_signer(header: &Header, pinned: Option<&str>) -> Result<(), SnapshotError> {
    let key = PublicIdentity::parse(&header.server_key)
        .map_err(|_| bad("the header's server_key is not a sigil1… identity"))?;
    let signature = b64url_decode(&header.signature)
        .map_err(|_| bad("the header's signature is not base64url"))?;
    key.verify(&header.message(), &signature)
        .map_err(|_| bad("the header's signature does not verify"))?;
    if let Some(pinned) = pinned
        && pinned != key.keyid().as_str()
        && pinned != header.server_key
    {
        return Err(bad(format!(
            "it was signed by server key {}, not by the expected {pinned}",
            key.keyid()
        )));
    }
    Ok(())
}

/// A reader that hashes and counts what it reads.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads `count` entries from `body`, which holds at most `limit` bytes of them, keys strictly
/// ascending, handing each to `visit`. A length is believed only as far as bytes arrive: a
/// value announced as 4 GiB is not allocated before it is there.
fn walk_entries<R: std::io::Read>(
    body: &mut R,
    count: u64,
    limit: u64,
    visit: &mut Visit<'_>,
) -> Result<(), SnapshotError> {
    use std::io::Read as _;
    let mut left = limit;
    let mut take = |body: &mut R, n: u64, out: &mut Vec<u8>| -> Result<(), SnapshotError> {
        out.clear();
        let cut = || bad("an entry runs past the end of the file: it is cut short");
        if n > left {
            return Err(cut());
        }
        match body.take(n).read_to_end(out) {
            Ok(got) if got as u64 == n => {
                left -= n;
                Ok(())
            }
            Ok(_) => Err(cut()),
            Err(e) => Err(bad(format!("the file cannot be read: {e}"))),
        }
    };
    let mut length = [0u8; 4].to_vec();
    let mut key = Vec::new();
    let mut previous = Vec::new();
    let mut value = Vec::new();
    for i in 0..count {
        take(body, 4, &mut length)?;
        let n = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        if n as usize > MAX_KEY {
            return Err(bad("a key longer than 64 KiB"));
        }
        take(body, u64::from(n), &mut key)?;
        let k = std::str::from_utf8(&key).map_err(|_| bad("a key that is not UTF-8"))?;
        if i > 0 && previous.as_slice() >= key.as_slice() {
            return Err(bad("keys out of order or repeated"));
        }
        take(body, 4, &mut length)?;
        let n = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        take(body, u64::from(n), &mut value)?;
        visit(k, &value)?;
        std::mem::swap(&mut previous, &mut key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `count` entries that must take `body` exactly.
    fn read_entries(mut body: &[u8], count: u64) -> Result<Vec<(String, Vec<u8>)>, SnapshotError> {
        let mut entries = Vec::new();
        let limit = body.len() as u64;
        walk_entries(&mut body, count, limit, &mut |k, v| {
            entries.push((k.to_owned(), v.to_vec()));
            Ok(())
        })?;
        if !body.is_empty() {
            return Err(bad("bytes after the last entry"));
        }
        Ok(entries)
    }

    fn sample(server: &SecretIdentity) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
        let entries = vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b/c".to_owned(), vec![0, 255, 7]),
            ("z".to_owned(), Vec::new()),
        ];
        let bytes = encode(&entries, "file", 3, "2026-12-06T10:00:00Z".into(), server);
        (entries, bytes)
    }

    #[test]
    fn a_snapshot_reads_back_and_checks_its_signer() {
        let server = SecretIdentity::generate().unwrap();
        let (entries, bytes) = sample(&server);
        let keyid = server.public().keyid().to_string();
        let s = decode(&bytes, Some(&keyid)).unwrap();
        assert_eq!(s.entries, entries);
        assert_eq!(s.header.keyring_term, 3);
        assert_eq!(s.header.entries, 3);
        decode(&bytes, Some(&server.public().to_string())).unwrap();
        decode(&bytes, None).unwrap();
        assert_eq!(check(&bytes, Some(&keyid)).unwrap(), s.header);
        let other = SecretIdentity::generate().unwrap();
        let err = decode(&bytes, Some(other.public().keyid().as_str())).unwrap_err();
        assert!(err.0.contains("not by the expected"), "{err}");
        // Empty storage makes an empty snapshot.
        let empty = encode(&[], "memory", 1, "t".into(), &server);
        assert!(decode(&empty, None).unwrap().entries.is_empty());
    }

    #[test]
    fn fail_damaged_cut_extended_resigned_or_malformed_snapshots() {
        let server = SecretIdentity::generate().unwrap();
        let (_, bytes) = sample(&server);
        let err = |b: &[u8]| decode(b, None).unwrap_err().0;
        // A flipped byte in a value (the last entry's is empty: flip the one before its
        // length), a flipped length, the file cut short, bytes appended.
        let mut flipped = bytes.clone();
        let at = bytes.len() - 1 - 4 - 1 - 4 - 1;
        flipped[at] ^= 1;
        assert!(err(&flipped).contains("SHA-256"));
        let mut longer = bytes.clone();
        *longer.last_mut().unwrap() ^= 1;
        assert!(err(&longer).contains("cut short"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("cut short"));
        assert!(err(&[&bytes[..], b"x"].concat()).contains("bytes added"));
        // `check` and `check_file` refuse what `decode` refuses.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap");
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            check_file(&file, None).unwrap(),
            check(&bytes, None).unwrap()
        );
        for damaged in [&flipped[..], &bytes[..bytes.len() - 1], &longer[..]] {
            std::fs::write(&file, damaged).unwrap();
            assert_eq!(
                check_file(&file, None).unwrap_err(),
                decode(damaged, None).unwrap_err()
            );
            assert_eq!(
                check(damaged, None).unwrap_err(),
                decode(damaged, None).unwrap_err()
            );
        }
        // A header changed (the term), with or without a new checksum: the signature fails.
        let header_end = MAGIC.len()
            + bytes[MAGIC.len()..]
                .iter()
                .position(|b| *b == b'\n')
                .unwrap();
        let header = std::str::from_utf8(&bytes[..header_end]).unwrap();
        let with_header = |h: &str| [h.as_bytes(), &bytes[header_end..]].concat();
        let changed = header.replacen("\"keyring_term\":3", "\"keyring_term\":4", 1);
        assert!(err(&with_header(&changed)).contains("signature"));
        // Entries rewritten and re-checksummed by someone without the server key.
        let forged_entries = vec![("a".to_owned(), b"2".to_vec())];
        let other = SecretIdentity::generate().unwrap();
        let forged = encode(&forged_entries, "file", 3, "t".into(), &other);
        let keyid = server.public().keyid().to_string();
        assert!(decode(&forged, Some(&keyid)).is_err());
        // Not a snapshot at all; a header that is not JSON; unknown header fields.
        assert!(err(b"").contains("SIGIL-SNAPSHOT-1"));
        assert!(err(b"SIGIL-SNAPSHOT-1\nnot json\n").contains("header"));
        assert!(err(b"SIGIL-SNAPSHOT-1\n").contains("no header line"));
        let extra = header.replacen("{\"created\"", "{\"x\":1,\"created\"", 1);
        assert!(err(&with_header(&extra)).contains("header"));
    }

    #[test]
    fn fail_entries_that_lie_about_their_shape() {
        let entry = |k: &[u8], v: &[u8]| {
            let mut b = (k.len() as u32).to_be_bytes().to_vec();
            b.extend_from_slice(k);
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v);
            b
        };
        let two = [entry(b"a", b"1"), entry(b"b", b"2")].concat();
        assert_eq!(read_entries(&two, 2).unwrap().len(), 2);
        let e = |b: &[u8], n: u64| read_entries(b, n).unwrap_err().0;
        assert!(e(&two, 3).contains("past the end"));
        assert!(e(&two, 1).contains("after the last entry"));
        assert!(e(&two, u64::MAX).contains("cut short"));
        let reversed = [entry(b"b", b"2"), entry(b"a", b"1")].concat();
        assert!(e(&reversed, 2).contains("out of order"));
        let repeated = [entry(b"a", b"2"), entry(b"a", b"1")].concat();
        assert!(e(&repeated, 2).contains("out of order"));
        assert!(e(&entry(&[0xff, 0xfe], b""), 1).contains("UTF-8"));
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(b"abc");
        assert!(e(&huge, 1).contains("64 KiB"));
        let mut long_value = entry(b"a", b"");
        long_value[5..9].copy_from_slice(&1000u32.to_be_bytes());
        assert!(e(&long_value, 1).contains("past the end"));
    }
}
