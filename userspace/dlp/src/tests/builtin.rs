//! Each built-in detector: a positive and a near-miss negative.

use super::{ALNUM, detectors_of, fake, scan, scanner};
use crate::{Config, builtin_detectors};

/// (detector, text that must be found, near miss that must not).
fn cases() -> Vec<(&'static str, String, String)> {
    let b = |n| fake(ALNUM, n);
    let upper = |n| fake("AB2CD3EF4GH5JK6LM7", n);
    let letters = |n| fake("aBcDeFgHiJkLmNoPqRsT", n);
    vec![
        (
            "aws-access-key-id",
            format!("id = AKIA{}\n", upper(16)),
            format!("id = AKIA{}\n", upper(15)),
        ),
        (
            "aws-access-key-id",
            format!("ASIA{} ", upper(16)),
            format!("XASIA{} ", upper(16)),
        ),
        (
            "aws-secret-access-key",
            format!("aws_secret_access_key = {}\n", fake("aB3/dE5+gH7", 40)),
            format!("aws_secret_access_key = {}\n", fake("aB3/dE5+gH7", 39)),
        ),
        (
            "aws-secret-access-key",
            format!("{{\"SecretAccessKey\": \"{}\"}}", fake("aB3/dE5+gH7", 40)),
            format!("{{\"SecretAccessKey\": [\"{}\"]}}", fake("aB3/dE5+gH7", 40)),
        ),
        (
            "github-token",
            format!("ghp_{} ", b(36)),
            format!("ghp_{} ", b(35)),
        ),
        (
            "github-token",
            format!("gho_{}", b(36)),
            format!("ghx_{}", b(36)),
        ),
        (
            "github-token",
            format!("x ghs_{}", b(40)),
            format!("xghs_{}", b(40)),
        ),
        (
            "github-token",
            format!("github_pat_{}_{}", b(22), b(59)),
            format!("github_pat_{}_{}", b(21), b(59)),
        ),
        (
            "gitlab-token",
            format!("glpat-{}", b(20)),
            format!("glpat-{} ", b(19)),
        ),
        (
            "anthropic-api-key",
            format!("sk-ant-api03-{}", fake("aB3_dE5-gH7", 93)),
            format!("sk-ant-api-{}", fake("aB3_dE5-gH7", 93)),
        ),
        (
            "openai-api-key",
            format!("sk-{}", b(48)),
            format!("sk-{}", b(47)),
        ),
        (
            "openai-api-key",
            format!("key: sk-proj-{}", fake("aB3_dE5-gH7", 120)),
            format!("key: sk-proj-{}", fake("aB3_dE5-gH7", 39)),
        ),
        (
            "slack-token",
            format!("xoxb-123456789012-{}", b(24)),
            format!("xoxq-123456789012-{}", b(24)),
        ),
        (
            "stripe-live-key",
            format!("sk_live_{}", b(24)),
            format!("sk_test_{}", b(24)),
        ),
        (
            "stripe-live-key",
            format!("rk_live_{}", b(24)),
            format!("rk_live_{}", b(19)),
        ),
        (
            "npm-token",
            format!("npm_{}", b(36)),
            format!("npm_{}", b(37)),
        ),
        (
            "pypi-token",
            format!("pypi-AgEIcHlwaS5vcmc{}", fake("aB3_dE5-gH7", 60)),
            format!("pypi-AgEIcHlwaS5vcmX{}", fake("aB3_dE5-gH7", 60)),
        ),
        (
            "huggingface-token",
            format!("hf_{}", letters(34)),
            format!("hf_{}", letters(33)),
        ),
        (
            "private-key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB...".to_string(),
            "-----BEGIN PUBLIC KEY-----\nMIIB...".to_string(),
        ),
        (
            "private-key",
            "-----BEGIN OPENSSH PRIVATE KEY-----".to_string(),
            "-----BEGIN CERTIFICATE-----".to_string(),
        ),
        (
            "jwt",
            format!("Bearer eyJ{}.eyJ{}.{}", b(20), b(40), b(43)),
            format!("Bearer eyJ{}.eyJ{}", b(20), b(40)),
        ),
        (
            "generic-secret-assignment",
            "DB_PASSWORD=\"q7Xv2LmP9zRt4WkE8s\"".to_string(),
            "DB_PASSWORD=\"correcthorsebatterystaple\"".to_string(),
        ),
        (
            "generic-secret-assignment",
            "client_secret: 9fK2xQ7mLp3ZtR8wVb4N".to_string(),
            "client_secret: aaaaaaaaaaaaaaaa1111".to_string(),
        ),
    ]
}

#[test]
fn each_builtin_finds_its_format_and_not_the_near_miss() {
    let sc = scanner(Config::default());
    for (name, positive, negative) in cases() {
        let found = scan(&sc, positive.as_bytes());
        assert!(
            detectors_of(&found).contains(&name),
            "{name} missed {positive:?}: {found:?}"
        );
        let found = scan(&sc, negative.as_bytes());
        assert!(
            !detectors_of(&found).contains(&name),
            "{name} matched near miss {negative:?}: {found:?}"
        );
    }
}

#[test]
fn every_builtin_has_a_case() {
    let names: Vec<_> = cases().into_iter().map(|c| c.0).collect();
    for d in builtin_detectors() {
        assert!(names.contains(&d.name.as_str()), "{} untested", d.name);
    }
}

#[test]
fn finding_spans_exactly_the_token() {
    let sc = scanner(Config::default());
    let token = format!("ghp_{}", fake(ALNUM, 36));
    let text = format!("token is {token}.");
    let found = scan(&sc, text.as_bytes());
    let f = found
        .iter()
        .find(|f| f.detector == "github-token")
        .expect("found");
    assert_eq!(f.start, 9);
    assert_eq!(f.len, token.len());
}

#[test]
fn ordinary_text_has_no_findings() {
    let sc = scanner(Config::default());
    let text = "The API key rotation guide: set token_ttl = 3600 and password policy to strong.\n\
                See https://example.test/docs/auth?session=expired for details. sk-learn is a \
                library; task-manager runs; npm_config_cache=/tmp/npm.\n";
    assert_eq!(scan(&sc, text.as_bytes()), vec![]);
}
