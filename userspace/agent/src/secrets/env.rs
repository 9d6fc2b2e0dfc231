//! Which variables of the invoking environment the bottled command does not get, and why:
//! cork's default list of sensitive names, the DLP scanner's verdict on each value, and
//! the manifest's `[env]` exceptions and additions. Pure: the caller hands the variables
//! in and removes what this returns.

use std::ffi::{OsStr, OsString};

use cork_dlp::{self as dlp, KnownSecret, Scanner};
use cork_policy::{Policy, glob_match};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// Names that mark a variable sensitive, matched case-insensitively against the name in
/// upper case. Cloud credentials are covered by these too (`AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_CLIENT_SECRET`,
/// `GH_TOKEN`, `NPM_TOKEN`...); `SSH_AUTH_SOCK` leads to a live SSH agent, which holds
/// keys as good as the files.
pub const SENSITIVE_NAMES: &[&str] = &[
    "*_TOKEN",
    "TOKEN",
    "*_API_KEY",
    "API_KEY",
    "*_APIKEY",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_PASSPHRASE",
    "*_PAT",
    "*_PRIVATE_KEY",
    "*_ACCESS_KEY",
    "*_ACCESS_KEY_ID",
    "*_CREDENTIALS",
    "*_CREDENTIAL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_CLIENT_SECRET",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "NPM_TOKEN",
    "SSH_AUTH_SOCK",
    "DOCKER_AUTH_CONFIG",
];

/// Why a variable is removed. `Display` is what the audit event says. It travels from the
/// daemon to `cork exec` (see [`super::wire`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrubReason {
    /// The real value of a `[[credentials]]` entry: the proxy swaps it in, the bottle only
    /// ever holds the placeholder. `pass` cannot keep it.
    CredentialValue { index: usize },
    /// `env.scrub[index]` matches the name.
    Manifest { index: usize, pattern: String },
    /// One of [`SENSITIVE_NAMES`] matches the name.
    Name {
        #[serde(deserialize_with = "sensitive_name")]
        pattern: Static,
    },
    /// A DLP detector recognises the value.
    Value { detector: String },
}

impl std::fmt::Display for ScrubReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrubReason::CredentialValue { index } => write!(
                f,
                "credentials[{index}].value_env: the proxy sends the real value, the bottle \
                 holds the placeholder"
            ),
            ScrubReason::Manifest { index, pattern } => {
                write!(f, "env.scrub[{index}] {pattern:?}")
            }
            ScrubReason::Name { pattern } => write!(f, "name matches {pattern}"),
            ScrubReason::Value { detector } => {
                write!(f, "value recognised by DLP detector {detector}")
            }
        }
    }
}

/// `&'static str` by another name: serde would take a field spelled `&'static str` as
/// borrowed from the input (which must then outlive `'static`); this one is read back by
/// [`sensitive_name`] instead.
type Static = &'static str;

/// The entry of [`SENSITIVE_NAMES`] a [`ScrubReason::Name`] names, read back; anything
/// else is refused.
fn sensitive_name<'de, D: Deserializer<'de>>(de: D) -> Result<&'static str, D::Error> {
    let text = String::deserialize(de)?;
    SENSITIVE_NAMES
        .iter()
        .copied()
        .find(|p| *p == text)
        .ok_or_else(|| D::Error::custom(format!("{text:?} is not one of cork's sensitive names")))
}

/// One variable to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    #[serde(with = "super::wire::os_string")]
    pub name: OsString,
    pub why: ScrubReason,
    /// The host on which the proxy swaps a placeholder for it, when cork holds it as a
    /// provider key (see [`super::providers`]); the bottle gets the placeholder.
    pub swapped_on: Option<String>,
}

impl Removal {
    /// The short tag of [`ScrubReason`]: `credential`, `manifest`, `name` or `value`.
    pub fn kind(&self) -> &'static str {
        match self.why {
            ScrubReason::CredentialValue { .. } => "credential",
            ScrubReason::Manifest { .. } => "manifest",
            ScrubReason::Name { .. } => "name",
            ScrubReason::Value { .. } => "value",
        }
    }
}

/// Decides, for each of `vars` (the invoking environment), whether the command gets it.
/// Returns the removals in the order of `vars`. `scanner` recognises values; build it with
/// [`value_scanner`].
pub fn scrub(policy: &Policy, vars: &[(OsString, OsString)], scanner: &Scanner) -> Vec<Removal> {
    vars.iter()
        .filter_map(|(name, value)| {
            decide(policy, name, value, scanner).map(|why| Removal {
                name: name.clone(),
                why,
                swapped_on: None,
            })
        })
        .collect()
}

fn decide(policy: &Policy, name: &OsStr, value: &OsStr, scanner: &Scanner) -> Option<ScrubReason> {
    let text = name.to_string_lossy();
    // cork sets these to the placeholder itself.
    if policy.credentials.iter().any(|c| c.env == text) {
        return None;
    }
    if let Some(index) = policy.credentials.iter().position(|c| c.value_env == text) {
        return Some(ScrubReason::CredentialValue { index });
    }
    if policy.env.passed_by(&text).is_some() {
        return None;
    }
    if let Some(index) = policy.env.scrub.iter().position(|p| glob_match(p, &text)) {
        return Some(ScrubReason::Manifest {
            index,
            pattern: policy.env.scrub[index].clone(),
        });
    }
    let upper = text.to_ascii_uppercase();
    if let Some(pattern) = SENSITIVE_NAMES.iter().find(|p| glob_match(p, &upper)) {
        return Some(ScrubReason::Name { pattern });
    }
    let mut stream = scanner.stream();
    let mut findings = stream.feed(value.as_encoded_bytes());
    findings.extend(stream.finish());
    findings.into_iter().min().map(|f| ScrubReason::Value {
        detector: f.detector,
    })
}

/// The scanner that judges values: the built-in detectors, the manifest's, and the real
/// value of every credential found in `vars` (so a copy under another name is caught).
pub fn value_scanner(
    policy: &Policy,
    vars: &[(OsString, OsString)],
) -> Result<Scanner, dlp::DlpError> {
    scanner_knowing(policy, known_secrets(policy, vars))
}

/// The real credential values among `vars`: each `[[credentials]]` `value_env` present,
/// named by the credential's placeholder variable, when its length is one the scanner
/// takes. Empty for most callers, whose scanner is then the same for all of them.
pub fn known_secrets(policy: &Policy, vars: &[(OsString, OsString)]) -> Vec<KnownSecret> {
    let lengths = dlp::MIN_KNOWN_SECRET_LEN..=dlp::MAX_KNOWN_SECRET_LEN;
    policy
        .credentials
        .iter()
        .filter_map(|c| {
            let (_, v) = vars.iter().find(|(n, _)| n == c.value_env.as_str())?;
            let value = v.as_encoded_bytes().to_vec();
            lengths.contains(&value.len()).then(|| KnownSecret {
                name: c.env.clone(),
                value,
            })
        })
        .collect()
}

/// The scanner that judges values, knowing `known_secrets` (see [`known_secrets`]).
pub fn scanner_knowing(
    policy: &Policy,
    known_secrets: Vec<KnownSecret>,
) -> Result<Scanner, dlp::DlpError> {
    let custom = policy
        .dlp
        .detectors
        .iter()
        .map(|d| {
            let kw: Vec<&str> = d.keywords.iter().map(String::as_str).collect();
            dlp::Detector::custom(&d.name, &d.regex, &kw)
        })
        .collect();
    Scanner::new(&dlp::Config {
        custom,
        known_secrets,
        ..dlp::Config::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let src = format!(
            "version = 1\n[bottle]\nname = \"t\"\n[[egress.allow]]\ndomain = \"api.example.test\"\n\
             ports = [443]\n[[credentials]]\ndomain = \"api.example.test\"\nheader = \"x-api-key\"\n\
             placeholder = \"cork-placeholder-acme\"\nenv = \"ACME_API_KEY\"\n\
             value_env = \"ACME_REAL\"\n{extra}"
        );
        cork_policy::compile(&src, "t.toml").expect("test manifest compiles")
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn removed(policy: &Policy, v: &[(&str, &str)]) -> Vec<(String, String)> {
        let v = vars(v);
        let scanner = value_scanner(policy, &v).expect("scanner builds");
        scrub(policy, &v, &scanner)
            .into_iter()
            .map(|r| (r.name.to_string_lossy().into_owned(), r.why.to_string()))
            .collect()
    }

    #[test]
    fn sensitive_names_go_innocent_ones_stay() {
        let p = policy("");
        let got = removed(
            &p,
            &[
                ("PATH", "/usr/bin:/bin"),
                ("GITHUB_TOKEN", "x"),
                ("github_token", "x"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("AWS_ACCESS_KEY_ID", "x"),
                ("PGPASSWORD", "x"),
                ("MY_PAT", "x"),
                ("HOME", "/root"),
                ("TERM", "xterm"),
                ("LANG", "C.UTF-8"),
            ],
        );
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "GITHUB_TOKEN",
                "github_token",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID",
                "PGPASSWORD",
                "MY_PAT"
            ]
        );
        assert_eq!(got[0].1, "name matches *_TOKEN");
    }

    #[test]
    fn values_are_recognised_and_named_by_detector() {
        let p = policy("");
        // GitHub's format with its base62 CRC32 (the detector checks it; not a real token;
        // `cork_integration::fake_homes::fake_github_token` shows how it is made).
        let ghp = "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";
        let got = removed(&p, &[("INNOCENT", ghp), ("OTHER", "hello world")]);
        assert_eq!(
            got,
            [(
                "INNOCENT".to_owned(),
                "value recognised by DLP detector github-token".to_owned()
            )]
        );
    }

    #[test]
    fn credentials_pass_and_scrub() {
        let p = policy("[env]\npass = [\"GITHUB_TOKEN\", \"ACME_REAL\"]\nscrub = [\"MY_*\"]\n");
        let real = "real-acme-value-0123456789";
        let got = removed(
            &p,
            &[
                ("GITHUB_TOKEN", "x"),
                ("ACME_API_KEY", "cork-placeholder-acme"),
                ("ACME_REAL", real),
                ("COPY_OF_IT", real),
                ("MY_COMPANY_THING", "x"),
                ("MYSELF", "x"),
            ],
        );
        assert_eq!(
            got,
            [
                (
                    "ACME_REAL".to_owned(),
                    "credentials[0].value_env: the proxy sends the real value, the bottle \
                     holds the placeholder"
                        .to_owned()
                ),
                (
                    "COPY_OF_IT".to_owned(),
                    "value recognised by DLP detector known-secret:ACME_API_KEY".to_owned()
                ),
                (
                    "MY_COMPANY_THING".to_owned(),
                    "env.scrub[0] \"MY_*\"".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn removals_travel_and_come_back_equal() {
        let removals = vec![
            Removal {
                name: "GITHUB_TOKEN".into(),
                why: ScrubReason::Name { pattern: "*_TOKEN" },
                swapped_on: None,
            },
            Removal {
                name: "COPY".into(),
                why: ScrubReason::Value {
                    detector: "known-secret:ACME_API_KEY".into(),
                },
                swapped_on: None,
            },
            Removal {
                name: "MY_X".into(),
                why: ScrubReason::Manifest {
                    index: 0,
                    pattern: "MY_*".into(),
                },
                swapped_on: None,
            },
            Removal {
                name: "ACME_REAL".into(),
                why: ScrubReason::CredentialValue { index: 0 },
                swapped_on: Some("api.example.test".into()),
            },
        ];
        let json = serde_json::to_string(&removals).expect("serialises");
        let back: Vec<Removal> = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, removals);
        let forged = r#"[{"name":"X","why":{"name":{"pattern":"*_NOT_OURS"}},"swapped_on":null}]"#;
        assert!(serde_json::from_str::<Vec<Removal>>(forged).is_err());
    }
}
