//! Every manifest refusal, with the exact `origin:line:col: path: message` it produces.

use cork_policy::{ManifestError, compile, parse_manifest};

/// Lines 1-3 of every case; the part under test starts on line 4.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

fn err(src: &str) -> String {
    match compile(src, "bottle.toml") {
        Ok(p) => panic!("accepted:\n{src}\n{p:?}"),
        Err(e) => e.to_string(),
    }
}

fn err_after_head(rest: &str) -> String {
    err(&format!("{HEAD}{rest}"))
}

#[test]
fn structured_fields_match_display() {
    let e: ManifestError = parse_manifest(
        &format!("{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\nports = [443, 0]\n"),
        "b.toml",
    )
    .unwrap_err();
    assert_eq!(
        (
            e.origin.as_str(),
            e.line,
            e.col,
            e.path.as_str(),
            e.message.as_str()
        ),
        (
            "b.toml",
            6,
            15,
            "egress.allow[0].ports[1]",
            "port 0 is out of range 1-65535"
        )
    );
}

#[test]
fn syntax_and_unknown_keys() {
    let cases = [
        ("[bottle\n", "bottle.toml:4:8: unclosed table, expected `]`"),
        (
            "[[egress.allow]]\ncidr = \"10.0.0.0/8\"\nport = 443\n",
            "bottle.toml:6:1: egress.allow[0].port: unknown field `port`, expected one of",
        ),
        (
            "[egress]\nallowed = []\n",
            "bottle.toml:5:1: egress.allowed: unknown field `allowed`",
        ),
        (
            "[loopback]\nports = [1]\n",
            "bottle.toml:5:1: loopback.ports: unknown field `ports`",
        ),
        (
            "[[egress.allow]]\ncidr = 10\n",
            "bottle.toml:5:8: egress.allow[0].cidr: invalid type: integer `10`, expected a string",
        ),
        (
            "[[egress.allow]]\ncidr = \"10.0.0.0/8\"\nports = [1.5]\n",
            "bottle.toml:6:10: egress.allow[0].ports[0]: invalid type: floating point `1.5`, \
             expected a port number or a \"lo-hi\" port range string",
        ),
        (
            "[loopback]\nhost_ports = [\"8125\"]\n",
            "bottle.toml:5:15: loopback.host_ports[0]: invalid type: string \"8125\", expected i64",
        ),
    ];
    for (rest, want) in cases {
        let got = err_after_head(rest);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
    assert!(
        err(&format!("colour = 1\n{HEAD}"))
            .starts_with("bottle.toml:1:1: colour: unknown field `colour`, expected one of")
    );
    // Unknown keys in [bottle] are caught too.
    assert_eq!(
        err("version = 1\n[bottle]\nname = \"a\"\nimage = \"x\"\n"),
        "bottle.toml:4:1: bottle.image: unknown field `image`, expected `name`"
    );
}

#[test]
fn version_and_name() {
    let cases = [
        (
            "[bottle]\nname = \"a\"\n",
            "bottle.toml:1:1: version: missing; start the manifest with `version = 1`",
        ),
        (
            "version = 2\n[bottle]\nname = \"a\"\n",
            "bottle.toml:1:11: version: version 2 is not supported; this cork reads version 1",
        ),
        (
            "version = 1\n",
            "bottle.toml:1:1: bottle.name: missing; add a [bottle] table with `name = \"...\"`",
        ),
        (
            "version = 1\n\n[bottle]\n",
            "bottle.toml:3:1: bottle.name: missing; add `name = \"...\"` to [bottle]",
        ),
        (
            "version = 1\n[bottle]\nname = \"Agent_1\"\n",
            "bottle.toml:3:8: bottle.name: \"Agent_1\" is not a valid bottle name: use 1-63 \
             lowercase letters, digits and `-`, starting with a letter or digit",
        ),
        (
            "version = 1\n[bottle]\nname = \"\"\n",
            "bottle.toml:3:8: bottle.name: \"\" is not a valid bottle name: use 1-63 \
             lowercase letters, digits and `-`, starting with a letter or digit",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(err(src), want);
    }
}

#[test]
fn rule_fields() {
    let allow = |body: &str| err_after_head(&format!("\n[[egress.allow]]\n{body}"));
    // The entry header is on line 5, its first key on line 6.
    let cases = [
        (
            "cidr = \"198.51.100.1/24\"\n",
            "bottle.toml:6:8: egress.allow[0].cidr: \"198.51.100.1/24\" has host bits set; \
             write \"198.51.100.0/24\"",
        ),
        (
            "cidr = \"2001:db8::1/32\"\n",
            "bottle.toml:6:8: egress.allow[0].cidr: \"2001:db8::1/32\" has host bits set; \
             write \"2001:db8::/32\"",
        ),
        (
            "cidr = \"example.com\"\n",
            "bottle.toml:6:8: egress.allow[0].cidr: \"example.com\" is not an IPv4 or IPv6 \
             address or prefix",
        ),
        (
            "cidr = \"10.0.0.0/40\"\n",
            "bottle.toml:6:8: egress.allow[0].cidr: \"10.0.0.0/40\" has a bad prefix length; \
             use 0-32 after the `/`",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = [443, 0]\n",
            "bottle.toml:7:15: egress.allow[0].ports[1]: port 0 is out of range 1-65535",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = [65536]\n",
            "bottle.toml:7:10: egress.allow[0].ports[0]: port 65536 is out of range 1-65535",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = [\"1-70000\"]\n",
            "bottle.toml:7:10: egress.allow[0].ports[0]: port 70000 is out of range 1-65535",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = [80, \"9-3\"]\n",
            "bottle.toml:7:14: egress.allow[0].ports[1]: range \"9-3\" is reversed; write \"3-9\"",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = [\"80:90\"]\n",
            "bottle.toml:7:10: egress.allow[0].ports[0]: \"80:90\" is not a port or a \"lo-hi\" port range",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nports = []\n",
            "bottle.toml:7:9: egress.allow[0].ports: an empty list matches no port; omit ports \
             for every port",
        ),
        (
            "cidr = \"10.0.0.0/8\"\nproto = \"icmp\"\n",
            "bottle.toml:7:9: egress.allow[0].proto: unknown protocol \"icmp\"; expected \"tcp\", \
             \"udp\" or \"any\"",
        ),
        (
            "ports = [443]\n",
            "bottle.toml:5:1: egress.allow[0]: needs `cidr` or `domain`",
        ),
        (
            "cidr = \"10.0.0.0/8\"\ndomain = \"a.example\"\n",
            "bottle.toml:5:1: egress.allow[0]: give either `cidr` or `domain`, not both",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(allow(body), want, "body: {body}");
    }
}

#[test]
fn paths_count_entries_per_list() {
    let src = format!(
        "{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\n[[egress.deny]]\ncidr = \"10.0.0.1\"\n\
         [[egress.deny]]\ncidr = \"10.0.0.2\"\nproto = \"sctp\"\n"
    );
    assert_eq!(
        err(&src),
        "bottle.toml:10:9: egress.deny[1].proto: unknown protocol \"sctp\"; expected \"tcp\", \
         \"udp\" or \"any\""
    );
    // Inline tables are located at their opening brace.
    let inline = format!("{HEAD}[egress]\ndeny = [{{ cidr = \"10.0.0.1\" }}, {{ ports = [1] }}]\n");
    assert_eq!(
        err(&inline),
        "bottle.toml:5:32: egress.deny[1]: needs `cidr` or `domain`"
    );
}

#[test]
fn host_ports() {
    assert_eq!(
        err_after_head("[loopback]\nhost_ports = [8125, 0]\n"),
        "bottle.toml:5:21: loopback.host_ports[1]: port 0 is out of range 1-65535"
    );
    let many: Vec<String> = (1..=257).map(|p| p.to_string()).collect();
    assert_eq!(
        err_after_head(&format!("[loopback]\nhost_ports = [{}]\n", many.join(", "))),
        "bottle.toml:5:14: loopback.host_ports: 257 distinct ports, but the kernel map holds at most 256"
    );
    let ok = compile(
        &format!("{HEAD}[loopback]\nhost_ports = [9000, 8125, 9000]\n"),
        "b",
    )
    .unwrap();
    assert_eq!(ok.host_ports, [8125, 9000]);
}

#[test]
fn columns_count_characters() {
    // `é` is two bytes; the bad port is still reported at character column 18.
    let src = format!("{HEAD}[[egress.allow]] # é\ncidr = \"10.0.0.0/8\" # é\nports = [\"é\"]\n");
    assert_eq!(
        err(&src),
        "bottle.toml:6:10: egress.allow[0].ports[0]: \"é\" is not a port or a \"lo-hi\" port range"
    );
    let src = format!("{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\n\"é\" = 1\nports = [0]\n");
    assert!(err(&src).starts_with("bottle.toml:6:1: egress.allow[0].é: unknown field"));
    let src = format!("{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\nports = [\"é\", 0]\n");
    assert_eq!(
        err(&src).split(": ").next(),
        Some("bottle.toml:6:10"),
        "the first bad element is reported"
    );
    let src = format!("{HEAD}[[egress.allow]]\ncidr = \"10.0.0.0/8\"\nports = [\"1-é\"]\nx = 0\n");
    assert!(err(&src).starts_with("bottle.toml:7:1: egress.allow[0].x: unknown field"));
}
