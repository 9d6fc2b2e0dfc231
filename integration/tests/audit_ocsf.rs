//! `cork audit --format ocsf` on a real `cork run` log — kernel allows and denies over
//! IPv4 and IPv6, a DNS query answered by the World's DNS server, an inspected HTTPS
//! request, lifecycle lines — and every OCSF event it prints validated offline against
//! the pinned OCSF schema (`cork_integration::ocsf::validate`).

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::inspected_api::InspectedApi;
use cork_integration::ocsf::{parse_lines, validate};
use cork_integration::{RunOutput, Side, World};
use serde_json::Value;

const API: &str = "api.example.test";
const WAIT: Duration = Duration::from_secs(5);

fn cork_audit(world: &World, args: &[&str]) -> Result<RunOutput> {
    let mut full = vec!["audit"];
    full.extend_from_slice(args);
    world.run(world.cork(full))
}

/// The OCSF class cork's mapping promises for an audit line.
fn class_for(line: &Value) -> u64 {
    match (line["layer"].as_str(), line["event"].as_str()) {
        (Some("kernel"), _) => 4001,
        (Some("dns"), _) => 4003,
        (Some("proxy"), Some("request")) => 4002,
        (Some("proxy"), _) => 4001,
        (Some("cork"), _) => 6002,
        _ => 0,
    }
}

fn to(events: &[Value], ip: &str, port: u64) -> Result<Value> {
    events
        .iter()
        .find(|e| e["dst_endpoint"]["ip"] == ip && e["dst_endpoint"]["port"] == port)
        .cloned()
        .with_context(|| format!("no OCSF event to {ip} port {port}"))
}

#[test]
fn a_run_log_converts_to_valid_ocsf_events() -> Result<()> {
    let world = World::new("a_run_log_converts_to_valid_ocsf_events")?;
    let inspected = InspectedApi::start(&world, API)?;
    let api = &inspected.upstream;
    let v6 = world.tcp_server(Side::Internet, "[2001:db8::30]:8443")?;
    let body = format!(
        "{}[[egress.allow]]\ncidr = \"2001:db8::30/128\"\nports = [8443]\n\n{}",
        inspected.allow_rule(),
        inspected.sections()
    );
    let script = format!(
        "curl -sS --max-time 10 -o /dev/null -w 'status=%{{http_code}}\\n' https://{API}/ocsf; \
         busybox nc -w 2 2001:db8::30 8443 </dev/null >/dev/null; \
         busybox nc -w 2 198.51.100.21 8080 </dev/null; echo nc4_rc=$?; \
         busybox nc -w 2 2001:db8::21 8080 </dev/null; echo nc6_rc=$?"
    );
    let argv = vec!["sh".to_string(), "-c".into(), script];
    let (out, _audit) = world.run_argv("a", &body, &argv)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    assert!(out.stdout.contains("nc4_rc=1"), "{out}");
    assert!(out.stdout.contains("nc6_rc=1"), "{out}");
    v6.wait_peers(1, WAIT)?;
    api.log().wait_settled(1, WAIT)?;
    let log = world.audit_path_for("a");
    let log_s = log.display().to_string();
    let lines = parse_lines(&std::fs::read_to_string(&log)?)?;

    // Every line converts, in order, to a valid OCSF event of its layer's class.
    let converted = cork_audit(&world, &["--file", &log_s, "--format", "ocsf"])?;
    assert_eq!(converted.code(), 0, "{converted}");
    let events = parse_lines(&converted.stdout)?;
    assert_eq!(events.len(), lines.len(), "{converted}");
    let ocsf_path = world.path("audit", "ocsf.jsonl");
    std::fs::write(&ocsf_path, &converted.stdout)?;
    let report = validate(&ocsf_path)?;
    eprintln!("{report}");
    for class in [
        "network_activity",
        "dns_activity",
        "http_activity",
        "application_lifecycle",
    ] {
        assert!(
            report.contains(class),
            "no {class} event validated: {report}"
        );
    }
    for (line, event) in lines.iter().zip(&events) {
        assert_eq!(event["class_uid"], class_for(line), "{line}\n{event:#}");
        // The OCSF event names the line it came from.
        assert_eq!(event["unmapped"]["chain"], line["chain"], "{event:#}");
        assert_eq!(event["metadata"]["original_time"], line["ts"], "{event:#}");
    }

    // Kernel verdicts: the denies are Refuse/Blocked, v4 and v6; the v6 allow opened.
    for ip in ["198.51.100.21", "2001:db8::21"] {
        let deny = to(&events, ip, 8080)?;
        assert_eq!(deny["class_uid"], 4001, "{deny:#}");
        assert_eq!(deny["activity_id"], 5, "{deny:#}");
        assert_eq!(deny["disposition_id"], 2, "{deny:#}");
        assert_eq!(deny["action_id"], 2, "{deny:#}");
        assert_eq!(deny["status_detail"], "default_deny", "{deny:#}");
    }
    let allow = to(&events, "2001:db8::30", 8443)?;
    assert_eq!(allow["activity_id"], 1, "{allow:#}");
    assert_eq!(allow["disposition_id"], 1, "{allow:#}");
    assert_eq!(allow["connection_info"]["protocol_ver_id"], 6, "{allow:#}");
    assert_eq!(
        allow["firewall_rule"]["name"], "egress.allow[1]",
        "{allow:#}"
    );

    // DNS: the asked name and the answer the bottle got.
    let dns = events
        .iter()
        // curl asks A and AAAA at once, in either order: the A answer carries the address.
        .find(|e| {
            e["class_uid"] == 4003 && e["query"]["hostname"] == API && e["query"]["type"] == "A"
        })
        .context("the DNS Activity for the API's name, type A")?;
    assert!(
        dns["answers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["rdata"] == "198.51.100.10")),
        "{dns:#}"
    );
    assert_eq!(dns["disposition_id"], 1, "{dns:#}");

    // HTTP: the inspected request, joined to the kernel's connect by the socket cookie.
    let http = events
        .iter()
        .find(|e| e["class_uid"] == 4002)
        .context("the HTTP Activity")?;
    assert_eq!(http["http_request"]["http_method"], "GET", "{http:#}");
    assert_eq!(http["http_request"]["url"]["path"], "/ocsf", "{http:#}");
    assert_eq!(http["http_request"]["url"]["hostname"], API, "{http:#}");
    assert_eq!(http["http_response"]["code"], 200, "{http:#}");
    let cookie = http["connection_info"]["uid"]
        .as_str()
        .context("the request's socket cookie")?;
    let connect = to(&events, "198.51.100.10", 443)?;
    assert_eq!(connect["connection_info"]["uid"], cookie, "{connect:#}");

    // --flow with --format ocsf: the same story, as OCSF.
    let story = cork_audit(
        &world,
        &["--file", &log_s, "--flow", cookie, "--format", "ocsf"],
    )?;
    assert_eq!(story.code(), 0, "{story}");
    let classes: Vec<u64> = parse_lines(&story.stdout)?
        .iter()
        .filter_map(|e| e["class_uid"].as_u64())
        .collect();
    assert_eq!(classes.first(), Some(&4003), "{story}");
    assert!(
        classes.contains(&4001) && classes.contains(&4002),
        "{story}"
    );

    // A line that is no audit event is named, the rest still print, exit 2.
    let broken = world.path("broken", "jsonl");
    std::fs::write(
        &broken,
        format!(
            "{}\nnot an event\n",
            std::fs::read_to_string(&log)?.lines().next().unwrap_or("")
        ),
    )?;
    let out = cork_audit(
        &world,
        &["--file", &broken.display().to_string(), "--format", "ocsf"],
    )?;
    assert_eq!(out.code(), 2, "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(out.stderr.contains("not converted to OCSF"), "{out}");
    Ok(())
}
