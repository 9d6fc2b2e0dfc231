//! `[[egress.ask]]`: what the manifest refuses, where ask rules sit in the rule table and
//! the kernel plan, and how the proxy's per-flow and per-request decisions put ask rules
//! before allow rules.

use cork_policy::{Action, Proto, RequestVerdict, WebDecision, compile, evaluate, parse_manifest};

const HEAD: &str = "version = 1\n[bottle]\nname = \"ask\"\n";

const MANIFEST: &str = r#"version = 1
[bottle]
name = "ask"

[[egress.allow]]
domain = "*.example.test"
ports = [443]

[[egress.allow]]
domain = "pinned.example.test"
ports = [443]
inspect = false

[[egress.allow]]
domain = "routed.example.test"
ports = [443]
[[egress.allow.http]]
methods = ["GET"]
paths = ["/v1/"]

[[egress.deny]]
domain = "bad.example.test"

[[egress.ask]]
domain = "routed.example.test"
[[egress.ask.http]]
methods = ["POST"]
paths = ["/v1/deploy"]

[[egress.ask]]
domain = "pinned.example.test"
ports = [443]

[[egress.ask]]
domain = "only.ask.test"
ports = [8443]
[[egress.ask.http]]
methods = ["PUT"]
paths = ["/x"]

[[egress.ask]]
domain = "bad.example.test"
"#;

fn err(body: &str) -> String {
    match parse_manifest(&format!("{HEAD}{body}"), "m.toml") {
        Ok(_) => panic!("accepted:\n{body}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn what_an_ask_rule_cannot_have_is_refused_where_it_is() {
    let e = err("[[egress.ask]]\ncidr = \"198.51.100.0/24\"\n");
    assert!(
        e.contains("m.toml:5:8") && e.contains("egress.ask[0].cidr"),
        "{e}"
    );
    assert!(e.contains("use `domain`"), "{e}");
    let e = err("[[egress.ask]]\nports = [443]\n");
    assert!(
        e.contains("egress.ask[0]") && e.contains("needs `domain`"),
        "{e}"
    );
    let e = err("[[egress.ask]]\ndomain = \"a.test\"\ninspect = false\n");
    assert!(
        e.contains("m.toml:6:11") && e.contains("egress.ask[0].inspect"),
        "{e}"
    );
    assert!(e.contains("always inspected"), "{e}");
    let e = err("[[egress.ask]]\ndomain = \"a.test\"\nproto = \"udp\"\n");
    assert!(
        e.contains("egress.ask[0].proto") && e.contains("TCP"),
        "{e}"
    );
    let e = err("[[egress.ask]]\ndomain = \"a.test\"\nports = []\n");
    assert!(e.contains("egress.ask[0].ports"), "{e}");
    let e = err("[[egress.ask]]\ndomain = \"a.test\"\n[[egress.ask.http]]\nmethods = [\"get\"]\n");
    assert!(e.contains("egress.ask[0].http[0].methods"), "{e}");
    let e = err("[[egress.ask]]\ndomain = \"a.test\"\nhold = true\n");
    assert!(e.contains("hold"), "an unknown key is refused: {e}");
    // `proto = "tcp"` says what an ask rule is anyway.
    parse_manifest(
        &format!("{HEAD}[[egress.ask]]\ndomain = \"a.test\"\nproto = \"tcp\"\n"),
        "m.toml",
    )
    .expect("tcp is an ask rule's protocol");
}

#[test]
fn ask_rules_follow_every_allow_and_deny_rule_and_default_to_the_web_ports() {
    let p = compile(MANIFEST, "m.toml").unwrap();
    let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "egress.allow[0]",
            "egress.allow[1]",
            "egress.allow[2]",
            "egress.deny[0]",
            "egress.ask[0]",
            "egress.ask[1]",
            "egress.ask[2]",
            "egress.ask[3]",
        ]
    );
    let ask = p.domain_rule(4).unwrap();
    assert!(ask.ask && ask.action == Action::Allow && ask.proto == Proto::Tcp);
    assert!(ask.inspects(80) && ask.inspects(443) && !ask.inspects(8080));
    let only = p.domain_rule(6).unwrap();
    assert!(only.inspects(8443) && !only.inspects(443));
    assert!(!p.domain_rule(0).unwrap().ask);
}

#[test]
fn an_ask_rule_makes_its_name_reachable_and_every_port_of_it_redirected() {
    let p = compile(MANIFEST, "m.toml").unwrap();
    assert!(matches!(
        p.match_domain("only.ask.test"),
        cork_policy::DomainVerdict::Allow { rule_id: 6 }
    ));
    // Deny still beats everything.
    assert!(matches!(
        p.match_domain("bad.example.test"),
        cork_policy::DomainVerdict::Deny { rule_id: 3 }
    ));
    assert!(p.allowed_slots("bad.example.test").is_empty());
    // A learned address of the name: 8443 (not a web port) is redirected for the ask
    // rule, and nothing else of it is allowed.
    let plan = p.kernel_plan();
    let slots = p.allowed_slots("only.ask.test");
    let entry = plan
        .learned_entry("198.51.100.20".parse().unwrap(), &slots)
        .unwrap();
    let mut learned = plan.clone();
    learned.v4.push(cork_policy::PrefixEntry {
        prefix: entry.prefix,
        slots: entry.slots,
    });
    let v = evaluate(&learned, "198.51.100.20".parse().unwrap(), Proto::Tcp, 8443);
    assert_eq!(
        (v.action, v.rule_id, v.redirect),
        (Action::Allow, Some(6), true)
    );
    let v = evaluate(&learned, "198.51.100.20".parse().unwrap(), Proto::Tcp, 443);
    assert_eq!(v.action, Action::Deny);
    // UDP to an ask rule's port is refused (HTTP/3 falls back to TCP, where it is held).
    let v = evaluate(&learned, "198.51.100.20".parse().unwrap(), Proto::Udp, 8443);
    assert_eq!(v.action, Action::Deny);
}

#[test]
fn a_flow_an_ask_rule_covers_is_inspected_even_where_an_allow_rule_passes_it_through() {
    let p = compile(MANIFEST, "m.toml").unwrap();
    let inspect = |rule_id| WebDecision::Inspect { rule_id };
    let cases = [
        // The allow rule inspects: its id goes with the flow.
        ("routed.example.test", 443, inspect(2)),
        // The allow rule would pass it through; the ask rule needs it seen.
        ("pinned.example.test", 443, inspect(5)),
        ("only.ask.test", 8443, inspect(6)),
        (
            "only.ask.test",
            443,
            WebDecision::Deny {
                rule_id: None,
                reason: "port_not_allowed",
            },
        ),
        (
            "bad.example.test",
            443,
            WebDecision::Deny {
                rule_id: Some(3),
                reason: "denied_domain",
            },
        ),
        ("api.example.test", 443, inspect(0)),
    ];
    for (host, port, want) in cases {
        assert_eq!(p.web_decision(host, port), want, "{host}:{port}");
    }
}

#[test]
fn ask_rules_take_a_request_before_allow_rules() {
    let p = compile(MANIFEST, "m.toml").unwrap();
    use RequestVerdict::*;
    let cases = [
        // The ask route holds what the allow rule has no route for...
        (
            "routed.example.test",
            443,
            "POST",
            "/v1/deploy",
            Ask { rule_id: 4 },
        ),
        (
            "routed.example.test",
            443,
            "POST",
            "/v1/deploy/x?y=1",
            Ask { rule_id: 4 },
        ),
        // ...the allow rule's routes decide the rest.
        (
            "routed.example.test",
            443,
            "GET",
            "/v1/list",
            Allowed { rule_id: 2 },
        ),
        (
            "routed.example.test",
            443,
            "POST",
            "/v1/other",
            NoRoute { rule_id: 2 },
        ),
        (
            "routed.example.test",
            443,
            "POST",
            "/o/r.git/git-receive-pack",
            GitPush { rule_id: 2 },
        ),
        (
            "routed.example.test",
            443,
            "GET",
            "/v1/%2e%2e/admin",
            BadPath,
        ),
        // An ask rule without routes holds every request, though the allow rule would
        // have passed it through unseen.
        ("pinned.example.test", 443, "GET", "/", Ask { rule_id: 5 }),
        // Only an ask rule for the name: what its routes do not admit is refused.
        ("only.ask.test", 8443, "PUT", "/x/1", Ask { rule_id: 6 }),
        ("only.ask.test", 8443, "GET", "/x/1", NoRoute { rule_id: 6 }),
        (
            "only.ask.test",
            8443,
            "POST",
            "/r.git/git-receive-pack",
            GitPush { rule_id: 6 },
        ),
        ("only.ask.test", 443, "PUT", "/x", NoRule),
        // No ask rule for the name: as before.
        (
            "api.example.test",
            443,
            "DELETE",
            "/anything",
            Allowed { rule_id: 0 },
        ),
    ];
    for (host, port, method, target, want) in cases {
        // The request goes by the flow's rule, as the proxy decided the flow.
        let flow = match p.web_decision(host, port) {
            WebDecision::Inspect { rule_id } | WebDecision::PassThrough { rule_id } => rule_id,
            WebDecision::Deny { .. } => cork_policy::RULE_ID_NONE,
        };
        assert_eq!(
            p.request_decision(flow, host, port, method, target),
            want,
            "{method} {host}:{port}{target}"
        );
    }
}

#[test]
fn without_ask_rules_the_flows_rule_decides_as_route_decision_does() {
    // `inspect = false` on port 80: plain HTTP is still read (nothing to pass through
    // untouched), and a git push no route names is refused as ever.
    let p = compile(
        &format!(
            "{HEAD}[[egress.allow]]\ndomain = \"plain.example.test\"\nports = [80]\ninspect = false\n"
        ),
        "m.toml",
    )
    .unwrap();
    let rule = p.domain_rule(0).unwrap();
    for (method, target) in [("GET", "/x"), ("POST", "/o/r.git/git-receive-pack")] {
        let want = match cork_policy::route_decision(rule, method, target) {
            cork_policy::RouteVerdict::Allowed => RequestVerdict::Allowed { rule_id: 0 },
            cork_policy::RouteVerdict::GitPush => RequestVerdict::GitPush { rule_id: 0 },
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p.request_decision(0, "plain.example.test", 80, method, target),
            want,
            "{method} {target}"
        );
    }
    assert_eq!(
        p.request_decision(
            0,
            "plain.example.test",
            80,
            "POST",
            "/o/r.git/git-receive-pack"
        ),
        RequestVerdict::GitPush { rule_id: 0 }
    );
}
