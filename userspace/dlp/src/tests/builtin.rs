//! Built-in detectors: hand-picked positives and near misses (the corpus covers every
//! detector; these pin down checks and spans).

use super::corpus::generate::{Rng, expand};
use super::{ALNUM, detectors_of, fake, scan, scanner};
use crate::Config;

fn issued(template: &str, seed: u64) -> String {
    expand(template, &mut Rng::new(seed))
}

/// (detector, text that must be found, near miss that must not).
fn cases() -> Vec<(&'static str, String, String)> {
    let b = |n| fake(ALNUM, n);
    let upper = |n| fake("AB2CD3EF4GH5JK6LM7", n);
    let ghp = issued("{crc:ghp}", 1);
    let mut bad_crc = ghp.clone();
    bad_crc.replace_range(10..11, if &ghp[10..11] == "a" { "b" } else { "a" });
    vec![
        (
            "aws-access-key-id",
            format!("id = AKIA{}\n", upper(16)),
            format!("id = AKIA{}\n", upper(15)),
        ),
        // 8 and 9 are not in the key id alphabet.
        (
            "aws-access-key-id",
            format!("ASIA{} ", upper(16)),
            format!("ASIA{}89 ", upper(14)),
        ),
        (
            "aws-secret-access-key",
            format!(
                "aws_secret_access_key = {}\n",
                fake("aB3/dE5+gH7kLmNpQ", 40)
            ),
            format!(
                "aws_secret_access_key = {}\n",
                fake("aB3/dE5+gH7kLmNpQ", 39)
            ),
        ),
        ("github-token", format!("{ghp} "), format!("{bad_crc} ")),
        (
            "github-token",
            issued("{crc:gho}", 2),
            format!("ghx_{}", b(36)),
        ),
        (
            "github-fine-grained-pat",
            format!("github_pat_{}_{}", b(22), b(59)),
            format!("github_pat_{}_{}", b(21), b(59)),
        ),
        (
            "npm-token",
            issued("{crc:npm}", 3),
            format!("npm_{}", b(36)),
        ),
        (
            "gitlab-token",
            format!("glpat-{}", b(20)),
            format!("glpat-{} ", b(19)),
        ),
        (
            "anthropic-api-key",
            format!("sk-ant-api03-{}AA", fake("aB3_dE5-gH7", 93)),
            format!("sk-ant-api-{}", fake("aB3_dE5-gH7", 93)),
        ),
        (
            "openai-api-key",
            format!("key: sk-proj-{}", fake("aB3_dE5-gH7", 120)),
            format!("key: sk-proj-{}", fake("aB3_dE5-gH7", 39)),
        ),
        (
            "openai-legacy-api-key",
            format!("sk-{}T3BlbkFJ{}", b(20), b(20)),
            format!("sk-{}", b(48)),
        ),
        (
            "slack-token",
            format!("xoxb-284019375612-{}", b(24)),
            format!("xoxq-284019375612-{}", b(24)),
        ),
        (
            "stripe-live-key",
            format!("sk_live_{}", b(24)),
            format!("sk_live_{}", "x".repeat(24)),
        ),
        (
            "jwt",
            issued("Bearer {jwt}", 4),
            format!("Bearer eyJ{}.eyJ{}.{}", b(20), b(40), b(43)),
        ),
        (
            "private-key-rsa",
            issued("{pem:RSA PRIVATE KEY}", 5),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----".into(),
        ),
        (
            "private-key-openssh",
            issued("{openssh}", 6),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n<key>".into(),
        ),
        ("age-secret-key", issued("{age}", 7), {
            let mut k = issued("{age}", 7);
            let last = if k.ends_with('Q') { "P" } else { "Q" };
            k.replace_range(k.len() - 1.., last);
            k
        }),
        (
            "credit-card-number",
            "card_number: 4539 1488 0343 6467".into(),
            "card_number: 4539 1488 0343 6468".into(),
        ),
        (
            "generic-secret-assignment",
            "DB_PASSWORD=\"q7Xv2LmP9zRt4WkE8s\"".into(),
            "DB_PASSWORD=\"correcthorsebatterystaple\"".into(),
        ),
        (
            "generic-secret-assignment",
            "client_secret: 9fK2xQ7mLp3ZtR8wVb4N".into(),
            "csrf_token: 9fK2xQ7mLp3ZtR8wVb4N".into(),
        ),
        (
            "generic-secret-assignment",
            "apiKey = 'Zq3xV8mK2pL9wR4t'".into(),
            "cache_key = '3f786850e387550fdab836ed7e6dc881de23001b'".into(),
        ),
        (
            "postgres-connection-string",
            "postgres://app:Xk29vLq8Zp@db.test/app".into(),
            "postgres://app:${DB_PASSWORD}@db.test/app".into(),
        ),
        (
            "http-basic-auth",
            "Authorization: Basic YWxpY2U6WGsyOXZMcThacA==".into(),
            "Authorization: Basic dXNlcjpwYXNzd29yZA==".into(),
        ),
    ]
}

#[test]
fn builtins_find_their_format_and_not_the_near_miss() {
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
fn finding_spans_exactly_the_token() {
    let sc = scanner(Config::default());
    let token = issued("{crc:ghp}", 9);
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

#[test]
fn pem_blocks_in_json_strings_are_found() {
    let sc = scanner(Config::default());
    let pem = issued("{pem:PRIVATE KEY}", 11).replace('\n', "\\n");
    let json = format!("{{\"type\": \"service_account\", \"private_key\": \"{pem}\\n\"}}");
    assert!(detectors_of(&scan(&sc, json.as_bytes())).contains(&"private-key"));
}
