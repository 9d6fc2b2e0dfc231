//! `[unix] allow`: what a manifest may list, the located refusals, and the kernel entries.

use cork_policy::{Action, RULE_ID_NONE, UnixName, compile};

const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

fn err(rest: &str) -> String {
    match compile(&format!("{HEAD}{rest}"), "bottle.toml") {
        Ok(p) => panic!("accepted:\n{rest}\n{:?}", p.unix),
        Err(e) => e.to_string(),
    }
}

#[test]
fn listed_names_become_allow_entries_before_the_control_socket_denies() {
    let policy = compile(
        &format!("{HEAD}[unix]\nallow = [\"/tmp/t/app.sock\", \"@app-bus\", \"@nul\\u0000in\"]\n"),
        "bottle.toml",
    )
    .expect("valid [unix]");
    assert_eq!(
        policy.unix.allow,
        [
            UnixName::Path("/tmp/t/app.sock".into()),
            UnixName::Abstract("app-bus".into()),
            UnixName::Abstract("nul\0in".into()),
        ]
    );
    let plan = policy.kernel_plan();
    let entries: Vec<(String, Action, cork_policy::RuleId)> = plan
        .unix
        .iter()
        .map(|e| (e.name.to_string(), e.action, e.rule_id))
        .collect();
    assert_eq!(
        entries,
        [
            ("/tmp/t/app.sock".to_owned(), Action::Allow, 0),
            ("@app-bus".to_owned(), Action::Allow, 1),
            ("@nul\0in".to_owned(), Action::Allow, 2),
            ("/run/cork/cork.sock".to_owned(), Action::Deny, RULE_ID_NONE),
            (
                "/var/run/cork/cork.sock".to_owned(),
                Action::Deny,
                RULE_ID_NONE
            ),
        ]
    );
    assert!(
        plan.to_string()
            .contains("unix /tmp/t/app.sock: allow #0\nunix @app-bus: allow #1\n")
    );
}

#[test]
fn no_unix_table_allows_nothing_but_still_denies_the_control_socket() {
    let plan = compile(HEAD, "bottle.toml").expect("minimal").kernel_plan();
    assert!(plan.unix.iter().all(|e| e.action == Action::Deny));
    assert_eq!(plan.unix.len(), 2);
}

#[test]
fn located_refusals() {
    let cases = [
        (
            "[unix]\nallow = [\"rel.sock\"]\n",
            "bottle.toml:5:10: unix.allow[0]: \"rel.sock\" is relative; write the absolute path \
             the program passes to connect()",
        ),
        (
            "[unix]\nallow = [\"/tmp/a.sock\",\n  \"/run/cork/cork.sock\"]\n",
            "bottle.toml:6:3: unix.allow[1]: \"/run/cork/cork.sock\" is cork's control socket; \
             bottles may never connect to it",
        ),
        (
            "[unix]\nallow = [\"/var/run/cork/cork.sock\"]\n",
            "bottle.toml:5:10: unix.allow[0]: \"/var/run/cork/cork.sock\" is cork's control socket",
        ),
        (
            "[unix]\nallow = [\"\"]\n",
            "bottle.toml:5:10: unix.allow[0]: empty; write an absolute socket path",
        ),
        (
            "[unix]\nallow = [\"@\"]\n",
            "bottle.toml:5:10: unix.allow[0]: `@` alone is an empty abstract name",
        ),
        (
            "[unix]\nallow = [\"/tmp//a.sock\"]\n",
            "bottle.toml:5:10: unix.allow[0]: \"/tmp//a.sock\" has an empty component",
        ),
        (
            "[unix]\nallow = [\"/tmp/../run/a.sock\"]\n",
            "bottle.toml:5:10: unix.allow[0]: \"/tmp/../run/a.sock\" has a `.` or `..` component",
        ),
        (
            "[unix]\nallow = [\"@bus\", \"@bus\"]\n",
            "bottle.toml:5:18: unix.allow[1]: \"@bus\" is already unix.allow[0]",
        ),
        (
            "[unix]\ndeny = [\"/tmp/a.sock\"]\n",
            "bottle.toml:5:1: unix.deny: unknown field `deny`, expected `allow`",
        ),
        (
            "[unix]\nallow = \"/tmp/a.sock\"\n",
            "bottle.toml:5:9: unix.allow: invalid type: string \"/tmp/a.sock\", expected a sequence",
        ),
    ];
    for (rest, want) in cases {
        let got = err(rest);
        assert!(got.starts_with(want), "{rest}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn over_long_names_are_refused_with_the_kernel_limit() {
    let path = format!("/{}", "p".repeat(108));
    assert!(
        err(&format!("[unix]\nallow = [\"{path}\"]\n"))
            .contains("is 109 bytes; a socket path holds at most 108 (sun_path)")
    );
    let name = format!("@{}", "a".repeat(108));
    assert!(
        err(&format!("[unix]\nallow = [\"{name}\"]\n"))
            .contains("the abstract name is 108 bytes; the kernel holds at most 107")
    );
}

#[test]
fn too_many_names_are_refused_at_the_list() {
    let names: Vec<String> = (0..255).map(|i| format!("\"@n{i}\"")).collect();
    let got = err(&format!("[unix]\nallow = [{}]\n", names.join(", ")));
    assert!(
        got.starts_with(
            "bottle.toml:5:9: unix.allow: 255 names, but the kernel map holds at most 254"
        ),
        "{got}"
    );
}
