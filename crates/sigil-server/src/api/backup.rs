//! An operator backup as a sealed stream (docs/protocol.md §4.7): the snapshot's entries are
//! written to a spool — an unnamed file in the data directory, or memory for a transient
//! server — then the snapshot (header, entries) is read back a chunk at a time, each chunk
//! sealed to the caller and sent as it is sealed. Neither the snapshot nor its sealed form is
//! ever held whole in memory on a persistent server.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use sigil_proto::headers;
use sigil_proto::stream::{CHUNK, Direction, StreamWriter, stream_len};

use super::blocking::blocking;
use crate::error::ApiError;
use crate::sealing::Reply;
use crate::spool::{ChannelBody, Spool};

/// Frames sealed ahead of the client: at most this many wait in memory.
const AHEAD: usize = 4;

/// Whether `Accept` names a sealed stream (docs/protocol.md §4.7); endpoints that cannot
/// stream answer with an envelope whatever it says.
pub(super) fn asked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case(sigil_proto::headers::SEALED_STREAM)
            })
        })
}

/// The sealed stream of a snapshot taken now, for the caller of `reply`; its entries spooled
/// in `spool_dir` (`None`: in memory).
pub(super) async fn stream_snapshot(
    reply: &Reply<'_>,
    spool_dir: Option<std::path::PathBuf>,
) -> Result<Response, ApiError> {
    let core = Arc::clone(reply.core);
    let (prefix, spool, body_bytes) = blocking(move || {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "backup: {what}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the backup could not be spooled",
            )
        };
        let spool = Spool::new(spool_dir.as_deref()).map_err(|e| internal("spool", &e))?;
        let (header, spool) = core
            .snapshot_to(std::io::BufWriter::new(spool))
            .map_err(ApiError::from)?;
        let mut spool = spool
            .into_inner()
            .map_err(|e| internal("spool", &e.into_error()))?;
        spool.rewind().map_err(|e| internal("spool", &e))?;
        Ok((header.prefix(), spool, header.body_bytes))
    })
    .await?;
    let server = reply.core.server_identity().encryption_key();
    let client = reply.authn.caller.public.encryption_key();
    let direction = Direction::Response {
        status: StatusCode::OK.as_u16(),
        nonce: &reply.authn.nonce,
    };
    let (writer, enc) = StreamWriter::new(server, client, direction)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "sealing failed"))?;
    let length = stream_len(prefix.len() as u64 + body_bytes);
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    let _ = tx.try_send(Ok(Bytes::from(enc)));
    tokio::task::spawn_blocking(move || send_frames(writer, prefix, spool, body_bytes, &tx));
    let mut response = Response::new(Body::new(ChannelBody(rx)));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(headers::SEALED_STREAM),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

/// Reads the snapshot (`prefix`, then `body_bytes` from `spool`) a chunk at a time, sealing
/// each into a frame for `tx`. A read that fails ends the body early (the client refuses a
/// stream without its last frame); a client that goes away ends the reading.
fn send_frames(
    mut writer: StreamWriter,
    prefix: Vec<u8>,
    spool: Spool,
    body_bytes: u64,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut rest = std::io::Read::chain(&prefix[..], spool.take(body_bytes));
    let mut left = prefix.len() as u64 + body_bytes;
    loop {
        let n = left.min(CHUNK as u64) as usize;
        let mut chunk = vec![0u8; n];
        let frame = rest
            .read_exact(&mut chunk)
            .and_then(|()| {
                left -= n as u64;
                writer
                    .frame(chunk, left == 0)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .map(Bytes::from);
        let failed = frame.is_err();
        if let Err(e) = &frame {
            tracing::error!(error = %e, "backup: the stream ended early");
        }
        if tx.blocking_send(frame).is_err() || failed || left == 0 {
            return;
        }
    }
}
