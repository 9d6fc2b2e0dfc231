//! The proxy's per-flow decision (`web_decision`) and the kernel verdicts it pairs with.

use cork_policy::{Action, Proto, WebDecision, compile, evaluate};

const MANIFEST: &str = r#"version = 1
[bottle]
name = "web"

[[egress.allow]]
domain = "*.example.test"
ports = [443, 8443]

[[egress.allow]]
domain = "pinned.example.test"
ports = [443]
inspect = false

[[egress.allow]]
domain = "grpc.example.test"
ports = [9000]
inspect = true

[[egress.allow]]
domain = "ssh.example.test"
ports = [22, 8443]

[[egress.allow]]
domain = "quic.example.test"
proto = "udp"
ports = [443]

[[egress.deny]]
domain = "bad.example.test"
"#;

#[test]
fn web_decisions() {
    let p = compile(MANIFEST, "web.toml").unwrap();
    let inspect = |rule_id| WebDecision::Inspect { rule_id };
    let pass = |rule_id| WebDecision::PassThrough { rule_id };
    let deny = |rule_id, reason| WebDecision::Deny { rule_id, reason };
    let cases = [
        ("api.example.test", 443, inspect(0)),
        ("API.Example.Test.", 443, inspect(0)),
        ("pinned.example.test", 443, pass(1)),
        // The exact rule does not cover 8443; the wildcard does, but only redirects 443.
        (
            "pinned.example.test",
            8443,
            deny(Some(0), "port_not_allowed"),
        ),
        ("api.example.test", 8443, deny(Some(0), "port_not_allowed")),
        ("grpc.example.test", 9000, inspect(2)),
        // The exact rule covers only 9000; on 443 the wildcard speaks.
        ("grpc.example.test", 443, inspect(0)),
        ("grpc.example.test", 22, deny(None, "port_not_allowed")),
        ("ssh.example.test", 22, deny(Some(3), "port_not_allowed")),
        ("ssh.example.test", 443, inspect(0)),
        // A UDP-only rule is not a TCP rule: the wildcard decides 443.
        ("quic.example.test", 443, inspect(0)),
        ("bad.example.test", 443, deny(Some(5), "denied_domain")),
        ("example.test", 443, deny(None, "unknown_name")),
        ("other.test", 443, deny(None, "unknown_name")),
        ("a..example.test", 443, deny(None, "unknown_name")),
    ];
    for (host, port, want) in cases {
        assert_eq!(p.web_decision(host, port), want, "{host}:{port}");
    }
}

#[test]
fn domain_rule_lookup() {
    let p = compile(
        &format!("{MANIFEST}[[egress.allow]]\ncidr = \"198.51.100.0/24\"\n"),
        "web.toml",
    )
    .unwrap();
    assert_eq!(
        p.domain_rule(2).map(|d| d.pattern.to_string()).as_deref(),
        Some("grpc.example.test")
    );
    assert_eq!(
        p.domain_rule(6).map(|d| d.rule_id),
        Some(6),
        "deny rules too"
    );
    assert!(p.domain_rule(5).is_none(), "rule 5 is the cidr rule");
    assert!(p.domain_rule(99).is_none());
}

#[test]
fn learned_addresses_redirect_tcp_and_refuse_quic() {
    let p = compile(MANIFEST, "web.toml").unwrap();
    let plan = p.kernel_plan();
    let addr = "192.0.2.10".parse().unwrap();
    let at = |name: &str| {
        let entry = plan.learned_entry(addr, &p.allowed_slots(name)).unwrap();
        let mut with = plan.clone();
        with.v4.push(cork_policy::PrefixEntry {
            prefix: entry.prefix,
            slots: entry.slots,
        });
        move |proto, port| {
            let v = evaluate(&with, addr, proto, port);
            (v.action, v.rule_id, v.redirect)
        }
    };
    use Action::{Allow, Deny};
    use Proto::{Tcp, Udp};
    let api = at("api.example.test");
    assert_eq!(api(Tcp, 443), (Allow, Some(0), true));
    assert_eq!(api(Tcp, 8443), (Allow, Some(0), false));
    assert_eq!(api(Udp, 443), (Deny, None, false), "no UDP rule at all");
    let grpc = at("grpc.example.test");
    assert_eq!(grpc(Tcp, 9000), (Allow, Some(2), true));
    let quic = at("quic.example.test");
    // QUIC is refused, naming the UDP rule that would have been redirected.
    assert_eq!(quic(Udp, 443), (Deny, Some(4), false));
    assert_eq!(quic(Tcp, 443), (Allow, Some(0), true));
    let pinned = at("pinned.example.test");
    assert_eq!(
        pinned(Tcp, 443),
        (Allow, Some(1), true),
        "passed through by the proxy"
    );
}
