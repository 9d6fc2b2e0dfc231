//! `cork-demo`: builds a test world, runs one bottle with an embedded manifest that makes
//! a few allowed and denied attempts, prints what the client saw and what cork audited,
//! then tears everything down.

use anyhow::Result;
use cork_integration::dns_server::Zone;
use cork_integration::{Probe, Side, World};

const MANIFEST: &str = r#"
[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443]

[[egress.allow]]
cidr = "2001:db8::/64"
ports = [443]

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.allow]]
domain = "api.example.test"
ports = [8443]

[dns]
upstream = ["198.51.100.53"]
"#;

/// The bottle-side DNS client the tests use too.
const DNS_CLIENT: &str = include_str!("../dns_client.py");

fn main() -> Result<()> {
    let world = World::new("cork-demo")?;
    world.tcp_server(Side::Internet, "198.51.100.10:443")?;
    world.tcp_server(Side::Internet, "198.51.100.10:80")?;
    world.tcp_server(Side::Internet, "198.51.100.66:443")?;
    world.tcp_server(Side::Internet, "[2001:db8::10]:443")?;
    world.tcp_server(Side::Internet, "198.51.100.20:8443")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new()
            .a("api.example.test", "198.51.100.20", 60)
            .a("other.example.test", "198.51.100.21", 60)
            .txt("api.example.test", "exfil", 60),
    )?;
    world.tcp_server(Side::Bottle, "127.0.0.1:8125")?;

    let attempts: Vec<(&str, Probe)> = vec![
        (
            "tcp 198.51.100.10:443   (allowed CIDR + port)",
            Probe::new().tcp("198.51.100.10", 443)?,
        ),
        (
            "tcp 198.51.100.10:80    (port not listed)",
            Probe::new().tcp("198.51.100.10", 80)?,
        ),
        (
            "tcp 198.51.100.66:443   (deny beats allow)",
            Probe::new().tcp("198.51.100.66", 443)?,
        ),
        (
            "tcp [2001:db8::10]:443  (allowed, IPv6)",
            Probe::new().tcp("2001:db8::10", 443)?,
        ),
        (
            "udp 198.51.100.10:5353  (UDP not allowed)",
            Probe::new().udp_sendto("198.51.100.10", 5353, "q")?,
        ),
        (
            "tcp 127.0.0.1:8125      (host loopback)",
            Probe::new().tcp("127.0.0.1", 8125)?,
        ),
        (
            "ping socket             (ICMP)",
            Probe::new().socket("inet", "dgram", "icmp"),
        ),
    ];
    let mut all = Probe::new();
    for (_, p) in &attempts {
        all = all.extend(p);
    }
    println!(
        "world {}: bottle netns {}, internet netns {}",
        world.id(),
        world.bottle().name(),
        world.internet().name()
    );
    println!("manifest:{MANIFEST}");
    let (out, audit) = world.run_probe("demo", MANIFEST, &all)?;
    println!("client results:");
    for ((label, _), result) in attempts.iter().zip(out.lines()) {
        println!("  {label:<48} -> {result}");
    }
    println!("\naudit ({} events):", audit.events.len());
    for line in audit.pretty() {
        println!("  {line}");
    }

    // Names: only what an allowed answer returned becomes reachable, only on its ports.
    let dns_steps: [(&str, &[&str]); 5] = [
        (
            "tcp 198.51.100.20:8443  (not resolved yet)",
            &["connect", "198.51.100.20", "8443"],
        ),
        (
            "dns A api.example.test  (allowed name)",
            &["udp", "198.51.100.53", "api.example.test", "A"],
        ),
        (
            "tcp 198.51.100.20:8443  (learned from the answer)",
            &["connect", "198.51.100.20", "8443"],
        ),
        (
            "dns A other.example.test (no rule)",
            &["udp", "198.51.100.53", "other.example.test", "A"],
        ),
        (
            "dns TXT api.example.test (exfil-shaped)",
            &["udp", "198.51.100.53", "api.example.test", "TXT"],
        ),
    ];
    let mut argv = vec!["python3".to_string(), "-c".into(), DNS_CLIENT.into()];
    for (_, ops) in &dns_steps {
        argv.extend(ops.iter().map(|o| o.to_string()));
    }
    let (out, audit) = world.run_argv("demo-dns", MANIFEST, &argv)?;
    println!("\nclient results (names):");
    for ((label, _), result) in dns_steps.iter().zip(out.lines()) {
        println!("  {label:<48} -> {result}");
    }
    println!("\naudit ({} events):", audit.events.len());
    for line in audit.pretty() {
        println!("  {line}");
    }
    Ok(())
}
