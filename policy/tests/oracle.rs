//! The kernel plan, evaluated the way the kernel does (one LPM lookup, then slots), must
//! agree with the manifest's plain meaning: a matching deny rule denies, else a matching
//! allow rule allows, else deny.
//!
//! The oracle reads the generated rules, not the compiled policy: its own prefix
//! arithmetic, its own reading of `ports` and `proto` defaults, its own folding of
//! IPv4-mapped addresses. Nothing of the crate's matching (`RuleInfo::matches`,
//! `Prefix::contains`) is on both sides. Rules and destinations are IPv4, IPv4 spelled as
//! mapped IPv6, and IPv6, over small address spaces so that overlaps, nested prefixes and
//! shared addresses are common.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cork_policy::{Action, Proto, compile, evaluate};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{Counted, check_counted};

/// 10.0.0.0: IPv4 rules and destinations live in 10.0.0.0/24 (and one address past it).
const V4_BASE: u32 = 0x0a00_0000;
/// 2001:db8::: IPv6 rules and destinations live in 2001:db8::/64 (and past it).
const V6_BASE: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    V4,
    /// IPv4, written `::ffff:a.b.c.d/(96+len)` in the manifest.
    V4Mapped,
    V6,
}

#[derive(Debug, Clone)]
struct Rule {
    deny: bool,
    family: Family,
    /// The low byte of the network address (host bits cleared when written).
    host: u8,
    /// 0, a mid length (24 or 64), or one of the last five (28..=32 or 124..=128).
    len: u8,
    ports: Vec<(u16, u16)>,
    proto: Option<&'static str>,
}

impl Rule {
    fn is_v4(&self) -> bool {
        self.family != Family::V6
    }

    /// The network as (bits, length) in its family's width.
    fn net(&self) -> (u128, u8) {
        let width = if self.is_v4() { 32 } else { 128 };
        let base = if self.is_v4() {
            u128::from(V4_BASE)
        } else {
            V6_BASE
        };
        let addr = (base | u128::from(self.host)) & mask(width, self.len);
        (addr, self.len)
    }

    fn cidr(&self) -> String {
        let (addr, len) = self.net();
        match self.family {
            Family::V4 => format!("{}/{len}", Ipv4Addr::from(addr as u32)),
            Family::V4Mapped => {
                format!("::ffff:{}/{}", Ipv4Addr::from(addr as u32), 96 + len)
            }
            Family::V6 => format!("{}/{len}", Ipv6Addr::from(addr)),
        }
    }
}

/// The top `len` bits of a `width`-bit address.
fn mask(width: u32, len: u8) -> u128 {
    let ones = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    ones.checked_shl(width - u32::from(len)).unwrap_or(0) & ones
}

fn rule() -> impl Strategy<Value = Rule> {
    let family = prop_oneof![Just(Family::V4), Just(Family::V4Mapped), Just(Family::V6)];
    // Index into the family's lengths: 0, mid, then the five longest.
    let len = prop_oneof![1 => Just(0usize), 1 => Just(1usize), 8 => 2usize..7];
    let range = (1u16..8, 0u16..3).prop_map(|(lo, w)| (lo, lo + w));
    let proto = prop_oneof![
        Just(None),
        Just(Some("tcp")),
        Just(Some("udp")),
        Just(Some("any"))
    ];
    (
        any::<bool>(),
        family,
        0u8..16,
        len,
        prop::collection::vec(range, 0..3),
        proto,
    )
        .prop_map(|(deny, family, host, len, ports, proto)| {
            let lens: [u8; 7] = if family == Family::V6 {
                [0, 64, 124, 125, 126, 127, 128]
            } else {
                [0, 24, 28, 29, 30, 31, 32]
            };
            Rule {
                deny,
                family,
                host,
                len: lens[len],
                ports,
                proto,
            }
        })
}

fn manifest(rules: &[Rule]) -> String {
    let mut src = String::from("version = 1\n[bottle]\nname = \"prop\"\n");
    for r in rules {
        src += &format!(
            "[[egress.{}]]\ncidr = \"{}\"\n",
            if r.deny { "deny" } else { "allow" },
            r.cidr()
        );
        if !r.ports.is_empty() {
            let ports: Vec<String> = r
                .ports
                .iter()
                .map(|(lo, hi)| format!("\"{lo}-{hi}\""))
                .collect();
            src += &format!("ports = [{}]\n", ports.join(", "));
        }
        if let Some(p) = r.proto {
            src += &format!("proto = \"{p}\"\n");
        }
    }
    src
}

/// Whether `rule` covers `dst` (already folded), `proto` and `port`, read from the
/// manifest text's meaning: an omitted `proto` is TCP for an allow rule and both for a
/// deny rule; omitted `ports` are all ports.
fn covers(rule: &Rule, dst: (bool, u128), proto: Proto, port: u16) -> bool {
    let (is_v4, bits) = dst;
    let (net, len) = rule.net();
    let width = if is_v4 { 32 } else { 128 };
    let in_net = rule.is_v4() == is_v4 && bits & mask(width, len) == net;
    let proto_ok = match (rule.proto, rule.deny) {
        (None, true) | (Some("any"), _) => true,
        (None, false) | (Some("tcp"), _) => proto == Proto::Tcp,
        (Some("udp"), _) => proto == Proto::Udp,
        (Some(other), _) => panic!("the generator wrote proto {other:?}"),
    };
    let port_ok =
        rule.ports.is_empty() || rule.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port));
    in_net && proto_ok && port_ok
}

/// `dst` as (is IPv4, bits); `::ffff:a.b.c.d` is the IPv4 address it carries.
fn fold(dst: IpAddr) -> (bool, u128) {
    match dst {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            if bits >> 32 == 0xffff {
                (true, bits & u128::from(u32::MAX))
            } else {
                (false, bits)
            }
        }
    }
}

/// The manifest's meaning: any covering deny rule denies, else any covering allow rule
/// allows, else the default deny.
fn oracle(rules: &[Rule], dst: IpAddr, proto: Proto, port: u16) -> Action {
    let dst = fold(dst);
    let hit = |deny: bool| {
        rules
            .iter()
            .any(|r| r.deny == deny && covers(r, dst, proto, port))
    };
    if hit(true) || !hit(false) {
        Action::Deny
    } else {
        Action::Allow
    }
}

/// The generated rule a compiled rule id names, through its id text alone
/// (`egress.allow[2]` is the third allow rule in the manifest).
fn generated<'a>(rules: &'a [Rule], id: &str) -> Option<&'a Rule> {
    let (kind, rest) = id.strip_prefix("egress.")?.split_once('[')?;
    let n: usize = rest.strip_suffix(']')?.parse().ok()?;
    let deny = match kind {
        "deny" => true,
        "allow" => false,
        _ => return None,
    };
    rules.iter().filter(|r| r.deny == deny).nth(n)
}

fn destinations() -> Vec<IpAddr> {
    let mut dsts: Vec<IpAddr> = Vec::new();
    for host in 0..16u32 {
        dsts.push(Ipv4Addr::from(V4_BASE | host).into());
        dsts.push(Ipv6Addr::from(V6_BASE | u128::from(host)).into());
    }
    for host in [0u32, 7, 15] {
        dsts.push(Ipv4Addr::from(V4_BASE | host).to_ipv6_mapped().into());
    }
    // Past every /28 and /124 but inside the /24 and /64; then past those too.
    dsts.push(Ipv4Addr::from(V4_BASE | 0x80).into());
    dsts.push(Ipv6Addr::from(V6_BASE | 0x1_0000).into());
    dsts.push(Ipv4Addr::from(V4_BASE | 0x100).into());
    dsts.push(Ipv6Addr::from(V6_BASE | (1 << 64)).into());
    dsts
}

#[test]
fn kernel_plan_agrees_with_manifest_semantics() {
    let dsts = destinations();
    let points_per_case = (dsts.len() * 2 * 12) as u64;
    check_counted(
        Counted {
            name: "kernel_plan_agrees_with_manifest_semantics",
            source_file: file!(),
            cases: 512,
            // Overlapping random rules can exceed the slot limit (that refusal is tested
            // elsewhere); such a set is discarded and replaced, at most this often.
            max_discards: 256,
            min_points: 512 * points_per_case,
        },
        prop::collection::vec(rule(), 0..8),
        |rules| {
            let src = manifest(&rules);
            let policy = match compile(&src, "prop") {
                Ok(p) => p,
                Err(e) if e.message.contains("slots") => return Ok(0),
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{src}"))),
            };
            let plan = policy.kernel_plan();
            let mut points = 0;
            for &dst in &dsts {
                for proto in [Proto::Tcp, Proto::Udp] {
                    for port in 0..=11 {
                        let got = evaluate(&plan, dst, proto, port);
                        let want = oracle(&rules, dst, proto, port);
                        let ctx = || format!("{dst} {proto} {port}\n{src}\n{plan}");
                        prop_assert_eq!(got.action, want, "{}", ctx());
                        // Prefix rules never send anything to the proxy.
                        prop_assert!(!got.redirect, "{}", ctx());
                        // The reported rule is a generated rule of that action covering
                        // this traffic; no rule reported means none covers it.
                        match got.rule_id {
                            Some(id) => {
                                let name = &policy.rule(id).expect("a reported rule exists").id;
                                let rule = generated(&rules, name);
                                prop_assert!(
                                    rule.is_some_and(|r| r.deny == (got.action == Action::Deny)
                                        && covers(r, fold(dst), proto, port)),
                                    "{} names {:?}: {}",
                                    name,
                                    rule,
                                    ctx()
                                );
                            }
                            None => prop_assert!(
                                !rules.iter().any(|r| covers(r, fold(dst), proto, port)),
                                "default deny although a rule covers it: {}",
                                ctx()
                            ),
                        }
                        points += 1;
                    }
                }
            }
            Ok(points)
        },
    );
}
