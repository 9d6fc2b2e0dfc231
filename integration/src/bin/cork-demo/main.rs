//! `cork-demo`: builds a test world, runs bottles with embedded manifests that make a few
//! allowed and denied attempts — by address, by name, and through the inspecting proxy —
//! prints what the client saw and what cork audited, then boots a guest in a VM bottle
//! fenced by the same kind of manifest ([`vm_phase`]), then tears everything down.

mod vm_phase;

use anyhow::{Result, bail};
use cork_integration::audit::Audit;
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{BodyEnd, TestCa, UpstreamConfig};
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
const DNS_CLIENT: &str = include_str!("../../dns_client.py");

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
    proxy_phase(&world)?;
    vm_phase::vm_phase(&world)
}

/// The inspecting proxy: TLS terminated per bottle, DLP, fronting refused, credentials
/// swapped in on the way out.
const PROXY_RULES: &str = r#"
[[egress.allow]]
domain = "llm.example.test"
ports = [443]

[[credentials]]
domain = "llm.example.test"
header = "x-api-key"
placeholder = "cork-placeholder-llm"
env = "LLM_API_KEY"
value_env = "DEMO_REAL_LLM_KEY"
"#;

/// A made-up value standing in for a real key, held only by cork.
const DEMO_REAL_KEY: &str = "demo-real-llm-key-5f1e2d";

fn proxy_phase(world: &World) -> Result<()> {
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let upstream = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("llm.example.test")
            .tls("198.51.100.30:443".parse()?),
    )?;
    let _dns = world.dns_server(
        "[2001:db8::53]:53",
        Zone::new().a("llm.example.test", "198.51.100.30", 60),
    )?;
    let manifest = format!(
        "{PROXY_RULES}\n[dns]\nupstream = [\"[2001:db8::53]:53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    let steps: [(&str, &str); 4] = [
        (
            "GET  https://llm.example.test/v1/models",
            "https://llm.example.test/v1/models",
        ),
        (
            "POST a GitHub token in the body",
            "--data-binary 'token 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' https://llm.example.test/v1/chat",
        ),
        (
            "GET  with Host: evil.test (fronting)",
            "-H 'Host: evil.test' https://llm.example.test/v1/models",
        ),
        (
            "GET  with x-api-key: $LLM_API_KEY",
            "-H \"x-api-key: $LLM_API_KEY\" https://llm.example.test/v1/me",
        ),
    ];
    let script: Vec<String> =
        std::iter::once("echo \"LLM_API_KEY in the bottle: $LLM_API_KEY\"".to_owned())
            .chain(steps.iter().map(|(_, args)| {
                format!("curl -s -o /dev/null --max-time 10 -w '%{{http_code}}\\n' {args}")
            }))
            .collect();
    let argv = vec!["sh".to_string(), "-c".into(), script.join("\n")];
    let path = world.manifest("demo-proxy", &manifest)?;
    let mut cmd = world.cork_run(&path, "demo-proxy", &argv);
    cmd.env("DEMO_REAL_LLM_KEY", DEMO_REAL_KEY);
    let out = world.run(&mut cmd)?;
    if out.code() != 0 {
        bail!("cork run exited {}:\n{out}", out.code());
    }
    let audit = Audit::read(&world.audit_path_for("demo-proxy"))?;
    println!("\nmanifest (inspecting proxy):{PROXY_RULES}");
    let mut lines = out.stdout.lines();
    if let Some(first) = lines.next() {
        println!("  {first}");
    }
    println!("client results (HTTPS through cork's proxy):");
    for ((label, _), status) in steps.iter().zip(lines) {
        println!("  {label:<48} -> HTTP {status}");
    }
    for r in upstream.log().requests() {
        let body = match r.body_end {
            BodyEnd::Complete => format!("{} body bytes", r.body_len),
            _ if r.body.is_empty() => "body cut by cork: none of it was forwarded".to_owned(),
            _ => format!(
                "body cut by cork after {:?}, before the secret",
                String::from_utf8_lossy(&r.body)
            ),
        };
        println!(
            "  upstream received {} {} x-api-key: {} ({body})",
            r.method,
            r.path(),
            r.header("x-api-key").unwrap_or("-"),
        );
    }
    println!("\naudit (kernel redirects and proxy decisions):");
    for line in audit
        .pretty()
        .iter()
        .filter(|l| l.starts_with("proxy ") || l.contains("proxy_redirect"))
    {
        println!("  {line}");
    }
    Ok(())
}
