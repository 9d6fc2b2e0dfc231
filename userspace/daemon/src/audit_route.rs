//! `GET /v1/audit`: the daemon's audit history as `application/x-ndjson`, one event per
//! line, oldest first, filtered by [`AuditQuery`]; with `follow=1` the body goes on with
//! each new matching event until the client hangs up (or the daemon stops).
//!
//! A task feeds the body through a small channel, so a slow reader holds back only its
//! own task: the history is filtered on a blocking thread (up to [`cork_audit::HISTORY_LINES`]
//! lines to parse), live lines come from the history's broadcast. A follower that falls
//! more than [`cork_audit::FOLLOW_BACKLOG`] lines behind is told how many it lost, in a
//! `follow_loss` line, never silently.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc};

use cork_audit::{AuditHistory, EventHead, LineFilter, LossEvent};

use crate::api::{ApiError, ErrorKind};
use crate::audit_query::AuditQuery;
use crate::server::Body;

/// History lines are sent in chunks of about this size (one frame per line would be
/// 50 000 frames for a full history).
const CHUNK: usize = 64 << 10;

/// The answer to `GET /v1/audit?QUERY`, or the bad request.
pub fn answer(
    history: &Arc<AuditHistory>,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let q = AuditQuery::parse(query)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))?;
    let filter = q.filter(SystemTime::now());
    let (past, live) = if q.follow {
        let (past, rx) = history.follow();
        (past, Some(rx))
    } else {
        (history.snapshot(), None)
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(feed(past, live, filter, tx));
    let mut resp = Response::new(Lines(rx).boxed());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// The history's matching lines, then (following) the live ones.
async fn feed(
    past: Vec<Bytes>,
    live: Option<broadcast::Receiver<Bytes>>,
    filter: LineFilter,
    tx: mpsc::Sender<Bytes>,
) {
    let sent = {
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || send_history(&past, &filter, &tx).then_some(filter))
            .await
    };
    let (Ok(Some(filter)), Some(mut live)) = (sent, live) else {
        return;
    };
    let mut lost_total = 0;
    loop {
        let line = tokio::select! {
            () = tx.closed() => {
                tracing::debug!("audit follower hung up");
                return;
            }
            got = live.recv() => match got {
                Ok(line) if filter.matches(&line) => line,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    lost_total += lost;
                    loss_line(lost, lost_total)
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

/// Sends the matching lines of `past` in chunks; false when the client is gone.
fn send_history(past: &[Bytes], filter: &LineFilter, tx: &mpsc::Sender<Bytes>) -> bool {
    let mut chunk = BytesMut::new();
    for line in past.iter().filter(|l| filter.matches(l)) {
        chunk.extend_from_slice(line);
        if chunk.len() >= CHUNK && tx.blocking_send(chunk.split().freeze()).is_err() {
            return false;
        }
    }
    chunk.is_empty() || tx.blocking_send(chunk.freeze()).is_ok()
}

/// The line that tells a follower it fell behind: a loss report of the stream itself.
fn loss_line(lost: u64, lost_total: u64) -> Bytes {
    let ev = LossEvent {
        head: EventHead::now("-", "audit", "follow_loss"),
        lost,
        lost_total,
    };
    let mut line = serde_json::to_vec(&ev).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A response body fed by a channel: ends when the feeding task drops its sender.
struct Lines(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|l| l.map(|l| Ok(Frame::data(l))))
    }
}
