//! The demo's VM phase: the same kind of manifest fences a guest. The test guest boots
//! under QEMU (TCG: no KVM needed) on a tap cork enforces; inside, busybox and cork's
//! static HTTPS client try an allowed and a denied server, a name, and the inspecting
//! proxy with a leaked token and a placeholder credential.

use anyhow::{Result, bail};
use cork_integration::audit::Audit;
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use cork_integration::process::run_with_timeout;
use cork_integration::vm::{Guest, cork_vm, make_room_for_pools};
use cork_integration::{Side, World};

const PROBE: &str = r#"
echo "guest address: $(ip -4 -o addr show dev eth0 | awk '{print $4}') (from cork's DHCP)"
echo "nc 198.51.100.10 8080 (allowed): $(nc -w 3 198.51.100.10 8080 </dev/null 2>&1)"
echo "nc 198.51.100.66 8080 (denied):  $(nc -w 3 198.51.100.66 8080 </dev/null 2>&1)"
ip=$(nslookup -type=a llm.vm.test 2>/dev/null | awk '/^Address/ {print $2}' | grep -v ':53$' | tail -1)
echo "nslookup llm.vm.test: $ip"
echo "HTTPS GET  /v1/models:          $(guest-https "$ip" llm.vm.test /v1/models | cut -c1-40)"
echo "HTTPS POST a GitHub token:      $(guest-https "$ip" llm.vm.test /v1/chat -d 'token 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' | cut -c1-60)"
echo "HTTPS GET  x-api-key: \$LLM_API_KEY ($LLM_API_KEY): $(guest-https "$ip" llm.vm.test /v1/me -H "x-api-key: $LLM_API_KEY" | cut -c1-40)"
"#;

const RULES: &str = r#"
[[egress.allow]]
cidr = "198.51.100.0/25"
ports = [8080]

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.allow]]
domain = "llm.vm.test"
ports = [443]

[[credentials]]
domain = "llm.vm.test"
header = "x-api-key"
placeholder = "cork-placeholder-llm"
env = "LLM_API_KEY"
value_env = "DEMO_REAL_LLM_KEY"
"#;

pub fn vm_phase(world: &World) -> Result<()> {
    let guest = Guest::locate()?;
    make_room_for_pools(world)?;
    world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    world.tcp_server(Side::Internet, "198.51.100.66:8080")?;
    let ca = TestCa::new()?;
    let ca_path = world.path("vm-upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let upstream = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("llm.vm.test")
            .tls("198.51.100.31:443".parse()?),
    )?;
    let _dns = world.dns_server(
        "198.51.100.54:53",
        Zone::new().a("llm.vm.test", "198.51.100.31", 60),
    )?;
    let body = format!(
        "{RULES}\n[dns]\nupstream = [\"198.51.100.54\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    let manifest = world.manifest("demo-vm", &body)?;
    let probe = world.path("vm-probe", "sh");
    std::fs::write(&probe, PROBE)?;
    println!("\n== VM bottle: the same fence around a guest (QEMU, TCG) ==");
    println!("manifest:{RULES}");
    let mut cmd = cork_vm(world, &guest, &manifest, "demo-vm", &probe, "cork.dhcp=1");
    cmd.env("DEMO_REAL_LLM_KEY", "demo-real-llm-key-5f1e2d");
    let out = run_with_timeout(&mut cmd, std::time::Duration::from_secs(300))?;
    if out.code() != 0 {
        bail!("cork vm exited {}:\n{out}", out.code());
    }
    println!("guest console (its probe's output):");
    for l in out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("CORK-PROBE-BEGIN"))
        .skip(1)
        .take_while(|l| !l.contains("CORK-PROBE-END"))
    {
        println!("  {}", l.trim_end());
    }
    for r in upstream.log().requests() {
        println!(
            "  upstream received {} {} x-api-key: {}",
            r.method,
            r.path(),
            r.header("x-api-key").unwrap_or("-"),
        );
    }
    let audit = Audit::read(&world.audit_path_for("demo-vm"))?;
    println!("\naudit (hook tc_ingress: the tap; dns; proxy):");
    for line in audit.pretty() {
        println!("  {line}");
    }
    Ok(())
}
