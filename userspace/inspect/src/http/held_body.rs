//! The request body of a request that `supervise` could hold. A streamed body cannot be
//! held (part of it may be upstream before the finding), so when a request's DLP
//! settings could call for `supervise` its body is read first, up to
//! [`MAX_HELD_BODY`], and scanned whole: a `supervise` finding holds the request before
//! anything goes upstream, a `block` finding refuses it. A longer body streams as usual
//! from what was read on; a `supervise` finding in it then blocks, as in any stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cork_policy::DlpAction;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::refusal::{Refusal, RequestAudit};
use crate::BoxError;
use crate::body::{DownstreamBody, InspectedBody, SharedReport, lock};
use crate::codings;
use crate::dlp_rules::DlpRules;
use crate::server::Shared;

/// The most of a body read before a hold decision: 1 MiB per held request keeps a
/// bottle's worst case (256 connections, see `MAX_CONNECTIONS`) at 256 MiB.
pub const MAX_HELD_BODY: usize = 1 << 20;

/// What was read of a body.
pub struct Buffered {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// The whole body was read (it ended within the bound).
    pub complete: bool,
}

/// Reads `req`'s body up to [`MAX_HELD_BODY`].
pub async fn buffer(req: &mut Request<Incoming>) -> Result<Buffered, Refusal> {
    let mut out = Buffered {
        data: VecDeque::new(),
        trailers: None,
        complete: false,
    };
    let mut read = 0usize;
    let body = req.body_mut();
    while read <= MAX_HELD_BODY {
        if body.is_end_stream() {
            out.complete = true;
            break;
        }
        match body.frame().await {
            None => {
                out.complete = true;
                break;
            }
            Some(Err(_)) => return Err(Refusal::new(StatusCode::BAD_REQUEST, "body_incomplete")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => {
                    read += d.len();
                    out.data.push_back(d);
                }
                Err(frame) => {
                    out.trailers = frame.into_trailers().ok();
                    out.complete = true;
                    break;
                }
            },
        }
    }
    Ok(out)
}

/// Scans a complete buffered body with the request's DLP settings (not approved): `Ok(true)`
/// when it calls for `supervise`; a `block` finding or an undecodable body is refused
/// here, before anything goes upstream.
pub async fn calls_for_supervise(
    shared: &Shared,
    headers: &HeaderMap,
    rules: &DlpRules,
    buffered: &Buffered,
    audit: &mut RequestAudit,
) -> Result<bool, Refusal> {
    let decoder = codings::decoder_for(headers)
        .map_err(|reason| Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason))?;
    let report: SharedReport = Default::default();
    let copy = Prefixed {
        data: buffered.data.clone(),
        trailers: buffered.trailers.clone(),
        rest: None,
    };
    let dry = InspectedBody::new(
        copy.boxed_unsync(),
        shared.cfg.scanner.clone(),
        rules.clone(),
        decoder,
        report.clone(),
    );
    // Ends with an error when a finding stops it; the report says which.
    let _ = dry.collect().await;
    let rep = lock(&report);
    for d in &rep.detectors {
        if !audit.ev.detectors.contains(d) {
            audit.ev.detectors.push(d.clone());
        }
    }
    if rep.undecodable {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "body_undecodable"));
    }
    match rep.action {
        Some(DlpAction::Block) => {
            audit.ev.dlp_action = Some("block");
            Err(Refusal::new(StatusCode::FORBIDDEN, "dlp_blocked"))
        }
        Some(DlpAction::Supervise) => {
            audit.ev.dlp_action = Some("supervise");
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The body to forward: what was buffered, then the rest of the bottle's stream.
pub fn forwardable(buffered: Option<Buffered>, body: Incoming) -> DownstreamBody {
    match buffered {
        None => body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        Some(b) => Prefixed {
            data: b.data,
            trailers: b.trailers,
            rest: (!b.complete).then_some(body),
        }
        .boxed_unsync(),
    }
}

/// Buffered frames, then (when the body was longer than the bound) the rest.
struct Prefixed {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<Incoming>,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(d) = this.data.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(rest) = this.rest.as_mut() {
            return Pin::new(rest)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError);
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = self.data.iter().map(|d| d.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(held),
            Some(rest) => {
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(held + r.lower());
                if let Some(u) = r.upper() {
                    h.set_upper(held + u);
                }
                h
            }
        }
    }
}
