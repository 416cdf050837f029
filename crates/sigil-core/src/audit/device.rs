//! One audit device: a writer thread that owns the sink (file, TCP or Unix socket), the hash
//! chain and the HMAC key, fed through a bounded queue. A slow or hung sink makes writes fail
//! within the timeout; it never blocks a request for longer.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Map, Value};
use sha2::Sha256;
use sigil_crypto::SecretIdentity;
use zeroize::Zeroizing;

use super::chain;

/// Entries waiting for one device; more are refused at once.
const QUEUE: usize = 1024;
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
}

pub(crate) enum Job {
    Entry(Map<String, Value>, SyncSender<Result<(), String>>),
    Close(SyncSender<()>),
}

pub(crate) struct Device {
    pub(crate) name: String,
    jobs: SyncSender<Job>,
    hmac_key: Arc<Zeroizing<[u8; 32]>>,
    /// Entries queued and not yet written (or failed).
    pub(crate) depth: Arc<std::sync::atomic::AtomicUsize>,
}

/// HMAC-SHA256 of a value under a device key, in Vault's form `hmac-sha256:<hex>`.
pub(crate) fn hmac(key: &[u8; 32], value: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    let hex = sigil_crypto::hex(&tag);
    format!("hmac-sha256:{hex}")
}

/// Replaces every string in `value` by its HMAC.
fn redact(key: &[u8; 32], value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(hmac(key, s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact(key, v)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), redact(key, v))).collect())
        }
        // A secret may be a number (a PIN) or a boolean: HMAC its JSON text.
        Value::Number(n) => Value::String(hmac(key, &n.to_string())),
        Value::Bool(b) => Value::String(hmac(key, if *b { "true" } else { "false" })),
        Value::Null => Value::Null,
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

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match self {
            Open::File(f) => {
                // A failed write must not leave a fragment the next line would be glued to.
                let len = f.metadata()?.len();
                f.write_all(&bytes).inspect_err(|_| {
                    let _ = f.set_len(len);
                })
            }
            Open::Tcp(s) => s.write_all(&bytes),
            Open::Unix(s) => s.write_all(&bytes),
        }
    }
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
    open: Option<Open>,
    prev: String,
    seq: u64,
    since_checkpoint: u64,
    checkpoint_every: u64,
    key: Arc<Zeroizing<[u8; 32]>>,
    server: Arc<SecretIdentity>,
    depth: Arc<std::sync::atomic::AtomicUsize>,
}

impl Writer {
    fn emit(&mut self, mut entry: Map<String, Value>) -> Result<(), String> {
        if self.open.is_none() {
            self.open = Some(Open::connect(&self.sink).map_err(|e| e.to_string())?);
        }
        let seq = self.seq + 1;
        entry.insert("seq".into(), seq.into());
        entry.insert("prev".into(), self.prev.clone().into());
        let (line, hash) = chain::seal_line(&entry);
        let open = self.open.as_mut().expect("opened above");
        if let Err(e) = open.write_line(&line) {
            self.open = None;
            return Err(e.to_string());
        }
        self.prev = hash;
        self.seq = seq;
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), String> {
        let entry = chain::checkpoint(
            &self.server,
            &self.prev,
            self.seq + 1,
            &crate::timefmt::now_rfc3339(),
        );
        // `checkpoint` sets seq and prev itself; emit re-sets them to the same values.
        self.emit(entry)?;
        self.since_checkpoint = 0;
        Ok(())
    }

    fn record(&mut self, mut entry: Map<String, Value>) -> Result<(), String> {
        for field in ["data", "request_data", "response_data"] {
            if let Some(v) = entry.get(field) {
                let red = redact(&self.key, v);
                entry.insert(field.into(), red);
            }
        }
        self.emit(entry)?;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn run(mut self, jobs: &Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Entry(entry, reply) => {
                    let result = self.record(entry);
                    self.depth
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = reply.send(result);
                }
                Job::Close(done) => {
                    if self.since_checkpoint > 0 {
                        let _ = self.checkpoint();
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
    }
}

impl Device {
    pub(crate) fn start(
        config: &DeviceConfig,
        key: Zeroizing<[u8; 32]>,
        server: Arc<SecretIdentity>,
        checkpoint_every: u64,
    ) -> std::io::Result<Device> {
        let (prev, seq) = match &config.sink {
            Sink::File(p) => file_tail(p),
            _ => (String::new(), 0),
        };
        let key = Arc::new(key);
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = Writer {
            depth: Arc::clone(&depth),
            sink: config.sink.clone(),
            open: None,
            prev,
            seq,
            since_checkpoint: 0,
            checkpoint_every,
            key: Arc::clone(&key),
            server,
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name(format!("sigil-audit-{}", config.name))
            .spawn(move || writer.run(&rx))?;
        Ok(Device {
            name: config.name.clone(),
            jobs: tx,
            hmac_key: key,
            depth,
        })
    }

    /// Queues `entry`; the reply arrives when it is written (or failed).
    pub(crate) fn submit(&self, entry: Map<String, Value>) -> Option<Receiver<Result<(), String>>> {
        let (reply, answer) = sync_channel(1);
        // Counted before it is queued, so the writer never decrements below zero.
        self.depth
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.jobs.try_send(Job::Entry(entry, reply)) {
            Ok(()) => Some(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
        }
    }

    pub(crate) fn hash(&self, value: &str) -> String {
        hmac(&self.hmac_key, value)
    }

    /// Writes a final checkpoint and stops the writer (waits at most `timeout`).
    pub(crate) fn close(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        if self.jobs.try_send(Job::Close(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}
