//! Every HTTP request on an inspected connection: the name it asks for must be the SNI
//! (no fronting, no HTTP/2 coalescing), the route must be allowed, DLP looks at the URL,
//! headers and streamed body, credentials are swapped in on their domain only, and the
//! response streams back with real values swapped back out.
//!
//! [`handle`] is the pipeline, a step per submodule: `admit` (the name and the route),
//! `head` (DLP on URL and headers), `held_body` (a body read whole before a possible
//! hold), `supervise` (a hold for an operator: DLP's `supervise` or an ask rule), credentials (here), `forward` (the request body and
//! the upstream exchange), `respond` (the response or WebSocket back to the bottle). A
//! step that refuses returns a `Refusal`, which `refusal` writes as the audit event and
//! the response; `draining` reads a refused request's body away.

mod admit;
mod draining;
mod forward;
mod head;
mod held_body;
mod refusal;
mod respond;
mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use super::BoxError;
use super::pool::{self, Lease};
use super::server::Shared;
use super::swap::HostCredentials;
use crate::redirects::Original;
use draining::Draining;
use refusal::{Refusal, RequestAudit};
use respond::Exchanged;

pub type DownBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// One bottle connection on the proxy and its upstream.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub orig: Original,
    /// The SNI the flow was allowed for; empty for plain HTTP (decided per request).
    pub sni: String,
    pub rule_id: cork_policy::RuleId,
    /// The generation this connection goes by (`rule_id` is one of its rules).
    pub policy: Arc<cork_policy::Policy>,
    pub h2: bool,
    pub tls: bool,
    pub client: SocketAddr,
    /// The upstream connection this one holds (from the bottle's pool, or made on first
    /// use); it goes back to the pool when this connection ends.
    upstream: tokio::sync::Mutex<Option<Lease>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(lease) = self.upstream.get_mut().take() {
            self.shared.pool.give_back(lease);
        }
    }
}

impl Conn {
    pub fn new(
        shared: Arc<Shared>,
        orig: Original,
        sni: String,
        rule_id: cork_policy::RuleId,
        h2: bool,
        tls: bool,
        client: SocketAddr,
    ) -> Self {
        Conn {
            policy: shared.policy(),
            shared,
            orig,
            sni,
            rule_id,
            h2,
            tls,
            client,
            upstream: tokio::sync::Mutex::new(None),
        }
    }

    /// Goes by `policy` (the generation its flow was decided by) instead of the one in
    /// force now.
    pub fn with_policy(mut self, policy: Arc<cork_policy::Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Where the upstream connection may go if the dialled address does not answer: the
    /// other addresses the DNS proxy answered for `host` ([`crate::fallback`]), looked up
    /// only then.
    fn fallbacks<'a>(&'a self, host: &'a str) -> impl FnOnce() -> Vec<SocketAddr> + 'a {
        move || crate::fallback::fallbacks(self.orig.dst, host, &self.shared.cfg.resolved)
    }

    /// What an upstream connection for `host` must have been made for to serve this
    /// connection's requests.
    fn pool_key(&self, host: &str) -> pool::Key {
        pool::Key {
            name: host.to_owned(),
            dialled: self.orig.dst,
            profile: match (self.tls, self.h2) {
                (false, _) => pool::Profile::Plain,
                (true, true) => pool::Profile::TlsH2,
                (true, false) => pool::Profile::TlsH1,
            },
        }
    }

    fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        match (self.tls, self.h2) {
            (false, _) => None,
            (true, true) => Some(&self.shared.client_h2),
            (true, false) => Some(&self.shared.client_h1),
        }
    }
}

pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<DownBody> {
    let mut req = Draining::new(req);
    let shared = conn.shared.clone();
    let pq = head::path_and_query(&req);
    let mut audit = RequestAudit::new(&conn, &req, &pq);
    match exchange(&conn, &mut req, pq, &mut audit).await {
        Ok(exchanged) => respond::respond(&shared, exchanged, audit),
        Err(refused) => audit.deny(&shared, refused),
    }
}

/// The steps up to the upstream's response head, in order; the first refusal ends them.
async fn exchange(
    conn: &Conn,
    req: &mut Draining,
    pq: String,
    audit: &mut RequestAudit,
) -> Result<Exchanged, Refusal> {
    let mut admitted = admit::admit(conn, req, &pq, audit)?;
    let mut head = head::scan(&conn.shared, req, pq, audit, &admitted.rules)?;
    // A body that could call for `supervise` is read and scanned before any hold or
    // upstream connection; a head already held needs no second look.
    let mut buffered = None;
    if !head.supervise && !admitted.websocket && admitted.rules.may_supervise() {
        let b = held_body::buffer(req).await?;
        if b.complete {
            head.supervise = held_body::calls_for_supervise(
                &conn.shared,
                &head.headers,
                &admitted.rules,
                &b,
                audit,
            )
            .await?;
        }
        buffered = Some(b);
    }
    if head.supervise || admitted.ask {
        supervise::hold(conn, &mut admitted, audit).await?;
    }
    let creds = inject_credentials(&conn.shared, &admitted.host, &mut head.headers, audit);
    forward::forward(conn, req, admitted, head, creds, audit, buffered).await
}

/// Credentials: the placeholder becomes the real value in the credential's header, on
/// its domain only. Upstream is asked for identity encoding so an echoed value can be
/// swapped back before the bottle sees it.
fn inject_credentials(
    shared: &Shared,
    host: &str,
    headers: &mut HeaderMap,
    audit: &mut RequestAudit,
) -> Option<Arc<HostCredentials>> {
    let hc = shared.cfg.credentials.for_host(host)?;
    for inject in &hc.inject {
        if inject.apply(headers) {
            audit
                .ev
                .credentials
                .push(inject.credential.credential.env.clone());
        }
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    Some(hc)
}
