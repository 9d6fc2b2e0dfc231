//! `cork vm` end to end: the test guest boots under TCG on a tap that cork enforces with
//! its tc program and nftables chains, gets its addresses from cork's DHCPv4 server and
//! router advertisements, and runs many probes in one boot (TCP and UDP over IPv4 and
//! IPv6, a deny rule inside an allowed range, ICMP, DNS to a foreign resolver, a TXT
//! query, a domain rule learned from DNS, host services on the gateway and the host's
//! other address, inspected HTTPS with DLP and a swapped credential, spoofed source
//! address and MAC last). Each result is checked on the guest's console, on the servers
//! and in the audit log. Also: SIGKILL of `cork vm`, the preflight refusing a host
//! without KVM, and `cork check --vm`.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::audit::Audit;
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use cork_integration::process::{Spawned, run_with_timeout};
use cork_integration::vm::{Guest, cork_vm, make_room_for_pools};
use cork_integration::{Side, World};
use serde_json::json;

/// TCG on two shared cores boots in seconds, but other suites run alongside.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const WAIT: Duration = Duration::from_secs(10);
/// An AWS access key id shape the built-in detectors know (not a real key).
const AWS_KEY: &str = "AKIAZ7QX2J4K5L6M7N3P";
const REAL_KEY: &str = "real-acme-key-7f3a9c";

/// The guest's probes: every line `NAME result...`, so the test can pick each out.
const PROBE: &str = r#"
n=0
while [ $n -lt 100 ] && ! ip -6 -o addr show dev eth0 scope global | grep -q inet6; do
	sleep 0.1; n=$((n + 1))
done
echo "addr4 $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "addr6 $(ip -6 -o addr show dev eth0 scope global | awk '{print $4}')"
echo "resolv $(grep nameserver /etc/resolv.conf | head -1)"
tcp() { out=$(nc -w 3 "$2" "$3" </dev/null 2>&1); echo "$1 rc=$? $out"; }
tcp tcp4_allowed 198.51.100.10 8080
tcp tcp6_allowed 2001:db8::10 8080
tcp tcp4_denied_by_rule 198.51.100.20 8080
tcp tcp6_denied_by_rule 2001:db8::20 8080
tcp tcp4_other_port 198.51.100.10 8081
udp() { timeout 1 tftp -g -r "$1" -l /tmp/udp "$2" 9090 >/dev/null 2>&1; }
udp udp4-allowed 198.51.100.10
udp udp4-denied 198.51.100.11
udp udp6-allowed 2001:db8::10
ping -c 1 -W 2 198.51.100.10 >/dev/null 2>&1; echo "icmp4 rc=$?"
echo "dns_foreign $(nslookup api.vm.test 198.51.100.99 2>&1 | grep -c 198.51.100.30)"
echo "dns_refused $(nslookup nope.vm.test 198.51.100.99 2>&1 | grep -ci refused)"
echo "dns_txt $(nslookup -type=txt api.vm.test 2>&1 | grep -ci refused)"
tcp domain_learned plain.vm.test 8082
gw4=$(ip route | awk '/^default/ {print $3}')
gw6=$(ip -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d: -f1-4)::1
tcp host_port_v4 "$gw4" 7000
tcp host_port_v6 "$gw6" 7000
tcp host_other_port "$gw4" 7001
gwll=$(ip -6 route | awk '/^default/ {print $3}')
tcp host_port_ll "$gwll%eth0" 7000
tcp host_other_port_ll "$gwll%eth0" 7001
tcp host_other_address 198.51.100.1 7000
echo "ca $(grep -c 'BEGIN CERTIFICATE' "$CORK_CA")"
echo "placeholder $ACME_API_KEY"
api=$(nslookup -type=a api.vm.test 2>/dev/null | awk '/^Address/ {print $2}' | grep -v ':53$' | tail -1)
echo "https_ok $(guest-https "$api" api.vm.test /ok 2>&1)"
echo "https_dlp $(guest-https "$api" api.vm.test /leak -d "key $LEAK here" 2>&1)"
echo "https_cred $(guest-https "$api" api.vm.test /cred -H "x-api-key: $ACME_API_KEY" 2>&1)"
ip addr add 198.51.100.150/32 dev eth0
ping -c 1 -W 2 -I 198.51.100.150 198.51.100.10 >/dev/null 2>&1; echo "spoofed_ip rc=$?"
ip link set eth0 address 02:00:00:00:00:99
tcp spoofed_mac 198.51.100.10 8080
"#;

fn manifest(world: &World, ca: &std::path::Path) -> Result<std::path::PathBuf> {
    world.manifest(
        "vm",
        &format!(
            r#"[[egress.allow]]
cidr = "198.51.100.0/25"
ports = [8080]

[[egress.allow]]
cidr = "2001:db8::/64"
ports = [8080]

[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [9090]
proto = "udp"

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [9090]
proto = "udp"

[[egress.allow]]
domain = "api.vm.test"
ports = [443]

[[egress.allow]]
domain = "plain.vm.test"
ports = [8082]

[[egress.deny]]
cidr = "198.51.100.20/32"

[[egress.deny]]
cidr = "2001:db8::20/128"

[loopback]
host_ports = [7000]

[dns]
upstream = ["198.51.100.53"]

[tls]
upstream_ca = ["{}"]

[[credentials]]
domain = "api.vm.test"
header = "x-api-key"
placeholder = "cork-placeholder-acme"
env = "ACME_API_KEY"
value_env = "ACME_REAL_KEY"
"#,
            ca.display()
        ),
    )
}

/// The probe line starting with `name ` (without the name).
fn line<'a>(lines: &'a [String], name: &str) -> Result<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(str::trim)
        .with_context(|| format!("no {name} line in:\n{}", lines.join("\n")))
}

#[test]
fn a_guest_reaches_exactly_what_its_manifest_allows() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("a_guest_reaches_exactly_what_its_manifest_allows")?;
    make_room_for_pools(&world)?;
    let allowed4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let allowed6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
    let denied4 = world.tcp_server(Side::Internet, "198.51.100.20:8080")?;
    let denied6 = world.tcp_server(Side::Internet, "[2001:db8::20]:8080")?;
    let other_port = world.tcp_server(Side::Internet, "198.51.100.10:8081")?;
    let plain = world.tcp_server(Side::Internet, "198.51.100.31:8082")?;
    let udp4 = world.udp_server(Side::Internet, "198.51.100.10:9090")?;
    let udp4_denied = world.udp_server(Side::Internet, "198.51.100.11:9090")?;
    let udp6 = world.udp_server(Side::Internet, "[2001:db8::10]:9090")?;
    // The host's own services: on every address of the host netns.
    let host = world.tcp_server(Side::Bottle, "[::]:7000")?;
    let host_other = world.tcp_server(Side::Bottle, "[::]:7001")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new()
            .a("api.vm.test", "198.51.100.30", 300)
            .aaaa("api.vm.test", "2001:db8::30", 300)
            .txt("api.vm.test", "exfil-channel", 300)
            .a("plain.vm.test", "198.51.100.31", 300)
            .a("nope.vm.test", "198.51.100.32", 300),
    )?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("api.vm.test")
            .tls("198.51.100.30:443".parse()?)
            .tls("[2001:db8::30]:443".parse()?),
    )?;
    let manifest = manifest(&world, &ca_path)?;
    let probe = world.path("probe", "sh");
    std::fs::write(&probe, PROBE.replace("$LEAK", AWS_KEY))?;

    let mut cmd = cork_vm(&world, &guest, &manifest, "vm", &probe, "cork.dhcp=1");
    cmd.env("ACME_REAL_KEY", REAL_KEY);
    let out = run_with_timeout(&mut cmd, BOOT_TIMEOUT)?;
    let audit =
        Audit::read(&world.audit_path_for("vm")).with_context(|| format!("cork vm:\n{out}"))?;
    assert_eq!(out.code(), 0, "{out}\n{}", audit.dump());
    let lines: Vec<String> = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("CORK-PROBE-BEGIN"))
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    let ctx = || format!("{}\n{}", lines.join("\n"), audit.dump());
    assert!(out.stdout.contains("CORK-PROBE-END rc=0"), "{}", ctx());

    // Addresses from cork's DHCPv4 and RAs (the first bottle of the pools' /30 and /64
    // is the bottle id's; only the shape is fixed).
    let addr4 = line(&lines, "addr4")?;
    assert!(
        addr4.starts_with("198.51.100.") && addr4.ends_with("/30"),
        "{}",
        ctx()
    );
    let addr6 = line(&lines, "addr6")?;
    assert!(
        addr6.starts_with("2001:db8:100:") && addr6.ends_with("/64"),
        "{}",
        ctx()
    );
    let gw4 = line(&lines, "resolv")?
        .trim_start_matches("nameserver ")
        .to_owned();

    // TCP: allowed v4/v6 reach their servers; the deny rules win over the allowed range;
    // another port of an allowed host is refused.
    for (name, srv) in [("tcp4_allowed", &allowed4), ("tcp6_allowed", &allowed6)] {
        assert!(
            line(&lines, name)?.contains("hello from Internet"),
            "{name}: {}",
            ctx()
        );
        assert_eq!(srv.peers().len(), 1, "{name}: {}", ctx());
    }
    for (name, srv) in [
        ("tcp4_denied_by_rule", &denied4),
        ("tcp6_denied_by_rule", &denied6),
        ("tcp4_other_port", &other_port),
    ] {
        assert!(!line(&lines, name)?.contains("hello"), "{name}: {}", ctx());
        assert!(
            srv.peers().is_empty(),
            "{name} reached its server: {}",
            ctx()
        );
    }
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "allow",
        "dst": "198.51.100.10", "dport": 8080, "rule": "egress.allow[0]", "pid": null}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "198.51.100.20", "dport": 8080, "rule": "egress.deny[0]"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "2001:db8::20", "dport": 8080, "rule": "egress.deny[1]"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "198.51.100.10", "dport": 8081, "reason": "default_deny"}),
    )?;

    // UDP (TFTP read requests naming the probe): allowed datagrams arrive (v4 and v6),
    // the other host's does not.
    let got = |srv: &cork_integration::UdpServer, what: &str| {
        srv.payloads().iter().any(|p| p.contains(what))
    };
    assert!(got(&udp4, "udp4-allowed"), "{}", ctx());
    assert!(got(&udp6, "udp6-allowed"), "{}", ctx());
    assert!(udp4_denied.payloads().is_empty(), "{}", ctx());
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "198.51.100.11", "dport": 9090, "proto": "udp"}),
    )?;

    // ICMP echo to an allowed host is still refused (only TCP/UDP rules exist).
    assert_ne!(line(&lines, "icmp4")?, "rc=0", "{}", ctx());
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "198.51.100.10", "reason": "default_deny", "proto": "icmp"}),
    )?;

    // DNS: a foreign resolver is the bottle's DNS proxy (answered for an allowed name,
    // REFUSED otherwise); TXT is refused; the learned name is reachable.
    assert_eq!(line(&lines, "dns_foreign")?, "1", "{}", ctx());
    // (nslookup asks A and AAAA: one REFUSED line each.)
    assert_ne!(line(&lines, "dns_refused")?, "0", "{}", ctx());
    assert_ne!(line(&lines, "dns_txt")?, "0", "{}", ctx());
    audit.expect(json!({"layer": "dns", "verdict": "allow", "name": "api.vm.test"}))?;
    audit.expect(json!({"layer": "dns", "verdict": "deny", "name": "nope.vm.test"}))?;
    audit.expect(json!({"layer": "dns", "reason": "qtype_refused"}))?;
    assert!(
        line(&lines, "domain_learned")?.contains("hello"),
        "{}",
        ctx()
    );
    assert_eq!(plain.peers().len(), 1, "{}", ctx());

    // The host: only host_ports on the gateway addresses.
    assert!(line(&lines, "host_port_v4")?.contains("hello"), "{}", ctx());
    assert!(line(&lines, "host_port_v6")?.contains("hello"), "{}", ctx());
    assert!(
        !line(&lines, "host_other_port")?.contains("hello"),
        "{}",
        ctx()
    );
    assert!(
        !line(&lines, "host_other_address")?.contains("hello"),
        "{}",
        ctx()
    );
    assert_eq!(host.peers().len(), 3, "{}", ctx());
    assert!(host_other.peers().is_empty(), "{}", ctx());
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "allow",
        "dst": gw4, "dport": 7000, "reason": "loopback_host_port"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": gw4, "dport": 7001, "reason": "gateway_port"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "dst": "198.51.100.1", "dport": 7000}),
    )?;

    // fw_cfg: the bottle CA and the placeholder, never the real value.
    assert_eq!(line(&lines, "ca")?, "1", "{}", ctx());
    assert_eq!(
        line(&lines, "placeholder")?,
        "cork-placeholder-acme",
        "{}",
        ctx()
    );
    assert!(!out.stdout.contains(REAL_KEY), "{}", ctx());

    // Inspected HTTPS from the guest, verified against the bottle CA from fw_cfg:
    // served, DLP-blocked, credential swapped.
    assert!(
        line(&lines, "https_ok")?.starts_with("status=200"),
        "{}",
        ctx()
    );
    assert!(
        line(&lines, "https_dlp")?.starts_with("status=403"),
        "{}",
        ctx()
    );
    assert!(
        line(&lines, "https_cred")?.starts_with("status=200"),
        "{}",
        ctx()
    );
    let reqs = api.log().wait_sentinel("/cred", WAIT).with_context(ctx)?;
    let cred = reqs.iter().find(|r| r.path() == "/cred").context("/cred")?;
    assert_eq!(cred.header("x-api-key"), Some(REAL_KEY), "{}", ctx());
    assert!(reqs.iter().any(|r| r.path() == "/ok"), "{}", ctx());
    assert!(!api.log().saw(AWS_KEY.as_bytes()), "{}", ctx());
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "reason": "dlp_blocked",
        "path": "/leak", "detectors": ["aws-access-key-id"]}),
    )?;
    audit.expect(json!({"layer": "proxy", "verdict": "allow", "path": "/ok", "status": 200}))?;

    // Spoofing: another source address, then another MAC — dropped even towards the
    // allowed server.
    assert_ne!(line(&lines, "spoofed_ip")?, "rc=0", "{}", ctx());
    assert!(!line(&lines, "spoofed_mac")?.contains("hello"), "{}", ctx());
    assert_eq!(allowed4.peers().len(), 1, "{}", ctx());
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "src": "198.51.100.150", "reason": "spoofed_source"}),
    )?;
    audit.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "deny",
        "reason": "spoofed_mac"}),
    )?;
    // The lifecycle: enforced before the guest started, TCG said so.
    audit.expect(json!({"layer": "cork", "event": "accel_tcg"}))?;
    audit.expect(json!({"layer": "cork", "event": "vm_exited"}))?;
    Ok(())
}

#[test]
fn sigkill_of_cork_vm_leaves_no_tap_and_cork_clean_removes_its_chains() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("sigkill_of_cork_vm_leaves_no_tap")?;
    make_room_for_pools(&world)?;
    let manifest = world.manifest("k", "")?;
    let probe = world.path("probe", "sh");
    std::fs::write(&probe, "echo up; sleep 600\n")?;
    let mut run = Spawned::start(&mut cork_vm(&world, &guest, &manifest, "k", &probe, ""))?;
    run.wait_line("CORK-PROBE-BEGIN", BOOT_TIMEOUT)?;
    let nft = world.bottle().command("nft");
    let chains = |mut cmd: std::process::Command| -> Result<String> {
        cmd.args(["list", "table", "inet", "cork"]);
        Ok(String::from_utf8_lossy(&cmd.output()?.stdout).into_owned())
    };
    assert!(chains(nft)?.contains("_guard"), "chains installed");
    run.kill()?;
    // QEMU dies with cork (PDEATHSIG), the tap with the last fd.
    let deadline = std::time::Instant::now() + WAIT;
    while !cork_integration::process::pids_in_netns(world.bottle().inode()).is_empty()
        || world
            .bottle()
            .ip(&["-o", "link", "show", "type", "tun"])?
            .contains("cork")
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "QEMU or the tap outlived cork"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The chains stay (they match only the gone tap) until `cork clean`.
    let out = world.run(world.cork(["clean"]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("chains b"), "{out}");
    assert!(
        !chains(world.bottle().command("nft"))?.contains("_guard"),
        "{out}"
    );
    // …and the forwarding the killed agent turned on is put back.
    let forward = world
        .bottle()
        .run(|| Ok(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?))?;
    assert_eq!(forward.trim(), "0", "{out}");
    Ok(())
}

#[test]
fn preflight_refuses_a_host_without_kvm_before_creating_anything() -> Result<()> {
    let world = World::new("vm_preflight_refuses_a_host_without_kvm")?;
    let manifest = world.manifest("p", "")?;
    let mut cmd = world.cork(["vm", "--manifest"]);
    cmd.arg(&manifest)
        .args(["--kernel", "/nonexistent-kernel"])
        .env("CORK_TEST_HARNESS", "1")
        .env("CORK_TEST_KVM_DEVICE", world.path("no-kvm", "dev"));
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("kvm"), "names the fix: {out}");
    assert!(
        !world.bottle().ip(&["-o", "link"])?.contains("cork"),
        "no tap was created"
    );
    // The same seam without the harness marker: refused, naming it.
    let mut cmd = world.cork(["vm", "--accel", "tcg", "--manifest"]);
    cmd.arg(&manifest)
        .args(["--kernel", "/nonexistent-kernel"])
        .env_remove("CORK_TEST_HARNESS")
        .env("CORK_TEST_KVM_DEVICE", world.path("no-kvm", "dev"));
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr.contains("CORK_TEST_KVM_DEVICE is set but"),
        "{out}"
    );
    // A pool the host already routes (the World's uplink is 198.51.100.0/24 until
    // make_room_for_pools) is refused before any tap exists.
    let probe = world.path("probe", "sh");
    std::fs::write(&probe, "true\n")?;
    let out = world.run(&mut cork_vm(
        &world,
        &Guest {
            kernel: "/nonexistent-kernel".into(),
            initrd: "/nonexistent-initrd".into(),
        },
        &manifest,
        "p",
        &probe,
        "",
    ))?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr.contains("overlaps routes this host has"),
        "{out}"
    );
    assert!(
        out.stderr.contains("198.51.100.0/24"),
        "names the route: {out}"
    );
    assert!(
        !world.bottle().ip(&["-o", "link"])?.contains("cork"),
        "no tap was created"
    );
    // The preflight alone, for TCG, passes on this host.
    let out = world.run(world.cork(["vm", "--preflight", "--accel", "tcg"]))?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}

#[test]
fn check_for_a_vm_refuses_process_only_keys_where_they_are() -> Result<()> {
    let world = World::new("check_for_a_vm_refuses_process_only_keys")?;
    let manifest = world.write_manifest(
        "version = 1\n[bottle]\nname = \"vmcheck\"\n\n[files]\nhide = [\"~/.netrc\"]\n",
    )?;
    let out = world.run(world.cork(["check".as_ref(), manifest.as_os_str()]))?;
    assert_eq!(out.code(), 0, "fine for a cgroup bottle: {out}");
    let out = world.run(world.cork(["check".as_ref(), "--vm".as_ref(), manifest.as_os_str()]))?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains(":5:1: files"), "located: {out}");
    Ok(())
}
