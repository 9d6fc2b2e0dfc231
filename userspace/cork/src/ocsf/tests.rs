//! The mapping, one class at a time, on lines shaped as cork writes them. (That the
//! output is valid OCSF is checked against the schema itself by the integration test
//! `audit_ocsf`, with a real log.)

use serde_json::{Value, json};

use super::{OcsfError, SCHEMA_VERSION, from_event, from_line};

const TS: &str = "2026-01-02T03:04:05.678901234Z";
/// `TS` in milliseconds since the epoch.
const TS_MS: u64 = 1_767_323_045_678;

fn map(v: Value) -> Value {
    from_event(v).expect("maps")
}

fn assert_envelope(ev: &Value, class_uid: u64, activity_id: u64) {
    assert_eq!(ev["class_uid"], class_uid, "{ev:#}");
    assert_eq!(ev["activity_id"], activity_id, "{ev:#}");
    assert_eq!(ev["type_uid"], class_uid * 100 + activity_id, "{ev:#}");
    assert_eq!(ev["time"], TS_MS, "{ev:#}");
    assert_eq!(ev["metadata"]["version"], SCHEMA_VERSION, "{ev:#}");
    assert_eq!(ev["metadata"]["product"]["name"], "cork", "{ev:#}");
    assert_eq!(ev["metadata"]["original_time"], TS, "{ev:#}");
}

#[test]
fn a_kernel_deny_is_a_refused_network_activity() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict",
        "hook": "connect4", "verdict": "deny", "reason": "default_deny", "rule": null,
        "proto": "tcp", "src": null, "sport": null, "dst": "198.51.100.21", "dport": 8080,
        "domain": null, "pid": 42, "comm": "nc", "cgroup_id": 77, "cookie": 9001,
        "chain": "ab".repeat(32),
    }));
    assert_envelope(&ev, 4001, 5);
    assert_eq!(ev["category_uid"], 4);
    assert_eq!(ev["disposition_id"], 2, "{ev:#}");
    assert_eq!(ev["action_id"], 2);
    assert_eq!(
        ev["dst_endpoint"],
        json!({"ip": "198.51.100.21", "port": 8080})
    );
    assert_eq!(ev["src_endpoint"], json!({"name": "b1"}));
    assert_eq!(ev["connection_info"]["protocol_num"], 6);
    assert_eq!(ev["connection_info"]["protocol_ver_id"], 4);
    assert_eq!(ev["connection_info"]["uid"], "9001");
    assert_eq!(ev["actor"]["process"], json!({"pid": 42, "name": "nc"}));
    assert_eq!(ev["status_detail"], "default_deny");
    assert!(ev.get("firewall_rule").is_none(), "{ev:#}");
    // Kept: what OCSF has no home for, the bottle and the chain; nulls are absent.
    assert_eq!(
        ev["unmapped"],
        json!({"hook": "connect4", "cgroup_id": 77, "bottle": "b1", "chain": "ab".repeat(32)})
    );
    assert_eq!(ev["metadata"]["uid"], "ab".repeat(32));
    assert_eq!(ev["metadata"]["log_source"], "kernel");
    assert_eq!(ev["metadata"]["event_code"], "verdict");
}

#[test]
fn an_ipv6_allow_with_a_learned_name_opens_a_connection() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict",
        "hook": "connect6", "verdict": "allow", "reason": "allow_rule",
        "rule": "egress.allow[0]", "proto": "tcp", "dst": "2001:db8::10", "dport": 443,
        "domain": "api.example.test", "pid": 7, "comm": "curl", "cgroup_id": 1, "cookie": 5,
        "count": 12,
    }));
    assert_envelope(&ev, 4001, 1);
    assert_eq!(ev["disposition_id"], 1);
    assert_eq!(ev["severity_id"], 1);
    assert_eq!(
        ev["dst_endpoint"],
        json!({"ip": "2001:db8::10", "port": 443, "hostname": "api.example.test"})
    );
    assert_eq!(ev["connection_info"]["protocol_ver_id"], 6);
    assert_eq!(ev["firewall_rule"]["name"], "egress.allow[0]");
    assert_eq!(ev["count"], 12);
    assert_eq!(
        ev["message"],
        "allow connect6 tcp to [2001:db8::10]:443 (allow_rule)"
    );
}

#[test]
fn a_unix_socket_verdict_names_its_path() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict",
        "hook": "connect_unix", "verdict": "deny", "reason": "default_deny", "rule": null,
        "proto": "unix_stream", "dst": "/run/docker.sock", "dport": null, "pid": 3,
        "comm": "sh", "cgroup_id": 1, "cookie": 2,
    }));
    assert_envelope(&ev, 4001, 5);
    assert_eq!(ev["dst_endpoint"], json!({"name": "/run/docker.sock"}));
    let conn = &ev["connection_info"];
    assert_eq!(conn["protocol_name"], "unix_stream");
    assert!(conn.get("protocol_num").is_none(), "{conn}");
    assert!(conn.get("protocol_ver_id").is_none(), "{conn}");
}

#[test]
fn packets_and_refused_sockets_still_name_an_endpoint() {
    let skb = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict",
        "hook": "skb_egress", "verdict": "allow", "reason": "allow_rule", "proto": "udp",
        "src": "198.51.100.2", "sport": 5000, "dst": "198.51.100.9", "dport": 53,
        "pid": null, "comm": null, "cgroup_id": 1, "cookie": 0,
    }));
    assert_envelope(&skb, 4001, 6);
    assert_eq!(
        skb["src_endpoint"],
        json!({"ip": "198.51.100.2", "port": 5000, "name": "b1"})
    );
    assert!(skb.get("actor").is_none(), "{skb:#}");
    let raw = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict",
        "hook": "sock_create", "verdict": "deny", "reason": "raw_socket", "proto": "raw",
        "dst": null, "dport": null, "pid": 9, "comm": "ping", "cgroup_id": 1, "cookie": 0,
    }));
    assert_envelope(&raw, 4001, 5);
    assert_eq!(raw["src_endpoint"], json!({"name": "b1"}));
    assert!(raw.get("dst_endpoint").is_none(), "{raw:#}");
}

#[test]
fn a_dns_query_carries_its_question_answers_and_rcode() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "dns", "event": "query",
        "name": "api.example.test", "qtype": "A", "verdict": "allow", "reason": "allowed",
        "rule": "egress.allow[0]", "answers": ["198.51.100.10", "2001:db8::10"],
        "cnames": ["edge.example.test"], "rcode": "NOERROR", "transport": "udp",
        "client": "[2001:db8::2]:40000",
    }));
    assert_envelope(&ev, 4003, 6);
    assert_eq!(
        ev["query"],
        json!({"hostname": "api.example.test", "type": "A", "class": "IN"})
    );
    let answers: Vec<(&str, &str)> = ev["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            (
                a["type"].as_str().expect("type"),
                a["rdata"].as_str().expect("rdata"),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("CNAME", "edge.example.test"),
            ("A", "198.51.100.10"),
            ("AAAA", "2001:db8::10")
        ]
    );
    assert_eq!(ev["rcode_id"], 0);
    assert_eq!(ev["status_id"], 1);
    assert_eq!(ev["disposition_id"], 1);
    assert_eq!(
        ev["src_endpoint"],
        json!({"ip": "2001:db8::2", "port": 40000, "name": "b1"})
    );
    assert_eq!(ev["connection_info"]["protocol_name"], "udp");
    assert_eq!(ev["unmapped"], json!({"bottle": "b1"}));

    let refused = map(json!({
        "ts": TS, "bottle": "b1", "layer": "dns", "event": "query",
        "name": "evil.test", "qtype": "TXT", "verdict": "deny", "reason": "not_allowed",
        "rule": null, "answers": [], "cnames": [], "rcode": "REFUSED", "transport": "tcp",
        "client": "198.51.100.2:40000",
    }));
    assert_eq!(refused["disposition_id"], 2);
    assert_eq!(refused["rcode_id"], 5);
    assert_eq!(refused["status_id"], 2);
    assert!(refused.get("answers").is_none(), "{refused:#}");

    // A connection closed unread: no question, no reply.
    let unread = map(json!({
        "ts": TS, "bottle": "b1", "layer": "dns", "event": "query", "name": null,
        "qtype": null, "verdict": "deny", "reason": "connection_limit", "rule": null,
        "answers": [], "cnames": [], "rcode": null, "transport": "tcp",
        "client": "198.51.100.2:40001",
    }));
    assert_envelope(&unread, 4003, 1);
    assert!(unread.get("query").is_none(), "{unread:#}");
}

#[test]
fn a_proxied_request_is_http_activity_with_its_dlp_findings_kept() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "proxy", "event": "request", "verdict": "deny",
        "reason": "dlp_blocked", "mode": "inspect", "rule": "egress.allow[0]",
        "sni": "api.example.test", "host": "api.example.test", "method": "POST",
        "path": "/upload?…", "status": 403, "detectors": ["aws_access_key"],
        "severities": {"aws_access_key": "critical"}, "dlp_action": "block",
        "credentials": [], "bytes_up": 10, "bytes_down": 0, "duration_ms": 1.6,
        "dst": "198.51.100.10:443", "client": "198.51.100.2:41000", "pid": 77,
        "cookie": 31, "error": null,
    }));
    assert_envelope(&ev, 4002, 6);
    assert_eq!(ev["http_request"]["http_method"], "POST");
    assert_eq!(
        ev["http_request"]["url"],
        json!({
            "scheme": "https", "hostname": "api.example.test", "port": 443,
            "path": "/upload?…", "url_string": "https://api.example.test/upload?…",
        })
    );
    assert_eq!(ev["http_response"], json!({"code": 403}));
    assert_eq!(ev["disposition_id"], 2);
    assert_eq!(ev["severity_id"], 5, "the worst finding's severity");
    assert_eq!(ev["is_alert"], true);
    assert_eq!(ev["duration"], 2);
    assert_eq!(ev["traffic"]["bytes_out"], 10);
    assert_eq!(ev["connection_info"]["uid"], "31");
    assert_eq!(
        ev["dst_endpoint"],
        json!({"ip": "198.51.100.10", "port": 443, "hostname": "api.example.test"})
    );
    let kept = &ev["unmapped"];
    assert_eq!(kept["detectors"], json!(["aws_access_key"]));
    assert_eq!(kept["severities"]["aws_access_key"], "critical");
    assert_eq!(kept["dlp_action"], "block");
    assert_eq!(kept["mode"], "inspect");
    assert_eq!(kept["sni"], "api.example.test", "the Host named the server");

    // A method OCSF has no activity for stays as it was.
    let odd = map(json!({
        "ts": TS, "bottle": "b1", "layer": "proxy", "event": "request", "verdict": "allow",
        "reason": "allowed", "mode": "plain", "host": "[2001:db8::10]:8080",
        "method": "PROPFIND", "path": "/", "status": 207, "dst": "[2001:db8::10]:8080",
        "client": "[2001:db8::2]:41000",
    }));
    assert_envelope(&odd, 4002, 99);
    assert_eq!(odd["unmapped"]["method"], "PROPFIND");
    assert_eq!(odd["http_request"]["url"]["hostname"], "2001:db8::10");
    assert_eq!(odd["http_request"]["url"]["scheme"], "http");
    assert!(odd["http_request"].get("http_method").is_none(), "{odd:#}");
}

#[test]
fn a_refused_proxy_connection_is_network_activity() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "proxy", "event": "connection",
        "verdict": "deny", "reason": "host_mismatch", "mode": "inspect",
        "sni": "other.test", "dst": "198.51.100.10:443", "client": "198.51.100.2:41000",
        "cookie": 8,
    }));
    assert_envelope(&ev, 4001, 5);
    assert_eq!(ev["dst_endpoint"]["hostname"], "other.test");
    assert_eq!(ev["status_detail"], "host_mismatch");
}

#[test]
fn lifecycle_lines_are_application_lifecycle() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "cork", "event": "enforced",
        "detail": "bottle b1 enforced", "masked": [{"path": "/root/.aws", "kind": "dir", "why": "default"}],
    }));
    assert_envelope(&ev, 6002, 3);
    assert_eq!(ev["app"]["name"], "cork");
    assert_eq!(ev["message"], "bottle b1 enforced");
    assert_eq!(ev["unmapped"]["masked"][0]["path"], "/root/.aws");
    let other = map(json!({
        "ts": TS, "bottle": "b1", "layer": "cork", "event": "env_scrubbed",
        "variable": "AWS_SECRET_ACCESS_KEY", "why": "credential", "detail": "d",
    }));
    assert_envelope(&other, 6002, 99);
    assert_eq!(other["activity_name"], "env_scrubbed");
    assert_eq!(other["unmapped"]["variable"], "AWS_SECRET_ACCESS_KEY");
    let fenced =
        map(json!({"ts": TS, "bottle": "b1", "layer": "cork", "event": "fenced", "detail": "d"}));
    assert_envelope(&fenced, 6002, 7);
    assert_eq!(fenced["severity_id"], 4);
}

#[test]
fn loss_reports_and_unknown_layers_are_base_events_with_everything_kept() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "audit", "event": "loss", "lost": 5, "lost_total": 9,
    }));
    assert_envelope(&ev, 0, 99);
    assert_eq!(ev["category_uid"], 0);
    assert_eq!(ev["activity_name"], "loss");
    assert_eq!(ev["severity_id"], 3);
    assert_eq!(
        ev["unmapped"],
        json!({"lost": 5, "lost_total": 9, "bottle": "b1"})
    );
    let future = map(json!({"ts": TS, "layer": "vsock", "event": "hello", "x": [1, 2]}));
    assert_envelope(&future, 0, 99);
    assert_eq!(future["unmapped"], json!({"x": [1, 2]}));
}

#[test]
fn a_field_of_an_unexpected_shape_is_kept_not_dropped() {
    let ev = map(json!({
        "ts": TS, "bottle": "b1", "layer": "kernel", "event": "verdict", "hook": "connect4",
        "verdict": "maybe", "proto": "tcp", "dst": "198.51.100.9", "dport": 70000,
        "pid": "not a pid", "cookie": 1,
    }));
    assert_eq!(ev["unmapped"]["verdict"], "maybe");
    assert_eq!(ev["unmapped"]["dport"], 70000);
    assert_eq!(ev["unmapped"]["pid"], "not a pid");
    assert_eq!(ev["disposition_id"], 0);
}

#[test]
fn lines_without_a_time_or_object_are_refused() {
    assert!(matches!(
        from_line(b"not json"),
        Err(OcsfError::NotJson { .. })
    ));
    assert!(matches!(from_line(b"[1]"), Err(OcsfError::NotAnObject)));
    let err = from_line(br#"{"layer":"kernel","ts":"yesterday"}"#).expect_err("no time");
    assert!(err.to_string().contains("\"yesterday\""), "{err}");
}
