//! Provider keys cork can hold instead of the bottle: a variable removed from the
//! command's environment that holds the API key of a provider whose API the bottle may
//! reach through the inspecting proxy becomes a placeholder plus a credential swap — the
//! same [`Credential`] a `[[credentials]]` entry makes, with the same guarantees (the real
//! value never enters the bottle, is swapped in only on that host, swapped back out of
//! responses, and is a known secret for DLP everywhere).

use std::hash::{BuildHasher, Hasher};

use cork_policy::{Credential, Policy};

use super::env::{Removal, ScrubReason};

/// A provider's key variable, the one host it goes to, and the header that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub env: &'static str,
    pub domain: String,
    /// Lowercase. The placeholder is swapped where it stands in the value, so
    /// `authorization: Bearer <placeholder>` works as sent.
    pub header: &'static str,
}

/// The providers cork knows: (variable, API host, header).
pub const PROVIDERS: &[(&str, &str, &str)] = &[
    ("ANTHROPIC_API_KEY", "api.anthropic.com", "x-api-key"),
    ("OPENAI_API_KEY", "api.openai.com", "authorization"),
];

/// [`PROVIDERS`] as [`Provider`]s.
pub fn known() -> Vec<Provider> {
    PROVIDERS
        .iter()
        .map(|&(env, domain, header)| Provider {
            env,
            domain: domain.to_owned(),
            header,
        })
        .collect()
}

/// The credentials to add for `removals`: one per removed provider key (removed by
/// cork's defaults, not by `env.scrub`, which asks for it gone) whose API `policy`
/// inspects and for which the manifest has no credential of its own.
pub fn credentials(
    policy: &Policy,
    removals: &[Removal],
    providers: &[Provider],
) -> Vec<Credential> {
    removals
        .iter()
        .filter(|r| matches!(r.why, ScrubReason::Name { .. } | ScrubReason::Value { .. }))
        .filter_map(|r| {
            let p = providers.iter().find(|p| r.name == p.env)?;
            if !policy.inspects(&p.domain) || policy.credentials.iter().any(|c| c.env == p.env) {
                return None;
            }
            Some(Credential {
                domain: p.domain.clone(),
                header: p.header.to_owned(),
                placeholder: placeholder(p.env),
                env: p.env.to_owned(),
                value_env: p.env.to_owned(),
                line: 0,
                col: 0,
            })
        })
        .collect()
}

/// `cork-placeholder-<env>-<16 hex digits>`: unique per bottle, so that a placeholder a
/// bottle learned cannot stand for another bottle's key. The digits come from std's
/// per-process random hash keys; they need to be unpredictable to nobody, only distinct.
fn placeholder(env: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(env.as_bytes());
    format!(
        "cork-placeholder-{}-{:016x}",
        env.to_ascii_lowercase().replace('_', "-"),
        h.finish()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn policy(body: &str) -> Policy {
        cork_policy::compile(&format!("version = 1\n[bottle]\nname = \"t\"\n{body}"), "t")
            .expect("test manifest compiles")
    }

    fn removal(name: &str, why: ScrubReason) -> Removal {
        Removal {
            name: OsString::from(name),
            why,
            swapped_on: None,
        }
    }

    const ANTHROPIC: &str = "[[egress.allow]]\ndomain = \"api.anthropic.com\"\nports = [443]\n";

    #[test]
    fn an_inspected_provider_gets_a_placeholder() {
        let p = policy(ANTHROPIC);
        let by_name = ScrubReason::Name {
            pattern: "*_API_KEY",
        };
        let got = credentials(
            &p,
            &[
                removal("ANTHROPIC_API_KEY", by_name.clone()),
                removal("OPENAI_API_KEY", by_name.clone()),
            ],
            &known(),
        );
        assert_eq!(got.len(), 1, "OpenAI's API is not allowed: {got:?}");
        let c = &got[0];
        assert_eq!(
            (c.domain.as_str(), c.header.as_str(), c.env.as_str()),
            ("api.anthropic.com", "x-api-key", "ANTHROPIC_API_KEY")
        );
        assert!(
            c.placeholder
                .starts_with("cork-placeholder-anthropic-api-key-")
        );
        let mut p = p;
        p.add_credential(c.clone())
            .expect("valid like a manifest entry");
        assert_eq!(p.credentials_for("API.anthropic.com.").count(), 1);
    }

    #[test]
    fn not_when_passed_through_scrubbed_or_declared() {
        let by_name = ScrubReason::Name {
            pattern: "*_API_KEY",
        };
        let scrubbed = ScrubReason::Manifest {
            index: 0,
            pattern: "ANTHROPIC_API_KEY".into(),
        };
        let p = policy(&format!("{ANTHROPIC}inspect = false\n"));
        assert!(
            credentials(
                &p,
                &[removal("ANTHROPIC_API_KEY", by_name.clone())],
                &known()
            )
            .is_empty()
        );
        let p = policy(ANTHROPIC);
        assert!(credentials(&p, &[removal("ANTHROPIC_API_KEY", scrubbed)], &known()).is_empty());
        let declared = policy(&format!(
            "{ANTHROPIC}[[credentials]]\ndomain = \"api.anthropic.com\"\nheader = \"x-api-key\"\n\
             placeholder = \"cork-placeholder-mine\"\nenv = \"ANTHROPIC_API_KEY\"\n\
             value_env = \"REAL_ANTHROPIC\"\n"
        ));
        assert!(
            credentials(
                &declared,
                &[removal("ANTHROPIC_API_KEY", by_name)],
                &known()
            )
            .is_empty()
        );
    }
}
