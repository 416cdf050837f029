//! Sealed streams (`sigil-proto` `stream.rs`, `sigil-crypto` `stream.rs`) as a client reads
//! an answer and as the server reads a request's body (a snapshot to restore): bytes pushed in
//! pieces, each whole frame opened with the fixed keys.
//!
//! Input: a flags byte, then bytes. Bit 0 clear: the bytes are the stream, pushed
//! `flags >> 2` + 1 bytes at a time, read as an answer (bit 1 clear) or as a request body
//! (bit 1 set). Bit 0 set (template mode): the bytes are a plaintext the fixed server key seals
//! to the fixed client key in frames of `(flags >> 1) % 16 + 1` bytes; the stream must read
//! back exactly as an answer and never as a request body, and with any one byte changed (chosen
//! by the plaintext's first byte) or its last byte cut, it must not read at all.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_fuzz::{NONCE, client, publics};
use sigil_proto::stream::{Direction, StreamReader, StreamWriter};

const OK: Direction<'static> = Direction::Response {
    status: 200,
    nonce: NONCE,
};

/// Reads the answer `bytes` pushed `step` at a time: the plaintext, or `None` if refused.
fn read(bytes: &[u8], step: usize) -> Option<Vec<u8>> {
    let server = publics()[0].encryption_key();
    read_with(StreamReader::new(client().encryption_key(), server, OK), bytes, step)
}

/// Reads the request body `bytes` as the server does.
fn read_request(bytes: &[u8], step: usize) -> Option<Vec<u8>> {
    let client = publics()[1].encryption_key();
    let request = Direction::Request { nonce: NONCE };
    let r = StreamReader::new(sigil_fuzz::server().encryption_key(), client, request);
    read_with(r, bytes, step)
}

fn read_with(mut r: StreamReader<'_>, bytes: &[u8], step: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        r.push(piece).ok()?;
        while let Some(chunk) = r.next_chunk().ok()? {
            out.extend_from_slice(&chunk);
        }
    }
    r.finish().ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 1 == 0 {
        let step = usize::from(flags >> 2) + 1;
        let _ = match flags & 2 {
            0 => read(rest, step),
            _ => read_request(rest, step),
        };
        return;
    }
    let server = sigil_fuzz::server().encryption_key();
    let (mut w, mut stream) =
        StreamWriter::new(server, publics()[1].encryption_key(), OK).unwrap();
    let size = usize::from(flags >> 1) % 16 + 1;
    let pieces: Vec<&[u8]> = if rest.is_empty() {
        vec![&[]]
    } else {
        rest.chunks(size).collect()
    };
    let n = pieces.len();
    for (i, p) in pieces.into_iter().enumerate() {
        stream.extend(w.frame(p.to_vec(), i + 1 == n).unwrap());
    }
    assert_eq!(read(&stream, 7).as_deref(), Some(rest));
    assert_eq!(read_request(&stream, 7), None, "an answer read as a request");
    let at = usize::from(rest.first().copied().unwrap_or(0)) * 131 % stream.len();
    let mut changed = stream.clone();
    changed[at] ^= 1;
    assert_eq!(read(&changed, 7), None, "byte {at} changed");
    assert_eq!(read(&stream[..stream.len() - 1], 7), None);
});
