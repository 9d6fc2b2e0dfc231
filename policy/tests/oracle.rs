//! The kernel plan, evaluated the way the kernel does (one LPM lookup, then slots), must
//! agree with the manifest's plain meaning: a matching deny rule denies, else a matching
//! allow rule allows, else deny. Random small rule sets over a tiny address space make
//! overlaps, shared prefixes and IPv4-mapped spellings common.

use std::net::{IpAddr, Ipv4Addr};

use cork_policy::{Action, Policy, Proto, compile, evaluate};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Rule {
    deny: bool,
    /// Last octet of 10.0.0.x and a length in 28..=32, or `None` for 0.0.0.0/0.
    net: Option<(u8, u8)>,
    /// Written as `::ffff:10.0.0.x/(96+len)` instead of `10.0.0.x/len`.
    mapped: bool,
    ports: Vec<(u16, u16)>,
    proto: Option<&'static str>,
}

fn rule() -> impl Strategy<Value = Rule> {
    let net = prop_oneof![1 => Just(None), 8 => (0u8..16, 28u8..=32).prop_map(Some)];
    let range = (1u16..8, 0u16..3).prop_map(|(lo, w)| (lo, lo + w));
    let proto = prop_oneof![
        Just(None),
        Just(Some("tcp")),
        Just(Some("udp")),
        Just(Some("any"))
    ];
    (
        any::<bool>(),
        net,
        any::<bool>(),
        prop::collection::vec(range, 0..3),
        proto,
    )
        .prop_map(|(deny, net, mapped, ports, proto)| Rule {
            deny,
            net,
            mapped,
            ports,
            proto,
        })
}

fn manifest(rules: &[Rule]) -> String {
    let mut src = String::from("version = 1\n[bottle]\nname = \"prop\"\n");
    for r in rules {
        let (octet, len) = r.net.unwrap_or((0, 0));
        // Clear host bits so every generated prefix is canonical.
        let addr = if len == 0 {
            0
        } else {
            octet & !((1u16 << (32 - len)) - 1) as u8
        };
        let base = if len == 0 { "0.0.0" } else { "10.0.0" };
        let cidr = if r.mapped {
            format!("::ffff:{base}.{addr}/{}", 96 + len)
        } else {
            format!("{base}.{addr}/{len}")
        };
        src += &format!(
            "[[egress.{}]]\ncidr = \"{cidr}\"\n",
            if r.deny { "deny" } else { "allow" }
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

/// The manifest's meaning, straight from the rule table.
fn oracle(policy: &Policy, dst: IpAddr, proto: Proto, port: u16) -> Action {
    let hit = |action| {
        policy
            .rules
            .iter()
            .any(|r| r.action == action && r.matches(dst, proto, port))
    };
    if hit(Action::Deny) {
        Action::Deny
    } else if hit(Action::Allow) {
        Action::Allow
    } else {
        Action::Deny
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn kernel_plan_agrees_with_manifest_semantics(rules in prop::collection::vec(rule(), 0..8)) {
        let src = manifest(&rules);
        // Overlapping random rules can exceed the slot limit; that refusal is tested elsewhere.
        let policy = match compile(&src, "prop") {
            Ok(p) => p,
            Err(e) if e.message.contains("slots") => return Ok(()),
            Err(e) => panic!("{e}\n{src}"),
        };
        let plan = policy.kernel_plan();
        let mut dsts: Vec<IpAddr> = (0..16).map(|o| IpAddr::V4(Ipv4Addr::new(10, 0, 0, o))).collect();
        dsts.push("10.0.0.7".parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped().into());
        dsts.push("192.0.2.1".parse().unwrap());
        dsts.push("2001:db8::1".parse().unwrap());
        for dst in dsts {
            for proto in [Proto::Tcp, Proto::Udp] {
                for port in 0..=11 {
                    let got = evaluate(&plan, dst, proto, port);
                    let want = oracle(&policy, dst, proto, port);
                    prop_assert_eq!(got.action, want, "{} {} {}\n{}\n{}", dst, proto, port, src, plan);
                    // Prefix rules never send anything to the proxy.
                    prop_assert!(!got.redirect);
                    // The reported rule really covers this traffic with that action.
                    if let Some(id) = got.rule_id {
                        let rule = policy.rule(id).unwrap();
                        prop_assert!(rule.action == got.action && rule.matches(dst, proto, port));
                    } else {
                        prop_assert_eq!(got.action, Action::Deny);
                    }
                }
            }
        }
    }
}
