//! Operator approval end to end (`supervise`): a daemon's bottle sends a request carrying
//! a secret in a header; the proxy holds it — the upstream sees nothing — until
//! `cork approve ID` releases it (the upstream gets it once, curl gets 200) or
//! `cork deny ID` refuses it (403, reason `approval_denied`); a secret in a body is held
//! the same way, and `cork approve ID --for 10m` lets the same request through again
//! without a hold; a bottle with a 2s
//! `dlp.approval_timeout` gets 403 `approval_timeout`; `cork run`, with nobody to ask,
//! blocks with reason `supervise_without_daemon`. Every hold and decision is an audit
//! event, decisions naming the deciding peer's uid.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::daemon::TestDaemon;
use cork_integration::inspected_api::InspectedApi;
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, World};
use serde_json::{Value, json};

const API: &str = "api.approve.test";
const AWS_KEY: &str = "AKIAZ7QX2J4K5L6M7N3P";
const WAIT: Duration = Duration::from_secs(20);

fn cork(world: &World, args: &[&str]) -> Result<RunOutput> {
    world.run(world.cork(args))
}

/// The curl command line sending the secret in a header to `path` (with `/body` in its
/// path: in a POST body instead); prints the response body, then `status=NNN`.
fn curl(path: &str) -> Vec<String> {
    let secret = if path.starts_with("/body") {
        ["--data-binary".to_string(), AWS_KEY.to_string()]
    } else {
        ["-H".to_string(), format!("x-debug: {AWS_KEY}")]
    };
    let mut argv: Vec<String> = ["curl", "-sS", "--max-time", "60"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(secret);
    argv.extend([
        "-w".to_string(),
        "\nstatus=%{http_code}\n".into(),
        format!("https://{API}{path}"),
    ]);
    argv
}

/// `cork exec NAME -- curl ...` started in the background.
fn exec_curl(world: &World, sock: &str, name: &str, path: &str) -> Result<Spawned> {
    let exec_audit = world.path("exec-audit", "jsonl");
    let exec_audit = exec_audit.display().to_string();
    let mut argv = vec![
        "exec".to_string(),
        name.into(),
        "--socket".into(),
        sock.into(),
        "--audit-log".into(),
        exec_audit,
        "--".into(),
    ];
    argv.extend(curl(path));
    Spawned::start(&mut world.cork(argv))
}

/// The held requests `cork approvals ls --json` lists.
fn pending(world: &World, sock: &str) -> Result<Vec<Value>> {
    let out = cork(world, &["approvals", "ls", "--json", "--socket", sock])?;
    anyhow::ensure!(out.code() == 0, "cork approvals ls failed:\n{out}");
    serde_json::from_str(out.stdout.trim()).with_context(|| format!("not JSON:\n{out}"))
}

/// Waits for the `held` event of `path` in the daemon's log; its approval id.
fn held_id(log: &std::path::Path, path: &str) -> Result<String> {
    let audit = Audit::wait_for(
        log,
        json!({"layer": "proxy", "event": "held", "path": path}),
        WAIT,
    )?;
    let ev = audit.expect(json!({"event": "held", "path": path}))?;
    Ok(ev["approval"].as_str().context("approval id")?.to_owned())
}

#[test]
fn held_requests_wait_for_an_operator() -> Result<()> {
    let world = World::new("held_requests_wait_for_an_operator")?;
    let inspected = InspectedApi::start(&world, API)?;
    let api = &inspected.upstream;
    let manifest = |timeout: &str| {
        format!(
            "{}{}\n[dlp]\naction = \"supervise\"\napproval_timeout = \"{timeout}\"\n",
            inspected.allow_rule(),
            inspected.sections()
        )
    };

    // Without a daemon there is nobody to ask: supervise blocks, and says why.
    let (out, audit) = world.run_argv("run", &manifest("5m"), &curl("/alone"))?;
    assert!(out.stdout.contains("status=403"), "{out}");
    assert!(out.stdout.contains("supervise_without_daemon"), "{out}");
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "path": "/alone",
        "reason": "supervise_without_daemon", "dlp_action": "supervise",
        "detectors": ["aws-access-key-id"]}),
    )?;

    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");
    let daemon = TestDaemon::start(&world, &sock, &log)?;
    let (long, short) = (world.bottle_name("long"), world.bottle_name("short"));
    for (label, timeout) in [("long", "5m"), ("short", "2s")] {
        let m = world.manifest(label, &manifest(timeout))?;
        cork_integration::daemon::create_ok(&world, &sock, &m)?;
    }

    // Held: nothing upstream, listed, then approved and forwarded once.
    let client = exec_curl(&world, &sock, &long, "/approve")?;
    let id = held_id(&log, "/approve")?;
    assert!(
        api.log().requests().is_empty(),
        "nothing of a held request goes upstream"
    );
    let listed = pending(&world, &sock)?;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["bottle"], long.as_str());
    assert_eq!(listed[0]["path"], "/approve");
    assert_eq!(listed[0]["detectors"], json!(["aws-access-key-id"]));
    let out = cork(&world, &["approve", &id, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let out = client.finish(WAIT)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    let reqs = api.log().wait_settled(1, WAIT)?;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].path(), "/approve");
    assert!(pending(&world, &sock)?.is_empty());
    // Decided once: the id is gone.
    let out = cork(&world, &["approve", &id, "--socket", &sock])?;
    assert_eq!(out.code(), 4, "{out}");

    // A secret in a body: the body is read whole and the request held before anything
    // goes upstream; approved for 10 minutes, it goes as it came, and the same request
    // again goes through at once on the remembered approval.
    let client = exec_curl(&world, &sock, &long, "/body")?;
    let id = held_id(&log, "/body")?;
    assert_eq!(api.log().requests().len(), 1, "a held body goes nowhere");
    let out = cork(&world, &["approve", &id, "--for", "10m", "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("remembered for 600s"), "{out}");
    let out = client.finish(WAIT)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    let reqs = api.log().wait_sentinel("/body", WAIT)?;
    let body = reqs.iter().find(|r| r.path() == "/body").context("/body")?;
    assert_eq!(body.body, AWS_KEY.as_bytes(), "{body:#?}");
    let out = exec_curl(&world, &sock, &long, "/body")?.finish(WAIT)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    api.log().wait_settled(3, WAIT)?;
    let out = cork(
        &world,
        &["approve", "1", "--for", "forever", "--socket", &sock],
    )?;
    assert_eq!(out.code(), 2, "a bad --for is a bad request:\n{out}");

    // Held, then denied: a 403 naming why; nothing upstream.
    let client = exec_curl(&world, &sock, &long, "/deny")?;
    let id = held_id(&log, "/deny")?;
    let out = cork(&world, &["deny", &id, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let out = client.finish(WAIT)?;
    assert!(out.stdout.contains("status=403"), "{out}");
    assert!(out.stdout.contains("approval_denied"), "{out}");

    // Nobody decides: the bottle's 2s timeout denies it.
    let out = world.run(world.cork({
        let mut a = vec![
            "exec".to_string(),
            short.clone(),
            "--socket".into(),
            sock.clone(),
            "--".into(),
        ];
        a.extend(curl("/timeout"));
        a
    }))?;
    assert!(out.stdout.contains("status=403"), "{out}");
    assert!(out.stdout.contains("approval_timeout"), "{out}");

    // An unknown id is exit 4.
    let out = cork(&world, &["deny", "987654", "--socket", &sock])?;
    assert_eq!(out.code(), 4, "{out}");

    // Only the approved requests ever reached upstream, and never the denied ones.
    let paths: Vec<String> = api
        .log()
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert_eq!(paths, ["/approve", "/body", "/body"]);

    let audit = Audit::wait_for(
        &log,
        json!({"event": "approval_timeout", "path": "/timeout"}),
        WAIT,
    )?;
    for path in ["/approve", "/body", "/deny", "/timeout"] {
        audit.expect(json!({"layer": "proxy", "event": "held", "path": path,
            "verdict": "hold", "reason": "held_for_approval", "dlp_action": "supervise",
            "detectors": ["aws-access-key-id"], "host": API}))?;
    }
    audit.expect(
        json!({"layer": "proxy", "event": "approved", "path": "/approve",
        "verdict": "allow", "reason": "approved", "decided_by": 0}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "request", "path": "/approve",
        "verdict": "allow", "reason": "approved", "status": 200, "decided_by": 0}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "approved", "path": "/body",
        "reason": "approval_remembered", "decided_by": 0}),
    )?;
    let held_bodies = audit.find(json!({"event": "held", "path": "/body"})).len();
    assert_eq!(held_bodies, 1, "the remembered approval held nothing");
    audit.expect(json!({"layer": "proxy", "event": "denied", "path": "/deny",
        "verdict": "deny", "reason": "approval_denied", "status": 403, "decided_by": 0}))?;
    audit.expect(
        json!({"layer": "proxy", "event": "approval_timeout", "path": "/timeout",
        "verdict": "deny", "reason": "approval_timeout", "status": 403,
        "bottle": short.as_str()}),
    )?;
    assert!(
        !audit.dump().contains(AWS_KEY),
        "the audit log never holds the secret"
    );
    assert!(!api.log().saw(b"/deny"));
    daemon.stop()?;
    Ok(())
}
