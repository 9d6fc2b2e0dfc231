//! Domain rules and `[dns]`: every refusal with its exact place, the compiled form, and
//! the name matcher the DNS proxy will use.

use std::net::SocketAddr;

use cork_policy::{
    Action, DnsConfig, DomainPattern, DomainVerdict, Policy, Proto, Redirect, RuleTarget, Slot,
    compile, parse_manifest,
};

/// Lines 1-3 of every case; the part under test starts on line 4.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

/// The full policy, domain rules included.
fn unenforced(src: &str) -> Result<Policy, String> {
    parse_manifest(src, "bottle.toml")
        .and_then(Policy::from_manifest_unenforced)
        .map_err(|e| e.to_string())
}

fn err_after_head(rest: &str) -> String {
    match unenforced(&format!("{HEAD}{rest}")) {
        Ok(p) => panic!("accepted:\n{rest}\n{p:?}"),
        Err(e) => e,
    }
}

#[test]
fn domain_value_errors() {
    let allow = |domain: &str| {
        err_after_head(&format!(
            "\n[[egress.allow]]\ndomain = \"{domain}\"\nports = [443]\n"
        ))
    };
    let label = "a".repeat(63);
    let long = format!("{label}.{label}.{label}.{}", "b".repeat(62));
    let at = "bottle.toml:6:10: egress.allow[0].domain: ";
    let cases = [
        (
            "bücher.test".to_owned(),
            "\"bücher.test\" contains non-ASCII characters; write internationalised labels in \
             their A-label form (xn--…), e.g. \"bücher.test\" as \"xn--bcher-kva.test\"",
        ),
        (
            "*foo.test".to_owned(),
            "\"*foo.test\" has `*` outside a whole leftmost label; a wildcard is written \
             \"*.example.test\"",
        ),
        (
            "a.*.test".to_owned(),
            "\"a.*.test\" has `*` outside a whole leftmost label; a wildcard is written \
             \"*.example.test\"",
        ),
        (
            "*".to_owned(),
            "\"*\" would match every name; write a wildcard below a domain, such as \
             \"*.example.test\"",
        ),
        (
            "*.test".to_owned(),
            "\"*.test\" would match a whole top-level domain; write a wildcard below a \
             registered name, such as \"*.example.test\"",
        ),
        (
            "localhost".to_owned(),
            "\"localhost\" is a single label; write a fully qualified name such as \
             \"api.example.test\"",
        ),
        (
            "a..test".to_owned(),
            "\"a..test\" has an empty label; labels are separated by single dots",
        ),
        (
            "".to_owned(),
            "\"\" has an empty label; labels are separated by single dots",
        ),
        (
            "-a.test".to_owned(),
            "\"-a.test\" has the label \"-a\", which starts or ends with `-`",
        ),
        (
            "a_b.test".to_owned(),
            "\"a_b.test\" has '_' in a label; labels use letters, digits and `-`",
        ),
        (
            format!("{label}x.test"),
            "has a label of 64 bytes; a label has at most 63",
        ),
        (long, "is 254 bytes long; a domain name has at most 253"),
    ];
    for (domain, want) in cases {
        let got = allow(&domain);
        assert!(
            got.starts_with(at) && got.ends_with(want),
            "\n got: {got}\nwant: {at}…{want}"
        );
    }
}

#[test]
fn entry_errors() {
    let cases = [
        // The third allow entry, as in `egress.allow[2]`.
        (
            "[[egress.allow]]\ndomain = \"a.test\"\n[[egress.allow]]\ncidr = \"10.0.0.0/8\"\n\
             [[egress.allow]]\ndomain = \"*b.test\"\n",
            "bottle.toml:9:10: egress.allow[2].domain: \"*b.test\" has `*` outside a whole \
             leftmost label; a wildcard is written \"*.example.test\"",
        ),
        (
            "[[egress.allow]]\ndomain = \"a.test\"\ncidr = \"10.0.0.0/8\"\n",
            "bottle.toml:4:1: egress.allow[0]: give either `cidr` or `domain`, not both",
        ),
        (
            "[[egress.allow]]\nports = [443]\n",
            "bottle.toml:4:1: egress.allow[0]: needs `cidr` or `domain`",
        ),
        (
            "[egress]\ndeny = [{ domain = \"a.test\", ports = [443] }]\n",
            "bottle.toml:5:38: egress.deny[0].ports: a domain deny rule refuses the name for \
             every port and protocol; remove `ports` (only `cidr` deny rules can be narrowed \
             by `ports`)",
        ),
        (
            "[[egress.deny]]\ndomain = \"a.test\"\nproto = \"udp\"\n",
            "bottle.toml:6:9: egress.deny[0].proto: a domain deny rule refuses the name for \
             every port and protocol; remove `proto` (only `cidr` deny rules can be narrowed \
             by `proto`)",
        ),
        (
            "[[egress.allow]]\ndomain = \"a.test\"\nports = [0]\n",
            "bottle.toml:6:10: egress.allow[0].ports[0]: port 0 is out of range 1-65535",
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err_after_head(rest), want, "\n{rest}");
    }
}

#[test]
fn dns_errors() {
    let cases = [
        (
            "upstream = [\"198.51.100.53\", \"resolver.test\"]\n",
            "bottle.toml:5:30: dns.upstream[1]: \"resolver.test\" is not an IP address with an \
             optional port; write \"198.51.100.53\", \"198.51.100.53:5353\", \"2001:db8::53\" \
             or \"[2001:db8::53]:5353\"",
        ),
        (
            "upstream = [\"198.51.100.53:0\"]\n",
            "bottle.toml:5:13: dns.upstream[0]: \"198.51.100.53:0\" has port 0, out of range \
             1-65535",
        ),
        (
            "upstream = [\"[2001:db8::53]:65536\"]\n",
            "bottle.toml:5:13: dns.upstream[0]: \"[2001:db8::53]:65536\" has port 65536, out of \
             range 1-65535",
        ),
        (
            "upstream = [\"0.0.0.0\"]\n",
            "bottle.toml:5:13: dns.upstream[0]: \"0.0.0.0\" is not a unicast address a resolver \
             can be reached at",
        ),
        (
            "upstream = []\n",
            "bottle.toml:5:12: dns.upstream: an empty list leaves no resolver; omit `upstream` \
             to use the host's resolv.conf servers",
        ),
        (
            "min_ttl = 0\n",
            "bottle.toml:5:11: dns.min_ttl: 0 is out of range 1-86400",
        ),
        (
            "max_ttl = 86401\n",
            "bottle.toml:5:11: dns.max_ttl: 86401 is out of range 1-86400",
        ),
        (
            "min_ttl = -1\n",
            "bottle.toml:5:11: dns.min_ttl: -1 is out of range 1-86400",
        ),
        (
            "queries_per_second = 0\n",
            "bottle.toml:5:22: dns.queries_per_second: 0 is out of range 1-10000",
        ),
        (
            "queries_per_second = 10001\n",
            "bottle.toml:5:22: dns.queries_per_second: 10001 is out of range 1-10000",
        ),
        (
            "min_ttl = 400\n",
            "bottle.toml:5:11: dns.min_ttl: 400 is above max_ttl 300 (the default)",
        ),
        (
            "max_ttl = 60\nmin_ttl = 61\n",
            "bottle.toml:6:11: dns.min_ttl: 61 is above max_ttl 60",
        ),
        (
            "max_ttl = 3\n",
            "bottle.toml:5:11: dns.max_ttl: 3 is below min_ttl 5 (the default)",
        ),
        (
            "resolver = \"198.51.100.53\"\n",
            "bottle.toml:5:1: dns.resolver: unknown field `resolver`, expected one of \
             `upstream`, `min_ttl`, `max_ttl`, `queries_per_second`",
        ),
        (
            "upstream = \"198.51.100.53\"\n",
            "bottle.toml:5:12: dns.upstream: invalid type: string \"198.51.100.53\", expected \
             a sequence",
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err_after_head(&format!("[dns]\n{rest}")), want, "\n{rest}");
    }
}

const MANIFEST: &str = r#"version = 1
[bottle]
name = "agent-1"

[[egress.allow]]
domain = "API.Example.Test."
ports = [443]

[[egress.allow]]
cidr = "198.51.100.0/24"

[[egress.allow]]
domain = "*.pkg.example.test"
ports = [443, "8000-8100"]
proto = "any"

[[egress.deny]]
domain = "evil.pkg.example.test"

[dns]
upstream = ["198.51.100.53", "2001:db8:53::53", "[2001:db8::53]:5353", "198.51.100.53:53"]
min_ttl = 10
"#;

#[test]
fn compile_accepts_domain_rules_and_dns() {
    let policy = compile(MANIFEST, "bottle.toml").unwrap();
    assert_eq!(policy, unenforced(MANIFEST).unwrap());
    assert!(!policy.domains.is_empty());
    let dns_only = format!("{HEAD}[dns]\nupstream = [\"198.51.100.53\"]\nmax_ttl = 60\n");
    let policy = compile(&dns_only, "b").unwrap();
    assert!(policy.domains.is_empty());
    assert_eq!(policy.dns.max_ttl, 60);
    assert_eq!(compile(HEAD, "b").unwrap().dns, DnsConfig::default());
}

#[test]
fn compiled_form() {
    let policy = unenforced(MANIFEST).unwrap();
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "egress.allow[0]",
            "egress.allow[1]",
            "egress.allow[2]",
            "egress.deny[0]"
        ]
    );
    assert_eq!(
        policy.rules[0].target,
        RuleTarget::Domain(DomainPattern::Exact("api.example.test".into()))
    );
    assert_eq!(
        policy.rules[1].prefix().unwrap().to_string(),
        "198.51.100.0/24"
    );
    assert_eq!(policy.rules[1].domain(), None);
    assert_eq!(policy.rules[0].prefix(), None);

    let domains: Vec<(u32, String, Action, Proto, usize, usize)> = policy
        .domains
        .iter()
        .map(|d| {
            (
                d.rule_id,
                d.pattern.to_string(),
                d.action,
                d.proto,
                d.line,
                d.col,
            )
        })
        .collect();
    assert_eq!(
        domains,
        [
            (
                0,
                "api.example.test".into(),
                Action::Allow,
                Proto::Tcp,
                6,
                10
            ),
            (
                2,
                "*.pkg.example.test".into(),
                Action::Allow,
                Proto::Any,
                13,
                10
            ),
            (
                3,
                "evil.pkg.example.test".into(),
                Action::Deny,
                Proto::Any,
                18,
                10
            ),
        ]
    );
    assert_eq!(policy.domains[1].ports.len(), 2);

    // Domain rules add no kernel entry; rule ids of prefix rules are unchanged.
    assert_eq!(
        policy.kernel_plan().to_string(),
        "v4 198.51.100.0/24: allow tcp 0-65535 #1\nhost_ports: \n\
         unix /run/cork/cork.sock: deny control socket\n\
         unix /var/run/cork/cork.sock: deny control socket\n"
    );

    let upstream: Vec<SocketAddr> = [
        "198.51.100.53:53",
        "[2001:db8:53::53]:53",
        "[2001:db8::53]:5353",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(
        policy.dns,
        DnsConfig {
            upstream: Some(upstream),
            min_ttl: 10,
            max_ttl: DnsConfig::DEFAULT_MAX_TTL,
            queries_per_second: DnsConfig::DEFAULT_QUERIES_PER_SECOND,
        }
    );
}

const MATCHER: &str = r#"version = 1
[bottle]
name = "agent-1"

[[egress.allow]]            # 0
domain = "*.example.test"
ports = [80]

[[egress.allow]]            # 1
domain = "api.example.test"
ports = [443]

[[egress.allow]]            # 2
domain = "*.pkg.example.test"
ports = [443]
proto = "any"

[[egress.allow]]            # 3
domain = "pkg.example.test"

[[egress.allow]]            # 4: same pattern as 0, later in the manifest
domain = "*.example.test"
ports = [80, 8080]

[[egress.deny]]             # 5
domain = "evil.pkg.example.test"

[[egress.deny]]             # 6
domain = "*.bad.example.test"
"#;

#[test]
fn match_domain() {
    let policy = unenforced(MATCHER).unwrap();
    let allow = |rule_id| DomainVerdict::Allow { rule_id };
    let deny = |rule_id| DomainVerdict::Deny { rule_id };
    let cases = [
        ("api.example.test", allow(1)),
        ("API.EXAMPLE.TEST.", allow(1)),
        ("www.example.test", allow(0)),
        ("a.b.c.example.test", allow(0)),
        ("example.test", DomainVerdict::NoMatch),
        ("pkg.example.test", allow(3)),
        ("x.pkg.example.test", allow(2)),
        ("y.x.pkg.example.test.", allow(2)),
        ("evil.pkg.example.test", deny(5)),
        ("Evil.Pkg.Example.Test.", deny(5)),
        ("sub.evil.pkg.example.test", allow(2)),
        ("bad.example.test", allow(0)),
        ("x.bad.example.test", deny(6)),
        ("other.test", DomainVerdict::NoMatch),
        ("xexample.test", DomainVerdict::NoMatch),
        ("", DomainVerdict::NoMatch),
        ("a..example.test", DomainVerdict::NoMatch),
        ("bü.example.test", DomainVerdict::NoMatch),
        ("_srv.example.test", allow(0)),
    ];
    for (name, want) in cases {
        assert_eq!(policy.match_domain(name), want, "{name:?}");
    }
}

#[test]
fn allowed_slots() {
    let policy = unenforced(MATCHER).unwrap();
    let slot = |rule_id, lo, hi, proto| Slot {
        port_lo: lo,
        port_hi: hi,
        proto,
        action: Action::Allow,
        rule_id,
        redirect: Redirect::Web,
    };
    // Every matching allow rule, most specific first; rule 4's duplicate 80 is merged.
    assert_eq!(
        policy.allowed_slots("x.pkg.example.test"),
        [
            slot(2, 443, 443, Proto::Any),
            slot(0, 80, 80, Proto::Tcp),
            slot(4, 8080, 8080, Proto::Tcp),
        ]
    );
    assert_eq!(
        policy.allowed_slots("API.example.test."),
        [
            slot(1, 443, 443, Proto::Tcp),
            slot(0, 80, 80, Proto::Tcp),
            slot(4, 8080, 8080, Proto::Tcp),
        ]
    );
    assert_eq!(
        policy.allowed_slots("pkg.example.test"),
        [
            slot(3, 0, 65535, Proto::Tcp),
            slot(0, 80, 80, Proto::Tcp),
            slot(4, 8080, 8080, Proto::Tcp),
        ]
    );
    assert!(policy.allowed_slots("evil.pkg.example.test").is_empty());
    assert!(policy.allowed_slots("x.bad.example.test").is_empty());
    assert!(policy.allowed_slots("example.test").is_empty());
    assert!(policy.allowed_slots("a..example.test").is_empty());
}
