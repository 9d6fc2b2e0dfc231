//! Domain rules end to end: every DNS query a bottle sends (UDP or TCP port 53, to any
//! address) is answered by cork's per-bottle proxy; only allowed names reach the upstream
//! (the test world's DNS server), and only addresses an allowed answer returned become
//! reachable, for the allowing rule's ports, until the answer's TTL runs out.

use std::time::Duration;

use anyhow::Result;
use cork_integration::dns_client::argv;
use cork_integration::dns_server::Zone;
use cork_integration::process::Spawned;
use cork_integration::{Side, World};
use serde_json::json;

/// Allows `short.example.test` on one port with every learned address living one second.
fn one_second_ttl(port: u16, proto: &str) -> String {
    format!(
        "[[egress.allow]]\ndomain = \"short.example.test\"\nports = [{port}]\nproto = \"{proto}\"\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\nmin_ttl = 1\nmax_ttl = 1\n"
    )
}

fn zone() -> Zone {
    Zone::new()
        .a("api.example.test", "198.51.100.10", 300)
        .aaaa("api.example.test", "2001:db8::10", 300)
        .a("www.pkg.example.test", "198.51.100.11", 300)
        .a("pkg.example.test", "198.51.100.12", 300)
        .a("evil.pkg.example.test", "198.51.100.13", 300)
        .cname("alias.example.test", "api.example.test", 300)
        .a("short.example.test", "198.51.100.14", 1)
        .txt("api.example.test", "exfil-channel", 300)
}

const MANIFEST: &str = r#"
[[egress.allow]]
domain = "api.example.test"
ports = [8443]

[[egress.allow]]
domain = "alias.example.test"
ports = [8443]

[[egress.allow]]
domain = "*.pkg.example.test"
ports = [8443]

[[egress.deny]]
domain = "evil.pkg.example.test"

[dns]
upstream = ["198.51.100.53"]
"#;

#[test]
fn resolved_names_become_reachable_and_nothing_else_does() -> Result<()> {
    let world = World::new("resolved_names_become_reachable_and_nothing_else_does")?;
    let upstream = world.dns_server("198.51.100.53:53", zone())?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let _other = world.tcp_server(Side::Internet, "198.51.100.10:8444")?;
    let (out, audit) = world.run_argv(
        "a",
        MANIFEST,
        &argv(&[
            "connect",
            "198.51.100.10",
            "8443", // not resolved yet
            "udp",
            "198.51.100.53",
            "api.example.test",
            "A",
            "connect",
            "198.51.100.10",
            "8443",
            "connect",
            "198.51.100.10",
            "8444", // not the rule's port
            "udp",
            "198.51.100.53",
            "nope.example.test",
            "A",
        ]),
    )?;
    assert_eq!(
        out.lines(),
        [
            "EPERM",
            "NOERROR 198.51.100.10 from=198.51.100.53",
            "ok",
            "EPERM",
            "REFUSED - from=198.51.100.53",
        ],
        "{out}"
    );
    assert_eq!(srv.peers().len(), 1);
    let names: Vec<String> = upstream.queries().into_iter().map(|q| q.0).collect();
    assert_eq!(
        names,
        ["api.example.test"],
        "only the allowed name went upstream"
    );
    audit.expect(
        json!({"layer": "dns", "name": "api.example.test", "qtype": "A",
                        "verdict": "allow", "rule": "egress.allow[0]",
                        "answers": ["198.51.100.10"]}),
    )?;
    audit.expect(
        json!({"layer": "dns", "name": "nope.example.test", "verdict": "deny",
                        "reason": "not_allowed"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "connect4", "dst": "198.51.100.10",
                        "dport": 8443, "verdict": "allow", "domain": "api.example.test",
                        "rule": "egress.allow[0]"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "sendmsg4", "dst": "198.51.100.53",
                        "dport": 53, "verdict": "allow", "reason": "dns_redirect"}),
    )?;
    Ok(())
}

#[test]
fn wildcard_apex_deny_cname_and_any_resolver_address() -> Result<()> {
    let world = World::new("wildcard_apex_deny_cname_and_any_resolver_address")?;
    let upstream = world.dns_server("198.51.100.53:53", zone())?;
    let (out, audit) = world.run_argv(
        "a",
        MANIFEST,
        &argv(&[
            "udp",
            "198.51.100.53",
            "www.pkg.example.test",
            "A",
            "udp",
            "198.51.100.53",
            "pkg.example.test",
            "A", // apex: no rule
            "udp",
            "198.51.100.53",
            "evil.pkg.example.test",
            "A", // deny beats allow
            "udp",
            "198.51.100.53",
            "alias.example.test",
            "A", // CNAME chain
            // resolv.conf pointing elsewhere: still the proxy answers, from where asked
            "udp",
            "198.51.100.99",
            "api.example.test",
            "A",
            "tcp",
            "198.51.100.53",
            "www.pkg.example.test",
            "A",
        ]),
    )?;
    assert_eq!(
        out.lines(),
        [
            "NOERROR 198.51.100.11 from=198.51.100.53",
            "REFUSED - from=198.51.100.53",
            "REFUSED - from=198.51.100.53",
            "NOERROR 198.51.100.10 from=198.51.100.53",
            "NOERROR 198.51.100.10 from=198.51.100.99",
            "NOERROR 198.51.100.11 from=198.51.100.53",
        ],
        "{out}"
    );
    audit.expect(
        json!({"layer": "dns", "name": "evil.pkg.example.test", "verdict": "deny",
                        "reason": "denied", "rule": "egress.deny[0]"}),
    )?;
    audit.expect(json!({"layer": "dns", "transport": "tcp", "name": "www.pkg.example.test"}))?;
    let names: Vec<String> = upstream.queries().into_iter().map(|q| q.0).collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "evil.pkg.example.test" || n == "pkg.example.test"),
        "{names:?}"
    );
    Ok(())
}

#[test]
fn ipv6_upstream_and_aaaa_answers() -> Result<()> {
    let world = World::new("ipv6_upstream_and_aaaa_answers")?;
    let _upstream = world.dns_server("[2001:db8::53]:53", zone())?;
    let srv = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let manifest = MANIFEST.replace("198.51.100.53", "2001:db8::53");
    let (out, audit) = world.run_argv(
        "a",
        &manifest,
        &argv(&[
            "connect",
            "2001:db8::10",
            "8443",
            "udp",
            "2001:db8::53",
            "api.example.test",
            "AAAA",
            "connect",
            "2001:db8::10",
            "8443",
        ]),
    )?;
    assert_eq!(
        out.lines(),
        ["EPERM", "NOERROR 2001:db8::10 from=2001:db8::53", "ok"],
        "{out}"
    );
    assert_eq!(srv.peers().len(), 1);
    audit.expect(
        json!({"layer": "kernel", "hook": "connect6", "dst": "2001:db8::10",
                        "dport": 8443, "verdict": "deny", "reason": "default_deny"}),
    )?;
    Ok(())
}

#[test]
fn learned_addresses_expire_with_the_clamped_ttl() -> Result<()> {
    let world = World::new("learned_addresses_expire_with_the_clamped_ttl")?;
    let _upstream = world.dns_server("198.51.100.53:53", zone())?;
    let _srv = world.tcp_server(Side::Internet, "198.51.100.14:8443")?;
    let (out, audit) = world.run_argv(
        "a",
        &one_second_ttl(8443, "tcp"),
        &argv(&[
            "udp",
            "198.51.100.53",
            "short.example.test",
            "A",
            "connect",
            "198.51.100.14",
            "8443",
            "sleep",
            "1.5", // the TTL itself is what is under test
            "connect",
            "198.51.100.14",
            "8443",
            "udp",
            "198.51.100.53",
            "short.example.test",
            "A",
            "connect",
            "198.51.100.14",
            "8443",
        ]),
    )?;
    assert_eq!(
        out.lines(),
        [
            "NOERROR 198.51.100.14 from=198.51.100.53",
            "ok",
            "slept",
            "EPERM",
            "NOERROR 198.51.100.14 from=198.51.100.53",
            "ok",
        ],
        "{out}"
    );
    // The one refusal: the learned address had expired.
    let denied = audit.find(json!({"layer": "kernel", "hook": "connect4",
                                   "dst": "198.51.100.14", "dport": 8443, "verdict": "deny",
                                   "reason": "default_deny"}));
    assert_eq!(denied.len(), 1, "{}", audit.dump());
    Ok(())
}

#[test]
fn exfiltration_shaped_queries_are_refused_before_the_upstream() -> Result<()> {
    let world = World::new("exfiltration_shaped_queries_are_refused_before_the_upstream")?;
    let upstream = world.dns_server("198.51.100.53:53", zone())?;
    // Every name below is under the allowed `*.pkg.example.test`, so only its shape can
    // refuse it. 63 bytes is the longest legal label: the positive control.
    let longest_label = format!("{}.pkg.example.test", "a".repeat(63));
    let long_label = format!("{}.pkg.example.test", "a".repeat(64));
    // Five 60-byte labels: 321 bytes with the suffix, past the 253 a name may have.
    let too_long = format!("{}.pkg.example.test", vec!["b".repeat(60); 5].join("."));
    assert!(too_long.len() > 253);
    let (out, audit) = world.run_argv(
        "a",
        MANIFEST,
        &argv(&[
            "udp",
            "198.51.100.53",
            "api.example.test",
            "TXT",
            "udp",
            "198.51.100.53",
            "api.example.test",
            "ANY",
            "udp",
            "198.51.100.53",
            &long_label,
            "A",
            "udp",
            "198.51.100.53",
            &too_long,
            "A",
            "udp",
            "198.51.100.53",
            &longest_label,
            "A",
        ]),
    )?;
    assert_eq!(
        out.lines(),
        [
            "REFUSED - from=198.51.100.53",
            "REFUSED - from=198.51.100.53",
            "REFUSED - from=198.51.100.53",
            "REFUSED - from=198.51.100.53",
            // Forwarded, and the zone has no such name.
            "NXDOMAIN - from=198.51.100.53",
        ],
        "{out}"
    );
    let names: Vec<String> = upstream.queries().into_iter().map(|q| q.0).collect();
    assert_eq!(names, [longest_label], "only the legal name went upstream");
    for (qtype, reason) in [("TXT", "qtype_refused"), ("ANY", "qtype_refused")] {
        audit.expect(json!({"layer": "dns", "qtype": qtype, "verdict": "deny",
                            "reason": reason, "rcode": "REFUSED"}))?;
    }
    for reason in ["label_too_long", "name_too_long"] {
        audit.expect(json!({"layer": "dns", "verdict": "deny", "reason": reason,
                            "rcode": "REFUSED"}))?;
    }
    Ok(())
}

#[test]
fn upstream_down_is_servfail_not_a_hang() -> Result<()> {
    let world = World::new("upstream_down_is_servfail_not_a_hang")?;
    let upstream = world.dns_server("198.51.100.53:53", zone())?;
    upstream.set_silent(true);
    let (out, audit) = world.run_argv(
        "a",
        MANIFEST,
        &argv(&["udp", "198.51.100.53", "api.example.test", "A"]),
    )?;
    assert_eq!(out.lines(), ["SERVFAIL - from=198.51.100.53"], "{out}");
    audit
        .expect(json!({"layer": "dns", "name": "api.example.test", "reason": "upstream_failed"}))?;
    Ok(())
}

#[test]
fn queries_over_the_rate_limit_are_refused() -> Result<()> {
    let world = World::new("queries_over_the_rate_limit_are_refused")?;
    let upstream = world.dns_server("198.51.100.53:53", zone())?;
    let manifest = format!("{MANIFEST}queries_per_second = 2\n");
    // The bucket starts full with one second's worth (2): the first two always pass. The
    // rest follow back to back; a slow machine may earn a token between two of them, so
    // which of those pass is not fixed, but ten of them cannot all pass.
    const QUERIES: usize = 12;
    let mut ops = Vec::new();
    for _ in 0..QUERIES {
        ops.extend(["udp", "198.51.100.53", "api.example.test", "A"]);
    }
    let (out, audit) = world.run_argv("a", &manifest, &argv(&ops))?;
    let lines = out.lines();
    assert_eq!(lines.len(), QUERIES, "{out}");
    let answered = "NOERROR 198.51.100.10 from=198.51.100.53";
    let refused = "REFUSED - from=198.51.100.53";
    assert_eq!(lines[..2], [answered, answered], "the burst passes: {out}");
    assert!(
        lines.iter().all(|l| *l == answered || *l == refused),
        "each query is answered or refused, nothing else: {out}"
    );
    let n_answered = lines.iter().filter(|l| **l == answered).count();
    let n_refused = QUERIES - n_answered;
    assert!(
        n_refused > 0,
        "{QUERIES} queries at once with 2/s allowed: {out}"
    );
    // The upstream saw exactly the answered ones, and every refusal is audited as such.
    assert_eq!(
        upstream.queries().len(),
        n_answered,
        "{:?}",
        upstream.queries()
    );
    let limited = audit.find(json!({"layer": "dns", "reason": "rate_limited",
                                    "verdict": "deny", "rcode": "REFUSED"}));
    assert_eq!(limited.len(), n_refused, "{}", audit.dump());
    Ok(())
}

#[test]
fn bottles_do_not_share_learned_addresses() -> Result<()> {
    let world = World::new("bottles_do_not_share_learned_addresses")?;
    let _upstream = world.dns_server("198.51.100.53:53", zone())?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let go = world.dir().join("go");
    // Bottle a resolves and connects, then holds until the test says go, while bottle b —
    // allowed another name only — tries the address a learned. Then a connects again: its
    // learned address was live the whole time b was refused.
    let manifest_a = world.manifest("a", MANIFEST)?;
    let mut a = Spawned::start(&mut world.cork_run(
        &manifest_a,
        "a",
        &argv(&[
            "udp",
            "198.51.100.53",
            "api.example.test",
            "A",
            "connect",
            "198.51.100.10",
            "8443",
            "waitfile",
            &go.display().to_string(),
            "connect",
            "198.51.100.10",
            "8443",
        ]),
    ))?;
    let first = a.wait_line("ok", Duration::from_secs(30))?;
    assert_eq!(
        first,
        ["NOERROR 198.51.100.10 from=198.51.100.53", "ok"],
        "bottle a learned the address"
    );
    let other = "[dns]\nupstream = [\"198.51.100.53\"]\n[[egress.allow]]\ndomain = \"www.pkg.example.test\"\nports = [8443]\n";
    let (out_b, audit_b) = world.run_argv(
        "b",
        other,
        &argv(&[
            "connect",
            "198.51.100.10",
            "8443",
            "udp",
            "198.51.100.53",
            "api.example.test",
            "A",
            "connect",
            "198.51.100.10",
            "8443",
        ]),
    )?;
    std::fs::write(&go, "")?;
    let out_a = a.finish(Duration::from_secs(30))?;
    assert_eq!(
        out_b.lines(),
        ["EPERM", "REFUSED - from=198.51.100.53", "EPERM"],
        "{out_b}"
    );
    assert_eq!(out_a.code(), 0, "{out_a}");
    assert_eq!(
        out_a.lines(),
        ["NOERROR 198.51.100.10 from=198.51.100.53", "ok", "go", "ok"],
        "bottle a held until b was done, and its address stayed learned: {out_a}"
    );
    assert_eq!(
        srv.wait_peers(2, Duration::from_secs(5))?.len(),
        2,
        "both of a's"
    );
    audit_b.expect(
        json!({"layer": "kernel", "hook": "connect4", "dst": "198.51.100.10",
                          "dport": 8443, "verdict": "deny", "reason": "default_deny"}),
    )?;
    audit_b.expect(
        json!({"layer": "dns", "name": "api.example.test", "verdict": "deny",
                          "reason": "not_allowed"}),
    )?;
    Ok(())
}

#[test]
fn https_records_lose_their_ech_parameter() -> Result<()> {
    let world = World::new("https_records_lose_their_ech_parameter")?;
    let zone = zone().https("api.example.test", true);
    let _upstream = world.dns_server("198.51.100.53:53", zone)?;
    // The same question straight to the upstream, outside any bottle, shows ech (key 5).
    let direct = world.run(
        world
            .command(Side::Bottle, "python3")
            .args(argv(&["udp", "198.51.100.53", "api.example.test", "HTTPS"])[1..].iter()),
    )?;
    assert_eq!(
        direct.lines(),
        ["NOERROR svcb:1,5 from=198.51.100.53"],
        "{direct}"
    );
    let (out, _) = world.run_argv(
        "a",
        MANIFEST,
        &argv(&["udp", "198.51.100.53", "api.example.test", "HTTPS"]),
    )?;
    assert_eq!(
        out.lines(),
        ["NOERROR svcb:1 from=198.51.100.53"],
        "alpn kept, ech gone: {out}"
    );
    Ok(())
}

#[test]
fn a_flow_opened_in_time_outlives_the_learned_address() -> Result<()> {
    let world = World::new("a_flow_opened_in_time_outlives_the_learned_address")?;
    let _upstream = world.dns_server("198.51.100.53:53", zone())?;
    let sink = world.udp_server(Side::Internet, "198.51.100.14:5300")?;
    let (out, audit) = world.run_argv(
        "a",
        &one_second_ttl(5300, "udp"),
        &argv(&[
            "udp",
            "198.51.100.53",
            "short.example.test",
            "A",
            "udpconn",
            "198.51.100.14",
            "5300",
            "udpsend",
            "before-expiry",
            "sleep",
            "1.5", // the TTL itself is what is under test
            "udpsend",
            "after-expiry", // the vetted flow goes on
            "sendto",
            "198.51.100.14",
            "5300",
            "new-flow", // a new one does not
        ]),
    )?;
    assert_eq!(
        out.lines(),
        [
            "NOERROR 198.51.100.14 from=198.51.100.53",
            "ok",
            "ok",
            "slept",
            "ok",
            "EPERM"
        ],
        "{out}"
    );
    audit.expect(
        json!({"layer": "kernel", "hook": "sendmsg4", "dst": "198.51.100.14",
                        "dport": 5300, "verdict": "deny", "reason": "default_deny"}),
    )?;
    sink.wait_payload("after-expiry", std::time::Duration::from_secs(5))?;
    world.udp_sentinel(&sink)?;
    let got = sink.payloads();
    assert!(got.iter().any(|p| p == "before-expiry"), "{got:?}");
    assert!(got.iter().any(|p| p == "after-expiry"), "{got:?}");
    assert!(!got.iter().any(|p| p == "new-flow"), "{got:?}");
    Ok(())
}
