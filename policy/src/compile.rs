//! From a validated [`Manifest`] to a [`Policy`]: assigns rule ids and refuses policies
//! the kernel maps cannot hold, pointing at the rule that does not fit.

use crate::credential::{self, Credential};
use crate::dlp::DlpConfig;
use crate::dns::DnsConfig;
use crate::domain_rule::DomainRule;
use crate::env::EnvConfig;
use crate::error::ManifestError;
use crate::files::FilesConfig;
use crate::manifest::{Manifest, parse_manifest};
use crate::plan::{
    self, KernelPlan, MAX_PREFIXES_PER_FAMILY, MAX_RULES, MAX_SLOTS_PER_PREFIX, PlanError, RuleId,
};
use crate::rule::{self, RuleInfo};
use crate::tls::TlsConfig;
use crate::unix::UnixConfig;

/// A compiled policy: what a bottle may reach, ready to become kernel map entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The bottle name.
    pub name: String,
    /// Rule table; a rule's index is the `rule_id` the kernel reports (always below
    /// [`MAX_RULES`], so never [`crate::RULE_ID_NONE`]). Allow entries in manifest order,
    /// then deny entries; prefix and domain rules share the table.
    pub rules: Vec<RuleInfo>,
    /// The domain rules of `rules`, in the same order, for [`Policy::match_domain`],
    /// [`Policy::allowed_slots`] and [`Policy::web_decision`].
    pub domains: Vec<DomainRule>,
    /// Host loopback ports the bottle may reach, sorted and deduplicated.
    pub host_ports: Vec<u16>,
    /// `[dns]` settings, for the agent's DNS proxy.
    pub dns: DnsConfig,
    /// `[tls]` settings, for the inspecting proxy's upstream connections.
    pub tls: TlsConfig,
    /// `[[credentials]]`, in manifest order; see [`Policy::credentials_for`]. Each one's
    /// host is inspected by some port of the rule that allows it.
    pub credentials: Vec<Credential>,
    /// `[dlp]` settings, for the inspecting proxy's scanner.
    pub dlp: DlpConfig,
    /// `[env]`: what the agent keeps or removes from the command's environment.
    pub env: EnvConfig,
    /// `[files]`: what the agent hides from the command, or lets through.
    pub files: FilesConfig,
    /// `[unix]`: the unix-domain sockets the bottle may reach (in the kernel plan too).
    pub unix: UnixConfig,
    /// Located problems that do not stop the policy from working.
    pub warnings: Vec<ManifestError>,
    /// Built once at compile time, because building it is what proves the policy fits.
    plan: KernelPlan,
}

/// Parses, validates and compiles manifest text; `origin` names it in errors.
pub fn compile(src: &str, origin: &str) -> Result<Policy, ManifestError> {
    let policy = Policy::from_manifest(parse_manifest(src, origin)?)?;
    crate::dlp_check::check(&policy, origin)?;
    Ok(policy)
}

impl Policy {
    /// Compiles a validated manifest, checking every kernel capacity. Domain rules add
    /// nothing to the kernel plan: the agent's DNS proxy learns their addresses at run time
    /// (see `Policy::allowed_slots` and `KernelPlan::learned_entry`).
    pub fn from_manifest(manifest: Manifest) -> Result<Self, ManifestError> {
        Self::from_manifest_unenforced(manifest)
    }

    /// The same as [`Policy::from_manifest`]; the name is kept from before the DNS proxy
    /// existed, when only this path accepted domain rules.
    pub fn from_manifest_unenforced(manifest: Manifest) -> Result<Self, ManifestError> {
        let Manifest {
            origin,
            name,
            rules,
            domains,
            host_ports,
            dns,
            tls,
            credentials,
            dlp,
            env,
            files,
            unix,
            warnings,
        } = manifest;
        let at = |rule: &RuleInfo, message: String| ManifestError {
            origin: origin.clone(),
            line: rule.line,
            col: rule.col,
            path: rule.id.clone(),
            message,
        };
        if let Some(rule) = rules.get(MAX_RULES) {
            return Err(rule::too_many_rules(rule, &origin));
        }
        if let Some((line, col, path)) = mismatched_domain(&rules, &domains) {
            return Err(ManifestError {
                origin,
                line,
                col,
                path,
                message: "`Manifest::domains` does not list the domain rules of \
                          `Manifest::rules`; build manifests with `parse_manifest`"
                    .to_owned(),
            });
        }
        // `parse_manifest` checked this; a hand-built manifest may not have.
        for (i, c) in credentials.iter().enumerate() {
            if let Err(message) = credential::inspected(&c.domain, &rules, &domains) {
                return Err(ManifestError {
                    origin,
                    line: c.line,
                    col: c.col,
                    path: format!("credentials[{i}].domain"),
                    message,
                });
            }
        }
        let plan = plan::build(&rules, &host_ports, &unix.allow).map_err(|e| match e {
            PlanError::TooManyPrefixes { rule } => at(
                &rules[rule],
                format!(
                    "too many distinct {} prefixes; the kernel holds at most \
                     {MAX_PREFIXES_PER_FAMILY} per address family",
                    if rules[rule].prefix().is_some_and(|p| p.is_ipv4()) {
                        "IPv4"
                    } else {
                        "IPv6"
                    }
                ),
            ),
            PlanError::TooManySlots {
                rule,
                prefix,
                needed,
            } => at(
                &rules[rule],
                format!(
                    "prefix {prefix} would need {needed} port/protocol slots, but the kernel \
                     holds at most {MAX_SLOTS_PER_PREFIX}: an entry carries the slots of its own \
                     rules and of every rule whose prefix contains it; merge port ranges or \
                     overlap fewer rules"
                ),
            ),
        })?;
        Ok(Self {
            name,
            rules,
            domains,
            host_ports,
            dns,
            tls,
            credentials,
            dlp,
            env,
            files,
            unix,
            warnings,
            plan,
        })
    }

    /// The kernel map entries for this policy.
    pub fn kernel_plan(&self) -> KernelPlan {
        self.plan.clone()
    }

    /// [`Policy::kernel_plan`] without the copy, which at 100 000 prefixes per family is
    /// some milliseconds to make and as many to free.
    pub fn plan(&self) -> &KernelPlan {
        &self.plan
    }

    /// The rule a kernel `rule_id` refers to; `None` for [`crate::RULE_ID_NONE`] or unknown
    /// ids.
    pub fn rule(&self, rule_id: RuleId) -> Option<&RuleInfo> {
        self.rules.get(usize::try_from(rule_id).ok()?)
    }
}

/// Where `domains` first fails to mirror the domain rules of `rules` (an entry missing,
/// extra or different), as (line, col, path). Only a hand-built [`Manifest`] can get this
/// wrong; `allowed_slots` relies on it being right.
fn mismatched_domain(rules: &[RuleInfo], domains: &[DomainRule]) -> Option<(usize, usize, String)> {
    let mut listed = domains.iter();
    for (i, rule) in rules.iter().enumerate() {
        let Some(pattern) = rule.domain() else {
            continue;
        };
        let same = listed.next().is_some_and(|d| {
            d.rule_id as usize == i
                && &d.pattern == pattern
                && d.action == rule.action
                && d.ports == rule.ports
                && d.proto == rule.proto
        });
        if !same {
            return Some((rule.line, rule.col, rule.id.clone()));
        }
    }
    listed
        .next()
        .map(|extra| (extra.line, extra.col, String::new()))
}
