//! Sealed streams (`sigil-proto` `stream.rs`, `sigil-crypto` `stream.rs`) as a client reads
//! them: bytes pushed in pieces, each whole frame opened with the fixed keys.
//!
//! Input: a flags byte, then bytes. Bit 0 clear: the bytes are the stream, pushed
//! `flags >> 1` + 1 bytes at a time. Bit 0 set (template mode): the bytes are a plaintext the
//! fixed server key seals to the fixed client key in frames of `(flags >> 1) % 16 + 1` bytes;
//! the stream must read back exactly, and with any one byte changed (chosen by the plaintext's
//! first byte) or its last byte cut, it must not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_fuzz::{NONCE, client, publics};
use sigil_proto::stream::{Direction, StreamReader, StreamWriter};

const OK: Direction<'static> = Direction::Response {
    status: 200,
    nonce: NONCE,
};

/// Reads `bytes` pushed `step` at a time: the plaintext, or `None` if refused.
fn read(bytes: &[u8], step: usize) -> Option<Vec<u8>> {
    let server = publics()[0].encryption_key();
    let mut r = StreamReader::new(client().encryption_key(), server, OK);
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
        let _ = read(rest, usize::from(flags >> 1) + 1);
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
    let at = usize::from(rest.first().copied().unwrap_or(0)) * 131 % stream.len();
    let mut changed = stream.clone();
    changed[at] ^= 1;
    assert_eq!(read(&changed, 7), None, "byte {at} changed");
    assert_eq!(read(&stream[..stream.len() - 1], 7), None);
});
