//! `match_domain` and `allowed_slots` must agree with a naive reading of the rules, done
//! label by label: random small rule sets over names made of the labels `a`, `b` and `c`
//! make exact/wildcard overlaps, apexes and deny-over-allow common.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use cork_policy::{DomainVerdict, Policy, Proto, Redirect, parse_manifest};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Rule {
    deny: bool,
    wildcard: bool,
    /// Two to three labels, leftmost first.
    labels: Vec<&'static str>,
    /// Single ports 1-4; empty means every port.
    ports: Vec<u16>,
    /// Written with upper-case letters and a trailing dot.
    shouted: bool,
}

fn label() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c")]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(label(), 2..=3),
        prop::collection::vec(1u16..=4, 0..3),
        any::<bool>(),
    )
        .prop_map(|(deny, wildcard, labels, ports, shouted)| Rule {
            deny,
            wildcard,
            labels,
            ports,
            shouted,
        })
}

/// The rules in rule-id order: allow entries, then deny entries, as the manifest lists them.
fn in_id_order(rules: &[Rule]) -> Vec<&Rule> {
    let (deny, allow): (Vec<&Rule>, Vec<&Rule>) = rules.iter().partition(|r| r.deny);
    allow.into_iter().chain(deny).collect()
}

fn manifest(rules: &[Rule]) -> String {
    let mut src = String::from("version = 1\n[bottle]\nname = \"prop\"\n");
    for r in rules {
        let mut name = r.labels.join(".");
        if r.wildcard {
            name = format!("*.{name}");
        }
        if r.shouted {
            name = format!("{}.", name.to_uppercase());
        }
        let list = if r.deny { "deny" } else { "allow" };
        src += &format!("[[egress.{list}]]\ndomain = \"{name}\"\n");
        if !r.ports.is_empty() && !r.deny {
            let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
            src += &format!("ports = [{}]\n", ports.join(", "));
        }
    }
    src
}

/// Whether `rule` matches the name `labels`, compared label by label.
fn hits(rule: &Rule, labels: &[&str]) -> bool {
    if rule.wildcard {
        labels.len() > rule.labels.len() && labels.ends_with(&rule.labels)
    } else {
        labels == rule.labels.as_slice()
    }
}

/// The most specific hit among rules with `deny`: exact first, then more wildcard labels,
/// then the lowest rule id.
fn best(rules: &[&Rule], labels: &[&str], deny: bool) -> Option<u32> {
    (0..rules.len())
        .filter(|&i| rules[i].deny == deny && hits(rules[i], labels))
        .max_by_key(|&i| (!rules[i].wildcard, rules[i].labels.len(), Reverse(i)))
        .map(|i| u32::try_from(i).unwrap())
}

fn oracle(rules: &[&Rule], labels: &[&str]) -> DomainVerdict {
    if let Some(rule_id) = best(rules, labels, true) {
        DomainVerdict::Deny { rule_id }
    } else if let Some(rule_id) = best(rules, labels, false) {
        DomainVerdict::Allow { rule_id }
    } else {
        DomainVerdict::NoMatch
    }
}

/// Every name of one to four labels over the alphabet.
fn names() -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = vec![vec![]];
    let mut all = Vec::new();
    for _ in 0..4 {
        out = out
            .iter()
            .flat_map(|n| {
                ["a", "b", "c"].map(|l| {
                    let mut n = n.clone();
                    n.insert(0, l);
                    n
                })
            })
            .collect();
        all.extend(out.iter().cloned());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matcher_agrees_with_label_oracle(
        rules in prop::collection::vec(rule(), 0..8),
        shout in any::<bool>(),
    ) {
        let src = manifest(&rules);
        let policy = Policy::from_manifest_unenforced(parse_manifest(&src, "prop").unwrap()).unwrap();
        let ordered = in_id_order(&rules);
        for labels in names() {
            let mut name = labels.join(".");
            if shout {
                name = format!("{}.", name.to_uppercase());
            }
            let want = oracle(&ordered, &labels);
            prop_assert_eq!(policy.match_domain(&name), want, "{}\n{}", name, src);

            // The slots are exactly the port sets of every matching allow rule, each
            // named after a rule that really covers it, and only when the name is allowed.
            let slots = policy.allowed_slots(&name);
            let got: BTreeSet<(u16, u16)> = slots.iter().map(|s| (s.port_lo, s.port_hi)).collect();
            let mut expected = BTreeSet::new();
            if matches!(want, DomainVerdict::Allow { .. }) {
                for r in ordered.iter().filter(|r| !r.deny && hits(r, &labels)) {
                    if r.ports.is_empty() {
                        expected.insert((0, u16::MAX));
                    }
                    expected.extend(r.ports.iter().map(|&p| (p, p)));
                }
            }
            prop_assert_eq!(&got, &expected, "{}\n{}", name, src);
            for s in &slots {
                let r = ordered[s.rule_id as usize];
                prop_assert!(!r.deny && hits(r, &labels) && s.proto == Proto::Tcp);
                // No rule here sets `inspect`, so each goes to the proxy on 80 and 443 only.
                prop_assert_eq!(s.redirect, Redirect::Web);
                prop_assert!(r.ports.is_empty() || r.ports.contains(&s.port_lo));
            }
            if let (Some(first), DomainVerdict::Allow { rule_id }) = (slots.first(), want) {
                prop_assert_eq!(first.rule_id, rule_id, "the first slot names the verdict's rule");
            }
        }
    }
}
