//! What the proxy does with one message from the bottle (steps 2–6 of the module docs),
//! and the audit event that says so.

use std::net::SocketAddr;
use std::sync::PoisonError;

use cork_policy::DomainVerdict;

use super::{Shared, Transport};
use crate::events::DnsQueryEvent;
use crate::upstream::{Ask, resolve};
use crate::{Query, QueryRefusal, Rcode, check_query, refuse};

impl Shared {
    fn event(&self, transport: Transport, client: SocketAddr) -> DnsQueryEvent {
        DnsQueryEvent::new(&self.cfg.bottle, transport.as_str(), client)
    }

    fn audit(&self, event: &DnsQueryEvent) {
        // A panic elsewhere must not stop DNS audit (and so the bottle's DNS) for good.
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = sink.write(event).and_then(|()| sink.flush()) {
            tracing::warn!(error = %e, "writing a DNS audit event");
        }
    }

    /// Refuses a message before it is decided (rate limit, overload) with `rcode`, or with
    /// the refusal [`check_query`] gives when the message is not a query cork answers.
    pub(super) fn refuse_early(
        &self,
        packet: &[u8],
        reason: &'static str,
        rcode: Rcode,
        transport: Transport,
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let mut ev = self.event(transport, client);
        ev.reason = reason;
        let reply = match check_query(packet) {
            Ok(q) => {
                ev.name = Some(q.name.clone());
                ev.qtype = Some(q.qtype.as_str().to_owned());
                ev.rcode = Some(rcode.as_str());
                Some(refuse(&q, rcode))
            }
            Err(refusal) => {
                ev.name = refusal.name();
                ev.qtype = refused_qtype(&refusal);
                ev.rcode = refusal_rcode(&refusal).map(Rcode::as_str);
                refusal.reply()
            }
        };
        self.audit(&ev);
        reply
    }

    /// Audits a TCP connection closed at accept because the bottle already holds
    /// [`MAX_TCP_CONNECTIONS`](super::MAX_TCP_CONNECTIONS): `connection_limit`, no name,
    /// no reply.
    pub(super) fn refuse_connection(&self, client: SocketAddr) {
        let mut ev = self.event(Transport::Tcp, client);
        ev.reason = "connection_limit";
        self.audit(&ev);
    }

    /// Decides one message (steps 2–6 of the module docs), audits it, and returns the
    /// reply to send, if any.
    pub(super) async fn decide(
        &self,
        packet: &[u8],
        transport: Transport,
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let mut ev = self.event(transport, client);
        let reply = self.decide_into(packet, transport, &mut ev).await;
        self.audit(&ev);
        reply
    }

    async fn decide_into(
        &self,
        packet: &[u8],
        transport: Transport,
        ev: &mut DnsQueryEvent,
    ) -> Option<Vec<u8>> {
        let q = match check_query(packet) {
            Ok(q) => q,
            Err(refusal) => {
                ev.reason = refusal.reason();
                ev.name = refusal.name();
                ev.qtype = refused_qtype(&refusal);
                ev.rcode = refusal_rcode(&refusal).map(Rcode::as_str);
                return refusal.reply();
            }
        };
        ev.name = Some(q.name.clone());
        ev.qtype = Some(q.qtype.as_str().to_owned());
        // The whole query goes by the generation in force as it arrives.
        let policy = self.cfg.policy.current().policy;
        let rule_name = |rule_id| policy.rule(rule_id).map(|r| r.id.clone());
        match policy.match_domain(&q.name) {
            DomainVerdict::Deny { rule_id } => {
                ev.rule = rule_name(rule_id);
                return refused(ev, &q, "denied", Rcode::Refused);
            }
            DomainVerdict::NoMatch => return refused(ev, &q, "not_allowed", Rcode::Refused),
            DomainVerdict::Allow { rule_id } => {
                ev.verdict = "allow";
                ev.rule = rule_name(rule_id);
            }
        }

        let ask = Ask {
            query: &q,
            timeout: self.cfg.upstream_timeout,
            ttl: self.ttl,
        };
        let resolved = tokio::select! {
            resolved = resolve(&ask, &self.cfg.upstreams) => resolved,
            () = self.stopped() => {
                ev.reason = "proxy_stopped";
                return None;
            }
        };
        let answer = match resolved {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(name = %q.name, error = %e, "no upstream DNS answer");
                return refused(ev, &q, "upstream_failed", Rcode::ServFail);
            }
        };

        ev.cnames.clone_from(&answer.cnames);
        let slots = policy.allowed_slots(&q.name);
        for &(addr, ttl) in &answer.addrs {
            if let Err(e) = self.learner.learn(addr, &q.name, &slots, ttl) {
                tracing::warn!(name = %q.name, %addr, error = %e, "learning a DNS answer");
                return refused(ev, &q, "learn_failed", Rcode::ServFail);
            }
            self.cfg.resolved.record(&q.name, addr, ttl);
        }
        ev.reason = "allowed";
        ev.rcode = Some(answer.rcode.as_str());
        ev.answers = answer.addrs.iter().map(|(a, _)| a.to_string()).collect();
        Some(match transport {
            Transport::Udp => answer.reply_for_udp(&q).into_owned(),
            Transport::Tcp => answer.reply,
        })
    }
}

/// Records the refusal of `q` in `ev` and builds its reply.
fn refused(
    ev: &mut DnsQueryEvent,
    q: &Query,
    reason: &'static str,
    rcode: Rcode,
) -> Option<Vec<u8>> {
    ev.reason = reason;
    ev.rcode = Some(rcode.as_str());
    Some(refuse(q, rcode))
}

/// The type asked in a refused query, when its question could be read.
fn refused_qtype(refusal: &QueryRefusal) -> Option<String> {
    let question = refusal.echo()?.question.as_ref()?;
    Some(question.query_type().to_string())
}

/// The rcode of [`QueryRefusal::reply`], for audit (`None` when it sends nothing). Mirrors
/// that function; a test holds the two together.
pub(super) fn refusal_rcode(refusal: &QueryRefusal) -> Option<Rcode> {
    refusal.echo()?;
    Some(match refusal {
        QueryRefusal::Malformed { .. } | QueryRefusal::QuestionCount { .. } => Rcode::FormErr,
        QueryRefusal::Opcode { .. } => Rcode::NotImp,
        QueryRefusal::EdnsVersion { .. } => Rcode::BadVers,
        _ => Rcode::Refused,
    })
}
