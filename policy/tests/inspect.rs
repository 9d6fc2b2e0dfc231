//! `inspect` and `[[egress.allow.http]]`: every refusal with its exact place, the compiled
//! form, and which ports of a rule are redirected and inspected.

use cork_policy::{
    DomainRule, HttpRoute, InspectMode, Policy, Redirect, RouteVerdict, compile, route_decision,
};

/// Lines 1-3 of every case; the part under test starts on line 4.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

fn policy(rest: &str) -> Policy {
    compile(&format!("{HEAD}{rest}"), "bottle.toml").unwrap_or_else(|e| panic!("{e}\n{rest}"))
}

fn err(rest: &str) -> String {
    match compile(&format!("{HEAD}{rest}"), "bottle.toml") {
        Ok(p) => panic!("accepted:\n{rest}\n{p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn inspect_is_refused_where_nothing_is_inspected() {
    let cases = [
        (
            "[[egress.allow]]\ncidr = \"198.51.100.0/24\"\ninspect = true\n",
            "bottle.toml:6:11: egress.allow[0].inspect: only domain rules are inspected: the \
             proxy decides by the name a client asks for, which a `cidr` rule does not have; \
             remove `inspect`",
        ),
        (
            "[[egress.deny]]\ndomain = \"x.example.test\"\ninspect = false\n",
            "bottle.toml:6:11: egress.deny[0].inspect: a deny rule's traffic is refused, so \
             there is nothing to inspect; remove `inspect`",
        ),
        (
            "[[egress.deny]]\ncidr = \"198.51.100.0/24\"\ninspect = true\n",
            "bottle.toml:6:11: egress.deny[0].inspect: a deny rule's traffic is refused, so \
             there is nothing to inspect; remove `inspect`",
        ),
        (
            "[[egress.allow]]\ndomain = \"x.example.test\"\nproto = \"udp\"\ninspect = true\n",
            "bottle.toml:7:11: egress.allow[0].inspect: the proxy only takes TCP, and UDP to \
             an inspected port is refused (so that HTTP/3 falls back to TCP); with \
             `proto = \"udp\"` this rule would allow nothing; remove `inspect`",
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err(rest), want, "{rest}");
    }
}

#[test]
fn http_routes_need_an_inspected_rule() {
    let need = "http routes need an inspected rule, and ";
    let cases = [
        (
            "[[egress.allow]]\ncidr = \"198.51.100.0/24\"\n[[egress.allow.http]]\n",
            "bottle.toml:6:1: egress.allow[0].http: ",
            "a `cidr` rule is never inspected",
        ),
        (
            "[[egress.deny]]\ndomain = \"x.example.test\"\n[[egress.deny.http]]\n",
            "bottle.toml:6:1: egress.deny[0].http: ",
            "a deny rule is never inspected",
        ),
        (
            "[[egress.allow]]\ndomain = \"x.example.test\"\nports = [443]\ninspect = false\n\
             [[egress.allow.http]]\npaths = [\"/\"]\n",
            "bottle.toml:8:1: egress.allow[0].http: ",
            "`inspect = false` passes this rule's traffic through uninspected",
        ),
        (
            "[[egress.allow]]\ndomain = \"x.example.test\"\nports = [8443]\n\
             [[egress.allow.http]]\n",
            "bottle.toml:7:1: egress.allow[0].http: ",
            "this rule covers neither TCP port 80 nor 443, which are the ports inspected by \
             default; add `inspect = true` if its other ports carry HTTP or TLS",
        ),
        (
            "[[egress.allow]]\ndomain = \"x.example.test\"\nports = [443]\nproto = \"udp\"\n\
             [[egress.allow.http]]\n",
            "bottle.toml:8:1: egress.allow[0].http: ",
            "this rule covers neither TCP port 80 nor 443",
        ),
    ];
    for (rest, at, why) in cases {
        let got = err(rest);
        assert!(
            got.starts_with(&format!("{at}{need}{why}")),
            "\n got: {got}\nwant: {at}{why}"
        );
    }
    // The second rule is the one the `http` table belongs to (TOML appends it to the last
    // `[[egress.allow]]`), so it is blamed, not the first.
    let got = err("[[egress.allow]]\ndomain = \"a.example.test\"\n\
                   [[egress.allow]]\ndomain = \"b.example.test\"\nports = [22]\n\
                   [[egress.allow.http]]\nmethods = [\"GET\"]\n");
    assert!(
        got.starts_with("bottle.toml:9:1: egress.allow[1].http: http routes need"),
        "{got}"
    );
}

#[test]
fn route_value_errors() {
    let route = |body: &str| {
        err(&format!(
            "[[egress.allow]]\ndomain = \"x.example.test\"\n[[egress.allow.http]]\n{body}"
        ))
    };
    let cases = [
        (
            "methods = [\"GET\", \"post\"]\n",
            "bottle.toml:7:19: egress.allow[0].http[0].methods[1]: \"post\" is not a method \
             name; write it in upper case (`A-Z` and `-`), as requests send it: \"GET\", \"POST\"",
        ),
        (
            "methods = [\"\"]\n",
            "bottle.toml:7:12: egress.allow[0].http[0].methods[0]: \"\" is not a method name; \
             write it in upper case (`A-Z` and `-`), as requests send it: \"GET\", \"POST\"",
        ),
        (
            "methods = []\n",
            "bottle.toml:7:11: egress.allow[0].http[0].methods: an empty list matches \
             nothing; omit `methods` to match any",
        ),
        (
            "paths = []\n",
            "bottle.toml:7:9: egress.allow[0].http[0].paths: an empty list matches nothing; \
             omit `paths` to match any",
        ),
        (
            "paths = [\"v1/\"]\n",
            "bottle.toml:7:10: egress.allow[0].http[0].paths[0]: \"v1/\" does not start with `/`",
        ),
        (
            "paths = [\"/ok/\", \"/v1/../admin\"]\n",
            "bottle.toml:7:18: egress.allow[0].http[0].paths[1]: \"/v1/../admin\" contains a \
             `.` or `..` segment, which requests may not (they are refused as ambiguous)",
        ),
        (
            "paths = [\"/a%2Fb\"]\n",
            "bottle.toml:7:10: egress.allow[0].http[0].paths[0]: \"/a%2Fb\" contains `%`; \
             write the path decoded (requests are decoded before matching)",
        ),
        (
            "paths = [\"/a?b=1\"]\n",
            "bottle.toml:7:10: egress.allow[0].http[0].paths[0]: \"/a?b=1\" contains `?` or \
             `#`; a route matches the path only, not the query or fragment",
        ),
        (
            "paths = [\"/a b\"]\n",
            "bottle.toml:7:10: egress.allow[0].http[0].paths[0]: \"/a b\" contains white \
             space or a control character",
        ),
        (
            "verbs = [\"GET\"]\n",
            "bottle.toml:7:1: egress.allow[0].http[0].verbs: unknown field `verbs`, expected \
             one of `methods`, `paths`, `dlp_action`, `dlp_skip`",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(route(body), want, "{body}");
    }
    // Later entries are counted in the path and located at their own line.
    let got = route("paths = [\"/a/\"]\n[[egress.allow.http]]\nmethods = [\"get\"]\n");
    assert!(
        got.starts_with("bottle.toml:9:12: egress.allow[0].http[1].methods[0]:"),
        "{got}"
    );
}

const INSPECTED: &str = r#"
[[egress.allow]]
domain = "api.example.test"
ports = [443, 8443]

[[egress.allow.http]]
methods = ["GET", "POST"]
paths = ["/v1/"]

[[egress.allow.http]]
paths = ["/health"]

[[egress.allow]]
domain = "pinned.example.test"
ports = [443]
inspect = false

[[egress.allow]]
domain = "*.grpc.example.test"
ports = ["9000-9001"]
inspect = true
[[egress.allow.http]]

[[egress.allow]]
domain = "plain.example.test"

[[egress.allow]]
domain = "both.example.test"
proto = "any"
ports = [443]

[[egress.deny]]
domain = "no.example.test"
"#;

fn rule(policy: &Policy, id: u32) -> &DomainRule {
    policy.domains.iter().find(|d| d.rule_id == id).unwrap()
}

#[test]
fn compiled_form() {
    let p = policy(INSPECTED);
    let modes: Vec<InspectMode> = p.domains.iter().map(|d| d.inspect).collect();
    use InspectMode::{Default, Off, On};
    assert_eq!(modes, [Default, Off, On, Default, Default, Default]);
    assert_eq!(
        rule(&p, 0).routes,
        [
            HttpRoute {
                methods: vec!["GET".into(), "POST".into()],
                paths: vec!["/v1/".into()],
                dlp_action: None,
                dlp_skip: vec![],
                line: 9,
                col: 1
            },
            HttpRoute {
                methods: vec![],
                paths: vec!["/health".into()],
                dlp_action: None,
                dlp_skip: vec![],
                line: 13,
                col: 1
            },
        ]
    );
    // An entry with neither key is one route matching any request.
    assert_eq!(rule(&p, 2).routes.len(), 1);
    assert!(rule(&p, 1).routes.is_empty() && rule(&p, 3).routes.is_empty());
}

#[test]
fn redirected_and_inspected_ports() {
    let p = policy(INSPECTED);
    // (rule, port, redirects, inspects)
    let cases = [
        (0, 443, true, true),
        (0, 8443, false, false),
        (0, 80, false, false),
        (1, 443, true, false),
        (1, 80, false, false),
        (2, 9000, true, true),
        (2, 9001, true, true),
        (2, 443, false, false),
        (3, 80, true, true),
        (3, 443, true, true),
        (3, 22, false, false),
        (4, 443, true, true),
        (5, 443, false, false),
        (5, 80, false, false),
    ];
    for (id, port, redirects, inspects) in cases {
        let r = rule(&p, id);
        assert_eq!(r.redirects(port), redirects, "rule {id} port {port}");
        assert_eq!(r.inspects(port), inspects, "rule {id} port {port}");
    }
    let any: Vec<bool> = p
        .domains
        .iter()
        .map(DomainRule::inspects_any_port)
        .collect();
    assert_eq!(any, [true, false, true, true, true, false]);
}

#[test]
fn name_slots_carry_the_rules_redirect() {
    let p = policy(INSPECTED);
    let redirects = |name: &str| -> Vec<Redirect> {
        p.allowed_slots(name).iter().map(|s| s.redirect).collect()
    };
    assert_eq!(
        redirects("api.example.test"),
        [Redirect::Web, Redirect::Web]
    );
    assert_eq!(redirects("pinned.example.test"), [Redirect::Web]);
    assert_eq!(redirects("x.grpc.example.test"), [Redirect::All]);
    assert_eq!(redirects("no.example.test"), []);
}

#[test]
fn routes_decide_requests() {
    let p = policy(INSPECTED);
    let api = rule(&p, 0);
    use RouteVerdict::{Allowed, BadPath, GitPush, NoRoute};
    let cases = [
        ("GET", "/v1/models", Allowed),
        ("POST", "/v1/", Allowed),
        ("GET", "/v1/models?x=1", Allowed),
        ("DELETE", "/v1/models", NoRoute),
        ("get", "/v1/models", NoRoute),
        ("GET", "/v1", NoRoute),
        ("GET", "/v1x/models", NoRoute),
        ("GET", "/v%31/models", Allowed),
        ("GET", "/health", Allowed),
        ("DELETE", "/health/deep", Allowed),
        ("GET", "/healthz", NoRoute),
        ("GET", "/v1/../admin", BadPath),
        ("GET", "/v1/%2e%2e/admin", BadPath),
        ("GET", "/v1//x", BadPath),
        ("POST", "/v1/r.git/git-receive-pack", Allowed),
        ("PUT", "/v1/r.git/git-receive-pack", GitPush),
        ("GET", "/r.git/info/refs?service=git-receive-pack", GitPush),
    ];
    for (method, target, want) in cases {
        assert_eq!(
            route_decision(api, method, target),
            want,
            "{method} {target}"
        );
    }
    // No routes: anything but a push.
    let plain = rule(&p, 3);
    assert_eq!(route_decision(plain, "PATCH", "/x"), Allowed);
    assert_eq!(
        route_decision(plain, "POST", "/o/r.git/git-receive-pack"),
        GitPush
    );
    assert_eq!(
        route_decision(plain, "GET", "/o/r.git/git-upload-pack"),
        Allowed
    );
    // A route without paths matches any request, yet never names a push.
    let grpc = rule(&p, 2);
    assert_eq!(route_decision(grpc, "POST", "/svc/Method"), Allowed);
    assert_eq!(route_decision(grpc, "POST", "/git-receive-pack"), GitPush);
}
