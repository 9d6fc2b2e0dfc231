//! Sample destinations of the probes. They never leave the manifest and the documentation
//! ranges: a deny rule's sample is an address of its own prefix, an allow rule's sample an
//! address of its prefix (one of 198.51.100.0/24 or 2001:db8::/32 first when the prefix
//! holds them), and the default-deny samples are addresses of those documentation ranges
//! (then 2001:db8:ffff::/48 for IPv6; IPv4 has no fallback) that no rule covers, unless `--deny-sample`
//! names others. Every sample is checked against the policy's reference model
//! ([`cork_policy::evaluate`]), so a probe never expects a verdict the kernel plan would
//! not give. Names: a rule's own name, or `cork-probe.` below a wildcard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cork_policy::{Action, DomainPattern, Policy, Prefix, Proto};

/// Port of samples that name no port (default-deny addresses, rules on every port).
pub const DEFAULT_PORT: u16 = 443;

/// The documentation ranges samples are taken from first.
fn doc_ranges() -> [(IpAddr, u8); 2] {
    [
        (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24),
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
            32,
        ),
    ]
}

fn offset(base: IpAddr, n: u128) -> Option<IpAddr> {
    match base {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(u32::try_from(n).ok()?)
            .map(|v| IpAddr::V4(v.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(n).map(|v| IpAddr::V6(v.into())),
    }
}

/// Addresses of `prefix` to try as its sample, best first: inside a documentation range
/// when the prefix holds one, then from the start of the prefix.
fn candidates(prefix: &Prefix) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (base, len) in doc_ranges() {
        if let Ok(doc) = Prefix::new(base, len)
            && prefix.contains_prefix(&doc)
        {
            out.extend((0..32).filter_map(|i| offset(base, 0xfe - i)));
        }
    }
    // A host address before the network's own (which a /32 or /128 only has).
    out.extend((1..64).chain([0]).filter_map(|i| offset(prefix.addr(), i)));
    out.retain(|a| prefix.contains(*a));
    out
}

/// The first address of `prefix` that the policy decides `want` for `proto` to `port`.
pub fn sample_in(
    policy: &Policy,
    prefix: &Prefix,
    proto: Proto,
    port: u16,
    want: Action,
) -> Option<IpAddr> {
    let plan = policy.kernel_plan();
    candidates(prefix)
        .into_iter()
        .find(|a| cork_policy::evaluate(&plan, *a, proto, port).action == want)
}

/// Default-deny samples when none were given: one IPv4 and one IPv6 address of the
/// documentation ranges that no rule covers (the default deny decides them).
pub fn default_deny_samples(policy: &Policy) -> Vec<IpAddr> {
    let plan = policy.kernel_plan();
    let mut out = Vec::new();
    for (base, _) in doc_ranges() {
        // IPv4 has no second range to fall back to: the other documentation ranges may be
        // routed on a real host's network. When the rules cover all of 198.51.100.0/24,
        // no IPv4 sample is taken (the report lists the samples; --deny-sample adds one).
        let extra = match base {
            IpAddr::V4(_) => None,
            IpAddr::V6(_) => Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0,
            ))),
        };
        let found = std::iter::once(base)
            .chain(extra)
            .flat_map(|b| (0..56).filter_map(move |i| offset(b, 0xfe - i)))
            .find(|a| {
                let v = cork_policy::evaluate(&plan, *a, Proto::Tcp, DEFAULT_PORT);
                v.action == Action::Deny && v.rule_id.is_none()
            });
        out.extend(found);
    }
    out
}

/// A name a domain pattern matches: the name itself, or one label below a wildcard.
pub fn sample_name(pattern: &DomainPattern) -> String {
    match pattern {
        DomainPattern::Exact(n) => n.clone(),
        DomainPattern::Suffix(s) => format!("cork-probe.{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(body: &str) -> Policy {
        cork_policy::compile(
            &format!("version = 1\n[bottle]\nname = \"p\"\n{body}"),
            "t.toml",
        )
        .expect("a valid manifest")
    }

    #[test]
    fn default_deny_samples_avoid_every_rule() {
        let p = policy("");
        assert_eq!(
            default_deny_samples(&p),
            [
                "198.51.100.254".parse::<IpAddr>().unwrap(),
                "2001:db8::fe".parse().unwrap()
            ]
        );
        let p = policy(
            "[[egress.allow]]\ncidr = \"198.51.100.0/24\"\n\n[[egress.deny]]\ncidr = \"2001:db8::/64\"\n",
        );
        assert_eq!(
            default_deny_samples(&p),
            ["2001:db8:ffff::fe".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn rule_samples_meet_the_rule() {
        let p = policy(
            "[[egress.allow]]\ncidr = \"0.0.0.0/0\"\nports = [8443]\n\n\
             [[egress.deny]]\ncidr = \"198.51.100.254/31\"\n",
        );
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        let a = sample_in(&p, &all, Proto::Tcp, 8443, Action::Allow).unwrap();
        assert_eq!(
            a,
            "198.51.100.253".parse::<IpAddr>().unwrap(),
            "a documentation address, not the denied ones"
        );
        let deny: Prefix = "198.51.100.254/31".parse().unwrap();
        let d = sample_in(&p, &deny, Proto::Tcp, 443, Action::Deny).unwrap();
        assert!(deny.contains(d));
        assert_eq!(
            sample_name(&DomainPattern::Suffix("pkg.test".into())),
            "cork-probe.pkg.test"
        );
    }
}
