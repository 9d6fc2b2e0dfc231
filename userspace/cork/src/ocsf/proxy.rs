//! What the inspecting proxy's events share, whichever class they become: the bottle's
//! socket (`client` → `src_endpoint`), where it dialled (`dst` → `dst_endpoint`, named by
//! the request's host or the TLS SNI), the socket cookie, the process, the rule and
//! reason, the bytes each way (`traffic`) and the time taken (`duration`, ms).

use serde_json::json;

use super::envelope::{self, Endpoint, Envelope, set_actor, set_endpoint, set_rule};
use super::fields::{Fields, Head};

/// What a mapper needs again for its message.
pub(crate) struct Seen {
    /// `host:port` or `ip:port` dialled, `?` when unknown.
    pub target: String,
    pub reason: Option<String>,
}

/// Maps the shared fields into `env`. `hostname`: the request's host, when the caller
/// took it; otherwise the SNI names the destination.
pub(crate) fn common(
    head: &Head,
    f: &mut Fields,
    env: &mut Envelope,
    hostname: Option<String>,
) -> Seen {
    let client = f.sockaddr("client");
    let src = Endpoint {
        ip: client.map(|c| c.ip()),
        port: client.map(|c| c.port()),
        name: head.bottle.clone(),
        hostname: None,
    };
    let dst_addr = f.sockaddr("dst");
    let hostname = hostname.or_else(|| f.str("sni"));
    let dst = Endpoint {
        ip: dst_addr.map(|d| d.ip()),
        port: dst_addr.map(|d| d.port()),
        hostname: hostname.clone(),
        name: None,
    };
    set_endpoint(env, "src_endpoint", &src);
    set_endpoint(env, "dst_endpoint", &dst);
    let family = dst_addr.or(client).map(|a| envelope::family(a.ip()));
    env.set(
        "connection_info",
        envelope::connection(Some("tcp"), family, f.u64("cookie")),
    );
    set_actor(env, f.u64("pid"), None);
    set_rule(env, f.str("rule"));
    let reason = f.str("reason").filter(|r| !r.is_empty());
    if let Some(reason) = &reason {
        env.set("status_detail", reason.clone());
    }
    let up = f.u64("bytes_up");
    let down = f.u64("bytes_down");
    if up.is_some() || down.is_some() {
        let (up, down) = (up.unwrap_or(0), down.unwrap_or(0));
        env.set(
            "traffic",
            json!({"bytes_out": up, "bytes_in": down, "bytes": up + down}),
        );
    }
    if let Some(ms) = f.f64("duration_ms") {
        // OCSF durations are whole milliseconds.
        env.set("duration", ms.round() as u64);
    }
    let target = match (&hostname, dst_addr) {
        (Some(h), Some(d)) => format!("{h}:{}", d.port()),
        (None, Some(d)) => d.to_string(),
        (Some(h), None) => h.clone(),
        (None, None) => "?".into(),
    };
    Seen { target, reason }
}
