//! Network Activity (4001): the kernel's verdicts on connects, datagrams, sockets and
//! packets, and the inspecting proxy's `connection` events (a connection refused or
//! passed through unread).
//!
//! Activity: a deny is Refuse (5); an allowed connect is Open (1); an allowed datagram
//! or packet (`sendmsg*`, `skb_egress`) is Traffic (6); an allowed socket creation is
//! Other (99, named by its hook). The bottle is the source endpoint (`src_endpoint.name`,
//! with the packet's source address on skb events); the destination is an address and
//! port, or for a unix socket its path or `@name` (`dst_endpoint.name`); a learned
//! `domain` is `dst_endpoint.hostname`. The socket cookie is `connection_info.uid`, the
//! manifest rule `firewall_rule.name`, the reason `status_detail`, a summary line's count
//! `count`. `hook` and `cgroup_id` stay in `unmapped`.

use super::envelope::{
    self, Endpoint, Envelope, NETWORK_ACTIVITY, OTHER, Verdict, decide, set_actor, set_endpoint,
    set_rule, severity,
};
use super::fields::{Fields, Head};
use super::proxy;

const OPEN: (u32, &str) = (1, "Open");
const REFUSE: (u32, &str) = (5, "Refuse");
const TRAFFIC: (u32, &str) = (6, "Traffic");

/// A kernel verdict (`layer: kernel`).
pub(crate) fn verdict(head: &Head, f: &mut Fields) -> Envelope {
    let verdict = Verdict::take(f);
    let hook = f.peek_str("hook").unwrap_or("").to_owned();
    let (activity_id, activity_name) = match verdict {
        Some(Verdict::Deny) => REFUSE,
        _ if hook.starts_with("connect") => OPEN,
        _ if hook.starts_with("sendmsg") || hook == "skb_egress" => TRAFFIC,
        _ => (
            OTHER,
            if hook.is_empty() {
                "verdict"
            } else {
                hook.as_str()
            },
        ),
    };
    let mut env = Envelope::new(&NETWORK_ACTIVITY, activity_id, activity_name);
    env.severity_id = match verdict {
        Some(Verdict::Deny) => severity::LOW,
        _ => severity::INFORMATIONAL,
    };
    decide(&mut env, verdict);

    let proto = f.str("proto");
    let src = Endpoint {
        ip: f.ip("src"),
        port: f.port("sport"),
        name: head.bottle.clone(),
        hostname: None,
    };
    let dst_ip = f.ip("dst");
    // Not an address: a unix socket's path or abstract `@name`.
    let dst_name = if dst_ip.is_none() { f.str("dst") } else { None };
    let dst = Endpoint {
        ip: dst_ip,
        port: f.port("dport"),
        hostname: f.str("domain"),
        name: dst_name.clone(),
    };
    set_endpoint(&mut env, "src_endpoint", &src);
    set_endpoint(&mut env, "dst_endpoint", &dst);
    let family = dst_ip.or(src.ip).map(envelope::family).or_else(|| {
        // A verdict with no address (a socket refused at creation): the hook says.
        match hook.chars().last() {
            Some('4') => Some(4),
            Some('6') => Some(6),
            _ => None,
        }
    });
    let cookie = f.u64("cookie");
    env.set(
        "connection_info",
        envelope::connection(proto.as_deref(), family, cookie),
    );
    set_actor(&mut env, f.u64("pid"), f.str("comm"));
    set_rule(&mut env, f.str("rule"));
    let reason = f.str("reason");
    if let Some(count) = f.u64("count") {
        env.set("count", count);
    }

    let target = match (&dst_ip, &dst_name, dst.port) {
        (Some(ip), _, Some(port)) => format!(" to {}", std::net::SocketAddr::new(*ip, port)),
        (Some(ip), _, None) => format!(" to {ip}"),
        (None, Some(name), _) => format!(" to {name}"),
        (None, None, _) => String::new(),
    };
    let message = format!(
        "{} {} {}{target}{}",
        verdict.map_or("verdict", Verdict::word),
        if hook.is_empty() { "?" } else { &hook },
        proto.as_deref().unwrap_or("?"),
        reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
    );
    env.set("message", message);
    if let Some(reason) = reason {
        env.set("status_detail", reason);
    }
    env
}

/// The inspecting proxy's event on a whole connection (`layer: proxy`, not a request):
/// Open when allowed (passed through), Refuse when refused.
pub(crate) fn proxy_connection(head: &Head, f: &mut Fields) -> Envelope {
    let verdict = Verdict::take(f);
    let (activity_id, activity_name) = match verdict {
        Some(Verdict::Deny) => REFUSE,
        _ => OPEN,
    };
    let mut env = Envelope::new(&NETWORK_ACTIVITY, activity_id, activity_name);
    env.severity_id = match verdict {
        Some(Verdict::Deny) => severity::LOW,
        _ => severity::INFORMATIONAL,
    };
    decide(&mut env, verdict);
    let seen = proxy::common(head, f, &mut env, None);
    env.set(
        "message",
        format!(
            "proxy {} connection to {}{}",
            verdict.map_or("?", Verdict::word),
            seen.target,
            seen.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        ),
    );
    env
}
