//! One audit device: a writer that owns the sink (file, TCP or Unix socket), the hash chain and
//! the HMAC key, fed through a bounded queue. A socket's writer is a thread of its own, so a
//! slow or hung socket makes writes fail within the timeout and never blocks a request for
//! longer; a file is written by the requests themselves (inline.rs).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;
use sigil_crypto::SecretIdentity;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::chain;
use super::entry::{Entry, json_str};
use super::inline::{Batches, Inline};

/// Entries waiting for one device; more are refused at once. Requests wait for their entry
/// on the async workers, so as many can wait as there are requests in flight: room for one
/// per connection the server accepts (4096).
const QUEUE: usize = 4096;
/// Entries written together at most: those queued while the previous write ran.
const MAX_BATCH: usize = 256;
/// How long a socket write may block.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a device writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Append to a file.
    File(PathBuf),
    /// A TCP socket, `host:port`.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

/// A configured device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Its name (`sigil audit hash -device=NAME`).
    pub name: String,
    /// Where it writes.
    pub sink: Sink,
    /// Built-in rotation of a file device (`None`: the file grows until rotated outside,
    /// e.g. by logrotate and SIGHUP).
    pub rotate: Option<Rotation>,
}

/// When a file device rotates its file, and how many rotated files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The file is rotated once a write has taken it to this size or more.
    pub bytes: u64,
    /// Rotated files kept: `PATH.1` (the newest) to `PATH.<keep>`; older ones are deleted.
    pub keep: u32,
}

impl Rotation {
    /// `PATH.n`.
    pub fn numbered(path: &std::path::Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Moves `PATH.1…` up by one (the one beyond `keep` is replaced, so dropped), then `PATH`
    /// to `PATH.1`, and syncs the directory.
    fn shift(self, path: &std::path::Path) -> std::io::Result<()> {
        for n in (1..self.keep).rev() {
            match std::fs::rename(Self::numbered(path, n), Self::numbered(path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(path, Self::numbered(path, 1))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The answer to one entry: written, or why not.
pub(crate) type Written = oneshot::Receiver<Result<(), String>>;

pub(crate) enum Job {
    /// A line body (`Hasher::body`).
    Entry(Vec<u8>, oneshot::Sender<Result<(), String>>),
    Close(SyncSender<()>),
    /// Checkpoint, then open the sink again before the next write.
    Reopen(SyncSender<()>),
}

/// How jobs reach a device's writer.
enum Jobs {
    /// A thread of its own (sockets).
    Thread(SyncSender<Job>),
    /// The requests themselves (files).
    Inline(Arc<Inline<Writer>>),
}

impl Jobs {
    /// Hands `job` on; `false` if it was refused (closed, or the queue is full).
    fn send(&self, job: Job) -> bool {
        match self {
            Jobs::Thread(tx) => tx.try_send(job).is_ok(),
            Jobs::Inline(inline) => inline.submit(job),
        }
    }
}

pub(crate) struct Device {
    pub(crate) name: String,
    jobs: Jobs,
    hasher: Arc<Hasher>,
    /// Entries queued and not yet written (or failed).
    pub(crate) depth: Arc<AtomicUsize>,
}

/// A device's HMAC-SHA256, keyed once (the key's padded blocks hashed) and cloned per value.
/// The keyed state can compute every HMAC the key can: it is as secret as the key. The hash
/// states are wiped when dropped (the `zeroize` features of `hmac` and `sha2`), but keying
/// leaves a padded copy of the key on the stack that `hmac` does not wipe.
pub(crate) struct Hasher(Hmac<Sha256>);

impl Hasher {
    fn new(key: &[u8; 32]) -> Self {
        Hasher(<Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    /// The HMAC of `value` in Vault's form `hmac-sha256:<hex>`.
    pub(crate) fn hash(&self, value: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(value.as_bytes());
        format!(
            "hmac-sha256:{}",
            sigil_crypto::hex(&mac.finalize().into_bytes())
        )
    }

    /// The body of `entry`'s line for this device: its members, then its data with every
    /// string replaced by its HMAC.
    pub(crate) fn body(&self, entry: &Entry<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(entry.members.len() + 256);
        out.extend_from_slice(&entry.members);
        if let Some(data) = entry.data {
            out.extend_from_slice(b",\"data\":");
            self.redact_into(&mut out, data);
        }
        out
    }

    /// Writes `value` as JSON with every string replaced by its HMAC.
    fn redact_into(&self, out: &mut Vec<u8>, value: &Value) {
        match value {
            Value::String(s) => json_str(out, &self.hash(s)),
            // A secret may be a number (a PIN) or a boolean: HMAC its JSON text.
            Value::Number(n) => json_str(out, &self.hash(&n.to_string())),
            Value::Bool(b) => json_str(out, &self.hash(if *b { "true" } else { "false" })),
            Value::Null => out.extend_from_slice(b"null"),
            Value::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.redact_into(out, v);
                }
                out.push(b']');
            }
            Value::Object(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_str(out, k);
                    out.push(b':');
                    self.redact_into(out, v);
                }
                out.push(b'}');
            }
        }
    }
}

enum Open {
    File(std::fs::File),
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Open {
    fn connect(sink: &Sink) -> std::io::Result<Open> {
        Ok(match sink {
            Sink::File(p) => {
                use std::os::unix::fs::OpenOptionsExt as _;
                Open::File(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(p)?,
                )
            }
            Sink::Tcp(addr) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let s = std::net::TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
                s.set_write_timeout(Some(SOCKET_TIMEOUT))?;
                Open::Tcp(s)
            }
            Sink::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_write_timeout(Some(SOCKET_TIMEOUT))?;
                Open::Unix(s)
            }
        })
    }

    /// Writes whole lines. On failure, says how many bytes the sink took: none for a file (cut
    /// back by what this write added, its length read after the failure, since the file may
    /// have been rotated or truncated meanwhile), any number for a socket.
    fn write_lines(&mut self, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
        match self {
            Open::File(f) => write_counting(f, bytes).map_err(|(sent, e)| {
                // A failed write must not leave a fragment the next line would be glued to.
                if sent > 0
                    && let Ok(meta) = f.metadata()
                {
                    let _ = f.set_len(meta.len().saturating_sub(sent as u64));
                }
                (0, e)
            }),
            Open::Tcp(s) => write_counting(s, bytes),
            Open::Unix(s) => write_counting(s, bytes),
        }
    }
}

/// `write_all` that says how many bytes went out before an error.
fn write_counting(w: &mut impl Write, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut sent = 0;
    while sent < bytes.len() {
        match w.write(&bytes[sent..]) {
            Ok(0) => return Err((sent, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((sent, e)),
        }
    }
    Ok(())
}

/// Where the chain of a file device stands: the last line's hash and seq, read from the end
/// of a regular file (anything else starts a new chain).
fn file_tail(path: &PathBuf) -> (String, u64) {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let tail = || -> std::io::Result<Option<(String, u64)>> {
        let mut f = std::fs::File::open(path)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(meta.len().saturating_sub(TAIL)))?;
        let mut buf = Vec::new();
        f.take(TAIL).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        Ok(text.lines().last().and_then(chain::tail_of))
    };
    tail().ok().flatten().unwrap_or_default()
}

struct Writer {
    sink: Sink,
    rotate: Option<Rotation>,
    open: Option<Open>,
    chain: ChainState,
    checkpoint_every: u64,
    server: Arc<SecretIdentity>,
    depth: Arc<AtomicUsize>,
}

/// Where a chain stands: the last line's hash and seq, and entries since the last checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChainState {
    prev: String,
    seq: u64,
    since_checkpoint: u64,
}

/// The lines of one batch as they are built: their bytes, and after each line where it ends
/// and where the chain stands.
struct Batch {
    chain: ChainState,
    out: Vec<u8>,
    ends: Vec<(usize, ChainState)>,
}

impl Batch {
    fn new(chain: ChainState) -> Self {
        Batch {
            chain,
            out: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Appends `body` as the chain's next line; returns the line's index in the batch.
    fn push(&mut self, body: &[u8], checkpoint: bool) -> usize {
        let chain = &mut self.chain;
        chain.seq += 1;
        chain.prev = chain::append_line(&mut self.out, chain.seq, &chain.prev, body);
        chain.since_checkpoint = if checkpoint {
            0
        } else {
            chain.since_checkpoint + 1
        };
        self.ends.push((self.out.len(), chain.clone()));
        self.ends.len() - 1
    }

    /// How many of the batch's lines lie whole within its first `sent` bytes.
    fn whole_lines(&self, sent: usize) -> usize {
        self.ends.iter().take_while(|(end, _)| *end <= sent).count()
    }
}

#[cfg(test)]
impl Writer {
    /// A writer at the start of a chain, a checkpoint every three entries.
    fn for_tests(sink: Sink, server: Arc<SecretIdentity>) -> Writer {
        Writer {
            sink,
            rotate: None,
            open: None,
            chain: ChainState {
                prev: String::new(),
                seq: 0,
                since_checkpoint: 0,
            },
            checkpoint_every: 3,
            server,
            depth: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Entries as `Device::submit` queues them (counted), and their answers.
    fn queued<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> (Vec<Job>, Vec<Written>) {
        let (jobs, answers): (Vec<_>, Vec<_>) = paths
            .into_iter()
            .map(|path| {
                let (reply, answer) = oneshot::channel();
                let data = serde_json::json!({ "password": "hunter2" });
                let mut entry = Entry::new("request");
                entry.str("path", path).data(&data);
                (
                    Job::Entry(Hasher::new(&[7; 32]).body(&entry), reply),
                    answer,
                )
            })
            .unzip();
        self.depth.fetch_add(jobs.len(), Ordering::Relaxed);
        (jobs, answers)
    }
}

impl Writer {
    /// Appends a checkpoint signed by the server key.
    fn append_checkpoint(&self, batch: &mut Batch) {
        let entry = chain::checkpoint(&self.server, &batch.chain.prev, batch.chain.seq + 1);
        batch.push(&entry.members, true);
    }

    /// Appends a request or response entry's line and a checkpoint when one is due. Returns
    /// the entry's line index.
    fn append_record(&self, batch: &mut Batch, body: &[u8]) -> usize {
        let line = batch.push(body, false);
        if batch.chain.since_checkpoint >= self.checkpoint_every {
            self.append_checkpoint(batch);
        }
        line
    }

    /// Rotates a file device's file once it has reached its size: ends it with a signed
    /// checkpoint (so it verifies on its own, `--strict`), moves it to `PATH.1` (older ones up
    /// by one) and lets the next write start `PATH` anew, its first line linked to the last
    /// one here. If the checkpoint cannot be written, or the file cannot be moved, the file
    /// goes on and rotation is tried after the next write.
    fn rotate_if_due(&mut self) {
        let (Some(rotation), Sink::File(path), Some(Open::File(f))) =
            (self.rotate, &self.sink, &self.open)
        else {
            return;
        };
        if f.metadata().map_or(true, |m| m.len() < rotation.bytes) {
            return;
        }
        let path = path.clone();
        if self.chain.since_checkpoint > 0 {
            let mut batch = Batch::new(self.chain.clone());
            self.append_checkpoint(&mut batch);
            if let Err((_, e)) = self.write(&batch.out) {
                tracing::warn!(file = %path.display(), error = %e, "audit file not rotated: its closing checkpoint could not be written");
                return;
            }
            self.chain = batch.chain;
        }
        self.open = None;
        match rotation.shift(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), seq = self.chain.seq, "audit file rotated")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "audit file not rotated; writing on")
            }
        }
    }

    /// Writes `bytes` (whole lines); on failure, how many bytes the sink took and why not more.
    fn write(&mut self, bytes: &[u8]) -> Result<(), (usize, String)> {
        if self.open.is_none() {
            let open = Open::connect(&self.sink).map_err(|e| (0, e.to_string()))?;
            self.open = Some(open);
        }
        let open = self.open.as_mut().expect("opened above");
        open.write_lines(bytes).map_err(|(sent, e)| {
            self.open = None;
            (sent, e.to_string())
        })
    }

    /// Records the jobs queued so far in one write. An entry succeeds if its line went out
    /// whole, and the chain moves on to the last line that did: all of them, none (a file cut
    /// back after a failed write), or the first few (a socket that broke in the middle).
    /// Returns whether the device was closed.
    fn run_batch(&mut self, jobs: &mut Vec<Job>) -> bool {
        let mut batch = Batch::new(self.chain.clone());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut closed = None;
        let mut reopened = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Entry(body, reply) if closed.is_none() => {
                    let line = self.append_record(&mut batch, &body);
                    replies.push((reply, line));
                }
                Job::Entry(_, reply) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    let _ = reply.send(Err("the device is closed".to_owned()));
                }
                Job::Close(done) => closed = Some(done),
                Job::Reopen(done) => reopened.push(done),
            }
        }
        if (closed.is_some() || !reopened.is_empty()) && batch.chain.since_checkpoint > 0 {
            self.append_checkpoint(&mut batch);
        }
        let (whole, error) = if batch.out.is_empty() {
            (0, None)
        } else {
            match self.write(&batch.out) {
                Ok(()) => (batch.ends.len(), None),
                Err((sent, e)) => (batch.whole_lines(sent), Some(e)),
            }
        };
        if let Some((_, chain)) = whole.checked_sub(1).and_then(|i| batch.ends.get(i)) {
            self.chain = chain.clone();
        }
        self.depth.fetch_sub(replies.len(), Ordering::Relaxed);
        for (reply, line) in replies {
            let result = match &error {
                Some(e) if line >= whole => Err(e.clone()),
                _ => Ok(()),
            };
            let _ = reply.send(result);
        }
        if error.is_none() {
            self.rotate_if_due();
        }
        if !reopened.is_empty() {
            // The next write opens the path again: a moved file is left complete.
            self.open = None;
            for done in reopened {
                let _ = done.send(());
            }
        }
        match closed {
            Some(done) => {
                let _ = done.send(());
                true
            }
            None => false,
        }
    }

    /// Answers jobs that came after a close: entries refused, controls done.
    fn refuse(&self, jobs: Vec<Job>) {
        for job in jobs {
            match job {
                Job::Entry(_, reply) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    let _ = reply.send(Err("the device is closed".to_owned()));
                }
                Job::Close(done) | Job::Reopen(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn run(mut self, jobs: &Receiver<Job>) {
        let mut batch = Vec::new();
        while let Ok(job) = jobs.recv() {
            batch.push(job);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if self.run_batch(&mut batch) {
                return;
            }
        }
    }
}

impl Batches for Writer {
    type Job = Job;

    fn is_entry(job: &Job) -> bool {
        matches!(job, Job::Entry(..))
    }

    fn run_batch(&mut self, jobs: &mut Vec<Job>) -> bool {
        Writer::run_batch(self, jobs)
    }

    fn refuse(&self, jobs: Vec<Job>) {
        Writer::refuse(self, jobs)
    }
}

impl Device {
    pub(crate) fn start(
        config: &DeviceConfig,
        key: Zeroizing<[u8; 32]>,
        server: Arc<SecretIdentity>,
        checkpoint_every: u64,
    ) -> std::io::Result<Device> {
        let (prev, seq) = match (&config.sink, config.rotate) {
            // A file rotated away with nothing written since: the chain goes on from there.
            (Sink::File(p), Some(_)) => match file_tail(p) {
                (prev, 0) => match file_tail(&Rotation::numbered(p, 1)) {
                    (_, 0) => (prev, 0),
                    rotated => rotated,
                },
                tail => tail,
            },
            (Sink::File(p), None) => file_tail(p),
            _ => (String::new(), 0),
        };
        // `key` (zeroizing) drops at the end of this function; the keyed state stays.
        let hasher = Arc::new(Hasher::new(&key));
        let depth = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            depth: Arc::clone(&depth),
            sink: config.sink.clone(),
            rotate: config.rotate,
            open: None,
            chain: ChainState {
                prev,
                seq,
                since_checkpoint: 0,
            },
            checkpoint_every,
            server,
        };
        let jobs = match config.sink {
            Sink::File(_) => Jobs::Inline(Inline::new(writer, QUEUE)),
            Sink::Tcp(_) | Sink::Unix(_) => {
                let (tx, rx) = sync_channel(QUEUE);
                std::thread::Builder::new()
                    .name(format!("sigil-audit-{}", config.name))
                    .spawn(move || writer.run(&rx))?;
                Jobs::Thread(tx)
            }
        };
        Ok(Device {
            name: config.name.clone(),
            jobs,
            hasher,
            depth,
        })
    }

    /// Queues `entry`, encoded for this device; the answer comes when it is written (or
    /// failed).
    pub(crate) fn submit(&self, entry: &Entry<'_>) -> Option<Written> {
        let body = self.hasher.body(entry);
        let (reply, answer) = oneshot::channel();
        // Counted before it is queued, so the writer never decrements below zero.
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(Job::Entry(body, reply)) {
            Some(answer)
        } else {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    pub(crate) fn hash(&self, value: &str) -> String {
        self.hasher.hash(value)
    }

    /// Writes a checkpoint and makes the next write open the sink again (waits at most
    /// `timeout`).
    pub(crate) fn reopen(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        if self.jobs.send(Job::Reopen(done)) {
            let _ = wait.recv_timeout(timeout);
        }
    }

    /// Writes a final checkpoint and stops the writer (waits at most `timeout`).
    pub(crate) fn close(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        if self.jobs.send(Job::Close(done)) {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<SecretIdentity> {
        Arc::new(SecretIdentity::generate().unwrap())
    }

    /// Calls `f` with a request entry for `path` whose data holds a password.
    fn with_entry<R>(path: &str, f: impl FnOnce(&Entry<'_>) -> R) -> R {
        let data = serde_json::json!({ "password": "hunter2" });
        let mut entry = Entry::new("request");
        entry.str("path", path).data(&data);
        f(&entry)
    }

    /// A line body for `path` as `submit` encodes it.
    fn body(path: &str) -> Vec<u8> {
        with_entry(path, |e| Hasher::new(&[7; 32]).body(e))
    }

    fn verified(path: &std::path::Path, server: &SecretIdentity) -> (String, chain::VerifySummary) {
        let text = std::fs::read_to_string(path).unwrap();
        let summary = chain::verify(&text, Some(server.public().keyid().as_str()), false).unwrap();
        (text, summary)
    }

    fn queued<'a>(
        writer: &Writer,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<Job>, Vec<Written>) {
        writer.queued(paths)
    }

    fn writer(sink: Sink, server: Arc<SecretIdentity>) -> Writer {
        Writer::for_tests(sink, server)
    }

    /// The keyed state, cloned per value, gives the HMAC an independent implementation gives.
    #[test]
    fn the_reused_keyed_state_gives_plain_hmac_sha256() {
        let key = [0x5a; 32];
        let hasher = Hasher::new(&key);
        let reference = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        for value in ["", "hunter2", "hunter2", &"x".repeat(200)] {
            let tag = aws_lc_rs::hmac::sign(&reference, value.as_bytes());
            let expected = format!("hmac-sha256:{}", sigil_crypto::hex(tag.as_ref()));
            assert_eq!(hasher.hash(value), expected);
        }
        let data =
            serde_json::json!({ "pin": 1234, "ok": true, "n": null, "a": ["s", {"k\"": "v"}] });
        let mut entry = Entry::new("request");
        entry.data(&data);
        let body = String::from_utf8(hasher.body(&entry)).unwrap();
        let line: Value = serde_json::from_str(&format!("{{{body}}}")).unwrap();
        let redacted = &line["data"];
        assert_eq!(redacted["pin"], hasher.hash("1234"));
        assert_eq!(redacted["ok"], hasher.hash("true"));
        assert!(redacted["n"].is_null());
        assert_eq!(redacted["a"][0], hasher.hash("s"));
        assert_eq!(redacted["a"][1]["k\""], hasher.hash("v"));
        assert_eq!(line["type"], "request");
    }

    /// A file whose writes fail once it is open (`/dev/full`): every entry of the batch fails
    /// and the chain stays where it was.
    #[test]
    fn a_batch_the_file_refuses_fails_whole() {
        let mut writer = writer(Sink::File("/dev/full".into()), server());
        let before = writer.chain.clone();
        let (mut jobs, answers) = queued(&writer, ["full/0", "full/1", "full/2", "full/3"]);
        assert!(!writer.run_batch(&mut jobs));
        for mut answer in answers {
            assert!(answer.try_recv().unwrap().is_err());
        }
        assert_eq!(writer.chain, before);
        assert_eq!(writer.depth.load(Ordering::Relaxed), 0);
    }

    /// A sink that takes `room` bytes and then fails, as a socket whose peer went away does.
    struct Breaks {
        room: usize,
        took: Vec<u8>,
    }

    impl Write for Breaks {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let n = bytes.len().min(self.room - self.took.len()).min(7);
            if n == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.took.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// When a socket breaks in the middle of a batch, the lines it took whole count as written
    /// and the chain continues from the last of them; the line cut in two and those after it
    /// do not.
    #[test]
    fn a_batch_cut_short_counts_only_its_whole_lines() {
        let server = server();
        let writer = writer(Sink::Unix("/nonexistent".into()), Arc::clone(&server));
        let mut batch = Batch::new(writer.chain.clone());
        // checkpoint_every = 3: a/0 a/1 a/2 checkpoint a/3
        let lines: Vec<usize> = (0..4)
            .map(|i| writer.append_record(&mut batch, &body(&format!("a/{i}"))))
            .collect();
        assert_eq!(lines, [0, 1, 2, 4]);
        assert_eq!(batch.ends.len(), 5);
        let (end_of_2, after_2) = batch.ends[2].clone();
        assert_eq!(after_2.seq, 3);

        let mut sink = Breaks {
            room: end_of_2 + 10,
            took: Vec::new(),
        };
        let (sent, _) = write_counting(&mut sink, &batch.out).unwrap_err();
        assert_eq!(sent, end_of_2 + 10);
        assert_eq!(batch.whole_lines(sent), 3);
        assert_eq!(batch.whole_lines(end_of_2), 3);
        assert_eq!(batch.whole_lines(end_of_2 - 1), 2);
        assert_eq!(batch.whole_lines(0), 0);
        assert_eq!(batch.whole_lines(batch.out.len()), 5);
        // What the sink took whole is a chain that verifies up to its last line.
        let mut full = String::from_utf8(sink.took[..end_of_2].to_vec()).unwrap();
        let mut rest = Batch::new(after_2);
        writer.append_checkpoint(&mut rest);
        full.push_str(std::str::from_utf8(&rest.out).unwrap());
        let summary = chain::verify(&full, Some(server.public().keyid().as_str()), false).unwrap();
        assert_eq!((summary.lines, summary.checkpoints), (4, 1));
        let mut sink = Breaks {
            room: usize::MAX,
            took: Vec::new(),
        };
        assert!(write_counting(&mut sink, &batch.out).is_ok());
        assert_eq!(sink.took, batch.out);
    }

    /// Entries queued from many threads faster than one write takes go out in batches that
    /// keep one intact chain, every entry once, no secret in it.
    #[test]
    fn concurrent_entries_make_one_intact_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let server = server();
        let config = DeviceConfig {
            name: "file".into(),
            sink: Sink::File(path.clone()),
            rotate: None,
        };
        let key = Zeroizing::new([7; 32]);
        let device = Arc::new(Device::start(&config, key, Arc::clone(&server), 10).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let device = Arc::clone(&device);
                std::thread::spawn(move || {
                    let answers: Vec<_> = (0..200)
                        .map(|i| {
                            with_entry(&format!("{t}/{i}"), |e| device.submit(e)).expect("queued")
                        })
                        .collect();
                    for answer in answers {
                        answer.blocking_recv().unwrap().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        device.close(Duration::from_secs(5));
        let (text, summary) = verified(&path, &server);
        assert_eq!(summary.unsigned_tail, 0, "close signs the tail");
        assert!(!text.contains("hunter2"));
        let mut paths: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|e| e["path"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(paths.len(), 800);
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 800, "every entry exactly once");
        assert_eq!(device.depth.load(Ordering::Relaxed), 0);
    }

    /// One batch: checkpoints fall where they are due, a close signs the tail, and entries
    /// queued behind the close are refused, not written.
    #[test]
    fn a_batch_with_a_close_signs_its_tail_and_refuses_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let server = server();
        let mut writer = writer(Sink::File(path.clone()), Arc::clone(&server));
        let (mut batch, answers) = queued(&writer, ["a/0", "a/1", "a/2", "a/3"]);
        let (done, closed) = sync_channel(1);
        batch.push(Job::Close(done));
        let (after, mut refused) = queued(&writer, ["after"]);
        batch.extend(after);

        assert!(writer.run_batch(&mut batch));
        closed.try_recv().unwrap();
        for mut answer in answers {
            answer.try_recv().unwrap().unwrap();
        }
        assert!(refused.remove(0).blocking_recv().unwrap().is_err());
        assert_eq!(writer.depth.load(Ordering::Relaxed), 0);
        let (text, summary) = verified(&path, &server);
        // a/0 a/1 a/2 checkpoint a/3 checkpoint
        assert_eq!(summary.lines, 6);
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(summary.unsigned_tail, 0);
        assert!(!text.contains("after"));
    }

    /// A batch that cannot be written fails every entry in it and leaves the chain where it
    /// was: the next batch continues it as if the failed one never happened.
    #[test]
    fn a_failed_batch_fails_all_its_entries_and_the_chain_continues_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let path = logs.join("audit.log");
        let server = server();
        let mut writer = writer(Sink::File(path.clone()), Arc::clone(&server));
        let run = |writer: &mut Writer, names: &[&str]| {
            let (mut batch, answers) = queued(writer, names.iter().copied());
            assert!(!writer.run_batch(&mut batch));
            answers
                .into_iter()
                .map(|mut a| a.try_recv().unwrap().is_ok())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&mut writer, &["lost/1", "lost/2"]), [false, false]);
        std::fs::create_dir(&logs).unwrap();
        assert_eq!(run(&mut writer, &["kept/1", "kept/2", "kept/3"]), [true; 3]);
        let (text, summary) = verified(&path, &server);
        assert_eq!((summary.lines, summary.checkpoints), (4, 1));
        assert!(!text.contains("lost/"));
        assert_eq!(writer.depth.load(Ordering::Relaxed), 0);
    }

    /// A file device with rotation: every file but the live one ends with a checkpoint, the
    /// set verifies as one chain oldest first, only `keep` rotated files are kept.
    #[test]
    fn a_rotating_file_keeps_one_chain_across_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let server = server();
        let mut writer = writer(Sink::File(path.clone()), Arc::clone(&server));
        writer.checkpoint_every = 100;
        writer.rotate = Some(Rotation {
            bytes: 2000,
            keep: 2,
        });
        for i in 0..40 {
            let name = format!("r/{i}");
            let (mut batch, answers) = queued(&writer, [name.as_str()]);
            assert!(!writer.run_batch(&mut batch));
            for mut a in answers {
                a.try_recv().unwrap().unwrap();
            }
        }
        let p3 = Rotation::numbered(&path, 3);
        assert!(!p3.exists(), "only two rotated files are kept");
        let files: Vec<(String, String)> = [
            Rotation::numbered(&path, 2),
            Rotation::numbered(&path, 1),
            path.clone(),
        ]
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
        let keyid = server.public().keyid().to_string();
        for (name, text) in &files[..2] {
            let s = chain::verify(text, Some(&keyid), true).unwrap();
            assert_eq!(s.unsigned_tail, 0, "{name} ends with a checkpoint");
            assert!(
                text.len() >= 2000 && text.len() < 4000,
                "{name}: {}",
                text.len()
            );
        }
        let set: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let summaries = chain::verify_files(&set, Some(&keyid), true).unwrap();
        assert_eq!(summaries[2].last.0, writer.chain.seq);
    }
}
