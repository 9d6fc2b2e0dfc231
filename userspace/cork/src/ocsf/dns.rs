//! DNS Activity (4003): one message the bottle sent cork's DNS proxy and what cork
//! answered (`layer: dns`).
//!
//! Activity Traffic (6, query and response) when a reply was sent, Query (1) when none
//! was. `query` is the asked name and type (class IN); `answers` are the addresses cork
//! handed the bottle (type A or AAAA) and the CNAME chain it followed (type CNAME);
//! `rcode`/`rcode_id` the reply's code; the bottle's socket is `src_endpoint`; the
//! transport (udp/tcp) is `connection_info.protocol_name`. Verdict, rule and reason map as
//! for kernel verdicts; `status_id` says whether the reply was NOERROR.

use serde_json::{Value, json};

use super::envelope::{
    self, DNS_ACTIVITY, Endpoint, Envelope, Verdict, decide, set_endpoint, set_rule, severity,
};
use super::fields::{Fields, Head};

/// cork's rcode words (`cork_dns::Rcode::as_str`) → OCSF `rcode_id` and caption.
const RCODES: [(&str, u32, &str); 7] = [
    ("NOERROR", 0, "NoError"),
    ("FORMERR", 1, "FormError"),
    ("SERVFAIL", 2, "ServError"),
    ("NXDOMAIN", 3, "NXDomain"),
    ("NOTIMP", 4, "NotImp"),
    ("REFUSED", 5, "Refused"),
    ("BADVERS", 16, "BADSIG_VERS"),
];

/// A DNS query event.
pub(crate) fn query(head: &Head, f: &mut Fields) -> Envelope {
    let rcode = RCODES
        .iter()
        .find(|(w, ..)| f.peek_str("rcode") == Some(*w))
        .copied();
    let mut env = if f.has("rcode") {
        Envelope::new(&DNS_ACTIVITY, 6, "Traffic")
    } else {
        Envelope::new(&DNS_ACTIVITY, 1, "Query")
    };
    let verdict = Verdict::take(f);
    env.severity_id = match verdict {
        Some(Verdict::Deny) => severity::LOW,
        _ => severity::INFORMATIONAL,
    };
    decide(&mut env, verdict);
    // The DNS status is the reply's, not the policy's.
    let status = match rcode {
        Some((_, 0, _)) => (1, "Success"),
        Some(_) => (2, "Failure"),
        None => (0, "Unknown"),
    };
    env.set("status_id", status.0);
    env.set("status", status.1);
    if let Some((_, id, caption)) = rcode {
        f.remove("rcode");
        env.set("rcode_id", id);
        env.set("rcode", caption);
    }

    let name = f.str("name");
    // A type with no name is no OCSF query (it needs the hostname): it stays unmapped.
    let qtype = match name {
        Some(_) => f.str("qtype"),
        None => f.peek_str("qtype").map(str::to_owned),
    };
    if let Some(name) = &name {
        let mut q = json!({"hostname": name, "class": "IN"});
        if let Some(qtype) = &qtype {
            q["type"] = qtype.clone().into();
        }
        env.set("query", q);
    }
    let mut answers: Vec<Value> = Vec::new();
    if let Some(cnames) = f.strings("cnames") {
        answers.extend(
            cnames
                .into_iter()
                .map(|c| json!({"type": "CNAME", "class": "IN", "rdata": c})),
        );
    }
    let addresses = f.strings("answers").unwrap_or_default();
    answers.extend(addresses.iter().map(|a| {
        let kind = match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => "AAAA",
            _ => "A",
        };
        json!({"type": kind, "class": "IN", "rdata": a})
    }));
    if !answers.is_empty() {
        env.set("answers", answers);
    }

    let client = f.sockaddr("client");
    let src = Endpoint {
        ip: client.map(|c| c.ip()),
        port: client.map(|c| c.port()),
        name: head.bottle.clone(),
        hostname: None,
    };
    set_endpoint(&mut env, "src_endpoint", &src);
    let transport = f.str("transport");
    env.set(
        "connection_info",
        envelope::connection(
            transport.as_deref(),
            client.map(|c| envelope::family(c.ip())),
            None,
        ),
    );
    set_rule(&mut env, f.str("rule"));
    let reason = f.str("reason");
    env.set(
        "message",
        format!(
            "dns {} {} {}{} -> {}{}",
            verdict.map_or("?", Verdict::word),
            qtype.as_deref().unwrap_or("?"),
            name.as_deref().unwrap_or("?"),
            if addresses.is_empty() {
                String::new()
            } else {
                format!(" [{}]", addresses.join(", "))
            },
            rcode.map_or("no reply", |r| r.0),
            reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        ),
    );
    if let Some(reason) = reason {
        env.set("status_detail", reason);
    }
    env
}
