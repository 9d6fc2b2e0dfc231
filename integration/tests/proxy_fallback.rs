//! The inspecting proxy connects on the client's behalf, so it must do the client's
//! fallback: a dual-stack name whose IPv6 side refuses (closed) or never answers (silent)
//! is served over IPv4 — an address the DNS proxy answered for the same name — and the
//! audit says which address served. Without it the client got 502 `upstream_connect`:
//! behind a transparent proxy its own happy-eyeballs fallback never runs.

use std::time::Duration;

use anyhow::Result;
use cork_integration::World;
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use serde_json::json;

const CLOSED: &str = "closed6.example.test";
const SILENT: &str = "silent6.example.test";

#[test]
fn a_dual_stack_name_whose_ipv6_side_is_down_is_served_over_ipv4() -> Result<()> {
    let world = World::new("a_dual_stack_name_whose_ipv6_side_is_down")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new()
            .a(CLOSED, "198.51.100.20", 300)
            .aaaa(CLOSED, "2001:db8::20", 300)
            .a(SILENT, "198.51.100.21", 300)
            .aaaa(SILENT, "2001:db8::21", 300),
    )?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    // The upstream listens on IPv4 only.
    let up = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(CLOSED)
            .name(SILENT)
            .tls("198.51.100.20:443".parse()?)
            .tls("198.51.100.21:443".parse()?),
    )?;
    // Closed: the address exists and nothing listens (RST). Silent: the address exists
    // and its SYNs are dropped (no answer at all).
    world.add_internet_ip("2001:db8::20".parse()?)?;
    world.add_internet_ip("2001:db8::21".parse()?)?;
    for cmd in [
        "add table inet corktest",
        "add chain inet corktest input { type filter hook input priority 0 ; }",
        "add rule inet corktest input ip6 daddr 2001:db8::21 tcp dport 443 drop",
    ] {
        let out = world.run(world.internet().command("nft").args(cmd.split(' ')))?;
        anyhow::ensure!(out.code() == 0, "nft {cmd}: {out}");
    }

    let manifest = format!(
        "[[egress.allow]]\ndomain = \"{CLOSED}\"\nports = [443]\n\n\
         [[egress.allow]]\ndomain = \"{SILENT}\"\nports = [443]\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    // Resolve both families first (as any dual-stack client does), then dial IPv6 only,
    // so the kernel hands the proxy the IPv6 destination.
    let fetch = |name: &str, path: &str| {
        format!(
            "python3 -c \"import socket; socket.getaddrinfo('{name}', 443)\"; \
             curl -sS -6 --max-time 15 -o /dev/null -w 'status=%{{http_code}}\\n' \
             https://{name}{path}"
        )
    };
    let script = format!("{}; {}", fetch(CLOSED, "/closed"), fetch(SILENT, "/silent"));
    let argv = vec!["sh".to_string(), "-c".into(), script];
    let (out, audit) = world.run_argv("a", &manifest, &argv)?;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["status=200", "status=200"],
        "{out}\n{}",
        audit.dump()
    );
    let reqs = up.log().wait_settled(2, Duration::from_secs(5))?;
    let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/closed", "/silent"]);

    // The bottle dialled IPv6 (the kernel record); IPv4 served, and the audit says so.
    for (name, dst6, served4) in [
        (CLOSED, "[2001:db8::20]:443", "198.51.100.20:443"),
        (SILENT, "[2001:db8::21]:443", "198.51.100.21:443"),
    ] {
        audit.expect(json!({
            "layer": "proxy", "event": "request", "verdict": "allow", "sni": name,
            "status": 200, "dst": dst6, "served_by": served4,
        }))?;
    }
    Ok(())
}

/// The fallback never leaves the name: with nothing else answered for it, a refused
/// destination is a 502 that names it.
#[test]
fn without_another_address_for_the_name_the_refusal_stands() -> Result<()> {
    let world = World::new("without_another_address_for_the_name")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new().aaaa(CLOSED, "2001:db8::20", 300),
    )?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    // Something serves the name over IPv4, but the bottle was never told that address.
    let up = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(CLOSED)
            .tls("198.51.100.20:443".parse()?),
    )?;
    world.add_internet_ip("2001:db8::20".parse()?)?;
    let manifest = format!(
        "[[egress.allow]]\ndomain = \"{CLOSED}\"\nports = [443]\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    let script = format!(
        "curl -sS -6 --max-time 15 -o /dev/null -w 'status=%{{http_code}}\\n' \
         https://{CLOSED}/x"
    );
    let argv = vec!["sh".to_string(), "-c".into(), script];
    let (out, audit) = world.run_argv("a", &manifest, &argv)?;
    assert_eq!(out.stdout.trim(), "status=502", "{out}\n{}", audit.dump());
    audit.expect(json!({
        "layer": "proxy", "event": "request", "status": 502,
        "dst": "[2001:db8::20]:443",
    }))?;
    let none: Option<&serde_json::Value> = audit
        .find(json!({"layer": "proxy", "event": "request"}))
        .into_iter()
        .find(|e| e.get("served_by").is_some());
    assert!(none.is_none(), "{}", audit.dump());
    // The 502 came after the only candidate refused; nothing reached the IPv4 server.
    assert!(
        up.log().conns().is_empty() && up.log().requests().is_empty(),
        "the unresolved address was never tried"
    );
    Ok(())
}
