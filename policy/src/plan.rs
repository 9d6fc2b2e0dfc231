//! The kernel plan: the exact LPM-trie entries and host-port set the loader writes.
//!
//! The kernel does one longest-prefix-match lookup per destination and only looks at that
//! entry's slots (see `evaluate.rs`). So each entry carries the slots of its own rules
//! **and** of every rule whose prefix contains it; otherwise a deny `/24` would be lost
//! for destinations whose longest match is an allow `/32` inside it, and vice versa.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet};
use std::fmt;

use crate::ports::{PortRange, Proto};
use crate::prefix::Prefix;
use crate::rule::{Action, RuleInfo};
use crate::unix::{CONTROL_SOCKET_SPELLINGS, UnixName};

/// Slots per prefix entry; equals `CORK_PREFIX_SLOTS` in `ebpf/include/cork_abi.h`.
pub const MAX_SLOTS_PER_PREFIX: usize = 16;
/// Entries per family trie; equals `CORK_MAX_PREFIXES`.
pub const MAX_PREFIXES_PER_FAMILY: usize = 131_072;
/// Rules per manifest: room for both tries full plus as many domain rules, with ids far
/// below [`RULE_ID_NONE`]; a bound on what one manifest can make the agent hold.
pub const MAX_RULES: usize = 1 << 20;
/// Size of the host loopback port map; equals `CORK_MAX_HOST_PORTS`.
pub const MAX_HOST_PORTS: usize = 256;
/// A rule's index in [`crate::Policy::rules`], as the kernel maps and audit records carry it
/// (`__u32` in `cork_abi.h`).
pub type RuleId = u32;
/// `rule_id` meaning "no manifest rule"; equals `CORK_RULE_NONE`. Rule ids stay below it.
pub const RULE_ID_NONE: RuleId = u32::MAX;

/// Everything the kernel maps must hold for one policy. Deterministic: the same policy
/// always gives the same plan, in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPlan {
    /// IPv4 trie entries, sorted by (address, length). IPv4-mapped IPv6 rules are here.
    pub v4: Vec<PrefixEntry>,
    /// IPv6 trie entries, sorted by (address, length).
    pub v6: Vec<PrefixEntry>,
    /// Host loopback ports, sorted, deduplicated.
    pub host_ports: Vec<u16>,
    /// The unix name map: `unix.allow` in manifest order (rule id = index), then a deny
    /// entry for each spelling of cork's control socket. Every other name is denied.
    pub unix: Vec<UnixEntry>,
}

/// One entry of the kernel's unix name map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixEntry {
    pub name: UnixName,
    pub action: Action,
    /// Index into `unix.allow`; [`RULE_ID_NONE`] for cork's own deny entries.
    pub rule_id: RuleId,
}

/// One LPM-trie entry: a prefix and at most [`MAX_SLOTS_PER_PREFIX`] slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixEntry {
    pub prefix: Prefix,
    /// Most specific rules first (longest rule prefix, then manifest order), so the first
    /// matching slot — the one the kernel reports — names the narrowest rule.
    pub slots: Vec<Slot>,
}

/// One `struct cork_port_rule`. Ports are inclusive, host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: Proto,
    pub action: Action,
    /// Index into [`crate::Policy::rules`].
    pub rule_id: RuleId,
    /// Which of the slot's ports the kernel hands to the inspecting proxy.
    pub redirect: Redirect,
}

/// Which TCP connections an allow slot sends to the inspecting proxy instead of letting
/// them go straight out. UDP a slot would redirect is refused instead (see
/// [`crate::evaluate`]): the proxy takes TCP only, so HTTP/3 must fall back to TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Redirect {
    /// Straight out: `cidr` rules (the proxy needs a name to decide) and deny slots.
    None,
    /// Ports 80 and 443 only: domain allow rules, unless `inspect = true`. With
    /// `inspect = false` the proxy still sees the flow, to check the TLS server name
    /// before passing it through.
    Web,
    /// Every port of the slot: domain allow rules with `inspect = true`.
    All,
}

impl Slot {
    /// Whether traffic of protocol `proto` to `port` hits this slot.
    pub fn matches(&self, proto: Proto, port: u16) -> bool {
        self.proto.matches(proto) && (self.port_lo..=self.port_hi).contains(&port)
    }

    /// Whether this slot sends `port` to the proxy. Only meaningful for a port the slot
    /// matches.
    pub fn redirects(&self, port: u16) -> bool {
        match self.redirect {
            Redirect::None => false,
            Redirect::Web => port == 80 || port == 443,
            Redirect::All => true,
        }
    }
}

/// Why a set of rules does not fit the kernel maps. `rule` indexes the rule to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanError {
    TooManyPrefixes {
        rule: usize,
    },
    TooManySlots {
        rule: usize,
        prefix: Prefix,
        needed: usize,
    },
}

/// Entries per family from which the two families are built on two threads: a thread
/// costs some tens of microseconds, an entry about a quarter of one.
const PARALLEL_ENTRIES: usize = 4096;

/// Builds the plan. Callers guarantee `rules.len() <= MAX_RULES`. Domain rules add no
/// entry: the kernel learns their addresses from the DNS proxy at run time.
pub(crate) fn build(
    rules: &[RuleInfo],
    host_ports: &[u16],
    unix_allow: &[UnixName],
) -> Result<KernelPlan, PlanError> {
    // Each prefix's rules in manifest order: an entry looks up the prefixes containing it
    // (itself cut to each length some rule uses), instead of testing every rule, which is
    // quadratic: 4e10 tests at 100 000 prefixes per family. Sorted vectors rather than
    // trees and hash maps: one allocation each, and ordered as the entries must be.
    let by_prefix = Covering::new(rules);
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for prefix in by_prefix.distinct() {
        if prefix.is_ipv4() {
            v4.push(prefix);
        } else {
            v6.push(prefix);
        }
    }
    if v4.len().max(v6.len()) > MAX_PREFIXES_PER_FAMILY {
        return Err(PlanError::TooManyPrefixes {
            rule: first_over_the_limit(rules),
        });
    }
    let entries = |set: Vec<Prefix>| -> Result<Vec<PrefixEntry>, PlanError> {
        set.into_iter()
            .map(|prefix| entry(prefix, rules, &by_prefix))
            .collect()
    };
    // The families are independent: with many entries in both, each gets a core. An
    // error is the IPv4 one first, as when they were built one after the other.
    let (v4, v6) = if v4.len().min(v6.len()) >= PARALLEL_ENTRIES {
        std::thread::scope(|s| {
            let v6 = s.spawn(|| entries(v6));
            let v4 = entries(v4);
            (
                v4,
                v6.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            )
        })
    } else {
        (entries(v4), entries(v6))
    };
    Ok(KernelPlan {
        v4: v4?,
        v6: v6?,
        host_ports: host_ports.to_vec(),
        unix: unix_entries(unix_allow),
    })
}

/// The rule that, in manifest order, brings the first prefix past
/// [`MAX_PREFIXES_PER_FAMILY`] distinct ones in its family (rules sharing a prefix share
/// its entry, so only new prefixes count). Only asked once the limit is known broken.
fn first_over_the_limit(rules: &[RuleInfo]) -> usize {
    let (mut v4, mut v6) = (HashSet::new(), HashSet::new());
    for (i, rule) in rules.iter().enumerate() {
        let Some(net) = rule.prefix() else { continue };
        let family = if net.is_ipv4() { &mut v4 } else { &mut v6 };
        if family.insert(net) && family.len() > MAX_PREFIXES_PER_FAMILY {
            return i;
        }
    }
    rules.len().saturating_sub(1)
}

/// `unix_allow` (which the manifest keeps below `MAX_UNIX_NAMES` and free of the control
/// socket) as allow entries, then the control socket's deny entries.
fn unix_entries(unix_allow: &[UnixName]) -> Vec<UnixEntry> {
    let allow = unix_allow.iter().enumerate().map(|(i, name)| UnixEntry {
        name: name.clone(),
        action: Action::Allow,
        rule_id: RuleId::try_from(i).unwrap_or(RULE_ID_NONE),
    });
    let deny = CONTROL_SOCKET_SPELLINGS.iter().map(|p| UnixEntry {
        name: UnixName::Path((*p).to_owned()),
        action: Action::Deny,
        rule_id: RULE_ID_NONE,
    });
    allow.chain(deny).collect()
}

/// The prefix rules, indexed for "which rules contain this prefix": (prefix, rule index)
/// pairs sorted by prefix, then manifest order.
struct Covering {
    pairs: Vec<(Prefix, usize)>,
    /// The prefix lengths rules use, per family: few in practice, so an entry needs few
    /// lookups.
    lens_v4: BTreeSet<u8>,
    lens_v6: BTreeSet<u8>,
}

impl Covering {
    fn new(rules: &[RuleInfo]) -> Self {
        let mut pairs: Vec<(Prefix, usize)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.prefix()?, i)))
            .collect();
        pairs.sort_unstable();
        let mut lens_v4 = BTreeSet::new();
        let mut lens_v6 = BTreeSet::new();
        for (prefix, _) in &pairs {
            if prefix.is_ipv4() {
                lens_v4.insert(prefix.len());
            } else {
                lens_v6.insert(prefix.len());
            }
        }
        Covering {
            pairs,
            lens_v4,
            lens_v6,
        }
    }

    /// Every prefix some rule names, once each, in order.
    fn distinct(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(k, (p, _))| *k == 0 || self.pairs[k - 1].0 != *p)
            .map(|(_, (p, _))| *p)
    }

    /// The rules naming exactly `prefix`, in manifest order.
    fn naming(&self, prefix: Prefix) -> impl Iterator<Item = usize> + '_ {
        let start = self.pairs.partition_point(|(p, _)| *p < prefix);
        self.pairs[start..]
            .iter()
            .take_while(move |(p, _)| *p == prefix)
            .map(|(_, i)| *i)
    }

    /// The rules whose prefix contains `prefix`, in manifest order.
    fn of(&self, prefix: Prefix) -> Vec<usize> {
        let lens = if prefix.is_ipv4() {
            &self.lens_v4
        } else {
            &self.lens_v6
        };
        let mut found: Vec<usize> = lens
            .range(..=prefix.len())
            .filter_map(|&len| prefix.cut(len))
            .flat_map(|cut| self.naming(cut))
            .collect();
        found.sort_unstable();
        found
    }
}

fn entry(
    prefix: Prefix,
    rules: &[RuleInfo],
    by_prefix: &Covering,
) -> Result<PrefixEntry, PlanError> {
    let mut covering = by_prefix.of(prefix);

    // Prefix rules are never redirected: the proxy decides by name, which they lack.
    let unredirected = |order: &[usize]| -> Vec<(usize, Redirect)> {
        order.iter().map(|&i| (i, Redirect::None)).collect()
    };
    // Blame the rule that, taken in manifest order, first pushes the entry past the limit:
    // that is the entry the author added last and can most easily reconsider.
    let in_manifest_order = slots(&unredirected(&covering), rules);
    if in_manifest_order.len() > MAX_SLOTS_PER_PREFIX {
        let culprit = in_manifest_order[MAX_SLOTS_PER_PREFIX].rule_id;
        return Err(PlanError::TooManySlots {
            rule: culprit as usize,
            prefix,
            needed: in_manifest_order.len(),
        });
    }

    if covering.len() == 1 {
        // One rule (the common case in a long list of prefixes): already in order.
        return Ok(PrefixEntry {
            prefix,
            slots: in_manifest_order,
        });
    }
    covering.sort_by_key(|&i| (Reverse(rules[i].prefix().map_or(0, |p| p.len())), i));
    Ok(PrefixEntry {
        prefix,
        slots: slots(&unredirected(&covering), rules),
    })
}

/// The slots of `order`'s rules, in that order, each with its rule's redirect; a slot equal
/// to an earlier one except for its rule id is dropped, since it cannot change a verdict.
pub(crate) fn slots(order: &[(usize, Redirect)], rules: &[RuleInfo]) -> Vec<Slot> {
    let mut out: Vec<Slot> = Vec::new();
    for &(i, redirect) in order {
        let rule = &rules[i];
        let ranges: &[PortRange] = if rule.ports.is_empty() {
            &[PortRange::ALL]
        } else {
            &rule.ports
        };
        for range in ranges {
            let slot = Slot {
                port_lo: range.lo(),
                port_hi: range.hi(),
                proto: rule.proto,
                action: rule.action,
                // `build`'s caller keeps rule counts below `MAX_RULES`.
                rule_id: RuleId::try_from(i).unwrap_or(RULE_ID_NONE),
                redirect,
            };
            // Few slots per entry (at most 16 fit): a scan beats hashing.
            let same = |o: &Slot| {
                (o.port_lo, o.port_hi, o.proto, o.action, o.redirect)
                    == (
                        slot.port_lo,
                        slot.port_hi,
                        slot.proto,
                        slot.action,
                        slot.redirect,
                    )
            };
            if !out.iter().any(same) {
                out.push(slot);
            }
        }
    }
    out
}

/// One line per entry, for golden tests and `cork` diagnostics:
/// `v4 198.51.100.0/24: allow tcp 443-443 #0, ...`; a redirecting slot ends in
/// ` redirect web` or ` redirect all` (static entries never have one today); then
/// `host_ports: 53, 8125` and one `unix /run/app.sock: allow #0` line per unix entry (cork's
/// control socket entries end in `deny control socket`).
impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (family, entries) in [("v4", &self.v4), ("v6", &self.v6)] {
            for entry in entries {
                write!(f, "{family} {}:", entry.prefix)?;
                for (i, s) in entry.slots.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(
                        f,
                        "{sep}{} {} {}-{} #{}",
                        s.action, s.proto, s.port_lo, s.port_hi, s.rule_id
                    )?;
                    match s.redirect {
                        Redirect::None => {}
                        Redirect::Web => f.write_str(" redirect web")?,
                        Redirect::All => f.write_str(" redirect all")?,
                    }
                }
                writeln!(f)?;
            }
        }
        let ports: Vec<String> = self.host_ports.iter().map(u16::to_string).collect();
        writeln!(f, "host_ports: {}", ports.join(", "))?;
        for e in &self.unix {
            match (e.action, e.rule_id) {
                (action, RULE_ID_NONE) => writeln!(f, "unix {}: {action} control socket", e.name)?,
                (action, id) => writeln!(f, "unix {}: {action} #{id}", e.name)?,
            }
        }
        Ok(())
    }
}
