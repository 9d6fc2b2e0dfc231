//! Response bodies on an inspected flow. Towards the bottle, [`ReturnBody`] counts bytes,
//! swaps echoed credentials back to their placeholders and writes the request's audit
//! event ([`AuditOnEnd`]) when the body ends (or is dropped).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use cork_policy::DlpAction;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::BoxError;
use super::body::{SharedReport, lock};
use super::events::ProxyEvent;
use cork_audit::AuditSink;

/// Replaces real credential values with their placeholders in a response stream.
pub trait SwapBack: Send {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    fn finish(&mut self) -> Vec<u8>;
}

/// Where a finished request's audit event goes.
pub struct AuditOnEnd {
    pub event: ProxyEvent,
    pub started: Instant,
    pub sink: Arc<Mutex<AuditSink>>,
    /// Rates the findings' detectors in the event.
    pub scanner: Arc<cork_dlp::Scanner>,
    pub report: Option<SharedReport>,
    /// What DLP did with body findings (the request was let through, so not `block`).
    pub dlp_action: DlpAction,
}

impl AuditOnEnd {
    pub fn write(&mut self) {
        if let Some(r) = self.report.take() {
            let r = lock(&r);
            self.event.bytes_up = r.bytes;
            for d in &r.detectors {
                if !self.event.detectors.contains(d) {
                    self.event.detectors.push(d.clone());
                }
            }
            if !r.detectors.is_empty() {
                let (action, reason) = match r.action.unwrap_or(self.dlp_action) {
                    DlpAction::Redact => ("redact", "dlp_redacted"),
                    DlpAction::Log => ("log", "dlp_logged"),
                    DlpAction::Block => ("block", "dlp_blocked"),
                    // Let through: an operator approved the held request.
                    DlpAction::Supervise => ("supervise", "approved"),
                };
                self.event.dlp_action = Some(action);
                if self.event.reason == "allowed" {
                    self.event.reason = reason;
                }
            }
        }
        self.event.finish(self.started);
        self.event.rate(&self.scanner);
        // Serialized before the sink's lock, which every request of the bottle's proxy
        // (on every worker thread) takes: held only to seal, write and flush the line.
        let line = cork_audit::encode(&self.event);
        let mut sink = lock(&self.sink);
        if let Err(e) = sink.write_encoded(line).and_then(|()| sink.flush()) {
            tracing::error!("writing a proxy audit event: {e}");
        }
    }
}

/// The upstream's response body on its way to the bottle.
pub struct ReturnBody {
    inner: Incoming,
    swap: Option<Box<dyn SwapBack>>,
    audit: Option<AuditOnEnd>,
    tail: Option<Bytes>,
    done: bool,
}

impl ReturnBody {
    pub fn new(inner: Incoming, swap: Option<Box<dyn SwapBack>>, audit: AuditOnEnd) -> Self {
        ReturnBody {
            inner,
            swap,
            audit: Some(audit),
            tail: None,
            done: false,
        }
    }

    fn count(&mut self, n: usize) {
        if let Some(a) = self.audit.as_mut() {
            a.event.bytes_down += n as u64;
        }
    }

    fn end(&mut self) {
        if let Some(mut a) = self.audit.take() {
            a.write();
        }
    }
}

impl Drop for ReturnBody {
    fn drop(&mut self) {
        // The bottle went away mid-body: still one event for the request. A body whose
        // last byte was relayed is not cut short, even if the client closed before the
        // end-of-body was polled (it read its Content-Length and hung up). With a swapper,
        // bytes may still be held back for a placeholder split across chunks: not relayed.
        let relayed = self.inner.is_end_stream() && self.tail.is_none() && self.swap.is_none();
        if let Some(a) = self.audit.as_mut()
            && !self.done
            && !relayed
        {
            a.event.reason = "client_aborted";
        }
        self.end();
    }
}

impl Body for ReturnBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(t) = this.tail.take() {
                this.count(t.len());
                return Poll::Ready(Some(Ok(Frame::data(t))));
            }
            if this.done {
                this.end();
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    this.done = true;
                    if let Some(s) = this.swap.as_mut() {
                        let rest = s.finish();
                        if !rest.is_empty() {
                            this.tail = Some(Bytes::from(rest));
                        }
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    if let Some(a) = this.audit.as_mut() {
                        a.event.reason = "upstream_aborted";
                    }
                    this.end();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let data = match this.swap.as_mut() {
                            Some(s) => Bytes::from(s.feed(&data)),
                            None => data,
                        };
                        if data.is_empty() {
                            continue;
                        }
                        this.count(data.len());
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.swap {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}
