//! Golden kernel plans and the verdicts they give, plus the capacity refusals.

use std::net::IpAddr;

use cork_policy::{
    Action, MAX_PREFIXES_PER_FAMILY, MAX_RULES, MAX_SLOTS_PER_PREFIX, Policy, Proto, RuleInfo,
    Verdict, compile, evaluate, parse_manifest,
};

const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

const GOLDEN: &str = r#"version = 1
[bottle]
name = "agent-1"

[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443, "8000-8100"]

[[egress.allow]]
cidr = "2001:db8::/32"
proto = "udp"
ports = [53]

[[egress.allow]]
cidr = "::ffff:203.0.113.0/120"
proto = "any"

[[egress.allow]]
cidr = "10.1.2.3"
ports = [443, 443]

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.deny]]
cidr = "10.0.0.0/8"

[[egress.deny]]
cidr = "203.0.113.0/24"
ports = [22]
proto = "tcp"

[loopback]
host_ports = [8125, 53, 8125]
"#;

#[test]
fn golden_plan() {
    let policy = compile(GOLDEN, "golden.toml").unwrap();
    assert_eq!(policy.name, "agent-1");
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "egress.allow[0]",
            "egress.allow[1]",
            "egress.allow[2]",
            "egress.allow[3]",
            "egress.deny[0]",
            "egress.deny[1]",
            "egress.deny[2]",
        ]
    );
    let lines: Vec<usize> = policy.rules.iter().map(|r| r.line).collect();
    assert_eq!(lines, [5, 9, 14, 18, 22, 25, 28]);
    assert_eq!(
        policy.rules[2].prefix().unwrap().to_string(),
        "203.0.113.0/24"
    );
    assert_eq!(policy.rules[4].proto, Proto::Any, "deny defaults to any");
    assert_eq!(policy.rules[0].proto, Proto::Tcp, "allow defaults to tcp");

    // Each entry carries its ancestors' slots, most specific rule first; the duplicate
    // 443 of allow[3] is merged.
    let want = "\
v4 10.0.0.0/8: deny any 0-65535 #5
v4 10.1.2.3/32: allow tcp 443-443 #3, deny any 0-65535 #5
v4 198.51.100.0/24: allow tcp 443-443 #0, allow tcp 8000-8100 #0
v4 198.51.100.66/32: deny any 0-65535 #4, allow tcp 443-443 #0, allow tcp 8000-8100 #0
v4 203.0.113.0/24: allow any 0-65535 #2, deny tcp 22-22 #6
v6 2001:db8::/32: allow udp 53-53 #1
host_ports: 53, 8125
unix /run/cork/cork.sock: deny control socket
unix /var/run/cork/cork.sock: deny control socket
";
    assert_eq!(policy.kernel_plan().to_string(), want);
    assert_eq!(
        policy.kernel_plan(),
        compile(GOLDEN, "again").unwrap().kernel_plan()
    );
}

#[test]
fn golden_verdicts() {
    let plan = compile(GOLDEN, "golden.toml").unwrap().kernel_plan();
    let verdict =
        |dst: &str, proto, port| evaluate(&plan, dst.parse::<IpAddr>().unwrap(), proto, port);
    let allow = |id| Verdict {
        action: Action::Allow,
        rule_id: Some(id),
        redirect: false,
    };
    let deny = |id| Verdict {
        action: Action::Deny,
        rule_id: Some(id),
        redirect: false,
    };
    let default_deny = Verdict {
        action: Action::Deny,
        rule_id: None,
        redirect: false,
    };
    use Proto::{Tcp, Udp};
    let cases = [
        ("198.51.100.7", Tcp, 443, allow(0)),
        ("198.51.100.7", Tcp, 8050, allow(0)),
        ("198.51.100.7", Udp, 443, default_deny),
        ("198.51.100.7", Tcp, 80, default_deny),
        // Deny /32 inside allow /24.
        ("198.51.100.66", Tcp, 443, deny(4)),
        ("::ffff:198.51.100.66", Tcp, 443, deny(4)),
        // Allow /32 inside deny /8: deny still wins.
        ("10.1.2.3", Tcp, 443, deny(5)),
        ("10.9.9.9", Udp, 53, deny(5)),
        // Mapped allow rule covers IPv4 and mapped destinations alike.
        ("203.0.113.5", Udp, 22, allow(2)),
        ("::ffff:203.0.113.5", Tcp, 80, allow(2)),
        ("203.0.113.5", Tcp, 22, deny(6)),
        ("2001:db8::1", Udp, 53, allow(1)),
        ("2001:db8::1", Tcp, 53, default_deny),
        ("192.0.2.1", Tcp, 443, default_deny),
        ("::1", Tcp, 443, default_deny),
    ];
    for (dst, proto, port, want) in cases {
        assert_eq!(verdict(dst, proto, port), want, "{dst} {proto} {port}");
    }
}

fn allow_entry(cidr: &str, ports: std::ops::Range<u16>) -> String {
    let ports: Vec<String> = ports.map(|p| p.to_string()).collect();
    format!(
        "\n[[egress.allow]]\ncidr = \"{cidr}\"\nports = [{}]\n",
        ports.join(", ")
    )
}

#[test]
fn slot_limit_counts_ancestors_and_blames_the_overflowing_rule() {
    // 10 slots from the /8 plus 6 from the /32: exactly full.
    let full = format!(
        "{HEAD}{}{}",
        allow_entry("10.0.0.0/8", 1..11),
        allow_entry("10.0.0.1", 11..17)
    );
    let plan = compile(&full, "b.toml").unwrap().kernel_plan();
    assert_eq!(plan.v4[1].slots.len(), MAX_SLOTS_PER_PREFIX);

    // A third rule on the /8 overflows the /32's entry; that rule is blamed.
    let over = format!("{full}{}", allow_entry("10.0.0.0/8", 100..101));
    let err = compile(&over, "b.toml").unwrap_err();
    assert_eq!(
        (err.line, err.col, err.path.as_str()),
        (13, 1, "egress.allow[2]")
    );
    assert_eq!(
        err.message,
        "prefix 10.0.0.1/32 would need 17 port/protocol slots, but the kernel holds at most 16: \
         an entry carries the slots of its own rules and of every rule whose prefix contains it; \
         merge port ranges or overlap fewer rules"
    );

    // Identical slots from different rules share one place.
    let shared = format!("{full}{}", allow_entry("10.0.0.0/8", 1..11));
    assert!(compile(&shared, "b.toml").is_ok());
    // The same ports as deny are different slots.
    let deny = format!("{full}\n[[egress.deny]]\ncidr = \"10.0.0.0/8\"\nports = [1]\n");
    assert_eq!(compile(&deny, "b.toml").unwrap_err().path, "egress.deny[0]");
}

#[test]
fn prefix_limit_per_family() {
    let v4 = |i: usize| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
    let entries = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[egress.deny]]\ncidr = \"{}\"\n", v4(i)))
            .collect()
    };
    let fits = format!(
        "{HEAD}{}[[egress.deny]]\ncidr = \"2001:db8::/32\"\n",
        entries(MAX_PREFIXES_PER_FAMILY)
    );
    let policy = compile(&fits, "b.toml").unwrap();
    assert_eq!(policy.kernel_plan().v4.len(), MAX_PREFIXES_PER_FAMILY);
    const { assert!(MAX_PREFIXES_PER_FAMILY >= 100_000) };

    let over = format!("{HEAD}{}", entries(MAX_PREFIXES_PER_FAMILY + 1));
    let err = compile(&over, "b.toml").unwrap_err();
    // Two lines per entry after the three of HEAD: the extra entry starts on this line.
    let line = 4 + 2 * MAX_PREFIXES_PER_FAMILY;
    assert_eq!(
        err.to_string(),
        format!(
            "b.toml:{line}:1: egress.deny[{MAX_PREFIXES_PER_FAMILY}]: too many distinct IPv4 \
             prefixes; the kernel holds at most {MAX_PREFIXES_PER_FAMILY} per address family"
        )
    );
}

#[test]
fn rule_count_is_limited() {
    // A manifest text this long takes a while to parse: the table is grown by hand.
    let src = format!("{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\n");
    let mut manifest = parse_manifest(&src, "b.toml").unwrap();
    let rule = manifest.rules[0].clone();
    let many = |n: usize| -> Vec<RuleInfo> {
        (0..n)
            .map(|i| RuleInfo {
                id: format!("egress.allow[{i}]"),
                line: 4 + 2 * i,
                ..rule.clone()
            })
            .collect()
    };
    manifest.rules = many(MAX_RULES);
    // Identical rules merge into one slot, so only the rule table limits them.
    assert_eq!(
        Policy::from_manifest(manifest.clone()).unwrap().rules.len(),
        MAX_RULES
    );

    manifest.rules = many(MAX_RULES + 1);
    let err = Policy::from_manifest(manifest).unwrap_err();
    assert_eq!(err.path, format!("egress.allow[{MAX_RULES}]"));
    assert_eq!(err.line, 4 + 2 * MAX_RULES);
    assert_eq!(
        err.message,
        format!("too many rules; at most {MAX_RULES} are supported")
    );
}
