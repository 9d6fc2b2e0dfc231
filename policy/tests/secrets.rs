//! `[env]` and `[files]`: what they accept, and every refusal with its exact
//! `origin:line:col: path: message`.

use cork_policy::{Coverage, compile};
use std::path::Path;

/// Lines 1-3 of every case; the part under test starts on line 4.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

fn err_after_head(rest: &str) -> String {
    match compile(&format!("{HEAD}{rest}"), "bottle.toml") {
        Ok(p) => panic!("accepted:\n{rest}\n{p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn env_section_is_read() {
    let p = compile(
        &format!(
            "{HEAD}[env]\npass = [\"GITHUB_TOKEN\", \"CI_*\"]\nscrub = [\"MY_COMPANY_SECRET\"]\n"
        ),
        "b",
    )
    .expect("valid [env]");
    assert_eq!(p.env.pass, ["GITHUB_TOKEN", "CI_*"]);
    assert_eq!(p.env.scrub, ["MY_COMPANY_SECRET"]);
    assert_eq!(p.env.passed_by("CI_JOB_TOKEN"), Some("CI_*"));
    assert!(p.warnings.is_empty());
    let none = compile(HEAD, "b").expect("no [env]");
    assert!(none.env.pass.is_empty() && none.env.scrub.is_empty());
}

#[test]
fn env_refusals() {
    let cases = [
        (
            "[env]\npass = [\"GITHUB-TOKEN\"]\n",
            "bottle.toml:5:9: env.pass[0]: \"GITHUB-TOKEN\" is not a variable name: 1-128 \
             letters, digits and `_`, with `*` or `?` as wildcards",
        ),
        (
            "[env]\nscrub = [\"A\", \"\"]\n",
            "bottle.toml:5:15: env.scrub[1]: \"\" is not a variable name",
        ),
        (
            "[env]\npass = [\"X_TOKEN\"]\nscrub = [\"X_TOKEN\"]\n",
            "bottle.toml:6:10: env.scrub[0]: \"X_TOKEN\" is also env.pass[0]; a variable is \
             either kept or removed",
        ),
        (
            "[env]\npass = \"X\"\n",
            "bottle.toml:5:8: env.pass: invalid type: string \"X\", expected a sequence",
        ),
        (
            "[env]\nkeep = []\n",
            "bottle.toml:5:1: env.keep: unknown field `keep`, expected `pass` or `scrub`",
        ),
    ];
    for (rest, want) in cases {
        let got = err_after_head(rest);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}

#[test]
fn pass_of_a_credential_value_env_is_a_warning() {
    let src = format!(
        "{HEAD}[[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\
         [[credentials]]\ndomain = \"api.example.test\"\nheader = \"x-api-key\"\n\
         placeholder = \"cork-placeholder-acme\"\nenv = \"ACME_API_KEY\"\n\
         value_env = \"ACME_REAL_KEY\"\n[env]\npass = [\"ACME_REAL_*\"]\n"
    );
    let p = compile(&src, "bottle.toml").expect("a warning, not an error");
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "bottle.toml:14:9: env.pass[0]: \"ACME_REAL_*\" matches credentials[0].value_env \
          \"ACME_REAL_KEY\": its real value never enters the bottle, which gets the \
          placeholder in \"ACME_API_KEY\" instead"
        ]
    );
}

#[test]
fn files_section_is_read() {
    let p = compile(
        &format!(
            "{HEAD}[files]\nhide = [\"~/.config/my-tool/token\", \"/srv/*/secret\"]\n\
             allow = [\"~/.ssh/known_hosts\"]\n"
        ),
        "b",
    )
    .expect("valid [files]");
    assert_eq!(p.files.hide.len(), 2);
    assert!(p.files.hide[0].in_home);
    assert!(!p.files.hide[1].in_home);
    let home = Path::new("/home/u");
    assert_eq!(
        p.files.allow[0].coverage(Some(home), Path::new("/home/u/.ssh/known_hosts")),
        Coverage::Exact
    );
    assert_eq!(
        p.files.hide[1].coverage(None, Path::new("/srv/a/secret")),
        Coverage::Exact
    );
}

#[test]
fn files_refusals() {
    let cases = [
        (
            "[files]\nhide = [\".aws\"]\n",
            "bottle.toml:5:9: files.hide[0]: \".aws\" is relative; start it with `/` or `~/`",
        ),
        (
            "[files]\nallow = [\"~root/.ssh\"]\n",
            "bottle.toml:5:10: files.allow[0]: \"~root/.ssh\": `~user` is not supported",
        ),
        (
            "[files]\nhide = [\"~/a\", \"~/a/../b\"]\n",
            "bottle.toml:5:16: files.hide[1]: \"~/a/../b\" has a `..` component; write the path \
             it means",
        ),
        (
            "[files]\nhide = [\"/a//b\"]\n",
            "bottle.toml:5:9: files.hide[0]: \"/a//b\" has an empty component (`//`)",
        ),
        (
            "[files]\nhide = [\"~/**/token\"]\n",
            "bottle.toml:5:9: files.hide[0]: \"~/**/token\": `**` is not supported",
        ),
        (
            "[files]\nhide = [\"/\"]\n",
            "bottle.toml:5:9: files.hide[0]: \"/\" is the whole file system",
        ),
        (
            "[files]\nhide = [\"~/.x\"]\nallow = [\"~/.x\"]\n",
            "bottle.toml:6:10: files.allow[0]: \"~/.x\" is also files.hide[0]; a path is either \
             hidden or not",
        ),
        (
            "[files]\nmask = []\n",
            "bottle.toml:5:1: files.mask: unknown field `mask`, expected `hide` or `allow`",
        ),
    ];
    for (rest, want) in cases {
        let got = err_after_head(rest);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}

#[test]
fn credentials_cork_adds_are_checked_like_manifest_ones() {
    let mut p = compile(
        &format!(
            "{HEAD}[[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\
             [[egress.allow]]\ndomain = \"raw.example.test\"\nports = [443]\ninspect = false\n"
        ),
        "b",
    )
    .expect("valid");
    assert!(p.inspects("API.example.test."));
    assert!(!p.inspects("raw.example.test"));
    assert!(!p.inspects("elsewhere.example.test"));
    let cred = |domain: &str, env: &str, placeholder: &str| cork_policy::Credential {
        domain: domain.into(),
        header: "x-api-key".into(),
        placeholder: placeholder.into(),
        env: env.into(),
        value_env: env.into(),
        line: 0,
        col: 0,
    };
    p.add_credential(cred("api.example.test", "K", "cork-placeholder-k-1"))
        .expect("inspected host");
    let e = p
        .add_credential(cred("raw.example.test", "L", "cork-placeholder-l-1"))
        .unwrap_err();
    assert!(e.contains("is not inspected"), "{e}");
    let e = p
        .add_credential(cred("api.example.test", "K", "cork-placeholder-k-2"))
        .unwrap_err();
    assert!(e.contains("already a credential's `env`"), "{e}");
    let e = p
        .add_credential(cred("api.example.test", "M", "cork-placeholder-k-1"))
        .unwrap_err();
    assert!(
        e.contains("is also the placeholder of credentials[0]"),
        "{e}"
    );
    assert_eq!(p.credentials.len(), 1);
}
