//! The inspecting proxy end to end: a bottle's real clients (curl, python3) reach HTTPS
//! and HTTP servers in the test world through cork's kernel redirect and TLS-terminating
//! proxy. Each test asserts what the client saw, what the upstream received (its request
//! log), and the audit events.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::World;
use cork_integration::audit::Audit;
use cork_integration::dns_server::{DnsServer, Zone};
use cork_integration::https_upstream::{BodyEnd, HttpsUpstream, TestCa, UpstreamConfig};
use cork_integration::process::RunOutput;
use serde_json::json;

const API: &str = "api.example.test";
const WAIT: Duration = Duration::from_secs(5);
/// An AWS access key id shape the built-in detectors know (not a real key).
const AWS_KEY: &str = "AKIAZ7QX2J4K5L6M7N3P";

struct Setup {
    world: World,
    _dns: DnsServer,
    api: HttpsUpstream,
    pinned: HttpsUpstream,
    ca_path: PathBuf,
}

fn zone() -> Zone {
    Zone::new()
        .a(API, "198.51.100.10", 300)
        .aaaa(API, "2001:db8::10", 300)
        .a("other.example.test", "198.51.100.10", 300)
        .a("pinned.example.test", "198.51.100.11", 300)
}

fn setup(test: &str) -> Result<Setup> {
    let world = World::new(test)?;
    let dns = world.dns_server("198.51.100.53:53", zone())?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(API)
            .name("other.example.test")
            .tls("198.51.100.10:443".parse()?)
            .tls("[2001:db8::10]:443".parse()?)
            .plain("198.51.100.10:80".parse()?),
    )?;
    let pinned = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("pinned.example.test")
            .tls("198.51.100.11:443".parse()?),
    )?;
    Ok(Setup {
        world,
        _dns: dns,
        api,
        pinned,
        ca_path,
    })
}

impl Setup {
    /// The manifest body: the test's rules, then DNS and the upstream CA.
    fn manifest(&self, rules: &str) -> String {
        format!(
            "{rules}\n[dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            self.ca_path.display()
        )
    }

    /// Like `run_sh`, with `real` as the value of `ACME_REAL_KEY` in cork's environment.
    fn run_sh_holding(
        &self,
        label: &str,
        rules: &str,
        script: &str,
        real: &str,
    ) -> Result<(RunOutput, Audit)> {
        let manifest = self.world.manifest(label, &self.manifest(rules))?;
        let argv = vec!["sh".to_string(), "-c".into(), script.to_owned()];
        let mut cmd = self.world.cork_run(&manifest, label, &argv);
        cmd.env("ACME_REAL_KEY", real);
        let out = self.world.run(&mut cmd)?;
        anyhow::ensure!(out.code() == 0, "cork run exited {}:\n{out}", out.code());
        let audit = Audit::read(&self.world.audit_path_for(label))?;
        Ok((out, audit))
    }

    /// Runs `script` with `sh -c` in a bottle; returns output and audit.
    fn run_sh(&self, label: &str, rules: &str, script: &str) -> Result<(RunOutput, Audit)> {
        let argv = vec!["sh".to_string(), "-c".into(), script.into()];
        self.world.run_argv(label, &self.manifest(rules), &argv)
    }
}

/// A credential for api.example.test whose real value `cork run` reads from
/// `ACME_REAL_KEY` (see `Setup::run_sh_holding`).
const ACME_CREDENTIAL: &str = r#"
[[credentials]]
domain = "api.example.test"
header = "x-api-key"
placeholder = "cork-placeholder-acme"
env = "ACME_API_KEY"
value_env = "ACME_REAL_KEY"
"#;

const API_RULE: &str = r#"
[[egress.allow]]
domain = "api.example.test"
ports = [443, 80]
"#;

/// `curl` printing `<status>` after the body, with a deadline; no --cacert: the bottle's
/// environment points curl at the bundle holding the bottle CA.
fn curl(args: &str) -> String {
    format!("curl -sS --max-time 10 -w ' status=%{{http_code}}\\n' {args}; echo \" rc=$?\"")
}

#[test]
fn inspected_https_reaches_upstream_over_h1_h2_v4_v6() -> Result<()> {
    let s = setup("inspected_https_reaches_upstream_over_h1_h2_v4_v6")?;
    let script = [
        curl("--http1.1 -4 https://api.example.test/one?token=abc"),
        curl("--http2 -4 https://api.example.test/two"),
        curl("--http1.1 -6 https://api.example.test/three"),
        curl("--http2 -6 -X POST --data-binary hello https://api.example.test/four"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(
        out.stdout.matches("status=200").count(),
        4,
        "{out}\n{}",
        audit.dump()
    );
    let reqs = s.api.log().wait_settled(4, WAIT)?;
    let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/one", "/two", "/three", "/four"], "{reqs:#?}");
    for r in &reqs {
        assert_eq!(
            r.sni.as_deref(),
            Some(API),
            "cork verified and named the upstream"
        );
    }
    assert_eq!(
        reqs[1].version, "HTTP/2.0",
        "h2 end to end when both sides speak it"
    );
    assert_eq!(reqs[3].body, b"hello");
    for path in ["/one?…", "/two", "/three", "/four"] {
        audit.expect(
            json!({"layer": "proxy", "event": "request", "verdict": "allow",
            "sni": API, "host": API, "path": path, "status": 200}),
        )?;
    }
    audit.expect(json!({"layer": "kernel", "reason": "proxy_redirect", "dport": 443}))?;
    Ok(())
}

/// Python client: `post_chunks URL CHUNK...` sends a chunked POST, pausing between chunks;
/// `sse URL` prints each event line with its arrival time in ms since the request.
const PY_CLIENT: &str = r#"
import http.client, ssl, sys, time, urllib.parse
mode, url = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=10, context=ssl.create_default_context())
path = u.path + ("?" + u.query if u.query else "")
if mode == "post_chunks":
    chunks = [c.encode() for c in sys.argv[3:]]
    def gen():
        for c in chunks:
            yield c
            time.sleep(0.3)
    try:
        conn.request("POST", path, body=gen(), encode_chunked=True, headers={"content-type": "text/plain"})
        r = conn.getresponse()
        print("status=%d" % r.status)
        print(r.read().decode(errors="replace"))
    except Exception as e:
        print("error=%r" % (e,))
elif mode == "sse":
    t0 = time.monotonic()
    conn.request("GET", path)
    r = conn.getresponse()
    print("status=%d" % r.status)
    while True:
        line = r.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            print("event %s at %d" % (line.strip().decode(), (time.monotonic() - t0) * 1000))
"#;

/// The `status=` values `curl()` printed, in order.
fn statuses(out: &RunOutput) -> Vec<&str> {
    out.stdout
        .lines()
        .filter_map(|l| l.split("status=").nth(1))
        .collect()
}

fn py(args: &[&str]) -> String {
    let mut s = format!("python3 -c '{}'", PY_CLIENT.replace('\'', r"'\''"));
    for a in args {
        s.push_str(&format!(" '{a}'"));
    }
    s
}

#[test]
fn secrets_in_body_header_or_query_are_blocked_before_upstream() -> Result<()> {
    let s = setup("secrets_in_body_header_or_query_are_blocked_before_upstream")?;
    let script = [
        curl(&format!(
            "--data-binary 'key id {AWS_KEY} here' https://api.example.test/body"
        )),
        curl(&format!(
            "-H 'x-note: {AWS_KEY}' https://api.example.test/header"
        )),
        curl(&format!("'https://api.example.test/query?k={AWS_KEY}'")),
        curl("--data-binary 'nothing to see' https://api.example.test/clean"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(statuses(&out), ["403", "403", "403", "200"], "{out}");
    assert!(
        out.stdout.contains("aws-access-key-id"),
        "the refusal names the detector: {out}"
    );
    assert!(
        !out.stdout.contains(AWS_KEY),
        "the refusal never echoes the secret: {out}"
    );
    // The body request reached upstream only as a head and a cut body; the header and
    // query requests never left; the clean one arrived whole, after them.
    let reqs = s.api.log().wait_sentinel("/clean", WAIT)?;
    for r in &reqs {
        match r.path() {
            "/clean" => assert_eq!(r.body, b"nothing to see", "{r:#?}"),
            "/body" => assert_ne!(r.body_end, BodyEnd::Complete, "{r:#?}"),
            other => panic!("{other} reached upstream: {r:#?}"),
        }
    }
    audit.expect(json!({"layer": "proxy", "verdict": "allow", "path": "/clean", "status": 200}))?;
    assert!(!s.api.log().saw(AWS_KEY.as_bytes()));
    for path in ["/body", "/header", "/query?…"] {
        audit.expect(
            json!({"layer": "proxy", "verdict": "deny", "reason": "dlp_blocked",
            "path": path, "status": 403, "detectors": ["aws-access-key-id"]}),
        )?;
    }
    assert!(
        !audit.dump().contains(AWS_KEY),
        "the audit log never holds the secret"
    );
    Ok(())
}

#[test]
fn a_secret_split_across_chunks_is_caught_and_never_arrives() -> Result<()> {
    let s = setup("a_secret_split_across_chunks_is_caught_and_never_arrives")?;
    let (a, b) = AWS_KEY.split_at(9);
    // A clean request follows the split one: once it is in the upstream's log, whatever
    // cork let through of the first is there too.
    let script = [
        py(&[
            "post_chunks",
            "https://api.example.test/split",
            "lead text ",
            a,
            b,
            " tail",
        ]),
        curl("--data-binary 'clean after' https://api.example.test/after"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(statuses(&out), ["403", "200"], "{out}");
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "reason": "dlp_blocked",
        "path": "/split", "status": 403, "detectors": ["aws-access-key-id"]}),
    )?;
    // The upstream may have seen the request start (bytes before the secret) but never
    // the secret, and the body did not end normally.
    let reqs = s.api.log().wait_sentinel("/after", WAIT)?;
    assert!(!s.api.log().saw(AWS_KEY.as_bytes()), "{reqs:#?}");
    assert!(
        !s.api.log().saw(a.as_bytes()),
        "no prefix of the secret either: {reqs:#?}"
    );
    for r in reqs.iter().filter(|r| r.path() == "/split") {
        assert_ne!(r.body_end, BodyEnd::Complete, "{r:#?}");
    }
    Ok(())
}

#[test]
fn redact_mode_forwards_the_body_with_the_secret_replaced() -> Result<()> {
    let s = setup("redact_mode_forwards_the_body_with_the_secret_replaced")?;
    let rules = format!("{API_RULE}\n[dlp]\naction = \"redact\"\n");
    let script = curl(&format!(
        "--data-binary 'before {AWS_KEY} after' -H 'x-note: a {AWS_KEY} b' -H 'x-other: fine' \
         'https://api.example.test/r?k={AWS_KEY}'"
    ));
    let (out, audit) = s.run_sh("a", &rules, &script)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    let reqs = s.api.log().wait_settled(1, WAIT)?;
    assert_eq!(reqs[0].body, b"before [REDACTED] after", "{reqs:#?}");
    assert_eq!(reqs[0].header("x-note"), Some("a [REDACTED] b"));
    assert_eq!(reqs[0].header("x-other"), Some("fine"));
    assert_eq!(reqs[0].target, "/r?k=%5BREDACTED%5D");
    assert!(!s.api.log().saw(AWS_KEY.as_bytes()));
    audit.expect(
        json!({"layer": "proxy", "verdict": "allow", "reason": "dlp_redacted",
        "dlp_action": "redact", "detectors": ["aws-access-key-id"]}),
    )?;
    Ok(())
}

#[test]
fn fronting_no_sni_and_unresolved_destinations_are_refused() -> Result<()> {
    let s = setup("fronting_no_sni_and_unresolved_destinations_are_refused")?;
    let rules = format!(
        "{API_RULE}\n[[egress.allow]]\ndomain = \"other.example.test\"\nports = [443]\n\n\
         [[egress.allow]]\ndomain = \"pinned.example.test\"\nports = [443]\n"
    );
    let script = [
        // resolve all three names first, so the kernel allows their addresses
        "getent ahosts api.example.test other.example.test pinned.example.test >/dev/null"
            .to_string(),
        curl("--http1.1 -H 'Host: other.example.test' https://api.example.test/front1"),
        curl("--http2 -H 'Host: other.example.test' https://api.example.test/front2"),
        // an IP literal: no SNI
        curl("-k https://198.51.100.10/nosni"),
        // a name the policy does not know, at an allowed address
        curl("--resolve evil.test:443:198.51.100.10 https://evil.test/unknown"),
        // an allowed name at an address resolved only for another name
        curl("--resolve api.example.test:443:198.51.100.11 https://api.example.test/wrongip"),
        // the sentinels the upstreams' logs are waited on
        curl("https://api.example.test/after"),
        curl("https://pinned.example.test/after"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", &rules, &script)?;
    // 403 for HTTP/1.1 fronting, 421 for HTTP/2 coalescing; the other three never get a
    // response: cork ends the handshake with a TLS alert, which curl reports as exit 35
    // (CURLE_SSL_CONNECT_ERROR) naming the alert.
    assert_eq!(
        statuses(&out),
        ["403", "421", "000", "000", "000", "200", "200"],
        "{out}"
    );
    let rcs: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rc="))
        .collect();
    assert_eq!(rcs, ["0", "0", "35", "35", "35", "0", "0"], "{out}");
    assert_eq!(
        out.stderr.matches("tlsv1 unrecognized name").count(),
        1,
        "no SNI: alert 112: {out}"
    );
    assert_eq!(
        out.stderr.matches("tlsv1 alert access denied").count(),
        2,
        "unknown name, wrong address: alert 49: {out}"
    );
    let reqs = s.api.log().wait_sentinel("/after", WAIT)?;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let reqs = s.pinned.log().wait_sentinel("/after", WAIT)?;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    audit.expect(json!({"layer": "proxy", "reason": "host_mismatch", "status": 403}))?;
    audit.expect(json!({"layer": "proxy", "reason": "host_mismatch", "status": 421}))?;
    audit.expect(json!({"layer": "proxy", "event": "connection", "reason": "no_sni"}))?;
    audit.expect(
        json!({"layer": "proxy", "event": "connection", "sni": "evil.test",
        "reason": "unknown_name"}),
    )?;
    audit.expect(json!({"layer": "proxy", "event": "connection", "sni": API,
        "reason": "not_resolved_for_name", "dst": "198.51.100.11:443"}))?;
    Ok(())
}

#[test]
fn pass_through_rules_relay_tls_untouched() -> Result<()> {
    let s = setup("pass_through_rules_relay_tls_untouched")?;
    let rules =
        "[[egress.allow]]\ndomain = \"pinned.example.test\"\nports = [443]\ninspect = false\n";
    // The client trusts only the upstream's own CA: it works only without interception.
    let script = curl(&format!(
        "--cacert {} https://pinned.example.test/pinned",
        s.ca_path.display()
    ));
    let (out, audit) = s.run_sh("a", rules, &script)?;
    assert!(out.stdout.contains("status=200"), "{out}");
    let reqs = s.pinned.log().wait_settled(1, WAIT)?;
    assert_eq!(reqs[0].path(), "/pinned");
    audit.expect(
        json!({"layer": "proxy", "event": "connection", "mode": "passthrough",
        "verdict": "allow", "sni": "pinned.example.test"}),
    )?;
    audit.expect_none(json!({"layer": "proxy", "event": "request"}))?;
    Ok(())
}

#[test]
fn sse_streams_through_the_proxy() -> Result<()> {
    let s = setup("sse_streams_through_the_proxy")?;
    let script = py(&["sse", "https://api.example.test/sse?n=4&interval_ms=300"]);
    let (out, _audit) = s.run_sh("a", API_RULE, &script)?;
    let times: Vec<u64> = out
        .stdout
        .lines()
        .filter_map(|l| {
            l.rsplit_once(" at ")
                .and_then(|(_, t)| t.trim().parse().ok())
        })
        .collect();
    assert_eq!(times.len(), 4, "{out}");
    assert!(
        times[3] >= times[0] + 600,
        "events arrive as sent, not all at the end: {times:?}"
    );
    Ok(())
}

#[test]
fn git_push_and_unrouted_requests_are_refused() -> Result<()> {
    let s = setup("git_push_and_unrouted_requests_are_refused")?;
    // api: routes; other: no routes (any request but a push).
    let rules = r#"
[[egress.allow]]
domain = "api.example.test"
ports = [443]

[[egress.allow.http]]
methods = ["GET"]
paths = ["/v1/"]

[[egress.allow]]
domain = "other.example.test"
ports = [443]
"#;
    let script = [
        curl("https://api.example.test/v1/ok"),
        curl("https://api.example.test/v1x"),
        curl("-X POST https://api.example.test/v1/post"),
        curl("'https://other.example.test/repo.git/info/refs?service=git-upload-pack'"),
        curl("-X POST https://other.example.test/repo.git/git-receive-pack"),
        curl("'https://other.example.test/repo.git/info/refs?service=git-receive-pack'"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", rules, &script)?;
    assert_eq!(
        statuses(&out),
        ["200", "403", "403", "200", "403", "403"],
        "{out}"
    );
    let paths: Vec<String> = s
        .api
        .log()
        .wait_settled(2, WAIT)?
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(paths, ["/v1/ok", "/repo.git/info/refs"]);
    audit.expect(json!({"layer": "proxy", "reason": "no_route", "path": "/v1x"}))?;
    audit.expect(json!({"layer": "proxy", "reason": "no_route", "method": "POST"}))?;
    audit.expect(json!({"layer": "proxy", "reason": "git_push_refused",
        "path": "/repo.git/git-receive-pack"}))?;
    audit.expect(json!({"layer": "proxy", "reason": "git_push_refused",
        "path": "/repo.git/info/refs?…"}))?;
    Ok(())
}

#[test]
fn credentials_are_swapped_in_upstream_and_never_reach_the_bottle() -> Result<()> {
    let s = setup("credentials_are_swapped_in_upstream_and_never_reach_the_bottle")?;
    let real = "real-acme-key-0d9f8e7c6b5a";
    let rules = format!(
        "{API_RULE}\n[[egress.allow]]\ndomain = \"other.example.test\"\nports = [443]\n{ACME_CREDENTIAL}"
    );
    let script = [
        "echo \"env=$ACME_API_KEY\"".to_string(),
        "env | grep -c real-acme || true".to_string(),
        curl(
            "-H \"x-api-key: $ACME_API_KEY\" 'https://api.example.test/echo-header?name=x-api-key'",
        ),
        // the placeholder sent to another domain is not swapped
        curl("-H \"x-api-key: $ACME_API_KEY\" https://other.example.test/elsewhere"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh_holding("a", &rules, &script, real)?;
    assert!(out.stdout.contains("env=cork-placeholder-acme"), "{out}");
    assert!(
        out.stdout.starts_with("env=cork-placeholder-acme\n0\n"),
        "no real value in the bottle's env: {out}"
    );
    assert!(
        !out.stdout.contains(real),
        "an echoed credential is swapped back: {out}"
    );
    assert!(
        out.stdout.contains("cork-placeholder-acme status=200"),
        "{out}"
    );
    let reqs = s.api.log().wait_settled(2, WAIT)?;
    let first = reqs
        .iter()
        .find(|r| r.path() == "/echo-header")
        .context("echo")?;
    assert_eq!(
        first.header("x-api-key"),
        Some(real),
        "upstream got the real value"
    );
    let second = reqs
        .iter()
        .find(|r| r.path() == "/elsewhere")
        .context("other")?;
    assert_eq!(second.header("x-api-key"), Some("cork-placeholder-acme"));
    audit.expect(
        json!({"layer": "proxy", "path": "/echo-header?…", "credentials": ["ACME_API_KEY"]}),
    )?;
    assert!(
        !audit.dump().contains(real),
        "the audit log never holds the real value"
    );
    Ok(())
}

#[test]
fn quic_to_an_inspected_port_is_refused_in_the_kernel() -> Result<()> {
    let s = setup("quic_to_an_inspected_port_is_refused_in_the_kernel")?;
    let script = "getent ahosts api.example.test >/dev/null; \
        python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n s.sendto(b\"q\", (\"198.51.100.10\", 443)); print(\"sent\")\nexcept OSError as e: print(\"errno\", e.errno)'";
    // UDP is allowed to the name (proto "any"), but not to the port whose TCP is inspected.
    let rules = "[[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\nproto = \"any\"\n";
    let (out, audit) = s.run_sh("a", rules, script)?;
    assert!(out.stdout.contains("errno 1"), "EPERM: {out}");
    audit.expect(
        json!({"layer": "kernel", "verdict": "deny", "reason": "quic_refused",
        "proto": "udp", "dport": 443}),
    )?;
    Ok(())
}

#[test]
fn plain_http_gets_the_same_host_checks() -> Result<()> {
    let s = setup("plain_http_gets_the_same_host_checks")?;
    let rules =
        format!("{API_RULE}\n[[egress.allow]]\ndomain = \"other.example.test\"\nports = [443]\n");
    let script = [
        curl("-4 http://api.example.test/plain"),
        curl("-4 -H 'Host: other.example.test' http://api.example.test/other-port"),
        curl("-4 -H 'Host: evil.test' http://api.example.test/unknown"),
        curl(&format!(
            "-4 --data-binary '{AWS_KEY}' http://api.example.test/secret"
        )),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", &rules, &script)?;
    assert_eq!(statuses(&out), ["200", "403", "403", "403"], "{out}");
    let reqs = s.api.log().wait_settled(1, WAIT)?;
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].sni, None, "plain HTTP upstream");
    audit
        .expect(json!({"layer": "proxy", "mode": "plain", "verdict": "allow", "path": "/plain"}))?;
    audit.expect(json!({"layer": "proxy", "mode": "plain", "reason": "unknown_name"}))?;
    Ok(())
}

#[test]
fn node_and_git_work_unchanged_and_git_push_is_refused() -> Result<()> {
    let s = setup("node_and_git_work_unchanged_and_git_push_is_refused")?;
    let node = "node -e 'require(\"https\").get(\"https://api.example.test/from-node\", r => { \
        let b = \"\"; r.on(\"data\", d => b += d); r.on(\"end\", () => console.log(\"node status=\" + r.statusCode)); \
        }).on(\"error\", e => console.log(\"node error \" + e.message))'";
    let script = [
        node.to_string(),
        // git over smart HTTP: discovery reaches upstream (which is no git server)...
        "git ls-remote https://api.example.test/repo.git 2>&1 | tail -1; echo \"ls rc=$?\""
            .to_string(),
        // ...a push is refused by cork before upstream sees it.
        "cd /tmp && rm -rf cork-push-$$ && git init -q cork-push-$$ && cd cork-push-$$ && \
         git -c user.email=a@b.test -c user.name=a commit -q --allow-empty -m x && \
         git push https://api.example.test/repo.git HEAD:main 2>&1; echo \"push rc=$?\"; \
         cd /tmp && rm -rf cork-push-$$"
            .to_string(),
        // The sentinel the upstream's log is waited on.
        curl("https://api.example.test/after"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    // node is a dependency (`cargo xtask deps` installs Debian's nodejs): missing, it fails.
    assert!(
        out.stdout.contains("node status=200\n"),
        "node in the bottle reached the upstream (is nodejs installed?): {out}"
    );
    // git's own words for a 403 on discovery (http.c, HTTP_NOAUTH is 401 only).
    assert!(
        out.stdout.contains(
            "fatal: unable to access 'https://api.example.test/repo.git/': \
             The requested URL returned error: 403\npush rc=128\n"
        ),
        "git push refused with 403: {out}"
    );
    let reqs = s.api.log().wait_sentinel("/after", WAIT)?;
    assert!(
        reqs.iter()
            .any(|r| r.target == "/repo.git/info/refs?service=git-upload-pack"),
        "git's TLS trusted the bottle CA via GIT_SSL_CAINFO: {reqs:#?}"
    );
    assert!(
        reqs.iter().any(|r| r.path() == "/from-node"),
        "node's TLS trusted the bottle CA: {reqs:#?}"
    );
    assert!(
        !reqs.iter().any(|r| r.target.contains("git-receive-pack")),
        "{reqs:#?}"
    );
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "reason": "git_push_refused",
        "path": "/repo.git/info/refs?…", "status": 403}),
    )?;
    Ok(())
}

#[test]
fn an_unverifiable_upstream_is_a_502_with_a_reason() -> Result<()> {
    let s = setup("an_unverifiable_upstream_is_a_502_with_a_reason")?;
    // No [tls] upstream_ca: the test CA is unknown to cork, so upstream TLS must fail.
    let manifest = format!("{API_RULE}\n[dns]\nupstream = [\"198.51.100.53\"]\n");
    let argv = vec![
        "sh".to_string(),
        "-c".into(),
        curl("https://api.example.test/x"),
    ];
    let (out, audit) = s.world.run_argv("a", &manifest, &argv)?;
    assert!(
        out.stdout.contains("upstream_tls") && out.stdout.contains("status=502"),
        "{out}"
    );
    let ev = audit.expect(json!({"layer": "proxy", "reason": "upstream_tls", "status": 502}))?;
    assert!(
        ev["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{ev}"
    );
    assert!(s.api.log().requests().is_empty());
    Ok(())
}

#[test]
fn connect_and_h2c_upgrades_are_refused() -> Result<()> {
    let s = setup("connect_and_h2c_upgrades_are_refused")?;
    let script = [
        curl("--http1.1 -X CONNECT https://api.example.test/x"),
        curl("--http1.1 -H 'Upgrade: h2c' -H 'Connection: Upgrade, HTTP2-Settings' -H 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA' https://api.example.test/up"),
        curl("--http1.1 -4 --http2 http://api.example.test/h2c"),
        // the sentinel the upstream's log is waited on
        curl("https://api.example.test/after"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(statuses(&out), ["403", "403", "403", "200"], "{out}");
    audit.expect(json!({"layer": "proxy", "reason": "connect_refused"}))?;
    audit.expect(json!({"layer": "proxy", "reason": "upgrade_refused", "path": "/up"}))?;
    audit.expect(
        json!({"layer": "proxy", "reason": "upgrade_refused", "path": "/h2c", "mode": "plain"}),
    )?;
    let reqs = s.api.log().wait_sentinel("/after", WAIT)?;
    assert_eq!(
        reqs.len(),
        1,
        "only the sentinel reached upstream: {reqs:#?}"
    );
    Ok(())
}

/// A minimal WebSocket client (python3 has none built in): `ws URL MSG...` sends each
/// message as a masked text frame (`a|b` as two fragments, a ping between them) and prints
/// each reply: `echo <text>` or `close <code>`.
const PY_WS: &str = r#"
import base64, os, socket, ssl, struct, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
ctx = ssl.create_default_context()
s = ctx.wrap_socket(socket.create_connection((u.hostname, 443), timeout=10), server_hostname=u.hostname)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (u.path, u.hostname, key)).encode())
head = b""
while b"\r\n\r\n" not in head:
    c = s.recv(1)
    if not c:
        break
    head += c
print("handshake", head.split(b"\r\n")[0].decode())
def frame(op, payload, fin=True):
    m = os.urandom(4)
    b = bytes([(0x80 if fin else 0) | op, 0x80 | len(payload)])
    return b + m + bytes(x ^ m[i % 4] for i, x in enumerate(payload))
def recvn(n):
    d = b""
    while len(d) < n:
        c = s.recv(n - len(d))
        if not c:
            raise EOFError
        d += c
    return d
def read():
    while True:
        h = recvn(2)
        op, n = h[0] & 15, h[1] & 127
        if n == 126:
            n = struct.unpack(">H", recvn(2))[0]
        p = recvn(n)
        if op == 10:
            continue
        return op, p
for msg in sys.argv[2:]:
    parts = [p.encode() for p in msg.split("|")]
    try:
        for i, p in enumerate(parts):
            s.sendall(frame(1 if i == 0 else 0, p, fin=(i == len(parts) - 1)))
            if i < len(parts) - 1:
                s.sendall(frame(9, b"ping"))
        op, p = read()
        if op == 8:
            print("close %d" % struct.unpack(">H", p[:2])[0])
            break
        print("echo " + p.decode())
    except (EOFError, OSError) as e:
        print("closed %r" % (e,))
        break
"#;

#[test]
fn websocket_frames_are_inspected_and_a_secret_closes_the_socket() -> Result<()> {
    let s = setup("websocket_frames_are_inspected_and_a_secret_closes_the_socket")?;
    let (a, b) = AWS_KEY.split_at(7);
    let mut script = format!("python3 -c '{}'", PY_WS.replace('\'', r"'\''"));
    for m in [
        "https://api.example.test/ws".to_string(),
        "hello".into(),
        "frag|mented".into(),
        format!("key {a}|{b} end"),
        "after".into(),
    ] {
        script.push_str(&format!(" '{m}'"));
    }
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert!(out.stdout.contains("handshake HTTP/1.1 101"), "{out}");
    assert!(
        out.stdout
            .contains("echo hello\necho fragmented\nclose 1008"),
        "{out}"
    );
    assert!(!out.stdout.contains("after"), "{out}");
    let reqs = s
        .api
        .log()
        .wait_until("two WebSocket messages", WAIT, |r| {
            r.iter().any(|r| r.ws_messages.len() >= 2)
        })?;
    assert!(!s.api.log().saw(AWS_KEY.as_bytes()), "{reqs:#?}");
    assert!(
        !s.api.log().saw(a.as_bytes()),
        "not even the first fragment: {reqs:#?}"
    );
    audit.expect(
        json!({"layer": "proxy", "path": "/ws", "status": 101, "verdict": "deny",
        "reason": "dlp_blocked", "detectors": ["aws-access-key-id"]}),
    )?;
    Ok(())
}

#[test]
fn compressed_request_bodies_are_scanned_decoded() -> Result<()> {
    let s = setup("compressed_request_bodies_are_scanned_decoded")?;
    let script = [
        format!("printf 'gz {AWS_KEY} gz' | gzip -c > /tmp/cork-gz-$$"),
        curl("-H 'Content-Encoding: gzip' --data-binary @/tmp/cork-gz-$$ https://api.example.test/gz"),
        "printf 'harmless text' | gzip -c > /tmp/cork-gz-$$".to_string(),
        curl("-H 'Content-Encoding: gzip' --data-binary @/tmp/cork-gz-$$ https://api.example.test/gz-ok"),
        curl("-H 'Content-Encoding: compress' --data-binary x https://api.example.test/lzw"),
        curl("-H 'Content-Encoding: gzip' --data-binary 'not gzip at all' https://api.example.test/corrupt"),
        // 50 MB of zeros in ~50 KB: past the decoder's 256:1 ratio, a bomb.
        "head -c 50000000 /dev/zero | gzip -c > /tmp/cork-gz-$$".to_string(),
        curl("-H 'Content-Encoding: gzip' --data-binary @/tmp/cork-gz-$$ https://api.example.test/bomb"),
        "rm -f /tmp/cork-gz-$$".to_string(),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(statuses(&out), ["403", "200", "415", "400", "400"], "{out}");
    audit.expect(json!({"layer": "proxy", "path": "/bomb", "reason": "body_undecodable"}))?;
    audit.expect(json!({"layer": "proxy", "path": "/corrupt", "reason": "body_undecodable"}))?;
    audit.expect(
        json!({"layer": "proxy", "path": "/gz", "reason": "dlp_blocked",
        "detectors": ["aws-access-key-id"]}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "path": "/lzw", "reason": "unsupported_content_encoding"}),
    )?;
    let reqs = s.api.log().wait_until("a request for /gz-ok", WAIT, |r| {
        r.iter().any(|r| r.path() == "/gz-ok")
    })?;
    let ok = reqs
        .iter()
        .find(|r| r.path() == "/gz-ok")
        .context("gz-ok")?;
    assert_eq!(
        ok.header("content-encoding"),
        Some("gzip"),
        "forwarded as sent"
    );
    assert!(
        reqs.iter()
            .all(|r| r.path() != "/gz" || r.body_end != BodyEnd::Complete)
    );
    Ok(())
}

#[test]
fn base64_of_a_known_credential_is_blocked_anywhere() -> Result<()> {
    let s = setup("base64_of_a_known_credential_is_blocked_anywhere")?;
    let real = "real-acme-key-0d9f8e7c6b5a";
    let rules = format!("{API_RULE}\n{ACME_CREDENTIAL}");
    // The bottle never holds the real value, but if it got it (say from a file it should
    // not have read), every encoding of it is stopped.
    let b64 = base64_std(real.as_bytes());
    // The clean request after it is what the upstream's log is waited on.
    let script = [
        curl(&format!(
            "--data-binary 'v={b64}' https://api.example.test/b64"
        )),
        curl("--data-binary 'clean after' https://api.example.test/after"),
    ]
    .join("\n");
    let (out, audit) = s.run_sh_holding("a", &rules, &script, real)?;
    assert_eq!(statuses(&out), ["403", "200"], "{out}");
    audit.expect(
        json!({"layer": "proxy", "verdict": "deny", "reason": "dlp_blocked",
        "path": "/b64", "status": 403, "detectors": ["known-secret:ACME_API_KEY"]}),
    )?;
    let reqs = s.api.log().wait_sentinel("/after", WAIT)?;
    assert!(!s.api.log().saw(b64.as_bytes()), "{reqs:#?}");
    for r in reqs.iter().filter(|r| r.path() == "/b64") {
        assert_ne!(r.body_end, BodyEnd::Complete, "{r:#?}");
    }
    Ok(())
}

fn base64_std(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn large_bodies_stream_both_ways_and_h2_meets_an_http1_upstream() -> Result<()> {
    let world = World::new("large_bodies_stream_both_ways_and_h2_meets_an_http1_upstream")?;
    let _dns = world.dns_server("198.51.100.53:53", zone())?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    // This upstream speaks HTTP/1.1 only, like most origins behind a CDN edge.
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(API)
            .http1_only()
            .tls("198.51.100.10:443".parse()?),
    )?;
    let body = format!(
        "{API_RULE}\n[dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    let script = [
        // Plain text, not random: an 11 MB random upload matches some DLP detector's
        // pattern by chance now and then (CI saw a 403), and this test is about streaming.
        "yes 'a large body, streamed through the proxy' | head -c 11184812 > /tmp/cork-big-$$"
            .to_string(),
        curl("-4 --http2 --data-binary @/tmp/cork-big-$$ -o /dev/null https://api.example.test/up"),
        curl("-4 --http2 -o /tmp/cork-down-$$ 'https://api.example.test/bytes?n=8388608'"),
        "wc -c < /tmp/cork-down-$$; rm -f /tmp/cork-big-$$ /tmp/cork-down-$$".to_string(),
        // two requests multiplexed on one HTTP/2 connection, one HTTP/1.1 upstream
        curl("-4 --http2 --parallel --parallel-immediate https://api.example.test/p1 https://api.example.test/p2"),
    ]
    .join("\n");
    let argv = vec!["sh".to_string(), "-c".into(), script];
    let (out, audit) = world.run_argv("a", &body, &argv)?;
    assert_eq!(out.stdout.matches("status=200").count(), 4, "{out}");
    assert!(
        out.stdout.contains("\n8388608\n"),
        "download complete: {out}"
    );
    let reqs = api.log().wait_settled(4, WAIT)?;
    let up = reqs.iter().find(|r| r.path() == "/up").context("upload")?;
    // 11 184 812 bytes (what 8 MiB is in base64), all forwarded and ended cleanly.
    assert_eq!(up.body_len, 11_184_812, "{up:#?}");
    assert_eq!(up.body_end, BodyEnd::Complete);
    assert!(reqs.iter().all(|r| r.version == "HTTP/1.1"));
    let ev = audit.expect(json!({"layer": "proxy", "path": "/up"}))?;
    assert_eq!(ev["bytes_up"], 11_184_812, "{ev}");
    let ev = audit.expect(json!({"layer": "proxy", "path": "/bytes?…"}))?;
    assert_eq!(ev["bytes_down"], 8_388_608, "{ev}");
    Ok(())
}

#[test]
fn custom_detectors_and_log_mode_forward_and_audit() -> Result<()> {
    let s = setup("custom_detectors_and_log_mode_forward_and_audit")?;
    let rules = format!(
        "{API_RULE}\n[dlp]\naction = \"log\"\n\n[[dlp.detectors]]\nname = \"acme-order-id\"\n\
         regex = \"ACME-[0-9]{{12}}\"\nkeywords = [\"ACME-\"]\n"
    );
    let script = [
        curl("--data-binary 'order ACME-123456789012 shipped' https://api.example.test/orders"),
        curl(&format!(
            "-H 'x-note: {AWS_KEY}' https://api.example.test/logged"
        )),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", &rules, &script)?;
    assert_eq!(
        out.stdout.matches("status=200").count(),
        2,
        "log forwards: {out}"
    );
    let reqs = s.api.log().wait_settled(2, WAIT)?;
    assert!(
        reqs.iter()
            .any(|r| r.body == b"order ACME-123456789012 shipped")
    );
    audit.expect(
        json!({"layer": "proxy", "path": "/orders", "verdict": "allow",
        "reason": "dlp_logged", "dlp_action": "log", "detectors": ["acme-order-id"]}),
    )?;
    audit.expect(
        json!({"layer": "proxy", "path": "/logged", "verdict": "allow",
        "reason": "dlp_logged", "detectors": ["aws-access-key-id"]}),
    )?;
    assert!(
        !audit.dump().contains("ACME-123456789012"),
        "findings never carry the match"
    );
    Ok(())
}

#[test]
fn cork_check_refuses_credentials_on_a_domain_that_is_not_inspected() -> Result<()> {
    let world = World::new("cork_check_refuses_credentials_on_a_domain_that_is_not_inspected")?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ndomain = \"pinned.example.test\"\nports = [443]\ninspect = false\n\n\
         [[credentials]]\ndomain = \"pinned.example.test\"\nheader = \"authorization\"\n\
         placeholder = \"cork-placeholder-pin\"\nenv = \"PIN_TOKEN\"\nvalue_env = \"PIN_REAL\"\n",
    )?;
    let out = world.run(world.cork(["check".as_ref(), manifest.as_os_str()]))?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("credentials"), "{out}");
    assert!(
        out.stderr.contains(":12:10: credentials[0].domain"),
        "located: {out}"
    );
    let bad_regex = world.manifest(
        "b",
        "[[dlp.detectors]]\nname = \"greedy\"\nregex = \"x+\"\n",
    )?;
    let out = world.run(world.cork(["check".as_ref(), bad_regex.as_os_str()]))?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("greedy"), "names the detector: {out}");
    Ok(())
}

#[test]
fn an_unprivileged_command_trusts_the_bottle_ca_too() -> Result<()> {
    let s = setup("an_unprivileged_command_trusts_the_bottle_ca_too")?;
    let manifest = s.world.manifest("a", &s.manifest(API_RULE))?;
    let audit_path = s.world.audit_path_for("a");
    let script = format!("id -u; {}", curl("https://api.example.test/as-nobody"));
    let out = s.world.run(s.world.cork([
        "run",
        "--manifest",
        &manifest.display().to_string(),
        "--audit-log",
        &audit_path.display().to_string(),
        "--user",
        "65534:65534",
        "--",
        "sh",
        "-c",
        &script,
    ]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.starts_with("65534\n"), "{out}");
    assert!(
        out.stdout.contains("status=200"),
        "the bundle is readable by any user: {out}"
    );
    let audit = Audit::read(&audit_path)?;
    audit.expect(json!({"layer": "proxy", "path": "/as-nobody", "verdict": "allow"}))?;
    Ok(())
}

#[test]
fn two_bottles_have_their_own_proxies_cas_and_credentials() -> Result<()> {
    use cork_integration::process::Spawned;

    let s = setup("two_bottles_have_their_own_proxies_cas_and_credentials")?;
    let rules = format!("{API_RULE}\n{ACME_CREDENTIAL}");
    let go = s.world.dir().join("go");
    let req = |path: &str| {
        curl(&format!(
            "-H \"x-api-key: $ACME_API_KEY\" https://api.example.test/{path}"
        ))
    };
    // Bottle A makes a request, keeps its proxy alive until B is done, then another.
    let script_a = format!(
        "{}\necho ready\nwhile [ ! -e {} ]; do sleep 0.05; done\n{}\ncat \"$SSL_CERT_FILE\" | tail -n 3",
        req("a1"),
        go.display(),
        req("a2")
    );
    let manifest_a = s.world.manifest("a", &s.manifest(&rules))?;
    let argv_a = vec!["sh".to_string(), "-c".into(), script_a];
    let mut cmd_a = s.world.cork_run(&manifest_a, "a", &argv_a);
    cmd_a.env("ACME_REAL_KEY", "real-key-of-bottle-a-1111");
    let mut bottle_a = Spawned::start(&mut cmd_a)?;
    bottle_a.wait_line("ready", Duration::from_secs(30))?;

    let manifest_b = s.world.manifest("b", &s.manifest(&rules))?;
    let script_b = format!("{}\ncat \"$SSL_CERT_FILE\" | tail -n 3", req("b1"));
    let argv_b = vec!["sh".to_string(), "-c".into(), script_b];
    let mut cmd_b = s.world.cork_run(&manifest_b, "b", &argv_b);
    cmd_b.env("ACME_REAL_KEY", "real-key-of-bottle-b-2222");
    let out_b = s.world.run(&mut cmd_b)?;
    assert_eq!(out_b.code(), 0, "{out_b}");
    std::fs::write(&go, "")?;
    let out_a = bottle_a.finish(Duration::from_secs(60))?;
    assert_eq!(out_a.code(), 0, "{out_a}");
    assert_eq!(out_a.stdout.matches("status=200").count(), 2, "{out_a}");
    assert!(out_b.stdout.contains("status=200"), "{out_b}");

    let reqs = s.api.log().wait_settled(3, WAIT)?;
    let key = |path: &str| {
        reqs.iter()
            .find(|r| r.path() == path)
            .and_then(|r| r.header("x-api-key"))
            .map(str::to_owned)
    };
    assert_eq!(key("/a1").as_deref(), Some("real-key-of-bottle-a-1111"));
    assert_eq!(key("/a2").as_deref(), Some("real-key-of-bottle-a-1111"));
    assert_eq!(key("/b1").as_deref(), Some("real-key-of-bottle-b-2222"));
    // Each bottle trusts its own CA: the last certificate of the two bundles differs.
    let tail = |o: &str| o.lines().rev().nth(1).unwrap_or_default().to_owned();
    assert_ne!(tail(&out_a.stdout), tail(&out_b.stdout), "{out_a}\n{out_b}");
    Ok(())
}

#[test]
fn a_redirected_connection_still_names_the_server_it_dialled() -> Result<()> {
    let s = setup("a_redirected_connection_still_names_the_server_it_dialled")?;
    // getpeername() on a socket the kernel sent to the proxy shows the original
    // destination, in the family the socket used (IPv4, IPv6, IPv4-mapped on IPv6).
    let py = "import socket\n\
        socket.getaddrinfo(\"api.example.test\", 443)\n\
        for fam, addr in [(socket.AF_INET, \"198.51.100.10\"), (socket.AF_INET6, \"2001:db8::10\"), (socket.AF_INET6, \"::ffff:198.51.100.10\")]:\n\
        \x20   c = socket.socket(fam, socket.SOCK_STREAM)\n\
        \x20   c.connect((addr, 443))\n\
        \x20   print(\"peer\", c.getpeername()[0], c.getpeername()[1])\n\
        \x20   c.close()\n";
    let script = format!("python3 -c '{py}'");
    let (out, audit) = s.run_sh("a", API_RULE, &script)?;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "peer 198.51.100.10 443",
            "peer 2001:db8::10 443",
            "peer ::ffff:198.51.100.10 443"
        ],
        "{out}"
    );
    for dst in ["198.51.100.10", "2001:db8::10"] {
        audit.expect(json!({"layer": "kernel", "reason": "proxy_redirect", "dst": dst}))?;
    }
    Ok(())
}

/// The jwt.io example token: a JWT whose header decodes (not a real credential).
const EXAMPLE_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
    SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn per_detector_and_per_route_dlp_actions_and_severities() -> Result<()> {
    let s = setup("per_detector_and_per_route_dlp_actions_and_severities")?;
    let rules = format!(
        "{API_RULE}\n[[egress.allow.http]]\npaths = [\"/idp/\"]\ndlp_skip = [\"aws-access-key-id\"]\n\n\
         [[egress.allow.http]]\npaths = [\"/notes\"]\n\n[dlp.actions]\njwt = \"log\"\n"
    );
    let script = [
        curl(&format!(
            "-H 'x-note: {AWS_KEY}' https://api.example.test/idp/token"
        )),
        curl(&format!(
            "-H 'x-note: {AWS_KEY}' https://api.example.test/notes"
        )),
        curl(&format!(
            "-H 'Authorization: Bearer {EXAMPLE_JWT}' https://api.example.test/notes"
        )),
    ]
    .join("\n");
    let (out, audit) = s.run_sh("a", &rules, &script)?;
    assert_eq!(out.stdout.matches("status=200").count(), 2, "{out}");
    assert_eq!(out.stdout.matches("status=403").count(), 1, "{out}");
    // Skipped on the identity provider's route: no finding at all.
    audit.expect(
        json!({"layer": "proxy", "path": "/idp/token", "verdict": "allow",
        "reason": "allowed", "detectors": []}),
    )?;
    // Blocked elsewhere, rated.
    audit.expect(
        json!({"layer": "proxy", "path": "/notes", "verdict": "deny",
        "reason": "dlp_blocked", "detectors": ["aws-access-key-id"],
        "severities": {"aws-access-key-id": "critical"}}),
    )?;
    // `jwt = "log"`: forwarded and reported.
    audit.expect(
        json!({"layer": "proxy", "path": "/notes", "verdict": "allow",
        "reason": "dlp_logged", "dlp_action": "log", "detectors": ["jwt"],
        "severities": {"jwt": "high"}}),
    )?;
    Ok(())
}

#[test]
fn cork_check_refuses_unknown_detector_ids_where_they_are() -> Result<()> {
    let world = World::new("cork_check_refuses_unknown_detector_ids_where_they_are")?;
    let manifest = world.manifest(
        "a",
        &format!("{API_RULE}\n[[egress.allow.http]]\ndlp_skip = [\"jwt\", \"no-such-detector\"]\n"),
    )?;
    let out = world.run(world.cork(["check".as_ref(), manifest.as_os_str()]))?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(
            ":12:20: egress.allow[0].http[0].dlp_skip[1]: unknown detector \"no-such-detector\""
        ),
        "located: {out}"
    );
    Ok(())
}
