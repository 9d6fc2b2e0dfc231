//! `cork probe` from inside a bottle: a correct bottle passes every probe its manifest
//! implies, each with evidence; bottles weakened on purpose through test seams fail
//! exactly the probes that cover what the seam skipped, each naming the cause; `--diag`
//! re-runs a failed probe with its full trace. The probe finds the manifest through
//! `$CORK_MANIFEST`, which `cork run` sets.
//!
//! Every destination the probe sends to is named on its command line or in the manifest:
//! 198.51.100.0/24 and 2001:db8::/32 only (the default resolver of the host's resolv.conf is
//! replaced with `--resolver`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cork_integration::cork::cork_bin;
use cork_integration::daemon::TestDaemon;
use cork_integration::dns_server::Zone;
use cork_integration::{RunOutput, Side, World};
use serde_json::Value;

const CORRECT: &str = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8443]

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [8443]

[[egress.allow]]
domain = "api.example.test"
ports = [443]

[[egress.deny]]
cidr = "198.51.100.64/28"

[[egress.deny]]
cidr = "2001:db8::40/124"

[loopback]
host_ports = [9200]

[[credentials]]
domain = "api.example.test"
header = "x-api-key"
placeholder = "cork-placeholder-acme"
env = "ACME_API_KEY"
value_env = "ACME_REAL_KEY"

[dns]
upstream = ["198.51.100.53"]
"#;

/// The probe's command line inside the bottle: only test-range destinations.
fn probe_argv(extra: &[&str]) -> Result<Vec<String>> {
    let mut v = vec![
        cork_bin()?.display().to_string(),
        "probe".to_owned(),
        "--resolver".into(),
        "198.51.100.53".into(),
        "--deny-sample".into(),
        "198.51.100.200".into(),
        "--deny-sample".into(),
        "2001:db8::200".into(),
        "--random-resolver".into(),
        "198.51.100.253".into(),
        "--random-resolver".into(),
        "2001:db8::253".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    Ok(v)
}

/// Runs `cork probe ARGS` in bottle `label` under `cork run`, with `seams` set.
fn run_probe(
    world: &World,
    label: &str,
    body: &str,
    seams: &[&str],
    extra: &[&str],
) -> Result<RunOutput> {
    let manifest = world.manifest(label, body)?;
    let mut cmd = world.cork_run(&manifest, label, &probe_argv(extra)?);
    cmd.env("ACME_REAL_KEY", "real-secret-value-not-for-the-bottle");
    if !seams.is_empty() {
        cmd.env("CORK_TEST_HARNESS", "1");
    }
    for s in seams {
        cmd.env(s, "1");
    }
    world.run(&mut cmd)
}

/// The JSON lines of a `--json` run, each checked for the contract's fields.
fn reports(out: &RunOutput) -> Result<Vec<Value>> {
    let mut v = Vec::new();
    for line in out.lines() {
        let r: Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}\n{out}"))?;
        for key in [
            "id", "severity", "passed", "expected", "observed", "evidence",
        ] {
            ensure!(r.get(key).is_some(), "{key} missing in {r}");
        }
        ensure!(
            matches!(r["severity"].as_str(), Some("hard" | "soft")),
            "severity of {r}"
        );
        let evidence = r["evidence"].as_array().context("evidence is a list")?;
        ensure!(!evidence.is_empty(), "no evidence in {r}");
        if r["passed"] == false {
            let cause = r["cause"].as_str().unwrap_or_default();
            ensure!(!cause.is_empty(), "a failure without a cause: {r}");
        }
        v.push(r);
    }
    ensure!(!v.is_empty(), "no probe reported:\n{out}");
    Ok(v)
}

fn failed_ids(reports: &[Value]) -> BTreeSet<String> {
    reports
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn find<'a>(reports: &'a [Value], id: &str) -> Result<&'a Value> {
    match reports.iter().find(|r| r["id"] == id) {
        Some(r) => Ok(r),
        None => bail!(
            "no probe {id} among {:?}",
            reports.iter().map(|r| &r["id"]).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn a_correct_bottle_passes_every_probe() -> Result<()> {
    let world = World::new("a_correct_bottle_passes_every_probe")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new()
            .a("api.example.test", "198.51.100.11", 300)
            .aaaa("api.example.test", "2001:db8::11", 300)
            .txt("api.example.test", "exfil-channel", 300),
    )?;
    let allowed4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let allowed6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let denied = world.tcp_server(Side::Internet, "198.51.100.65:443")?;
    let host_port = world.tcp_server(Side::Bottle, "[::]:9200")?;
    let foreign = world.tcp_server(Side::Bottle, "[::]:1")?;

    let out = run_probe(&world, "a", CORRECT, &[], &["--json"])?;
    let r = reports(&out)?;
    assert_eq!(out.code(), 0, "every hard probe passes:\n{out}");
    assert!(failed_ids(&r).is_empty(), "{out}");
    for id in [
        "net.allow:egress.allow[0]",
        "net.allow:egress.allow[1]",
        "net.deny:egress.deny[0]",
        "net.deny:egress.deny[1]",
        "dns.allow:egress.allow[2]",
        "net.default_deny:198.51.100.200",
        "net.default_deny:2001:db8::200",
        "loopback.foreign:127.0.0.1:1",
        "loopback.foreign:[::1]:1",
        "loopback.host_port:127.0.0.1:9200",
        "loopback.host_port:[::1]:9200",
        "unix.control_socket:/run/cork/cork.sock",
        "socket.raw4",
        "socket.raw6",
        "socket.icmp4",
        "socket.icmp6",
        "socket.packet",
        "proc.capabilities",
        "proc.no_new_privs",
        "proc.seccomp",
        "cgroup.member",
        "cgroup.escape",
        "mount.cgroup_ro",
        "mount.bpf_ro",
        "dns.not_allowed",
        "dns.txt_refused",
        "dns.redirect:198.51.100.253",
        "dns.redirect:2001:db8::253",
        "ca.env:SSL_CERT_FILE",
        "ca.env:NODE_EXTRA_CA_CERTS",
        "cred.placeholder:ACME_API_KEY",
        "cred.real_absent:ACME_REAL_KEY",
    ] {
        find(&r, id)?;
    }
    assert_eq!(find(&r, "net.deny:egress.deny[0]")?["observed"], "EPERM");
    assert_eq!(find(&r, "cgroup.escape")?["observed"], "EROFS");
    assert_eq!(
        find(&r, "dns.txt_refused")?["observed"],
        "REFUSED from 198.51.100.53:53"
    );
    // The allowed destinations were reached; the denied and foreign ones never were.
    assert_eq!(allowed4.wait_peers(1, Duration::from_secs(5))?.len(), 1);
    assert_eq!(allowed6.wait_peers(1, Duration::from_secs(5))?.len(), 1);
    assert_eq!(host_port.wait_peers(2, Duration::from_secs(5))?.len(), 2);
    assert!(denied.peers().is_empty(), "{:?}", denied.peers());
    assert!(foreign.peers().is_empty(), "{:?}", foreign.peers());
    // The real value never showed in the report.
    assert!(!out.stdout.contains("real-secret-value"), "{out}");

    // The human table says the same.
    let out = run_probe(&world, "b", CORRECT, &[], &[])?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("0 hard failures"), "{out}");
    Ok(())
}

/// Runs the weakened bottle and checks that exactly `expected` failed, each cause naming
/// `cause_word`.
fn weakened(
    world: &World,
    label: &str,
    seam: &str,
    extra: &[&str],
    expected: &[(&str, &str)],
) -> Result<Vec<Value>> {
    let mut args = vec!["--json"];
    args.extend(extra);
    let out = run_probe(world, label, "", &[seam], &args)?;
    let r = reports(&out)?;
    assert_eq!(out.code(), 1, "a hard probe fails with {seam}:\n{out}");
    let want: BTreeSet<String> = expected.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(failed_ids(&r), want, "with {seam}:\n{out}");
    for (id, word) in expected {
        let cause = find(&r, id)?["cause"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(cause.contains(word), "{id}'s cause names {word:?}: {cause}");
    }
    let audit = std::fs::read_to_string(world.audit_path_for(label))?;
    assert!(
        audit.contains("\"test_seams\"") && audit.contains(seam),
        "the seam is announced:\n{audit}"
    );
    Ok(r)
}

#[test]
fn weakened_bottles_fail_exactly_their_probes() -> Result<()> {
    let world = World::new("weakened_bottles_fail_exactly_their_probes")?;
    let r = weakened(
        &world,
        "caps",
        "CORK_TEST_KEEP_CAPS",
        &["--diag"],
        &[("proc.capabilities", "CAP_SYS_ADMIN in CapEff")],
    )?;
    // --diag: the failed probe ran again, with the full capability sets; passes have none.
    let diag = find(&r, "proc.capabilities")?["diag"]
        .as_array()
        .context("diag on the failed probe")?
        .clone();
    assert!(diag.len() > 1, "{diag:?}");
    assert!(
        diag[0]
            .as_str()
            .unwrap_or_default()
            .starts_with("re-run: failed")
    );
    assert!(find(&r, "proc.seccomp")?.get("diag").is_none());

    // Without the filter only the filter's probe fails: raw and packet sockets still meet
    // the missing CAP_NET_RAW, ICMP datagram sockets the cgroup/sock_create program.
    let r = weakened(
        &world,
        "seccomp",
        "CORK_TEST_NO_SECCOMP",
        &[],
        &[("proc.seccomp", "no seccomp filter")],
    )?;
    for id in [
        "socket.icmp4",
        "socket.icmp6",
        "socket.raw4",
        "socket.packet",
    ] {
        assert_eq!(find(&r, id)?["observed"], "EPERM", "{id}");
    }
    weakened(
        &world,
        "mounts",
        "CORK_TEST_RW_MOUNTS",
        &[],
        &[
            ("mount.cgroup_ro", "read-write"),
            ("mount.bpf_ro", "read-write"),
            ("cgroup.escape", "writable"),
        ],
    )?;
    Ok(())
}

#[test]
fn cork_exec_gives_the_probe_its_standing_bottle_s_manifest() -> Result<()> {
    let world = World::new("cork_exec_gives_the_probe_its_manifest")?;
    let sock = world.path("cork", "sock").display().to_string();
    let daemon = TestDaemon::start(&world, &sock, &world.path("daemon-audit", "jsonl"))?;
    let result = exec_probes(&world, &sock);
    // Stopped with SIGTERM however the steps ended, so it tears its bottle down.
    let stopped = daemon.stop()?;
    result?;
    assert_eq!(stopped.code(), 0, "{stopped}");
    Ok(())
}

fn exec_probes(world: &World, sock: &str) -> Result<()> {
    let manifest = world.manifest(
        "std",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8443]\n",
    )?;
    let _allowed = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    cork_integration::daemon::create_ok(world, sock, &manifest)?;
    let name = world.bottle_name("std");
    let exec = |seam: Option<&str>| -> Result<RunOutput> {
        let mut argv = vec![
            "exec".to_owned(),
            name.clone(),
            "--socket".into(),
            sock.to_owned(),
            "--".into(),
        ];
        argv.extend(probe_argv(&["--json"])?);
        let mut cmd = world.cork(argv);
        if let Some(seam) = seam {
            cmd.env("CORK_TEST_HARNESS", "1").env(seam, "1");
        }
        world.run(&mut cmd)
    };
    let out = exec(None)?;
    let r = reports(&out)?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(failed_ids(&r).is_empty(), "{out}");
    find(&r, "net.allow:egress.allow[0]")?;
    assert!(
        find(&r, "cgroup.member")?["observed"]
            .as_str()
            .unwrap_or_default()
            .contains(&name),
        "{out}"
    );
    let out = exec(Some("CORK_TEST_KEEP_CAPS"))?;
    let r = reports(&out)?;
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(
        failed_ids(&r),
        BTreeSet::from(["proc.capabilities".to_owned()])
    );
    Ok(())
}

#[test]
fn a_probe_without_a_manifest_says_how_to_give_one() -> Result<()> {
    let world = World::new("a_probe_without_a_manifest_says_how_to_give_one")?;
    let mut cmd = world.cork(["probe"]);
    cmd.env_remove("CORK_MANIFEST");
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("--manifest"), "{out}");
    Ok(())
}
