//! What is left of a request body after an early answer. The server answers some requests
//! before reading their body: a signature that does not verify (401), a body declared too large
//! (413), a sealed server (503). A client still sending would then see the connection reset
//! instead of the answer (curl over HTTP/2 reports a stream error). So a request that has a
//! body hands its handler a body shared with the dispatcher, which, after an error answer,
//! reads and discards what is left — at most [`DRAIN_BYTES`] within [`DRAIN_TIME`], or after a
//! 413 twice the request limit within [`DRAIN_TIME_TOO_LARGE`] — before the answer goes out, as
//! a well-behaved HTTP server lingers.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as _, Frame};

/// The most that is read and thrown away after an early answer.
const DRAIN_BYTES: usize = 4 * 1024 * 1024;
/// How long that may take.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long after a 413, whose body may be large (an authenticated caller's upload).
pub(crate) const DRAIN_TIME_TOO_LARGE: Duration = Duration::from_secs(5);

type Slot = Arc<Mutex<Option<Body>>>;

/// The dispatcher's share of a request body.
#[derive(Debug)]
pub(crate) struct Leftover(Slot);

/// The handler's share: reads from the same body.
struct Shared(Slot);

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}

impl Leftover {
    /// Splits off the dispatcher's share of `req`'s body, if it has one.
    pub(crate) fn split(req: axum::extract::Request) -> (axum::extract::Request, Option<Leftover>) {
        if req.body().is_end_stream() {
            return (req, None);
        }
        let (parts, body) = req.into_parts();
        let slot: Slot = Arc::new(Mutex::new(Some(body)));
        let shared = Body::new(Shared(Arc::clone(&slot)));
        (
            axum::extract::Request::from_parts(parts, shared),
            Some(Leftover(slot)),
        )
    }

    /// Reads and discards what the handler left: at most the larger of [`DRAIN_BYTES`] and
    /// `bytes`, within the longer of [`DRAIN_TIME`] and `time`.
    pub(crate) async fn drain(self, bytes: usize, time: Duration) {
        let limit = DRAIN_BYTES.max(bytes);
        let time = DRAIN_TIME.max(time);
        let Some(body) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut body = body;
        let discard = async {
            let mut read = 0;
            while let Some(Ok(frame)) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > limit {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(time, discard).await;
    }
}
