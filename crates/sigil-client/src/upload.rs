//! Uploads: a file sent as a request's body a chunk at a time (docs/protocol.md §4.7), for a
//! snapshot to restore. Signed, it goes as a sealed stream; into a new cluster, as it is.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use sha2::{Digest as _, Sha256};
use sigil_proto::headers;
use sigil_proto::stream::{CHUNK, Direction, StreamWriter};

use crate::client::{Answer, api_error, request_with, rng};
use crate::{ApiResponse, Client, ClientError};

/// Chunks read ahead of the connection: at most this many wait in memory.
const AHEAD: usize = 4;

impl Client {
    /// Sends the file at `file` as the body of a signed `POST path`, sealed to the server as
    /// a stream (docs/protocol.md §4.7: a snapshot to restore over a running cluster), and
    /// opens the answer. The signature covers the body's digest, which must be known before
    /// the headers go: the sealed stream is written, as it is sealed, to an unnamed temporary
    /// file (in the system's temporary directory), then sent from there. Neither the file nor
    /// its sealed form is held in memory.
    pub async fn upload(&self, path: &str, file: &Path) -> Result<ApiResponse, ClientError> {
        self.check_output_policy("POST", path)?;
        let server = self.server_key().await?.clone();
        let key = self.key()?;
        let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
        let (writer, enc) = StreamWriter::new(
            key.encryption_key(),
            server.encryption_key(),
            Direction::Request { nonce: &nonce },
        )
        .map_err(|e| ClientError::Config(e.to_string()))?;
        let source = file.to_owned();
        let (sealed, sha256, length) =
            tokio::task::spawn_blocking(move || seal_file(writer, enc, &source))
                .await
                .map_err(|_| ClientError::Config("sealing the upload failed".into()))?
                .map_err(|e| ClientError::Config(format!("{}: {e}", file.display())))?;
        let url = self.url(path);
        let digest = Some(sigil_proto::signature::content_digest_of(&sha256));
        let mut fields = self.authentication("POST", &url, digest, &nonce)?;
        fields.push(("content-length", length.to_string()));
        let request = request_with(
            "POST",
            &url,
            &fields,
            Some(headers::SEALED_STREAM),
            file_body(sealed),
        )?;
        let reply = self.http.send_body(request).await?;
        let answer = Answer {
            status: reply.status,
            channel: None,
            receipt: None,
            bytes: reply.body,
            nonce,
        };
        if !(200..300).contains(&answer.status) {
            return Err(api_error(answer.status, &answer.bytes));
        }
        let opened = self.open(&server, &answer, None, false)?;
        let value = serde_json::from_slice(&opened)
            .map_err(|e| ClientError::Response(format!("invalid JSON: {e}")))?;
        Ok(ApiResponse {
            status: answer.status,
            body: Some(value),
        })
    }

    /// Sends the file at `file` unauthenticated, as it is, as the body of `POST path` with
    /// media type `content_type` (a snapshot restored into a new cluster), and reads the plain
    /// JSON answer.
    pub async fn plain_upload(
        &self,
        path: &str,
        file: &Path,
        content_type: &str,
    ) -> Result<ApiResponse, ClientError> {
        let open = std::fs::File::open(file)
            .and_then(|f| f.metadata().map(|m| (f, m.len())))
            .map_err(|e| ClientError::Config(format!("{}: {e}", file.display())))?;
        let (source, length) = open;
        let fields = [("content-length", length.to_string())];
        let request = request_with(
            "POST",
            &self.url(path),
            &fields,
            Some(content_type),
            file_body(source),
        )?;
        let reply = self.http.send_body(request).await?;
        if !(200..300).contains(&reply.status) {
            return Err(api_error(reply.status, &reply.body));
        }
        let body = serde_json::from_slice(&reply.body)
            .map_err(|e| ClientError::Response(format!("invalid JSON: {e}")))?;
        Ok(ApiResponse {
            status: reply.status,
            body: Some(body),
        })
    }
}

/// Seals the file at `source` as a stream (`enc`, then its frames) into an unnamed temporary
/// file: that file (rewound), the SHA-256 of its bytes and their number.
fn seal_file(
    mut writer: StreamWriter,
    enc: Vec<u8>,
    source: &Path,
) -> std::io::Result<(std::fs::File, [u8; 32], u64)> {
    let mut input = std::fs::File::open(source)?;
    let mut left = input.metadata()?.len();
    let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
    let mut hash = Sha256::new();
    let mut length = 0u64;
    let mut put = |bytes: &[u8], out: &mut std::io::BufWriter<std::fs::File>| {
        hash.update(bytes);
        length += bytes.len() as u64;
        out.write_all(bytes)
    };
    put(&enc, &mut out)?;
    loop {
        let n = left.min(CHUNK as u64) as usize;
        let mut chunk = vec![0u8; n];
        input.read_exact(&mut chunk)?;
        left -= n as u64;
        let frame = writer
            .frame(chunk, left == 0)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        put(&frame, &mut out)?;
        if left == 0 {
            break;
        }
    }
    let mut sealed = out.into_inner().map_err(|e| e.into_error())?;
    std::io::Seek::rewind(&mut sealed)?;
    Ok((sealed, hash.finalize().into(), length))
}

/// A body read from `file` a chunk at a time on a blocking thread.
fn file_body(mut file: std::fs::File) -> FileBody {
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let read = match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    Ok(Bytes::from(chunk))
                }
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
        }
    });
    FileBody(rx)
}

struct FileBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}
