//! The write-ahead logs beside the redb file.
//!
//! A durable redb commit rewrites every page its copy-on-write B-trees touched and syncs them:
//! for a group of small writes that was about 90 page writes and a 3 ms `fdatasync` on the
//! project's VM. So each group's effective writes (after its batches' conditions were checked)
//! are appended to a log as one record and synced — one small sequential write — before anyone
//! is answered; checkpoints move them into redb later (see `file.rs`).
//!
//! Each log is one file, `<db>.wal.<epoch>`; a checkpoint starts the next epoch's log and, once
//! redb holds the old one's writes and records the new epoch, deletes the old one.
//!
//! Record: `len: u32 LE | epoch: u64 LE | payload (len bytes) | SHA-256(len | epoch | payload)`,
//! payload: `count: u32 LE`, then per write `1 | klen: u32 | key | vlen: u32 | value` (a put) or
//! `0 | klen: u32 | key` (a delete).
//!
//! Reading a log yields its records up to the first one that is torn, corrupt or of another
//! epoch than the file's: a torn tail is a write nobody was told had happened. Writes are blind
//! puts and deletes, so replaying a record whose effect redb already holds changes nothing.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// One write: `(key, value)`, `None` deleting the key.
pub(crate) type Write = (String, Option<Vec<u8>>);

/// Bytes of the length, epoch and digest around a payload.
const HEAD: usize = 4 + 8;
const DIGEST: usize = 32;

pub(crate) struct Wal {
    file: File,
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log at `path`.
    pub(crate) fn open(path: &Path) -> std::io::Result<Wal> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Wal { file, len })
    }

    /// The writes of every intact record of `epoch` at the head of the log, record by record,
    /// and how the log ends after them.
    pub(crate) fn records(&mut self, epoch: u64) -> std::io::Result<(Vec<Vec<Write>>, Ending)> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(read(&bytes, epoch))
    }

    /// Appends one record and syncs it to the disk.
    pub(crate) fn append(&mut self, epoch: u64, writes: &[&Write]) -> std::io::Result<()> {
        let record = encode(epoch, writes)?;
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.len += record.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

fn too_big() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "write too large for the log",
    )
}

fn encode(epoch: u64, writes: &[&Write]) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    let count = u32::try_from(writes.len()).map_err(|_| too_big())?;
    payload.extend_from_slice(&count.to_le_bytes());
    for (key, value) in writes {
        let klen = u32::try_from(key.len()).map_err(|_| too_big())?;
        payload.push(u8::from(value.is_some()));
        payload.extend_from_slice(&klen.to_le_bytes());
        payload.extend_from_slice(key.as_bytes());
        if let Some(v) = value {
            let vlen = u32::try_from(v.len()).map_err(|_| too_big())?;
            payload.extend_from_slice(&vlen.to_le_bytes());
            payload.extend_from_slice(v);
        }
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let mut record = Vec::with_capacity(HEAD + payload.len() + DIGEST);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&epoch.to_le_bytes());
    record.extend_from_slice(&payload);
    let digest = Sha256::digest(&record);
    record.extend_from_slice(&digest);
    Ok(record)
}

/// How a log ends after its intact records.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// With the last record.
    Clean,
    /// In a record that reaches the end of the file but is incomplete or fails its digest:
    /// an append that was cut off (by a crash, before its sync returned), so never
    /// acknowledged.
    Torn,
    /// In a bad record with more bytes after it: the log was damaged after it was written.
    Corrupt { offset: usize },
}

/// The intact records of `epoch` at the head of `bytes`, and how the log ends after them.
pub(crate) fn read(bytes: &[u8], epoch: u64) -> (Vec<Vec<Write>>, Ending) {
    let mut records = Vec::new();
    let mut rest = bytes;
    while let Some((writes, after)) = record(rest, epoch) {
        records.push(writes);
        rest = after;
    }
    let offset = bytes.len() - rest.len();
    let ending = if rest.is_empty() {
        Ending::Clean
    } else {
        // Where the bad record says it ends; a length field cut short reaches the end too.
        let claimed = rest
            .get(..4)
            .and_then(|b| usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok())
            .and_then(|len| (HEAD + DIGEST).checked_add(len));
        match claimed {
            Some(end) if end < rest.len() => Ending::Corrupt { offset },
            _ => Ending::Torn,
        }
    };
    (records, ending)
}

#[cfg(test)]
fn parse(bytes: &[u8], epoch: u64) -> Vec<Vec<Write>> {
    read(bytes, epoch).0
}

/// One record of `epoch` at the head of `bytes` and what follows it; `None` when torn,
/// corrupt or of another epoch.
fn record(bytes: &[u8], epoch: u64) -> Option<(Vec<Write>, &[u8])> {
    let len = usize::try_from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
    let end = HEAD.checked_add(len)?;
    let whole = bytes.get(..end.checked_add(DIGEST)?)?;
    let (body, digest) = whole.split_at(end);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    if u64::from_le_bytes(body[4..HEAD].try_into().ok()?) != epoch {
        return None;
    }
    let writes = payload(&body[HEAD..])?;
    Some((writes, &bytes[whole.len()..]))
}

fn payload(mut p: &[u8]) -> Option<Vec<Write>> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (p.get(..n)?, p.get(n..)?);
        p = rest;
        Some(head)
    };
    let u32_at = |b: &[u8]| usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok();
    let count = u32_at(take(4)?)?;
    let mut writes = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let put = match take(1)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        let klen = u32_at(take(4)?)?;
        let key = String::from_utf8(take(klen)?.to_vec()).ok()?;
        let value = if put {
            let vlen = u32_at(take(4)?)?;
            Some(take(vlen)?.to_vec())
        } else {
            None
        };
        writes.push((key, value));
    }
    // A digest-checked record with bytes left over was not written by this code.
    if !p.is_empty() {
        return None;
    }
    Some(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, value: Option<&[u8]>) -> Write {
        (key.to_owned(), value.map(<[u8]>::to_vec))
    }

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut wal = Wal::open(&path).unwrap();
        let (a, b, c) = (w("a", Some(b"1")), w("b", None), w("c", Some(b"")));
        wal.append(7, &[&a, &b]).unwrap();
        wal.append(7, &[&c]).unwrap();
        let mut again = Wal::open(&path).unwrap();
        assert_eq!(again.len(), wal.len());
        assert_eq!(
            again.records(7).unwrap(),
            (
                vec![vec![a.clone(), b.clone()], vec![c.clone()]],
                Ending::Clean
            )
        );
        // Another epoch's records are not replayed.
        assert!(again.records(8).unwrap().0.is_empty());
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_log() {
        let first = w("k", Some(b"first"));
        let second = w("k", Some(b"second"));
        let mut bytes = encode(1, &[&first]).unwrap();
        let one = bytes.len();
        bytes.extend(encode(1, &[&second]).unwrap());
        // Every cut inside the second record leaves the first.
        for cut in one..bytes.len() {
            let (records, ending) = read(&bytes[..cut], 1);
            assert_eq!(records, vec![vec![first.clone()]], "cut {cut}");
            assert_eq!(
                ending,
                if cut == one {
                    Ending::Clean
                } else {
                    Ending::Torn
                }
            );
        }
        assert_eq!(parse(&bytes, 1).len(), 2);
        // Any flipped byte in the second record drops it (and only it).
        for i in one..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(parse(&bad, 1), vec![vec![first.clone()]], "byte {i}");
        }
        // A damaged record with records after it is corruption, not a torn append.
        let mut damaged = bytes.clone();
        damaged[HEAD + 2] ^= 0x01;
        assert_eq!(read(&damaged, 1), (vec![], Ending::Corrupt { offset: 0 }));
        // A record of another epoch ends the log, and what follows it is not read.
        let mut stale = encode(0, &[&first]).unwrap();
        stale.extend(encode(1, &[&second]).unwrap());
        assert!(parse(&stale, 1).is_empty());
        // Garbage, huge lengths and empty input parse to nothing, without panicking.
        assert!(parse(&[], 1).is_empty());
        assert!(parse(&[0xff; 64], 1).is_empty());
        assert!(parse(&[0, 0, 0, 0], 1).is_empty());
    }

    #[test]
    fn a_new_record_over_old_bytes_is_read_alone() {
        // New records over the start of old ones (a reused file): the old remains must not be
        // read as records.
        let old = encode(1, &[&w("old", Some(&[7u8; 300]))]).unwrap();
        let new = encode(2, &[&w("new", Some(b"x"))]).unwrap();
        let mut bytes = old;
        bytes[..new.len()].copy_from_slice(&new);
        assert_eq!(parse(&bytes, 2), vec![vec![w("new", Some(b"x"))]]);
    }
}
