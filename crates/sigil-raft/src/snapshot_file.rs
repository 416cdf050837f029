//! Raft snapshots as files in `raft/snapshots/`, written and read a key at a time: a snapshot
//! never sits in memory whole, whatever the store holds (issue 23: with a million secrets the
//! old in-memory snapshots took 11 GiB).
//!
//! Format: the magic `SIGSNAP1`, then for each key in order `u32` key length, key (UTF-8),
//! `u32` value length, value (barrier ciphertext); then `u32::MAX` and the `u64` count of keys.
//! Integers are little-endian. A file that ends early, has a key or value over its limit, or a
//! count that does not match is refused.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SIGSNAP1";
const END: u32 = u32::MAX;
/// The longest key a snapshot may hold.
const MAX_KEY: u32 = 64 << 10;
/// The largest value a snapshot may hold.
const MAX_VALUE: u32 = 256 << 20;
/// Files of a snapshot being built or received (removed at start if a crash left them).
pub(crate) const PARTIAL: &str = ".partial-";
/// Finished snapshots.
pub(crate) const SUFFIX: &str = ".snap";

/// Writes a snapshot file key by key.
pub(crate) struct Writer {
    out: BufWriter<std::fs::File>,
    count: u64,
}

impl Writer {
    pub(crate) fn create(path: &Path) -> std::io::Result<Writer> {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        out.write_all(MAGIC)?;
        Ok(Writer { out, count: 0 })
    }

    pub(crate) fn add(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let len = |n: usize, max: u32, what: &str| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| std::io::Error::other(format!("a {what} of {n} bytes")))
        };
        self.out
            .write_all(&len(key.len(), MAX_KEY, "key")?.to_le_bytes())?;
        self.out.write_all(key.as_bytes())?;
        self.out
            .write_all(&len(value.len(), MAX_VALUE, "value")?.to_le_bytes())?;
        self.out.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Ends the file and syncs it; how many keys it holds.
    pub(crate) fn finish(mut self) -> std::io::Result<u64> {
        self.out.write_all(&END.to_le_bytes())?;
        self.out.write_all(&self.count.to_le_bytes())?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(self.count)
    }
}

/// Reads a snapshot file key by key (an iterator of entries; an error ends it).
pub(crate) struct Reader<R> {
    input: R,
    count: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub(crate) fn new(mut input: R) -> Result<Reader<R>, String> {
        let mut magic = [0; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| "not a snapshot: too short".to_owned())?;
        if &magic != MAGIC {
            return Err("not a Sigil raft snapshot".into());
        }
        Ok(Reader {
            input,
            count: 0,
            done: false,
        })
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0; 4];
        self.input
            .read_exact(&mut b)
            .map_err(|_| "the snapshot ends early".to_owned())?;
        Ok(u32::from_le_bytes(b))
    }

    fn bytes(&mut self, n: u32) -> Result<Vec<u8>, String> {
        let mut v = Vec::new();
        (&mut self.input)
            .take(u64::from(n))
            .read_to_end(&mut v)
            .map_err(|e| e.to_string())?;
        if v.len() != n as usize {
            return Err("the snapshot ends early".into());
        }
        Ok(v)
    }

    fn next_entry(&mut self) -> Result<Option<(String, Vec<u8>)>, String> {
        let key_len = self.u32()?;
        if key_len == END {
            let mut b = [0; 8];
            self.input
                .read_exact(&mut b)
                .map_err(|_| "the snapshot ends early".to_owned())?;
            if u64::from_le_bytes(b) != self.count {
                return Err("the snapshot's count does not match its keys".into());
            }
            let mut rest = [0; 1];
            if self.input.read(&mut rest).map_err(|e| e.to_string())? != 0 {
                return Err("bytes after the snapshot's end".into());
            }
            return Ok(None);
        }
        if key_len > MAX_KEY {
            return Err(format!("a key of {key_len} bytes in the snapshot"));
        }
        let key = String::from_utf8(self.bytes(key_len)?)
            .map_err(|_| "a key in the snapshot is not UTF-8".to_owned())?;
        let value_len = self.u32()?;
        if value_len > MAX_VALUE {
            return Err(format!("a value of {value_len} bytes in the snapshot"));
        }
        let value = self.bytes(value_len)?;
        self.count += 1;
        Ok(Some((key, value)))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<(String, Vec<u8>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A unique name for a partial file in `dir`.
pub(crate) fn partial_path(dir: &Path, what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{PARTIAL}{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes every finished snapshot in `dir` but `keep`, and (with `partials`) every partial
/// file a crash left.
pub(crate) fn prune(dir: &Path, keep: &str, partials: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale =
            (name.ends_with(SUFFIX) && name != keep) || (partials && name.starts_with(PARTIAL));
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Syncs directory `dir` (a rename in it is durable afterwards).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let mut w = Writer::create(&p).unwrap();
        for (k, v) in entries {
            w.add(k, v).unwrap();
        }
        assert_eq!(w.finish().unwrap(), entries.len() as u64);
        std::fs::read(p).unwrap()
    }

    fn read(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
        Reader::new(bytes)?.collect()
    }

    #[test]
    fn entries_round_trip() {
        let entries: &[(&str, &[u8])] = &[("a", b""), ("b/c", b"\x00\xff"), ("é", &[7; 300])];
        let got = read(&write(entries)).unwrap();
        let want: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert!(read(&write(&[])).unwrap().is_empty());
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = write(&[("key", b"value"), ("k2", b"v2")]);
        for cut in 0..good.len() {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read(&longer).is_err(), "trailing bytes");
        let mut count = good.clone();
        let n = count.len();
        count[n - 8] ^= 1;
        assert!(read(&count).is_err(), "wrong count");
        let mut magic = good;
        magic[0] = b'X';
        assert!(read(&magic).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&(MAX_KEY + 1).to_le_bytes());
        assert!(read(&huge).unwrap_err().contains("key of"));
        let mut bad_utf8 = MAGIC.to_vec();
        bad_utf8.extend_from_slice(&1u32.to_le_bytes());
        bad_utf8.push(0xff);
        assert!(read(&bad_utf8).unwrap_err().contains("UTF-8"));
    }
}
