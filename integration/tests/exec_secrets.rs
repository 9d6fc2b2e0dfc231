//! `cork exec` keeps the host's secrets out of a standing bottle as `cork run` does, with
//! the decision split between the daemon (which judges the caller's environment with the
//! bottle's compiled policy and scanner) and the caller (which resolves the masks in its
//! own mount namespace): sensitive names, values a detector recognises, the real value of
//! a credential and copies of it, the manifest's `[env]` and `[files]`, a variable whose
//! name is not UTF-8 — each removed and audited by name in exec's own audit log, never by
//! value, in any log; the credential's placeholder and innocent variables kept.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, Result};
use cork_integration::daemon::TestDaemon;
use cork_integration::fake_homes::{Homes, READER, fake, fake_github_token, p};
use cork_integration::{Audit, World};
use serde_json::{Value, json};

/// The daemon's value of the bottle's credential (it swaps it in on the wire).
const DAEMON_REAL: &str = "daemon-real-acme-value-0001";
/// The caller's own copy of that credential's variable, and a copy under another name.
const CALLER_REAL: &str = "caller-real-acme-value-0002";

#[test]
fn cork_exec_removes_the_callers_secrets_as_cork_run_does() -> Result<()> {
    let world = World::new("cork_exec_removes_the_callers_secrets_as_cork_run_does")?;
    let sock = world.path("cork", "sock").display().to_string();
    let daemon =
        TestDaemon::start_with(&world, &sock, &world.path("daemon-audit", "jsonl"), |cmd| {
            cmd.env("ACME_REAL", DAEMON_REAL);
        })?;
    let result = exec_in_bottle(&world, &sock, &daemon);
    let stopped = daemon.stop()?;
    result?;
    assert_eq!(stopped.code(), 0, "{stopped}");
    Ok(())
}

fn exec_in_bottle(world: &World, sock: &str, daemon: &TestDaemon) -> Result<()> {
    let h = Homes::new(world)?;
    let manifest = world.manifest(
        "sec",
        "[[egress.allow]]\ndomain = \"api.exec.test\"\nports = [443]\n\n\
         [[credentials]]\ndomain = \"api.exec.test\"\nheader = \"x-api-key\"\n\
         placeholder = \"cork-placeholder-acme\"\nenv = \"ACME_API_KEY\"\nvalue_env = \"ACME_REAL\"\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\n\n\
         [env]\npass = [\"KEEP_TOKEN\"]\nscrub = [\"MY_COMPANY_*\"]\n\n\
         [files]\nhide = [\"~/.config/my-tool/token\"]\nallow = [\"~/.ssh/known_hosts\"]\n",
    )?;
    cork_integration::daemon::create_ok(world, sock, &manifest)?;
    let name = world.bottle_name("sec");
    let ghp = fake_github_token("Zq8Xw2Rt5Yu7Hq7Wz3Kd9Vb2Lp9mN4");
    let odd_name = OsString::from_vec(b"ODD_\xffNAME".to_vec());
    let odd_value = OsString::from_vec(b"caf\xe9".to_vec());
    let exec_audit = world.path("exec-audit", "jsonl");
    let paths = [
        "env".to_owned(),
        "environ:/proc/self/environ".to_owned(),
        p(&h.env, ".aws/credentials"),
        p(&h.env, ".config/my-tool/token"),
        p(&h.env, ".ssh/known_hosts"),
        p(&h.env, "notes.txt"),
    ];
    let mut cmd = world.cork([
        "exec".as_ref(),
        name.as_ref(),
        "--socket".as_ref(),
        sock.as_ref(),
        "--audit-log".as_ref(),
        exec_audit.as_os_str(),
        "--".as_ref(),
        "/usr/bin/python3".as_ref(),
        "-c".as_ref(),
        READER.as_ref(),
    ]);
    cmd.args(&paths)
        .env("HOME", &h.env)
        .env_remove("SUDO_USER")
        .env("GITHUB_TOKEN", "fake-github-token-0001")
        .env("KEEP_TOKEN", "kept-on-purpose")
        .env("INNOCENT_LOOKING", &ghp)
        .env("ACME_REAL", CALLER_REAL)
        .env("COPY_OF_IT", CALLER_REAL)
        .env("MY_COMPANY_THING", "company-internal-0003")
        .env(&odd_name, &ghp)
        .env("ODD_VALUE", &odd_value)
        .env("KEEP_ME", "hello");
    let out = world.run(cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;

    for key in ["env", "environ:/proc/self/environ"] {
        let names: Vec<&str> = seen[key]
            .as_array()
            .context("names")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for kept in ["KEEP_TOKEN", "KEEP_ME", "ODD_VALUE", "ACME_API_KEY"] {
            assert!(names.contains(&kept), "{kept} missing ({key}): {names:?}");
        }
        for gone in [
            "GITHUB_TOKEN",
            "INNOCENT_LOOKING",
            "ACME_REAL",
            "COPY_OF_IT",
            "MY_COMPANY_THING",
        ] {
            assert!(!names.contains(&gone), "{gone} reached the bottle ({key})");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("ODD_") && n.ends_with("NAME")),
            "the variable named in bytes reached the bottle ({key}): {names:?}"
        );
    }
    // Masks from the defaults and the manifest's [files], resolved for the caller's $HOME.
    assert_eq!(
        seen[p(&h.env, ".aws/credentials")],
        "err:ENOENT",
        "{seen:#}"
    );
    assert_eq!(
        seen[p(&h.env, ".config/my-tool/token")],
        "file:",
        "{seen:#}"
    );
    assert_eq!(
        seen[p(&h.env, ".ssh/known_hosts")],
        format!("file:{}", fake(&h.env, ".ssh/known_hosts"))
    );
    assert_eq!(
        seen[p(&h.env, "notes.txt")],
        format!("file:{}", fake(&h.env, "notes.txt"))
    );

    let audit = Audit::read(&exec_audit)?;
    for (variable, why) in [
        ("GITHUB_TOKEN", "name matches *_TOKEN".to_owned()),
        (
            "INNOCENT_LOOKING",
            "value recognised by DLP detector github-token".to_owned(),
        ),
        (
            "ACME_REAL",
            "credentials[0].value_env: the proxy sends the real value, the bottle holds the \
             placeholder"
                .to_owned(),
        ),
        (
            "COPY_OF_IT",
            "value recognised by DLP detector known-secret:ACME_API_KEY".to_owned(),
        ),
        (
            "MY_COMPANY_THING",
            "env.scrub[0] \"MY_COMPANY_*\"".to_owned(),
        ),
        (
            "ODD_\u{fffd}NAME",
            "value recognised by DLP detector github-token".to_owned(),
        ),
    ] {
        audit.expect(
            json!({"layer": "cork", "event": "env_scrubbed", "variable": variable,
            "why": why, "bottle": name}),
        )?;
    }
    for kept in ["KEEP_TOKEN", "KEEP_ME", "ODD_VALUE", "ACME_API_KEY"] {
        audit.expect_none(json!({"event": "env_scrubbed", "variable": kept}))?;
    }
    audit.expect(json!({"layer": "cork", "event": "exec_finished", "bottle": name}))?;
    // No value in any log: exec's, the daemon's, or what cork printed.
    let logs = [
        std::fs::read_to_string(&exec_audit)?,
        std::fs::read_to_string(daemon.audit_log())?,
        out.stderr.clone(),
    ];
    for value in [
        CALLER_REAL,
        DAEMON_REAL,
        ghp.as_str(),
        "company-internal-0003",
    ] {
        for log in &logs {
            assert!(!log.contains(value), "a value is in a log: {log}");
        }
    }
    Ok(())
}
