//! Sealed streams (docs/protocol.md §4.7): a body sealed in chunks, so that neither side holds
//! a large one (an operator backup, a snapshot to restore) whole.
//!
//! ```text
//! application/vnd.sigil.sealed-stream
//! enc (32 bytes) · frame … frame
//! frame = last (1 byte: 0 or 1) · length of ct (u32, big-endian) · ct
//! ```
//!
//! Frame `i` is the HPKE context's message `i` (mode_auth) with the associated data of the
//! body's [`Direction`] followed by the frame's `last` byte: an answer (server → caller, `info`
//! `"sigil/v1/response-stream"`, `"<status> <nonce>"`) or a request's body (caller → server,
//! `"sigil/v1/request-stream"`, the nonce). Each frame carries at most [`CHUNK`] bytes of plaintext; the last
//! frame has `last` = 1 and nothing follows it.

use sigil_crypto::{EncryptionKey, SealInfo, StreamOpener, StreamSealer, TAG_LEN};
use zeroize::Zeroizing;

use crate::body::{BodyError, response_aad};

/// The most plaintext bytes in one frame.
pub const CHUNK: usize = 64 * 1024;
/// The bytes before a frame's ciphertext.
const FRAME_HEAD: usize = 5;
/// The bytes of `enc`.
const ENC: usize = 32;

/// The bytes of the stream of a `plaintext`-byte answer sealed in frames of [`CHUNK`] (the
/// last one shorter; an empty answer is one empty frame): its `content-length`.
pub fn stream_len(plaintext: u64) -> u64 {
    let frames = plaintext.div_ceil(CHUNK as u64).max(1);
    ENC as u64 + frames * (FRAME_HEAD + TAG_LEN) as u64 + plaintext
}

/// Which way a stream goes: its HPKE `info` and the associated data its frames start with.
#[derive(Clone, Copy, Debug)]
pub enum Direction<'a> {
    /// The answer with `status` to the request with `nonce` (server → caller).
    Response {
        /// The answer's HTTP status.
        status: u16,
        /// The request's nonce.
        nonce: &'a str,
    },
    /// The body of the request with `nonce` (caller → server).
    Request {
        /// The request's nonce.
        nonce: &'a str,
    },
}

impl Direction<'_> {
    fn info(self) -> SealInfo {
        match self {
            Direction::Response { .. } => SealInfo::ResponseStream,
            Direction::Request { .. } => SealInfo::RequestStream,
        }
    }

    fn aad(self) -> Vec<u8> {
        match self {
            Direction::Response { status, nonce } => response_aad(status, nonce).into_bytes(),
            Direction::Request { nonce } => nonce.as_bytes().to_vec(),
        }
    }
}

/// Associated data of a frame: the body's, then whether it is the last.
fn frame_aad(answer: &[u8], last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(answer.len() + 1);
    aad.extend_from_slice(answer);
    aad.push(u8::from(last));
    aad
}

/// Seals a body's plaintext as frames, in order (the sender's side).
#[derive(Debug)]
pub struct StreamWriter {
    sealer: StreamSealer,
    aad: Vec<u8>,
    ended: bool,
}

impl StreamWriter {
    /// A stream from `sender` to `recipient` going `direction`, and the bytes that go first
    /// (`enc`).
    pub fn new(
        sender: &EncryptionKey,
        recipient: &[u8; 32],
        direction: Direction<'_>,
    ) -> Result<(Self, Vec<u8>), BodyError> {
        let (sealer, enc) =
            StreamSealer::new(sender, recipient, direction.info()).map_err(|_| BodyError::Seal)?;
        let writer = StreamWriter {
            sealer,
            aad: direction.aad(),
            ended: false,
        };
        Ok((writer, enc.to_vec()))
    }

    /// The frame of the next `chunk` (at most [`CHUNK`] bytes), the stream's last if `last`.
    /// The chunk is sealed where it lies.
    pub fn frame(&mut self, mut chunk: Vec<u8>, last: bool) -> Result<Vec<u8>, BodyError> {
        if self.ended || chunk.len() > CHUNK {
            zeroize::Zeroize::zeroize(&mut chunk);
            return Err(BodyError::Seal);
        }
        self.sealer
            .seal_next(&frame_aad(&self.aad, last), &mut chunk)
            .map_err(|_| BodyError::Seal)?;
        self.ended = last;
        let mut frame = Vec::with_capacity(FRAME_HEAD + chunk.len());
        frame.push(u8::from(last));
        frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        frame.extend_from_slice(&chunk);
        Ok(frame)
    }
}

/// Where a reader is.
#[derive(Debug)]
enum State {
    /// Waiting for `enc`.
    Start,
    /// Opening frames.
    Frames(StreamOpener),
    /// The last frame opened: nothing more may come.
    Ended,
}

/// Opens a sealed stream as its bytes arrive (the recipient's side): [`StreamReader::push`] what
/// came, take each opened chunk with [`StreamReader::next_chunk`], and call
/// [`StreamReader::finish`] when the body ends. The first error ends the stream: a reader
/// never hands out a chunk after a frame that did not open.
pub struct StreamReader<'k> {
    recipient: &'k EncryptionKey,
    sender: [u8; 32],
    info: SealInfo,
    aad: Vec<u8>,
    buffer: Vec<u8>,
    state: State,
    failed: bool,
}

impl std::fmt::Debug for StreamReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("buffered", &self.buffer.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'k> StreamReader<'k> {
    /// A reader of the stream going `direction`, sealed by `sender` to `recipient`.
    pub fn new(recipient: &'k EncryptionKey, sender: &[u8; 32], direction: Direction<'_>) -> Self {
        StreamReader {
            recipient,
            sender: *sender,
            info: direction.info(),
            aad: direction.aad(),
            buffer: Vec::new(),
            state: State::Start,
            failed: false,
        }
    }

    /// Takes bytes of the body as they came.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        if self.failed {
            return Err(BodyError::Open);
        }
        if matches!(self.state, State::Ended) && !bytes.is_empty() {
            return Err(self.fail(BodyError::Malformed("bytes after the last frame")));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// The next opened chunk, once a whole frame has come (`None`: more bytes are needed).
    pub fn next_chunk(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>, BodyError> {
        if self.failed {
            return Err(BodyError::Open);
        }
        if let State::Start = self.state {
            if self.buffer.len() < ENC {
                return Ok(None);
            }
            let opener =
                StreamOpener::new(self.recipient, &self.sender, self.info, &self.buffer[..ENC])
                    .map_err(|_| self.fail(BodyError::Open))?;
            self.buffer.drain(..ENC);
            self.state = State::Frames(opener);
        }
        let State::Frames(opener) = &mut self.state else {
            return if self.buffer.is_empty() {
                Ok(None)
            } else {
                Err(self.fail(BodyError::Malformed("bytes after the last frame")))
            };
        };
        if self.buffer.len() < FRAME_HEAD {
            return Ok(None);
        }
        let last = match self.buffer[0] {
            0 => false,
            1 => true,
            _ => return Err(self.fail(BodyError::Malformed("a frame's last byte is not 0 or 1"))),
        };
        let len = u32::from_be_bytes(self.buffer[1..FRAME_HEAD].try_into().expect("4 bytes"));
        let len = len as usize;
        if !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len) {
            return Err(self.fail(BodyError::Malformed("a frame's length is out of range")));
        }
        if self.buffer.len() < FRAME_HEAD + len {
            return Ok(None);
        }
        let mut chunk: Vec<u8> = self.buffer[FRAME_HEAD..FRAME_HEAD + len].to_vec();
        self.buffer.drain(..FRAME_HEAD + len);
        if opener
            .open_next(&frame_aad(&self.aad, last), &mut chunk)
            .is_err()
        {
            return Err(self.fail(BodyError::Open));
        }
        if last {
            self.state = State::Ended;
            if !self.buffer.is_empty() {
                zeroize::Zeroize::zeroize(&mut chunk);
                return Err(self.fail(BodyError::Malformed("bytes after the last frame")));
            }
        }
        Ok(Some(Zeroizing::new(chunk)))
    }

    /// The body ended: whether the stream was whole (its last frame opened, nothing after it).
    pub fn finish(&self) -> Result<(), BodyError> {
        match (&self.state, self.failed, self.buffer.is_empty()) {
            (_, true, _) => Err(BodyError::Open),
            (State::Ended, false, true) => Ok(()),
            _ => Err(BodyError::Malformed(
                "the stream ended before its last frame: it was cut short",
            )),
        }
    }

    fn fail(&mut self, e: BodyError) -> BodyError {
        self.failed = true;
        zeroize::Zeroize::zeroize(&mut self.buffer);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "q2sWcN2pI1bK3x8yYb5o0rKz";

    struct Keys {
        server: EncryptionKey,
        client: EncryptionKey,
    }

    fn keys() -> Keys {
        Keys {
            server: EncryptionKey::generate().unwrap(),
            client: EncryptionKey::generate().unwrap(),
        }
    }

    const OK: Direction<'static> = Direction::Response {
        status: 200,
        nonce: NONCE,
    };

    /// The answer streamed of `plain` in chunks of `CHUNK` (an empty plaintext: one empty
    /// last frame).
    fn stream(k: &Keys, plain: &[u8]) -> Vec<u8> {
        stream_going(&k.server, &k.client.public(), OK, plain)
    }

    fn stream_going(
        sender: &EncryptionKey,
        recipient: &[u8; 32],
        direction: Direction<'_>,
        plain: &[u8],
    ) -> Vec<u8> {
        let (mut w, mut out) = StreamWriter::new(sender, recipient, direction).unwrap();
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![&[]]
        } else {
            plain.chunks(CHUNK).collect()
        };
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            out.extend(w.frame(c.to_vec(), i + 1 == n).unwrap());
        }
        out
    }

    /// Reads the answer `bytes` pushed `step` at a time.
    fn read(k: &Keys, bytes: &[u8], step: usize) -> Result<Vec<u8>, BodyError> {
        read_going(&k.client, &k.server.public(), OK, bytes, step)
    }

    fn read_going(
        recipient: &EncryptionKey,
        sender: &[u8; 32],
        direction: Direction<'_>,
        bytes: &[u8],
        step: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let mut r = StreamReader::new(recipient, sender, direction);
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            r.push(piece)?;
            while let Some(c) = r.next_chunk()? {
                out.extend_from_slice(&c);
            }
        }
        r.finish()?;
        Ok(out)
    }

    #[test]
    fn streams_read_back_whatever_the_pieces_they_arrive_in() {
        let k = keys();
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let bytes = stream(&k, &plain);
            assert_eq!(bytes.len() as u64, stream_len(size as u64), "{size}");
            for step in [1, 7, 4096, bytes.len()] {
                if size > CHUNK && step == 1 {
                    continue; // a byte at a time over megabytes is slow and proves nothing more
                }
                assert_eq!(read(&k, &bytes, step).unwrap(), plain, "{size} by {step}");
            }
        }
    }

    /// Cut short anywhere — even at a frame's end — extended, a frame dropped, swapped or
    /// repeated, a flag or length changed, another status or nonce: refused.
    #[test]
    fn a_stream_is_refused_unless_whole_and_unchanged() {
        let k = keys();
        let plain: Vec<u8> = (0..2 * CHUNK + 10).map(|i| i as u8).collect();
        let bytes = stream(&k, &plain);
        let frame = FRAME_HEAD + CHUNK + TAG_LEN;
        for cut in [0, 31, 32, 33, ENC + frame, ENC + 2 * frame, bytes.len() - 1] {
            assert!(read(&k, &bytes[..cut], 4096).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&k, &longer, 4096).is_err());
        let f = |i: usize| bytes[ENC + i * frame..ENC + (i + 1) * frame].to_vec();
        let tail = bytes[ENC + 2 * frame..].to_vec();
        let head = bytes[..ENC].to_vec();
        for frames in [
            vec![f(0), tail.clone()],       // one dropped
            vec![f(1), f(0), tail.clone()], // swapped
            vec![f(0), f(0), f(1), tail],   // repeated
        ] {
            let mut b = head.clone();
            b.extend(frames.concat());
            assert!(read(&k, &b, 4096).is_err());
        }
        // The first frame marked last (its tag no longer matches), a last byte of 2, a length
        // beyond a chunk, a flipped ciphertext bit.
        for (at, value) in [(ENC, 1u8), (ENC, 2), (ENC + 1, 0xff), (ENC + 10, 0)] {
            let mut b = bytes.clone();
            b[at] = if at == ENC + 10 { b[at] ^ 1 } else { value };
            assert!(read(&k, &b, 4096).is_err(), "byte {at}");
        }
        // Another status, another nonce, another client key.
        let status = |status| Direction::Response {
            status,
            nonce: NONCE,
        };
        let mut r = StreamReader::new(&k.client, &k.server.public(), status(201));
        r.push(&bytes).unwrap();
        assert!(r.next_chunk().is_err());
        assert!(r.next_chunk().is_err(), "a failed reader stays failed");
        let other_nonce = Direction::Response {
            status: 200,
            nonce: "another-nonce-value",
        };
        let mut r = StreamReader::new(&k.client, &k.server.public(), other_nonce);
        r.push(&bytes).unwrap();
        assert!(r.next_chunk().is_err());
        let other = EncryptionKey::generate().unwrap();
        let mut r = StreamReader::new(&other, &k.server.public(), OK);
        r.push(&bytes).unwrap();
        assert!(r.next_chunk().is_err());
    }

    /// A request's body streams as an answer does, client → server; a stream opens only in
    /// the direction, for the nonce, it was sealed for.
    #[test]
    fn request_bodies_stream_and_no_stream_opens_in_the_other_direction() {
        let k = keys();
        let request = Direction::Request { nonce: NONCE };
        let plain: Vec<u8> = (0..CHUNK + 5).map(|i| (i % 13) as u8).collect();
        let up = stream_going(&k.client, &k.server.public(), request, &plain);
        assert_eq!(up.len() as u64, stream_len(plain.len() as u64));
        let opened = read_going(&k.server, &k.client.public(), request, &up, 1000).unwrap();
        assert_eq!(opened, plain);
        let other = Direction::Request {
            nonce: "another-nonce-value",
        };
        assert!(read_going(&k.server, &k.client.public(), other, &up, 1000).is_err());
        // The same keys the other way round, or as an answer: refused.
        assert!(read_going(&k.client, &k.server.public(), request, &up, 1000).is_err());
        let down = stream(&k, &plain);
        assert!(read_going(&k.server, &k.client.public(), request, &down, 1000).is_err());
        let as_answer = Direction::Response {
            status: 200,
            nonce: NONCE,
        };
        assert!(read_going(&k.server, &k.client.public(), as_answer, &up, 1000).is_err());
    }

    #[test]
    fn a_writer_refuses_oversized_chunks_and_frames_after_the_last() {
        let k = keys();
        let (mut w, _) = StreamWriter::new(&k.server, &k.client.public(), OK).unwrap();
        assert!(w.frame(vec![0; CHUNK + 1], false).is_err());
        w.frame(Vec::new(), true).unwrap();
        assert!(w.frame(Vec::new(), true).is_err());
    }
}
