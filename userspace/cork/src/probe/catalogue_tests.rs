//! The catalogue's unit tests: every promise of a sample manifest has its probe, and
//! every destination stays in the test ranges.

use super::*;

const MANIFEST: &str = r#"
version = 1
[bottle]
name = "cat"

[[egress.allow]]
cidr = "198.51.100.0/25"
ports = [8443]

[[egress.allow]]
domain = "*.pkg.example.test"
ports = [443]

[[egress.deny]]
cidr = "198.51.100.64/26"

[[egress.deny]]
domain = "evil.pkg.example.test"

[loopback]
host_ports = [1, 9200]

[[credentials]]
domain = "a.pkg.example.test"
header = "x-api-key"
placeholder = "cork-placeholder-x"
env = "X_KEY"
value_env = "X_REAL"
"#;

fn settings() -> Settings {
    Settings {
        deny_samples: vec![
            "198.51.100.200".parse().unwrap(),
            "2001:db8::200".parse().unwrap(),
        ],
        resolver: "198.51.100.53:53".parse().unwrap(),
        random_resolvers: vec!["198.51.100.253".parse().unwrap()],
        denied_name: "no.invalid".into(),
        loopback_port: 2,
        gateways: None,
    }
}

#[test]
fn every_promise_has_a_probe_and_every_destination_stays_in_the_test_ranges() {
    let policy = cork_policy::compile(MANIFEST, "t.toml").unwrap();
    let probes = build(&policy, &settings());
    let ids: Vec<&str> = probes.iter().map(|p| p.id.as_str()).collect();
    for id in [
        "net.allow:egress.allow[0]",
        "dns.allow:egress.allow[1]",
        "net.deny:egress.deny[0]",
        "dns.deny:egress.deny[1]",
        "net.default_deny:2001:db8::200",
        "loopback.foreign:127.0.0.1:2",
        "loopback.host_port:[::1]:9200",
        "dns.txt_refused",
        "dns.redirect:198.51.100.253",
        "ca.env:SSL_CERT_FILE",
        "cred.placeholder:X_KEY",
        "cred.real_absent:X_REAL",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let test_range = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.octets()[..3] == [198, 51, 100] || a.is_loopback(),
        IpAddr::V6(a) => a.segments()[..2] == [0x2001, 0xdb8] || a.is_loopback(),
    };
    for p in &probes {
        assert!(!p.expected.is_empty() && !p.proves.is_empty(), "{}", p.id);
        match &p.check {
            Check::Connect { addr, expect, .. } => {
                assert!(test_range(addr.ip()), "{} sends to {addr}", p.id);
                // The allow sample avoids the deny prefix inside its own.
                if p.id == "net.allow:egress.allow[0]" {
                    assert_eq!(*expect, Expect::NotRefused);
                    let deny: cork_policy::Prefix = "198.51.100.64/26".parse().unwrap();
                    assert!(!deny.contains(addr.ip()), "{addr}");
                }
            }
            Check::Dns { server, name, .. } | Check::DomainAllow { server, name, .. } => {
                assert!(test_range(server.ip()), "{} asks {server}", p.id);
                assert!(
                    name.ends_with(".test") || name.ends_with(".invalid"),
                    "{name}"
                );
            }
            _ => {}
        }
    }
}
