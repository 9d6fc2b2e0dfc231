//! Request bodies on an inspected flow. Towards upstream, [`InspectedBody`] scans the
//! bottle's bytes as they stream and forwards only bytes DLP has settled (so a secret
//! straddling two chunks is still caught before any of it leaves); a `block` finding ends
//! the body with an error, which makes hyper abort the upstream request. The response
//! direction is in `return_body`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cork_policy::DlpAction;
use hyper::body::{Body, Frame, SizeHint};

use super::BoxError;
use crate::dlp_rules::DlpRules;
use cork_dlp::{Finding, Scanner, StreamScan, redact};

/// What happened to a request body, read by the request handler after the upstream
/// exchange (the body runs inside hyper's client).
#[derive(Debug, Default)]
pub struct BodyReport {
    pub detectors: Vec<String>,
    pub blocked: bool,
    /// The strongest action body findings called for.
    pub action: Option<DlpAction>,
    /// The body could not be decoded for scanning (corrupt, truncated, a bomb): it was
    /// cut, since what cannot be scanned is not forwarded.
    pub undecodable: bool,
    pub bytes: u64,
}

pub type SharedReport = Arc<Mutex<BodyReport>>;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error a blocked body ends with. Never carries the secret.
#[derive(Debug, thiserror::Error)]
#[error("DLP blocked the request body")]
pub struct Blocked;

/// Decodes a `Content-Encoding` for scanning only: the bytes forwarded stay encoded.
pub trait Decode: Send {
    /// Decoded bytes of `chunk`, appended to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError>;
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError>;
}

/// A request body as the proxy reads it: the bottle's stream, or what a hold buffered
/// followed by the rest of that stream ([`crate::http`]'s `held_body`).
pub type DownstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub struct InspectedBody {
    inner: DownstreamBody,
    /// The scanner until the body's first bytes start `scan`: a body that never has
    /// any (a GET) costs no stream state, which is sized by the detector count.
    scanner: Option<Arc<Scanner>>,
    scan: Option<StreamScan>,
    rules: DlpRules,
    /// Forwardable bytes not released yet: they start at stream offset `held_start` of
    /// the scanned stream when not decoding.
    held: Vec<u8>,
    held_start: u64,
    /// With a decoder: compressed chunks waiting for the decoded bytes they produced to
    /// settle, each with the decoded stream offset it ends at.
    encoded: VecDeque<(Bytes, u64)>,
    decoder: Option<Box<dyn Decode>>,
    /// Findings still overlapping unreleased bytes (`redact`).
    pending: Vec<Finding>,
    ready: VecDeque<Bytes>,
    trailers: Option<hyper::HeaderMap>,
    done: bool,
    report: SharedReport,
}

impl InspectedBody {
    /// `decoder`: scan the decoded stream but forward the encoded bytes (then `redact`
    /// cannot rewrite them and behaves as `block`).
    pub fn new(
        inner: DownstreamBody,
        scanner: Arc<Scanner>,
        rules: DlpRules,
        decoder: Option<Box<dyn Decode>>,
        report: SharedReport,
    ) -> Self {
        InspectedBody {
            inner,
            scanner: Some(scanner),
            scan: None,
            rules,
            held: Vec::new(),
            held_start: 0,
            encoded: VecDeque::new(),
            decoder,
            pending: Vec::new(),
            ready: VecDeque::new(),
            trailers: None,
            done: false,
            report,
        }
    }

    /// The body's stream scan, started on first use.
    fn stream(&mut self) -> &mut StreamScan {
        let scanner = &mut self.scanner;
        self.scan.get_or_insert_with(|| {
            let sc = scanner.take().expect("a scanner until the stream starts");
            sc.stream_shared()
        })
    }

    /// Records findings; true when the body must stop here.
    fn judge(&mut self, mut findings: Vec<Finding>) -> bool {
        let Some(action) = self.rules.judge(&mut findings) else {
            return false;
        };
        // Encoded bytes are forwarded as they came: they cannot be redacted.
        let action = match (&self.decoder, action) {
            (Some(_), DlpAction::Redact) => DlpAction::Block,
            (_, a) => a,
        };
        let mut r = lock(&self.report);
        r.action = Some(r.action.map_or(action, |a| a.max(action)));
        for f in &findings {
            if !r.detectors.contains(&f.detector) {
                r.detectors.push(f.detector.clone());
            }
        }
        match action {
            DlpAction::Block => {
                r.blocked = true;
                true
            }
            DlpAction::Redact => {
                self.pending.extend(findings);
                false
            }
            // The head had nothing to hold for, and a streamed body cannot be held (part
            // of it may be upstream already): unless an operator approved this request,
            // `supervise` in a body acts as `block`.
            DlpAction::Supervise if self.rules.is_approved() => false,
            DlpAction::Supervise => {
                r.blocked = true;
                true
            }
            DlpAction::Log => false,
        }
    }

    /// Moves bytes DLP has settled (everything when `all`) to `ready`.
    fn release(&mut self, all: bool) {
        let settled = match (&self.scan, all) {
            (Some(s), false) => s.settled(),
            _ => u64::MAX,
        };
        if self.decoder.is_some() {
            while let Some((_, end)) = self.encoded.front() {
                if *end > settled {
                    break;
                }
                let (chunk, _) = self.encoded.pop_front().expect("front exists");
                self.ready.push_back(chunk);
            }
            return;
        }
        let upto = settled.min(self.held_start + self.held.len() as u64);
        let n = (upto - self.held_start) as usize;
        if n == 0 {
            return;
        }
        let chunk: Vec<u8> = self.held.drain(..n).collect();
        let out = if self.pending.is_empty() {
            chunk
        } else {
            redact(&chunk, self.held_start, &self.pending)
        };
        self.held_start += n as u64;
        let start = self.held_start;
        self.pending.retain(|f| f.end() > start);
        self.ready.push_back(Bytes::from(out));
    }

    fn on_data(&mut self, data: Bytes) -> Result<(), BoxError> {
        let findings = match self.decoder.as_mut() {
            None => {
                self.held.extend_from_slice(&data);
                self.stream().feed(&data)
            }
            Some(d) => {
                let mut plain = Vec::new();
                if let Err(e) = d.feed(&data, &mut plain) {
                    lock(&self.report).undecodable = true;
                    return Err(e);
                }
                let scan = self.stream();
                let f = scan.feed(&plain);
                let end = scan.position();
                self.encoded.push_back((data, end));
                f
            }
        };
        if self.judge(findings) {
            return Err(Box::new(Blocked));
        }
        self.release(false);
        Ok(())
    }

    fn on_end(&mut self) -> Result<(), BoxError> {
        let mut findings = Vec::new();
        if let Some(d) = self.decoder.as_mut() {
            let mut plain = Vec::new();
            if let Err(e) = d.finish(&mut plain) {
                lock(&self.report).undecodable = true;
                return Err(e);
            }
            if !plain.is_empty() {
                findings = self.stream().feed(&plain);
            }
        }
        // A body without a byte was never scanned: nothing to finish.
        self.scanner = None;
        if let Some(scan) = self.scan.take() {
            findings.extend(scan.finish());
        }
        if self.judge(findings) {
            return Err(Box::new(Blocked));
        }
        self.release(true);
        self.done = true;
        Ok(())
    }
}

impl Body for InspectedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.ready.pop_front() {
                lock(&this.report).bytes += b.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let step = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => this.on_end(),
                Some(Err(e)) => Err(e),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.on_data(data),
                    Err(frame) => {
                        // Trailers end the body: scanning ends first, they follow the data.
                        this.trailers = frame.into_trailers().ok();
                        this.on_end()
                    }
                },
            };
            if let Err(e) = step {
                this.done = true;
                this.ready.clear();
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Redaction changes the length; otherwise the bytes are exactly the bottle's.
        if self.rules.may_redact() && self.decoder.is_none() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
