//! `[tls]`, `[[credentials]]` and `[dlp]`: every refusal with its exact place, the
//! compiled form, and `credentials_for`.

use std::path::PathBuf;

use cork_policy::{
    CustomDetector, DlpAction, DlpConfig, Manifest, Policy, TlsConfig, compile, parse_manifest,
};

/// Lines 1-3 of every case, then an inspected allow rule for `api.example.test` (lines
/// 4-6) and an uninspected one for `pinned.example.test` (7-10); the part under test
/// starts on line 11.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n\
                    [[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\
                    [[egress.allow]]\ndomain = \"pinned.example.test\"\nports = [443]\n\
                    inspect = false\n";

fn policy(rest: &str) -> Policy {
    compile(&format!("{HEAD}{rest}"), "bottle.toml").unwrap_or_else(|e| panic!("{e}\n{rest}"))
}

fn err(rest: &str) -> String {
    match compile(&format!("{HEAD}{rest}"), "bottle.toml") {
        Ok(p) => panic!("accepted:\n{rest}\n{p:?}"),
        Err(e) => e.to_string(),
    }
}

/// A complete credential entry with `key` replaced by `line` (or dropped when empty).
fn credential(key: &str, line: &str) -> String {
    let keys = [
        ("domain", "domain = \"api.example.test\""),
        ("header", "header = \"x-api-key\""),
        ("placeholder", "placeholder = \"cork-placeholder-acme\""),
        ("env", "env = \"ACME_API_KEY\""),
        ("value_env", "value_env = \"ACME_REAL_KEY\""),
    ];
    let mut out = String::from("[[credentials]]\n");
    for (k, default) in keys {
        let text = if k == key { line } else { default };
        if !text.is_empty() {
            out += text;
            out.push('\n');
        }
    }
    out
}

#[test]
fn defaults() {
    let p = policy("");
    assert_eq!(p.tls, TlsConfig::default());
    assert!(p.tls.upstream_ca.is_empty());
    assert!(p.credentials.is_empty());
    assert_eq!(p.dlp, DlpConfig::default());
    assert_eq!(p.dlp.action, DlpAction::Block);
}

#[test]
fn compiled_form() {
    let p = policy(
        "[tls]\nupstream_ca = [\"/etc/cork/a.pem\", \"/etc/cork/b.pem\", \"/etc/cork/a.pem\"]\n\
         [[credentials]]\ndomain = \"API.Example.Test.\"\nheader = \"X-Api-Key\"\n\
         placeholder = \"cork-placeholder-acme\"\nenv = \"ACME_API_KEY\"\n\
         value_env = \"ACME_REAL_KEY\"\n\
         [[credentials]]\ndomain = \"api.example.test\"\nheader = \"authorization\"\n\
         placeholder = \"Bearer-cork-placeholder-2\"\nenv = \"TOKEN\"\nvalue_env = \"REAL\"\n\
         [dlp]\naction = \"redact\"\n\
         [[dlp.detectors]]\nname = \"acme-order-id\"\nregex = \"ACME-[0-9]{12}\"\n\
         keywords = [\"ACME-\"]\n\
         [[dlp.detectors]]\nname = \"x\"\nregex = \"x{1,8}\"\n",
    );
    assert_eq!(
        p.tls.upstream_ca,
        [
            PathBuf::from("/etc/cork/a.pem"),
            PathBuf::from("/etc/cork/b.pem")
        ]
    );
    let c = &p.credentials[0];
    assert_eq!(
        (
            c.domain.as_str(),
            c.header.as_str(),
            c.placeholder.as_str(),
            c.env.as_str(),
            c.value_env.as_str(),
            c.line,
            c.col
        ),
        (
            "api.example.test",
            "x-api-key",
            "cork-placeholder-acme",
            "ACME_API_KEY",
            "ACME_REAL_KEY",
            14,
            10
        )
    );
    assert_eq!(p.dlp.action, DlpAction::Redact);
    assert_eq!(
        p.dlp.detectors,
        [
            CustomDetector {
                name: "acme-order-id".into(),
                regex: "ACME-[0-9]{12}".into(),
                keywords: vec!["ACME-".into()],
                line: 29,
                col: 9,
            },
            CustomDetector {
                name: "x".into(),
                regex: "x{1,8}".into(),
                keywords: vec![],
                line: 33,
                col: 9,
            },
        ]
    );
    for action in ["block", "log"] {
        let p = policy(&format!("[dlp]\naction = \"{action}\"\n"));
        assert_eq!(format!("{:?}", p.dlp.action).to_lowercase(), action);
    }

    let envs =
        |host: &str| -> Vec<&str> { p.credentials_for(host).map(|c| c.env.as_str()).collect() };
    assert_eq!(envs("api.example.test"), ["ACME_API_KEY", "TOKEN"]);
    assert_eq!(envs("API.EXAMPLE.TEST."), ["ACME_API_KEY", "TOKEN"]);
    assert!(envs("x.api.example.test").is_empty());
    assert!(envs("pinned.example.test").is_empty());
    assert!(envs("a..b").is_empty());
}

#[test]
fn tls_errors() {
    let cases = [
        (
            "[tls]\nupstream_ca = []\n",
            "bottle.toml:12:15: tls.upstream_ca: an empty list adds no root; omit \
             `upstream_ca` to trust the system roots only",
        ),
        (
            "[tls]\nupstream_ca = [\"/ok.pem\", \"certs/ca.pem\"]\n",
            "bottle.toml:12:27: tls.upstream_ca[1]: \"certs/ca.pem\" is not an absolute path; \
             write the full path of a PEM file, such as \"/etc/cork/extra-ca.pem\"",
        ),
        (
            "[tls]\nupstream_ca = [\"\"]\n",
            "bottle.toml:12:16: tls.upstream_ca[0]: \"\" is not an absolute path; write the \
             full path of a PEM file, such as \"/etc/cork/extra-ca.pem\"",
        ),
        (
            "[tls]\nroots = []\n",
            "bottle.toml:12:1: tls.roots: unknown field `roots`, expected `upstream_ca`",
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err(rest), want, "{rest}");
    }
}

#[test]
fn credential_missing_keys() {
    for (key, what) in [
        ("domain", "the host the real value is sent to"),
        ("header", "the header the real value goes in"),
        ("placeholder", "what the bottle holds and sends instead"),
        ("env", "the variable set to the placeholder in the bottle"),
        (
            "value_env",
            "the variable of cork's environment holding the real value",
        ),
    ] {
        assert_eq!(
            err(&credential(key, "")),
            format!(
                "bottle.toml:11:1: credentials[0].{key}: missing; add `{key} = \"...\"`, {what}"
            )
        );
    }
}

#[test]
fn credential_value_errors() {
    let not_inspected = "is not inspected: ";
    let cases = [
        (
            credential("domain", "domain = \"*.example.test\""),
            "bottle.toml:12:10: credentials[0].domain: \"*.example.test\" is a wildcard; a \
             credential goes to exactly one host, since every name under a wildcard would \
             receive the real value (add one entry per host)"
                .to_owned(),
        ),
        (
            credential("domain", "domain = \"bad_name.test\""),
            "bottle.toml:12:10: credentials[0].domain: \"bad_name.test\" has '_' in a label; \
             labels use letters, digits and `-`"
                .to_owned(),
        ),
        (
            credential("domain", "domain = \"other.example.test\""),
            format!(
                "bottle.toml:12:10: credentials[0].domain: \"other.example.test\" \
                 {not_inspected}no domain allow rule matches it; the real value is only ever \
                 sent through the inspecting proxy"
            ),
        ),
        (
            credential("domain", "domain = \"pinned.example.test\""),
            format!(
                "bottle.toml:12:10: credentials[0].domain: \"pinned.example.test\" \
                 {not_inspected}egress.allow[1], the rule that allows it, inspects no port (it \
                 has `inspect = false`, or covers neither TCP port 80 nor 443 without \
                 `inspect = true`); the real value is only ever sent through the inspecting \
                 proxy"
            ),
        ),
        (
            credential("header", "header = \"x api key\""),
            "bottle.toml:13:10: credentials[0].header: \"x api key\" is not a header name \
             (letters, digits and !#$%&'*+-.^_`|~)"
                .to_owned(),
        ),
        (
            credential("header", "header = \"Transfer-Encoding\""),
            "bottle.toml:13:10: credentials[0].header: \"Transfer-Encoding\" frames, routes or \
             belongs to a single hop of the request, so the proxy owns it; a credential cannot \
             go in it"
                .to_owned(),
        ),
        (
            credential("placeholder", "placeholder = \"short\""),
            "bottle.toml:14:15: credentials[0].placeholder: \"short\" is not 8-256 bytes of \
             printable ASCII without white space; the proxy finds it byte for byte in headers, \
             and a short one could occur by chance"
                .to_owned(),
        ),
        (
            credential("env", "env = \"1ACME\""),
            "bottle.toml:15:7: credentials[0].env: \"1ACME\" is not an environment variable \
             name: 1-128 letters, digits and `_`, not starting with a digit"
                .to_owned(),
        ),
        (
            credential("value_env", "value_env = \"ACME-REAL\""),
            "bottle.toml:16:13: credentials[0].value_env: \"ACME-REAL\" is not an environment \
             variable name: 1-128 letters, digits and `_`, not starting with a digit"
                .to_owned(),
        ),
        (
            credential("value_env", "value_env = \"ACME_API_KEY\""),
            "bottle.toml:16:13: credentials[0].value_env: \"ACME_API_KEY\" is also `env`; name \
             the variable holding the real value differently from the one the bottle sees, so \
             that neither is mistaken for the other"
                .to_owned(),
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err(&rest), want, "{rest}");
    }

    // A denied host names the deny rule.
    let got = err(&format!(
        "[[egress.deny]]\ndomain = \"api.example.test\"\n{}",
        credential("", "")
    ));
    assert!(
        got.starts_with(
            "bottle.toml:14:10: credentials[0].domain: \"api.example.test\" is not inspected: \
             egress.deny[0] denies it;"
        ),
        "{got}"
    );
}

#[test]
fn credentials_clash_with_each_other() {
    let second = |placeholder: &str, env: &str| {
        format!(
            "{}[[credentials]]\ndomain = \"api.example.test\"\nheader = \"x-other\"\n\
             placeholder = \"{placeholder}\"\nenv = \"{env}\"\nvalue_env = \"OTHER_REAL\"\n",
            credential("", "")
        )
    };
    let cases = [
        (
            second("cork-placeholder-acme", "OTHER"),
            "bottle.toml:20:15: credentials[1].placeholder: \"cork-placeholder-acme\" is also \
             the placeholder of credentials[0]; the proxy could not tell which real value to \
             put in",
        ),
        (
            second("placeholder", "OTHER"),
            "bottle.toml:20:15: credentials[1].placeholder: \"placeholder\" is part of the \
             placeholder of credentials[0]; the proxy could not tell which real value to put in",
        ),
        (
            second("cork-placeholder-acme-2", "OTHER"),
            "bottle.toml:20:15: credentials[1].placeholder: \"cork-placeholder-acme-2\" \
             contains the placeholder of credentials[0]; the proxy could not tell which real \
             value to put in",
        ),
        (
            second("cork-placeholder-b", "ACME_API_KEY"),
            "bottle.toml:21:7: credentials[1].env: \"ACME_API_KEY\" is also the `env` of \
             credentials[0]; the bottle has one value per variable",
        ),
    ];
    for (rest, want) in cases {
        assert_eq!(err(&rest), want, "{rest}");
    }
}

#[test]
fn hand_built_manifests_are_checked_too() {
    let src = format!("{HEAD}{}", credential("", ""));
    let mut m: Manifest = parse_manifest(&src, "bottle.toml").unwrap();
    m.credentials[0].domain = "pinned.example.test".into();
    let e = Policy::from_manifest(m).unwrap_err();
    assert_eq!(
        (e.line, e.col, e.path.as_str()),
        (12, 10, "credentials[0].domain")
    );
    assert!(e.message.contains("is not inspected"), "{e}");
}

#[test]
fn dlp_errors() {
    let det = |body: &str| format!("[[dlp.detectors]]\n{body}");
    let cases = [
        (
            "[dlp]\naction = \"drop\"\n".to_owned(),
            "bottle.toml:12:10: dlp.action: unknown action \"drop\"; expected \"block\", \
             \"supervise\", \"redact\" or \"log\"",
        ),
        (
            det("regex = \"x\"\n"),
            "bottle.toml:11:1: dlp.detectors[0].name: missing; add `name = \"...\"`, the name \
             findings report",
        ),
        (
            det("name = \"x\"\n"),
            "bottle.toml:11:1: dlp.detectors[0].regex: missing; add `regex = \"...\"`, the \
             pattern of the secret",
        ),
        (
            det("name = \"Order_ID\"\nregex = \"x\"\n"),
            "bottle.toml:12:8: dlp.detectors[0].name: \"Order_ID\" is not a detector name: use \
             1-64 lowercase letters, digits and `-`, starting with a letter or digit",
        ),
        (
            det("name = \"x\"\nregex = \"\"\n"),
            "bottle.toml:13:9: dlp.detectors[0].regex: an empty pattern matches everywhere; \
             write the pattern of the secret",
        ),
        (
            det("name = \"x\"\nregex = \"x\"\nkeywords = []\n"),
            "bottle.toml:14:12: dlp.detectors[0].keywords: an empty list is ambiguous; omit \
             `keywords` to run the regex everywhere",
        ),
        (
            det("name = \"x\"\nregex = \"x\"\nkeywords = [\"a\", \"\"]\n"),
            "bottle.toml:14:18: dlp.detectors[0].keywords[1]: an empty keyword occurs \
             everywhere; remove it",
        ),
        (
            format!(
                "{}{}",
                det("name = \"x\"\nregex = \"a\"\n"),
                det("name = \"x\"\nregex = \"b\"\n")
            ),
            "bottle.toml:15:8: dlp.detectors[1].name: \"x\" is also the name of \
             dlp.detectors[0]; findings must say which detector fired",
        ),
        (
            det("name = \"x\"\nregex = \"x\"\nwords = []\n"),
            "bottle.toml:14:1: dlp.detectors[0].words: unknown field `words`, expected one of",
        ),
    ];
    for (rest, want) in cases {
        let got = err(&rest);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
    let long = "a".repeat(64);
    let p = policy(&det(&format!("name = \"{long}\"\nregex = \"x\"\n")));
    assert_eq!(p.dlp.detectors[0].name, long);
    assert!(
        err(&det(&format!("name = \"{long}a\"\nregex = \"x\"\n"))).contains("not a detector name")
    );
}

#[test]
fn dlp_actions_per_detector_and_per_route() {
    let src = "[[egress.allow]]\ndomain = \"id.example.test\"\nports = [443]\ninspect = true\n\n\
               [[egress.allow.http]]\npaths = [\"/token\"]\ndlp_skip = [\"jwt\"]\n\n\
               [[egress.allow.http]]\npaths = [\"/logs\"]\ndlp_action = \"log\"\n\n\
               [dlp]\naction = \"block\"\n\n[dlp.actions]\nstripe-test-key = \"log\"\ngeneric-secret-assignment = \"off\"\n";
    let p = policy(src);
    let rule = p
        .domains
        .iter()
        .find(|d| !d.routes.is_empty())
        .expect("the inspected rule");
    let (token, logs) = (&rule.routes[0], &rule.routes[1]);
    let d = &p.dlp;
    assert_eq!(d.resolve(None, "jwt"), Some(DlpAction::Block));
    assert_eq!(d.resolve(Some(token), "jwt"), None);
    assert_eq!(
        d.resolve(Some(token), "github-token"),
        Some(DlpAction::Block)
    );
    assert_eq!(d.resolve(Some(logs), "github-token"), Some(DlpAction::Log));
    assert_eq!(d.resolve(None, "stripe-test-key"), Some(DlpAction::Log));
    assert_eq!(d.resolve(None, "generic-secret-assignment"), None);
    assert_eq!(d.resolve(Some(logs), "generic-secret-assignment"), None);
    // Known secrets always get the global action.
    assert_eq!(
        d.resolve(Some(token), "known-secret:X"),
        Some(DlpAction::Block)
    );
    assert_eq!(
        d.resolve(Some(logs), "known-secret:X"),
        Some(DlpAction::Block)
    );
    let refs: Vec<(String, usize, usize)> = p
        .dlp_detector_refs()
        .iter()
        .map(|r| (r.key.clone(), r.line, r.col))
        .collect();
    assert_eq!(
        refs,
        [
            ("dlp.actions.generic-secret-assignment".to_string(), 29, 29),
            ("dlp.actions.stripe-test-key".to_string(), 28, 19),
            ("egress.allow[2].http[0].dlp_skip[0]".to_string(), 18, 13),
        ]
    );
}

#[test]
fn dlp_action_errors_are_located() {
    let e = err("[dlp.actions]\njwt = \"drop\"\n");
    assert!(
        e.starts_with("bottle.toml:12:7: dlp.actions.jwt: unknown action \"drop\""),
        "{e}"
    );
    let e = err("[dlp.actions]\n\"Bad_Id\" = \"log\"\n");
    assert!(
        e.starts_with("bottle.toml:12:12: dlp.actions.Bad_Id:"),
        "{e}"
    );
    let e = err(
        "[[egress.allow]]\ndomain = \"a.example.test\"\nports = [443]\ninspect = true\n\
         [[egress.allow.http]]\ndlp_action = \"maybe\"\n",
    );
    assert!(
        e.starts_with("bottle.toml:16:14: egress.allow[2].http[0].dlp_action:"),
        "{e}"
    );
}

/// A policy that compiled is one the scanner takes: custom detectors are compiled, and
/// detector ids checked, while the manifest compiles — each refusal in its place.
#[test]
fn detectors_are_checked_while_the_manifest_compiles() {
    assert_eq!(
        err("[[dlp.detectors]]\nname = \"loose\"\nregex = \"x+\"\n"),
        "bottle.toml:13:9: dlp.detectors[0].regex: DLP detector \"loose\": matches may be \
         longer than 4096 bytes (or unbounded); bound every repetition, e.g. {8,256} instead \
         of + or *"
    );
    assert!(
        err("[dlp.actions]\nno-such-detector = \"log\"\n")
            .starts_with("bottle.toml:12:20: dlp.actions.no-such-detector: unknown detector"),
        "{}",
        err("[dlp.actions]\nno-such-detector = \"log\"\n")
    );
    // A built-in id and the manifest's own detector are both known.
    policy(
        "[dlp.actions]\njwt = \"log\"\nmine = \"off\"\n\
         [[dlp.detectors]]\nname = \"mine\"\nregex = \"MINE-[0-9]{6}\"\n",
    );
}
