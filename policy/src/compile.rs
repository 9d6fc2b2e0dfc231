//! From a validated [`Manifest`] to a [`Policy`]: assigns rule ids and refuses policies
//! the kernel maps cannot hold, pointing at the rule that does not fit.

use crate::error::ManifestError;
use crate::manifest::{Manifest, parse_manifest};
use crate::plan::{
    self, KernelPlan, MAX_PREFIXES_PER_FAMILY, MAX_SLOTS_PER_PREFIX, PlanError, RULE_ID_NONE,
};
use crate::rule::RuleInfo;

/// A compiled policy: what a bottle may reach, ready to become kernel map entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The bottle name.
    pub name: String,
    /// Rule table; a rule's index is the `rule_id` the kernel reports (always below
    /// [`RULE_ID_NONE`]). Allow entries in manifest order, then deny entries.
    pub rules: Vec<RuleInfo>,
    /// Host loopback ports the bottle may reach, sorted and deduplicated.
    pub host_ports: Vec<u16>,
    /// Built once at compile time, because building it is what proves the policy fits.
    plan: KernelPlan,
}

/// Parses, validates and compiles manifest text; `origin` names it in errors.
pub fn compile(src: &str, origin: &str) -> Result<Policy, ManifestError> {
    Policy::from_manifest(parse_manifest(src, origin)?)
}

impl Policy {
    /// Compiles a validated manifest, checking every kernel capacity.
    pub fn from_manifest(manifest: Manifest) -> Result<Self, ManifestError> {
        let Manifest {
            origin,
            name,
            rules,
            host_ports,
        } = manifest;
        let at = |rule: &RuleInfo, message: String| ManifestError {
            origin: origin.clone(),
            line: rule.line,
            col: rule.col,
            path: rule.id.clone(),
            message,
        };
        if let Some(rule) = rules.get(usize::from(RULE_ID_NONE)) {
            return Err(at(
                rule,
                format!("too many rules; at most {RULE_ID_NONE} are supported"),
            ));
        }
        let plan = plan::build(&rules, &host_ports).map_err(|e| match e {
            PlanError::TooManyPrefixes { rule } => at(
                &rules[rule],
                format!(
                    "too many distinct {} prefixes; the kernel holds at most \
                     {MAX_PREFIXES_PER_FAMILY} per address family",
                    if rules[rule].net.is_ipv4() {
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
            host_ports,
            plan,
        })
    }

    /// The kernel map entries for this policy.
    pub fn kernel_plan(&self) -> KernelPlan {
        self.plan.clone()
    }

    /// The rule a kernel `rule_id` refers to; `None` for [`RULE_ID_NONE`] or unknown ids.
    pub fn rule(&self, rule_id: u16) -> Option<&RuleInfo> {
        self.rules.get(usize::from(rule_id))
    }
}
