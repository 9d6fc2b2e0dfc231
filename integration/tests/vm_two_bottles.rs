//! Bottles side by side on one host: two VM bottles with different policies and a cgroup
//! bottle, all at once. Guest B listens; guest A — whose manifest allows the whole guest
//! pool — still cannot reach B (another bottle's tap only takes what B itself started),
//! nor B's gateway; each guest reaches only its own server; a `cork run` bottle meanwhile
//! gets its own verdicts. B is then stopped with SIGTERM (the guest powers off: 143).

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::audit::Audit;
use cork_integration::process::{Spawned, run_with_timeout};
use cork_integration::vm::{Guest, POOL4, cork_vm, make_room_for_pools};
use cork_integration::{Side, World};
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

const PROBE_B: &str = r#"
echo "addr4 $(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
echo "gw4 $(ip route | awk '/^default/ {print $3}')"
echo "tcp_mine $(nc -w 3 198.51.100.11 8080 </dev/null 2>&1)"
echo "tcp_theirs $(nc -w 3 198.51.100.10 8080 </dev/null 2>&1)"
echo "listening"
while :; do echo from-guest-b | nc -l -p 8080; done
"#;

#[test]
fn two_vm_bottles_and_a_cgroup_bottle_are_isolated_from_each_other() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("two_vm_bottles_and_a_cgroup_bottle")?;
    make_room_for_pools(&world)?;
    let srv_a = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let srv_b = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let rule = |cidr: &str| format!("[[egress.allow]]\ncidr = \"{cidr}\"\nports = [8080]\n");
    // A may reach its server and — by its manifest — the whole guest pool.
    let manifest_a = world.manifest(
        "a",
        &format!("{}\n{}", rule("198.51.100.10/32"), rule(POOL4)),
    )?;
    let manifest_b = world.manifest("b", &rule("198.51.100.11/32"))?;

    let probe_b = world.path("probe-b", "sh");
    std::fs::write(&probe_b, PROBE_B)?;
    let mut vm_b = Spawned::start(&mut cork_vm(
        &world,
        &guest,
        &manifest_b,
        "b",
        &probe_b,
        "cork.dhcp=1",
    ))?;
    let lines_b = vm_b.wait_line("listening", BOOT_TIMEOUT)?;
    let field = |lines: &[String], name: &str| -> Result<String> {
        lines
            .iter()
            .find_map(|l| {
                l.trim_end()
                    .strip_prefix(&format!("{name} "))
                    .map(str::to_owned)
            })
            .with_context(|| format!("no {name} in {lines:?}"))
    };
    let b_addr = field(&lines_b, "addr4")?;
    let b_gw = field(&lines_b, "gw4")?;
    assert!(
        field(&lines_b, "tcp_mine")?.contains("hello"),
        "{lines_b:?}"
    );
    assert!(
        !field(&lines_b, "tcp_theirs")?.contains("hello"),
        "{lines_b:?}"
    );

    // Meanwhile, a cgroup bottle with its own policy.
    let (run_out, run_audit) = world.run_argv(
        "c",
        &rule("198.51.100.11/32"),
        &[
            "sh".into(),
            "-c".into(),
            "busybox nc -w 3 198.51.100.11 8080 </dev/null; echo rc=$?; \
             busybox nc -w 3 198.51.100.10 8080 </dev/null; echo rc=$?"
                .into(),
        ],
    )?;
    assert!(
        run_out
            .stdout
            .contains("hello from Internet 198.51.100.11:8080"),
        "{run_out}"
    );
    run_audit.expect(json!({"layer": "kernel", "verdict": "deny", "dst": "198.51.100.10"}))?;

    let probe_a = world.path("probe-a", "sh");
    std::fs::write(
        &probe_a,
        format!(
            "echo \"tcp_mine $(nc -w 3 198.51.100.10 8080 </dev/null 2>&1)\"\n\
             echo \"tcp_theirs $(nc -w 3 198.51.100.11 8080 </dev/null 2>&1)\"\n\
             echo \"guest_b $(nc -w 3 {b_addr} 8080 </dev/null 2>&1)\"\n\
             echo \"gateway_b $(nc -w 3 {b_gw} 8080 </dev/null 2>&1)\"\n"
        ),
    )?;
    let out_a = run_with_timeout(
        &mut cork_vm(&world, &guest, &manifest_a, "a", &probe_a, "cork.dhcp=1"),
        BOOT_TIMEOUT,
    )?;
    let audit_a = Audit::read(&world.audit_path_for("a"))?;
    assert_eq!(out_a.code(), 0, "{out_a}\n{}", audit_a.dump());
    let lines_a: Vec<String> = out_a.stdout.lines().map(str::to_owned).collect();
    let ctx = || format!("{out_a}\n{}", audit_a.dump());
    assert!(field(&lines_a, "tcp_mine")?.contains("hello"), "{}", ctx());
    assert!(
        !field(&lines_a, "tcp_theirs")?.contains("hello"),
        "{}",
        ctx()
    );
    assert!(
        !field(&lines_a, "guest_b")?.contains("from-guest-b"),
        "{}",
        ctx()
    );
    assert!(
        !field(&lines_a, "gateway_b")?.contains("hello"),
        "{}",
        ctx()
    );
    // A's own policy let its packet to B through (the pool is in its manifest); B's
    // chains refused it: nothing reaches a guest that it did not start.
    audit_a.expect(
        json!({"layer": "kernel", "hook": "tc_ingress", "verdict": "allow",
        "dst": b_addr, "dport": 8080}),
    )?;
    assert_eq!(srv_a.peers().len(), 1, "only A reached A's server");
    // B's probe reached its own server; the cgroup bottle reached it too.
    assert_eq!(
        srv_b.peers().len(),
        2,
        "B and the cgroup bottle reached B's server"
    );

    // SIGTERM: the guest is asked to power off.
    nix::sys::signal::kill(vm_b.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let out_b = vm_b.finish(Duration::from_secs(60))?;
    assert_eq!(out_b.code(), 143, "{out_b}");
    let audit_b = Audit::read(&world.audit_path_for("b"))?;
    audit_b.expect(json!({"layer": "cork", "event": "vm_exited"}))?;
    audit_b.expect_none(json!({"layer": "kernel", "verdict": "allow", "dst": "198.51.100.10"}))?;
    Ok(())
}
