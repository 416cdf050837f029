//! A snapshot sent to be restored, read as it comes (docs/protocol.md §4.7): a sealed stream
//! from an identity, each frame opened as it arrives, or — into a new cluster — the plain file.
//! The plaintext goes to a spool (spool.rs), never whole into memory; the bytes as sent are
//! hashed on the way for the signature's `content-digest`. Nothing is acted on here: the
//! caller checks the spooled snapshot as a file once the body has ended whole.

use std::io::Write as _;
use std::path::PathBuf;

use axum::body::Body;
use http::StatusCode;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use sigil_crypto::EncryptionKey;
use sigil_proto::stream::{Direction, StreamReader};

use crate::error::ApiError;
use crate::spool::Spool;

/// How long the body may go without a byte (408 after): a large snapshot takes as long as it
/// takes, a stalled client does not hold the request forever.
const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Chunks on their way to the spool's writer: at most this many wait in memory.
const AHEAD: usize = 8;

/// How the body comes.
pub(super) enum Sealed<'a> {
    /// The snapshot file itself (a restore into a new cluster: it is barrier ciphertext and
    /// admin-sealed shares, signed by the server key that took it).
    Plain,
    /// A sealed stream from `caller` to `server` for the request with `nonce`.
    Stream {
        server: &'a EncryptionKey,
        caller: &'a [u8; 32],
        nonce: &'a str,
    },
}

/// Whether the request's `content-type` is `media` (compared without case, parameters after
/// `;` allowed).
pub(super) fn is(parts: &http::request::Parts, media: &str) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
}

/// Reads `body` into a new spool in `dir` (`None`: memory), opening it as it comes when
/// sealed. Returns the spool, rewound, and the SHA-256 of the body as sent.
pub(super) async fn receive(
    mut body: Body,
    dir: Option<PathBuf>,
    sealed: Sealed<'_>,
) -> Result<(Spool, [u8; 32]), ApiError> {
    let mut reader = match sealed {
        Sealed::Plain => None,
        Sealed::Stream {
            server,
            caller,
            nonce,
        } => Some(StreamReader::new(
            server,
            caller,
            Direction::Request { nonce },
        )),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(AHEAD);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Spool> {
        let mut spool = Spool::new(dir.as_deref())?;
        while let Some(chunk) = rx.blocking_recv() {
            spool.write_all(&chunk)?;
        }
        spool.flush()?;
        spool.rewind()?;
        Ok(spool)
    });
    let bad = |e: sigil_proto::body::BodyError| {
        ApiError::bad_request(format!("the snapshot's sealed stream: {e}"))
    };
    let mut hash = Sha256::new();
    let read = async {
        loop {
            let frame = match tokio::time::timeout(IDLE, body.frame()).await {
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "the snapshot stopped arriving (nothing for 30 s)",
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return Err(ApiError::bad_request("the request body could not be read"));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(bytes) = frame.into_data() else {
                continue;
            };
            hash.update(&bytes);
            let chunks = match &mut reader {
                None => vec![bytes.to_vec()],
                Some(r) => {
                    r.push(&bytes).map_err(bad)?;
                    let mut opened = Vec::new();
                    while let Some(chunk) = r.next_chunk().map_err(bad)? {
                        opened.push(chunk.to_vec());
                    }
                    opened
                }
            };
            for chunk in chunks {
                if tx.send(chunk).await.is_err() {
                    // The writer stopped: its error is reported below.
                    return Ok(());
                }
            }
        }
        match &reader {
            Some(r) => r.finish().map_err(bad),
            None => Ok(()),
        }
    };
    let outcome = read.await;
    drop(tx);
    let spool = writer
        .await
        .map_err(|_| spool_failed(&"the writer stopped"));
    outcome?;
    let spool = spool?.map_err(|e| spool_failed(&e))?;
    Ok((spool, hash.finalize().into()))
}

fn spool_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "restore: the snapshot could not be spooled");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the snapshot could not be spooled in the data directory (is it full?)",
    )
}

/// A snapshot sent whole (in JSON, from older clients) into a spool, as a streamed one goes.
pub(super) fn spool_bytes(bytes: &[u8], dir: Option<&std::path::Path>) -> Result<Spool, ApiError> {
    let failed = |e: std::io::Error| spool_failed(&e);
    let mut spool = Spool::new(dir).map_err(failed)?;
    spool.write_all(bytes).map_err(failed)?;
    Ok(spool)
}
