//! Refused requests' bodies, read and discarded in the background.

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A request whose body, if it was never forwarded (the request was refused), is read
/// and discarded in the background: a refusal then reaches the client as a response, not
/// as a reset stream (HTTP/2) or a closed connection (HTTP/1.1).
pub struct Draining(Option<Request<Incoming>>);

/// How much of a refused request's body is read before giving up on it.
const DRAIN_LIMIT: u64 = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

impl Draining {
    pub fn new(req: Request<Incoming>) -> Self {
        Draining(Some(req))
    }

    /// The request, to be forwarded: nothing is drained any more.
    pub fn take(&mut self) -> Request<Incoming> {
        self.0.take().expect("request present until taken")
    }
}

impl std::ops::Deref for Draining {
    type Target = Request<Incoming>;
    fn deref(&self) -> &Request<Incoming> {
        self.0.as_ref().expect("request present until taken")
    }
}

impl std::ops::DerefMut for Draining {
    fn deref_mut(&mut self) -> &mut Request<Incoming> {
        self.0.as_mut().expect("request present until taken")
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let Some(req) = self.0.take() else { return };
        let mut body = req.into_body();
        if hyper::body::Body::is_end_stream(&body) {
            return;
        }
        tokio::spawn(async move {
            let mut read = 0u64;
            let drain = async {
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}
