//! HTTP Activity (4002): one request on a connection the inspecting proxy handled
//! (`layer: proxy`, `event: request`).
//!
//! The activity is the method (Get, Post... as OCSF numbers them; a method OCSF has no
//! id for is Other (99) and stays in `unmapped.method`). `http_request` carries the
//! method and the URL (scheme from the proxy's mode, host, port, path without its query),
//! `http_response.code` and `http_status` the status sent to the bottle. DLP findings have
//! no OCSF attribute of their own: `detectors`, `severities` and `dlp_action` stay in
//! `unmapped`, and set `is_alert` and the event's severity (the worst detector's);
//! a redaction makes the action Modified (4). `credentials` (names of swapped variables),
//! `mode`, `served_by` and `error` stay in `unmapped`.

use serde_json::{Map, Value, json};

use super::envelope::{Envelope, HTTP_ACTIVITY, OTHER, Verdict, decide, severity};
use super::fields::{Fields, Head};
use super::proxy;

/// OCSF's HTTP activities, by method.
const METHODS: [(&str, u32, &str); 9] = [
    ("CONNECT", 1, "Connect"),
    ("DELETE", 2, "Delete"),
    ("GET", 3, "Get"),
    ("HEAD", 4, "Head"),
    ("OPTIONS", 5, "Options"),
    ("POST", 6, "Post"),
    ("PUT", 7, "Put"),
    ("TRACE", 8, "Trace"),
    ("PATCH", 9, "Patch"),
];

/// A request the proxy saw.
pub(crate) fn request(head: &Head, f: &mut Fields) -> Envelope {
    let method = METHODS
        .iter()
        .find(|(m, ..)| f.peek_str("method") == Some(*m))
        .copied();
    let mut env = match method {
        Some((_, id, name)) => Envelope::new(&HTTP_ACTIVITY, id, name),
        None => Envelope::new(&HTTP_ACTIVITY, OTHER, "Other"),
    };
    let verdict = Verdict::take(f);
    decide(&mut env, verdict);

    let mut request = Map::new();
    if let Some((m, ..)) = method {
        f.remove("method");
        request.insert("http_method".into(), m.into());
    }
    // The Host header may carry a port; the URL's hostname does not.
    let host = f.str("host");
    let hostname = host.as_deref().map(|h| strip_port(h).to_owned());
    let plain = f.peek_str("mode") == Some("plain");
    let scheme = if plain { "http" } else { "https" };
    let seen = proxy::common(head, f, &mut env, hostname.clone());
    let port = env
        .body
        .get("dst_endpoint")
        .and_then(|d| d.get("port"))
        .cloned();
    if let Some(path) = f.str("path") {
        let mut url = json!({"path": path, "scheme": scheme});
        if let Some(host) = &host {
            url["url_string"] = format!("{scheme}://{host}{path}").into();
        }
        if let Some(hostname) = hostname {
            url["hostname"] = hostname.into();
        }
        if let Some(port) = port {
            url["port"] = port;
        }
        request.insert("url".into(), url);
    }
    env.set("http_request", Value::Object(request));
    let status = f.u64("status");
    if let Some(code) = status {
        env.set("http_response", json!({"code": code}));
        env.set("http_status", code);
    }

    let worst = worst_severity(f);
    if worst.is_some() || f.has("dlp_action") {
        env.set("is_alert", true);
    }
    if verdict == Some(Verdict::Allow) && f.peek_str("dlp_action") == Some("redact") {
        env.set("action_id", 4);
        env.set("action", "Modified");
    }
    env.severity_id = worst.unwrap_or(match verdict {
        Some(Verdict::Deny) => severity::LOW,
        _ => severity::INFORMATIONAL,
    });
    env.set(
        "message",
        format!(
            "proxy {} {} {}{} -> {}{}",
            verdict.map_or("?", Verdict::word),
            method.map_or("?", |m| m.0),
            seen.target,
            env.body
                .get("http_request")
                .and_then(|r| r.pointer("/url/path"))
                .and_then(Value::as_str)
                .unwrap_or(""),
            status.map_or("no response".into(), |s| s.to_string()),
            seen.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        ),
    );
    env
}

/// The worst severity among the DLP findings (`severities`, left in place for
/// `unmapped`), as an OCSF severity id.
fn worst_severity(f: &Fields) -> Option<u32> {
    let severities = f.peek("severities")?.as_object()?;
    severities
        .values()
        .filter_map(|s| match s.as_str()? {
            "critical" => Some(severity::CRITICAL),
            "high" => Some(severity::HIGH),
            "medium" => Some(severity::MEDIUM),
            "low" => Some(severity::LOW),
            _ => None,
        })
        .max()
}

/// `host` without a trailing `:port` (an IPv6 literal keeps its brackets off too).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}
