//! DNS message policy for a bottle's DNS proxy: pure functions, no sockets, no state.
//!
//! A bottle's DNS traffic is redirected to cork's per-bottle proxy. DNS is an exfiltration
//! channel, so this module owns what crosses it:
//!
//! 1. [`check_query`] bounds what the bottle may ask: a standard query with one `IN`
//!    question for a plain host name (letters, digits, `-`, `_`; ≤ 253 bytes, labels ≤ 63)
//!    and a type a stub resolver needs to connect ([`QueryType`]). Anything else is a
//!    [`QueryRefusal`] with a stable [`reason`](QueryRefusal::reason) for audit and, when
//!    the header could be read, a [`reply`](QueryRefusal::reply) to send back.
//! 2. [`Query::upstream_query`] rebuilds the query for the upstream resolver from the parsed
//!    question alone, so nothing else the bottle wrote (EDNS options, extra records, spare
//!    bytes) travels upstream.
//! 3. [`filter_answer`] checks the upstream reply against the query, follows the CNAME chain
//!    from the asked name, keeps only records on that chain, strips the `ech` SvcParam from
//!    HTTPS/SVCB records (so the TLS proxy can always read SNI), and returns the reply for
//!    the bottle together with the A/AAAA addresses it teaches. The proxy writes those
//!    addresses into the kernel allow map *before* it sends the reply.
//! 4. [`refuse`] answers a query the policy denies (REFUSED or NXDOMAIN) or that upstream
//!    could not answer (SERVFAIL).
//!
//! Policy matching (is this name allowed?), rate limits and sockets belong to the proxy.

mod answer;
mod error;
mod events;
pub mod proxy;
mod query;
mod rate;
mod reply;
mod resolved;
mod tcp;
mod upstream;
mod wire;

#[cfg(test)]
mod tests;

pub use answer::{FilteredAnswer, TtlBounds, clamp_ttl, filter_answer};
pub use error::{AnswerError, Echo, QueryRefusal};
pub use events::DnsQueryEvent;
pub use proxy::{BindError, BoundDnsProxy, DnsProxyConfig, LearnFailed, Learner, RunningDnsProxy};
pub use query::{ClientEdns, Query, QueryType, check_query};
pub use reply::{Rcode, refuse};
pub use resolved::Resolved;

/// Longest query name accepted, in presentation form without the trailing dot (RFC 1035
/// §2.3.4: 255 bytes on the wire).
pub const MAX_NAME_LEN: usize = 253;

/// Longest label accepted (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// UDP payload size cork advertises in EDNS, to the bottle and upstream alike (the 2020 DNS
/// flag day value: fits an IPv6 minimum-MTU datagram without fragmentation).
pub const EDNS_UDP_PAYLOAD: u16 = 1232;

/// CNAME links followed from the asked name; longer chains are cut (records past the cut
/// are neither returned nor learned).
pub const MAX_CNAME_CHAIN: usize = 16;
