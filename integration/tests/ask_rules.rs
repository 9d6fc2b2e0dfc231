//! `[[egress.ask]]` end to end: an API whose GETs under /v1/ an allow rule passes and
//! whose `POST /v1/deploy` an ask rule holds. Under `cork run` (nobody to ask) the held
//! request is refused with reason `ask_without_daemon` and `cork run` warns at start;
//! under a daemon the same request waits — the upstream sees nothing of it — until
//! `cork approve` sends it on (IPv6) or `cork deny` refuses it (IPv4), while requests
//! the allow rule decides go or are refused at once. `cork approvals ls` names the ask
//! rule, and every hold and decision is an audit event naming it.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::daemon::{TestDaemon, exec};
use cork_integration::inspected_api::InspectedApi;
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, World};
use serde_json::{Value, json};

const API: &str = "api.ask.test";
const WAIT: Duration = Duration::from_secs(20);

fn cork(world: &World, args: &[&str]) -> Result<RunOutput> {
    world.run(world.cork(args))
}

/// curl over IPv4 or IPv6 (`family` "-4"/"-6"): `METHOD https://API{path}`; prints the
/// response body, then `status=NNN`.
fn curl(family: &str, method: &str, path: &str) -> Vec<String> {
    [
        "curl",
        "-sS",
        family,
        "--max-time",
        "60",
        "-X",
        method,
        "--data-binary",
        "release 42",
        "-w",
        "\nstatus=%{http_code}\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("https://{API}{path}")])
    .collect()
}

fn exec_curl(world: &World, sock: &str, name: &str, argv: &[String]) -> Result<Spawned> {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Spawned::start(&mut exec(world, sock, name, &argv))
}

fn held(log: &std::path::Path, method: &str, path: &str, nth: usize) -> Result<String> {
    let want = json!({"layer": "proxy", "event": "held", "method": method, "path": path});
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let audit = Audit::wait_for(log, want.clone(), WAIT)?;
        let found = audit.find(want.clone());
        if let Some(ev) = found.get(nth) {
            return Ok(ev["approval"].as_str().context("approval id")?.to_owned());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "hold {nth} of {method} {path} never came"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pending(world: &World, sock: &str) -> Result<Vec<Value>> {
    let out = cork(world, &["approvals", "ls", "--json", "--socket", sock])?;
    anyhow::ensure!(out.code() == 0, "cork approvals ls failed:\n{out}");
    serde_json::from_str(out.stdout.trim()).with_context(|| format!("not JSON:\n{out}"))
}

#[test]
fn ask_rules_hold_requests_for_an_operator() -> Result<()> {
    let world = World::new("ask_rules_hold_requests_for_an_operator")?;
    let inspected = InspectedApi::start_dual(&world, API)?;
    let api = &inspected.upstream;
    let manifest = format!(
        "{}[[egress.allow.http]]\nmethods = [\"GET\"]\npaths = [\"/v1/\"]\n\n\
         [[egress.ask]]\ndomain = \"{API}\"\nports = [443]\n\
         [[egress.ask.http]]\nmethods = [\"POST\"]\npaths = [\"/v1/deploy\"]\n\n{}",
        inspected.allow_rule(),
        inspected.sections()
    );

    // Without a daemon there is nobody to ask: refused, said at start and in the event.
    let (out, audit) = world.run_argv("run", &manifest, &curl("-4", "POST", "/v1/deploy"))?;
    assert!(out.stdout.contains("status=403"), "{out}");
    assert!(out.stdout.contains("ask_without_daemon"), "{out}");
    assert!(
        out.stderr.contains("[[egress.ask]]"),
        "the warning at start: {out}"
    );
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "method": "POST",
        "path": "/v1/deploy", "reason": "ask_without_daemon", "rule": "egress.ask[0]"}),
    )?;
    assert!(
        api.log().requests().is_empty(),
        "{:#?}",
        api.log().requests()
    );

    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");
    let daemon = TestDaemon::start(&world, &sock, &log)?;
    let name = world.bottle_name("ask");
    let m = world.manifest("ask", &manifest)?;
    cork_integration::daemon::create_ok(&world, &sock, &m)?;

    // What the allow rule decides is decided at once: a GET under /v1/ goes...
    let out = world.run(exec(
        &world,
        &sock,
        &name,
        &curl("-4", "GET", "/v1/list")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ))?;
    assert!(out.stdout.contains("status=200"), "{out}");
    // ...and a POST no rule has a route for is refused.
    let out = world.run(exec(
        &world,
        &sock,
        &name,
        &curl("-6", "POST", "/v1/other")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ))?;
    assert!(
        out.stdout.contains("status=403") && out.stdout.contains("no_route"),
        "{out}"
    );
    assert!(pending(&world, &sock)?.is_empty(), "nothing was held");

    // The ask route: held over IPv6 — nothing upstream — listed, then approved.
    let client = exec_curl(&world, &sock, &name, &curl("-6", "POST", "/v1/deploy"))?;
    let id = held(&log, "POST", "/v1/deploy", 0)?;
    let paths = |api: &cork_integration::https_upstream::HttpsUpstream| -> Vec<String> {
        api.log()
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    };
    assert_eq!(
        paths(api),
        ["GET /v1/list"],
        "nothing of a held request goes upstream"
    );
    let listed = pending(&world, &sock)?;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["rule"], "egress.ask[0]");
    assert_eq!(listed[0]["detectors"], json!([]));
    assert_eq!(listed[0]["method"], "POST");
    let table = cork(&world, &["approvals", "ls", "--socket", &sock])?;
    assert!(
        table.stdout.contains("HELD BY") && table.stdout.contains("egress.ask[0]"),
        "{table}"
    );
    let out = cork(&world, &["approve", &id, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let out = client.finish(WAIT)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    let reqs = api.log().wait_settled(2, WAIT)?;
    let deploy = reqs
        .iter()
        .find(|r| r.path() == "/v1/deploy")
        .context("/v1/deploy")?;
    assert_eq!(deploy.method, "POST");
    assert_eq!(deploy.body, b"release 42", "forwarded as it came");

    // Held over IPv4, then denied: 403 naming why, nothing upstream.
    let client = exec_curl(&world, &sock, &name, &curl("-4", "POST", "/v1/deploy"))?;
    let id = held(&log, "POST", "/v1/deploy", 1)?;
    let out = cork(&world, &["deny", &id, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let out = client.finish(WAIT)?;
    assert!(out.stdout.contains("status=403"), "{out}");
    assert!(out.stdout.contains("approval_denied"), "{out}");
    assert_eq!(
        paths(api),
        ["GET /v1/list", "POST /v1/deploy"],
        "only the approved one"
    );

    let audit = Audit::wait_for(&log, json!({"event": "denied", "path": "/v1/deploy"}), WAIT)?;
    let holds = audit.find(
        json!({"layer": "proxy", "event": "held", "path": "/v1/deploy",
        "verdict": "hold", "reason": "held_for_approval", "rule": "egress.ask[0]",
        "host": API}),
    );
    assert_eq!(holds.len(), 2, "{}", audit.dump());
    let dsts: Vec<&str> = holds.iter().filter_map(|e| e["dst"].as_str()).collect();
    assert!(
        dsts.iter().any(|d| d.contains("2001:db8::10"))
            && dsts.iter().any(|d| d.contains("198.51.100.10")),
        "one hold per family: {dsts:?}"
    );
    audit.expect(
        json!({"layer": "proxy", "event": "approved", "path": "/v1/deploy",
        "reason": "approved", "rule": "egress.ask[0]", "decided_by": 0}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "request", "path": "/v1/deploy",
        "verdict": "allow", "status": 200, "rule": "egress.ask[0]"}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "denied", "path": "/v1/deploy",
        "reason": "approval_denied", "status": 403, "rule": "egress.ask[0]"}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "request", "path": "/v1/list",
        "verdict": "allow", "rule": "egress.allow[0]"}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "path": "/v1/other", "verdict": "deny",
        "reason": "no_route", "rule": "egress.allow[0]"}),
    )?;
    assert!(
        audit
            .find(json!({"event": "held", "path": "/v1/list"}))
            .is_empty()
    );
    daemon.stop()?;
    Ok(())
}

/// A daemon SIGKILLed with a request held and an approval remembered: the next daemon on
/// the same state directory reports the lost hold (`approval_lost`, reason
/// `daemon_restarted`), still honours the remembered approval, and gives the next hold
/// an id the old list never had.
#[test]
fn holds_and_remembered_approvals_outlive_a_daemon_crash() -> Result<()> {
    let world = World::new("holds_and_remembered_approvals_outlive_a_daemon_crash")?;
    let inspected = InspectedApi::start_dual(&world, API)?;
    let api = &inspected.upstream;
    let manifest = format!(
        "[[egress.ask]]\ndomain = \"{API}\"\nports = [443]\n\
         [[egress.ask.http]]\nmethods = [\"POST\", \"DELETE\"]\npaths = [\"/v1/deploy\"]\n\n{}",
        inspected.sections()
    );
    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");
    let state = world.path("daemon-state", "d");
    let daemon = TestDaemon::start_in(&world, &sock, &log, &state, |_| {})?;
    let name = world.bottle_name("crash");
    let m = world.manifest("crash", &manifest)?;
    cork_integration::daemon::create_ok(&world, &sock, &m)?;

    // POST approved for 10 minutes; a DELETE left waiting.
    let client = exec_curl(&world, &sock, &name, &curl("-4", "POST", "/v1/deploy"))?;
    let id = held(&log, "POST", "/v1/deploy", 0)?;
    let out = cork(&world, &["approve", &id, "--for", "10m", "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(client.finish(WAIT)?.stdout.contains("status=200"));
    let waiting = exec_curl(&world, &sock, &name, &curl("-6", "DELETE", "/v1/deploy"))?;
    let lost_id = held(&log, "DELETE", "/v1/deploy", 0)?;

    daemon.kill9()?;
    // The held client's connection died with the daemon's proxy.
    let out = waiting.finish(WAIT)?;
    assert!(!out.stdout.contains("status=200"), "{out}");

    let daemon = TestDaemon::start_in(&world, &sock, &log, &state, |_| {})?;
    let audit = Audit::wait_for(
        &log,
        json!({"event": "approval_lost", "approval": lost_id}),
        WAIT,
    )?;
    audit.expect(
        json!({"layer": "proxy", "event": "approval_lost", "bottle": name,
        "verdict": "deny", "reason": "daemon_restarted", "approval": lost_id,
        "method": "DELETE", "path": "/v1/deploy", "host": API, "rule": "egress.ask[0]"}),
    )?;
    // The remembered approval stands: the same request goes through without a hold.
    let out = world.run(exec(
        &world,
        &sock,
        &name,
        &curl("-4", "POST", "/v1/deploy")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ))?;
    assert!(out.stdout.contains("status=200"), "{out}");
    Audit::wait_for(
        &log,
        json!({"event": "approved", "reason": "approval_remembered"}),
        WAIT,
    )?;
    // A new hold gets an id the old daemon never gave out.
    let client = exec_curl(&world, &sock, &name, &curl("-4", "DELETE", "/v1/deploy"))?;
    let new_id = held(&log, "DELETE", "/v1/deploy", 1)?;
    let n = |s: &str| s.parse::<u64>().context("a numeric id");
    assert!(n(&new_id)? > n(&lost_id)?, "{new_id} after {lost_id}");
    let out = cork(&world, &["deny", &new_id, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(client.finish(WAIT)?.stdout.contains("approval_denied"));
    let deletes = api
        .log()
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0, "no held DELETE ever went upstream");
    daemon.stop()?;
    Ok(())
}
