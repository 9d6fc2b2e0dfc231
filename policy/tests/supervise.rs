//! `supervise` (hold a request for an operator) and `dlp.approval_timeout`: where the
//! action is accepted, how it ranks against the others, and every refusal with its place.

use std::time::Duration;

use cork_policy::{DEFAULT_APPROVAL_TIMEOUT, DlpAction, Policy, compile};

/// Lines 1-6: a bottle with one inspected rule; the part under test starts on line 7.
const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n\
                    [[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n";

fn policy(rest: &str) -> Policy {
    compile(&format!("{HEAD}{rest}"), "bottle.toml").unwrap_or_else(|e| panic!("{e}\n{rest}"))
}

fn err(rest: &str) -> String {
    match compile(&format!("{HEAD}{rest}"), "bottle.toml") {
        Ok(p) => panic!("accepted:\n{rest}\n{p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn supervise_is_an_action_everywhere_an_action_goes() {
    let p = policy("[dlp]\naction = \"supervise\"\n");
    assert_eq!(p.dlp.action, DlpAction::Supervise);
    assert_eq!(p.dlp.action.as_str(), "supervise");
    assert_eq!(p.dlp.approval_timeout, DEFAULT_APPROVAL_TIMEOUT);
    assert_eq!(DEFAULT_APPROVAL_TIMEOUT, Duration::from_secs(300));

    let p = policy("[dlp]\n[dlp.actions]\njwt = \"supervise\"\n");
    assert_eq!(p.dlp.resolve(None, "jwt"), Some(DlpAction::Supervise));
    assert_eq!(p.dlp.resolve(None, "github-token"), Some(DlpAction::Block));

    let src = "[[egress.allow.http]]\npaths = [\"/v1/\"]\ndlp_action = \"supervise\"\n";
    let p = compile(&format!("{HEAD}{src}"), "bottle.toml").expect("route with supervise");
    let route = &p.domains[0].routes[0];
    assert_eq!(route.dlp_action, Some(DlpAction::Supervise));
}

#[test]
fn supervise_ranks_below_block_and_above_redact() {
    use DlpAction::*;
    assert_eq!(Supervise.max(Block), Block);
    assert_eq!(Block.max(Supervise), Block);
    assert_eq!(Supervise.max(Redact), Supervise);
    assert_eq!(Log.max(Supervise), Supervise);
}

#[test]
fn approval_timeouts() {
    let t = |v: &str| {
        policy(&format!("[dlp]\napproval_timeout = \"{v}\"\n"))
            .dlp
            .approval_timeout
    };
    assert_eq!(t("2s"), Duration::from_secs(2));
    assert_eq!(t("10m"), Duration::from_secs(600));
    assert_eq!(t("1h"), Duration::from_secs(3600));
}

#[test]
fn approval_timeout_refusals_name_their_place() {
    let cases = [
        (
            "five minutes",
            "bottle.toml:8:20: dlp.approval_timeout: \"five minutes\" is not a duration; write \
             a number and a unit, e.g. \"90s\", \"5m\" or \"1h\"",
        ),
        (
            "300",
            "bottle.toml:8:20: dlp.approval_timeout: \"300\" is not a duration; write a number \
             and a unit, e.g. \"90s\", \"5m\" or \"1h\"",
        ),
        (
            "0s",
            "bottle.toml:8:20: dlp.approval_timeout: \"0s\" is out of range: a hold waits more \
             than 0s and at most 1h",
        ),
        (
            "2h",
            "bottle.toml:8:20: dlp.approval_timeout: \"2h\" is out of range: a hold waits more \
             than 0s and at most 1h",
        ),
    ];
    for (value, want) in cases {
        let got = err(&format!("[dlp]\napproval_timeout = \"{value}\"\n"));
        assert_eq!(got, want);
    }
    let got = err("[dlp]\naction = \"hold\"\n");
    assert_eq!(
        got,
        "bottle.toml:8:10: dlp.action: unknown action \"hold\"; expected \"block\", \
         \"supervise\", \"redact\" or \"log\""
    );
}
