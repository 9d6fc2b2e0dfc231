//! The audit log as a security team reads it: `cork audit --file` filters a `cork run`
//! log like the daemon's history; `--flow COOKIE` joins one socket's story — the DNS answer
//! that made its destination reachable, the kernel's verdict, the inspecting proxy's
//! events — by the socket cookie; and the hash chain every audit file carries shows a
//! removed or edited line (`cork audit --verify`), naming it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::World;
use cork_integration::inspected_api::InspectedApi;
use cork_integration::process::RunOutput;
use serde_json::{Value, json};

const API: &str = "api.example.test";

fn cork_audit(world: &World, args: &[&str]) -> Result<RunOutput> {
    let mut full = vec!["audit"];
    full.extend_from_slice(args);
    world.run(world.cork(full))
}

fn events(out: &RunOutput) -> Result<Vec<Value>> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

/// A copy of `path` with `edit` applied to its lines.
fn tampered(world: &World, path: &Path, edit: impl FnOnce(&mut Vec<String>)) -> Result<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)?
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let copy = world.path("tampered", "jsonl");
    std::fs::write(&copy, lines.join("\n") + "\n")?;
    Ok(copy.display().to_string())
}

#[test]
fn an_audit_log_tells_each_flow_and_shows_tampering() -> Result<()> {
    let world = World::new("an_audit_log_tells_each_flow_and_shows_tampering")?;
    let inspected = InspectedApi::start(&world, API)?;
    let api = &inspected.upstream;
    let body = format!("{}{}", inspected.allow_rule(), inspected.sections());
    let script = format!(
        "curl -sS --max-time 10 -o /dev/null -w 'status=%{{http_code}}\\n' https://{API}/story; \
         busybox nc -w 2 198.51.100.21 8080 </dev/null; echo nc_rc=$?"
    );
    let argv = vec!["sh".to_string(), "-c".into(), script];
    let (out, audit) = world.run_argv("a", &body, &argv)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    assert!(out.stdout.contains("nc_rc=1"), "{out}");
    api.log().wait_settled(1, Duration::from_secs(5))?;
    let log = world.audit_path_for("a");
    let log_s = log.display().to_string();

    // The chain holds as written.
    let verified = cork_audit(&world, &["--verify", &log_s])?;
    assert_eq!(verified.code(), 0, "{verified}");
    assert!(verified.stdout.contains("chain intact"), "{verified}");

    // --file with filters: exactly the log's denies.
    let denies = cork_audit(&world, &["--file", &log_s, "--verdict", "deny"])?;
    assert_eq!(denies.code(), 0, "{denies}");
    let got = events(&denies)?;
    assert_eq!(
        got.len(),
        audit.find(json!({"verdict": "deny"})).len(),
        "{denies}"
    );
    assert!(
        got.iter()
            .any(|e| e["dst"] == "198.51.100.21" && e["verdict"] == "deny"),
        "{denies}"
    );

    // --flow: the inspected connection's story, joined by its socket cookie.
    let connect = audit
        .find(json!({"layer": "kernel", "reason": "proxy_redirect", "dport": 443}))
        .into_iter()
        .next()
        .context("the redirected connect")?;
    let cookie_id = connect["cookie"].as_u64().context("cookie")?;
    let cookie = cookie_id.to_string();
    let story = cork_audit(&world, &["--file", &log_s, "--flow", &cookie])?;
    assert_eq!(story.code(), 0, "{story}");
    let story = events(&story)?;
    let layers: Vec<&str> = story.iter().filter_map(|e| e["layer"].as_str()).collect();
    assert_eq!(layers.first(), Some(&"dns"), "{story:#?}");
    assert_eq!(story[0]["name"], API, "{story:#?}");
    assert!(layers.contains(&"kernel"), "{story:#?}");
    assert!(
        story
            .iter()
            .any(|e| e["layer"] == "proxy" && e["event"] == "request" && e["path"] == "/story"),
        "{story:#?}"
    );
    assert!(
        story
            .iter()
            .filter(|e| e["layer"] != "dns")
            .all(|e| e["cookie"].as_u64() == Some(cookie_id)),
        "{story:#?}"
    );

    // Tampering: a removed line and an edited one are found, by line number.
    let removed = tampered(&world, &log, |l| {
        l.remove(1);
    })?;
    let out = cork_audit(&world, &["--verify", &removed])?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("line 2: the chain breaks here"),
        "{out}"
    );
    let deny_line = std::fs::read_to_string(&log)?
        .lines()
        .position(|l| l.contains("198.51.100.21"))
        .context("the deny's line")?;
    let edited = tampered(&world, &log, |l| {
        l[deny_line] = l[deny_line].replace("\"deny\"", "\"allow\"");
    })?;
    let out = cork_audit(&world, &["--verify", &edited])?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains(&format!("line {}: the chain breaks here", deny_line + 1)),
        "{out}"
    );
    let out = cork_audit(&world, &["--verify", "/nonexistent/cork-audit.jsonl"])?;
    assert_eq!(out.code(), 2, "{out}");
    Ok(())
}
