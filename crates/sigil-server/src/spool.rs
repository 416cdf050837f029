//! Where a snapshot waits on its way through the server — an unnamed file in the data
//! directory, or memory for a transient server — and a body fed from a channel, so that a
//! snapshot of any size goes out (a backup) or comes in (a restore) a chunk at a time.

use std::io::Seek as _;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

/// A snapshot's bytes, written once and read back from the start.
pub(crate) enum Spool {
    /// Unnamed (`O_TMPFILE` or unlinked at once), 0600: gone when dropped, even after a crash.
    File(std::fs::File),
    Memory(std::io::Cursor<Vec<u8>>),
}

impl Spool {
    /// A new, empty spool in `dir` (`None`: in memory).
    pub(crate) fn new(dir: Option<&Path>) -> std::io::Result<Spool> {
        Ok(match dir {
            Some(dir) => Spool::File(tempfile::tempfile_in(dir)?),
            None => Spool::Memory(std::io::Cursor::new(Vec::new())),
        })
    }

    pub(crate) fn rewind(&mut self) -> std::io::Result<()> {
        match self {
            Spool::File(f) => f.rewind(),
            Spool::Memory(m) => m.rewind(),
        }
    }
}

impl std::io::Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Spool::File(f) => f.write(buf),
            Spool::Memory(m) => m.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Spool::File(f) => f.flush(),
            Spool::Memory(m) => m.flush(),
        }
    }
}

impl std::io::Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Spool::File(f) => f.read(buf),
            Spool::Memory(m) => m.read(buf),
        }
    }
}

/// A body whose bytes come from a channel, as another task produces them.
pub(crate) struct ChannelBody(pub(crate) tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|frame| frame.map(|f| f.map(http_body::Frame::data)))
    }
}
