//! What the kernel does with an address learned for a name — allow, deny, redirect to the
//! proxy, refuse QUIC — must agree with the manifest's plain meaning: a `cidr` deny wins;
//! then UDP that a matching domain allow rule would send to the proxy is refused (HTTP/3
//! must fall back to TCP); then any matching rule allows, and TCP is redirected when a
//! matching domain rule sends that port to the proxy.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use cork_policy::{Action, InspectMode, KernelPlan, Policy, PrefixEntry, Proto, compile, evaluate};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{Counted, check_counted};

const NAME: &str = "n.example.test";
const PORTS: [u16; 6] = [22, 80, 443, 8443, 9000, 9001];

#[derive(Debug, Clone)]
struct DomainRule {
    /// "n.example.test", "*.example.test" (both match NAME) or "o.example.test" (not).
    domain: &'static str,
    deny: bool,
    inspect: Option<bool>,
    ports: Vec<&'static str>,
    proto: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct CidrRule {
    deny: bool,
    /// 10.0.0.x/len, host bits cleared when written.
    net: (u8, u8),
    ports: Vec<&'static str>,
    proto: Option<&'static str>,
}

fn ports() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(&["80", "443", "8443", "9000-9001"][..], 0..=3)
}

fn proto() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("tcp")),
        Just(Some("udp")),
        Just(Some("any"))
    ]
}

fn domain_rule() -> impl Strategy<Value = DomainRule> {
    (
        prop::sample::select(&["n.example.test", "*.example.test", "o.example.test"][..]),
        prop::bool::weighted(0.15),
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        ports(),
        proto(),
    )
        .prop_map(|(domain, deny, inspect, ports, proto)| DomainRule {
            domain,
            deny,
            // `inspect = true` with `proto = "udp"` is refused at parse time.
            inspect: if deny || (inspect == Some(true) && proto == Some("udp")) {
                None
            } else {
                inspect
            },
            ports,
            proto,
        })
}

fn cidr_rule() -> impl Strategy<Value = CidrRule> {
    (any::<bool>(), (0u8..4, 30u8..=32), ports(), proto()).prop_map(|(deny, net, ports, proto)| {
        CidrRule {
            deny,
            net,
            ports,
            proto,
        }
    })
}

fn list(ports: &[&str]) -> String {
    let quoted: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    format!("ports = [{}]\n", quoted.join(", "))
}

fn manifest(domains: &[DomainRule], cidrs: &[CidrRule]) -> String {
    let mut src = String::from("version = 1\n[bottle]\nname = \"prop\"\n");
    for d in domains {
        let kind = if d.deny { "deny" } else { "allow" };
        src += &format!("[[egress.{kind}]]\ndomain = \"{}\"\n", d.domain);
        if d.deny {
            continue;
        }
        if !d.ports.is_empty() {
            src += &list(&d.ports);
        }
        if let Some(p) = d.proto {
            src += &format!("proto = \"{p}\"\n");
        }
        if let Some(i) = d.inspect {
            src += &format!("inspect = {i}\n");
        }
    }
    for c in cidrs {
        let kind = if c.deny { "deny" } else { "allow" };
        let (octet, len) = c.net;
        let addr = octet & !((1u16 << (32 - len)) - 1) as u8;
        src += &format!("[[egress.{kind}]]\ncidr = \"10.0.0.{addr}/{len}\"\n");
        if !c.ports.is_empty() {
            src += &list(&c.ports);
        }
        if let Some(p) = c.proto {
            src += &format!("proto = \"{p}\"\n");
        }
    }
    src
}

fn covers(
    rule_ports: &[&str],
    rule_proto: Option<&str>,
    deny: bool,
    proto: Proto,
    port: u16,
) -> bool {
    let proto_ok = match rule_proto {
        None if deny => true,
        None | Some("tcp") => proto == Proto::Tcp,
        Some("udp") => proto == Proto::Udp,
        _ => true,
    };
    let port_ok = rule_ports.is_empty()
        || rule_ports.iter().any(|p| match p.split_once('-') {
            Some((lo, hi)) => (lo.parse().unwrap()..=hi.parse().unwrap()).contains(&port),
            None => p.parse::<u16>().unwrap() == port,
        });
    proto_ok && port_ok
}

fn matches_name(d: &DomainRule) -> bool {
    d.domain != "o.example.test"
}

/// Whether a domain allow rule sends `port` to the proxy, once it covers the traffic.
fn sends_to_proxy(d: &DomainRule, port: u16) -> bool {
    d.inspect == Some(true) || port == 80 || port == 443
}

/// The manifest's meaning for NAME resolving to `dst`: (action, redirect).
fn oracle(
    domains: &[DomainRule],
    cidrs: &[CidrRule],
    dst: u8,
    proto: Proto,
    port: u16,
) -> (Action, bool) {
    let in_net = |c: &CidrRule| {
        let (octet, len) = c.net;
        let mask = !((1u16 << (32 - len)) - 1) as u8;
        dst & mask == octet & mask
    };
    let cidr_hit = |deny: bool| {
        cidrs
            .iter()
            .any(|c| c.deny == deny && in_net(c) && covers(&c.ports, c.proto, c.deny, proto, port))
    };
    if cidr_hit(true) {
        return (Action::Deny, false);
    }
    let name_denied = domains.iter().any(|d| d.deny && matches_name(d));
    let name_rules: Vec<&DomainRule> = domains
        .iter()
        .filter(|d| !d.deny && !name_denied && matches_name(d))
        .filter(|d| covers(&d.ports, d.proto, false, proto, port))
        .collect();
    let to_proxy = name_rules.iter().any(|d| sends_to_proxy(d, port));
    if proto == Proto::Udp && to_proxy {
        return (Action::Deny, false);
    }
    if cidr_hit(false) || !name_rules.is_empty() {
        (Action::Allow, proto == Proto::Tcp && to_proxy)
    } else {
        (Action::Deny, false)
    }
}

/// `plan` with the entry the DNS proxy would install for NAME at `dst`, or `None` when it
/// does not fit the kernel's slots (that refusal is tested elsewhere).
fn with_learned(policy: &Policy, plan: &KernelPlan, dst: IpAddr) -> Option<KernelPlan> {
    let learned = plan.learned_entry(dst, &policy.allowed_slots(NAME)).ok()?;
    let mut out = plan.clone();
    out.v4.retain(|e| e.prefix != learned.prefix);
    out.v4.push(PrefixEntry {
        prefix: learned.prefix,
        slots: learned.slots,
    });
    Some(out)
}

#[test]
fn learned_names_redirect_and_refuse_quic_as_the_manifest_says() {
    check_counted(
        Counted {
            name: "learned_names_redirect_and_refuse_quic_as_the_manifest_says",
            source_file: file!(),
            cases: 512,
            // A rule set the slots cannot hold, or one where no destination's learned
            // entry fits, is discarded and replaced, at most this often.
            max_discards: 256,
            // Of 5 destinations x 2 protocols x 6 ports per case, at least 3 destinations'
            // worth must be checked on average.
            min_points: 512 * 3 * 2 * PORTS.len() as u64,
        },
        (
            prop::collection::vec(domain_rule(), 0..5),
            prop::collection::vec(cidr_rule(), 0..4),
        ),
        |(domains, cidrs)| {
            let src = manifest(&domains, &cidrs);
            let policy = match compile(&src, "prop") {
                Ok(p) => p,
                Err(e) if e.message.contains("slots") => return Ok(0),
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{src}"))),
            };
            let plan = policy.kernel_plan();
            let mut points = 0;
            for octet in 0..5u8 {
                let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, octet));
                // Counted: a destination whose learned entry does not fit checks nothing.
                let Some(learned) = with_learned(&policy, &plan, dst) else {
                    continue;
                };
                for proto in [Proto::Tcp, Proto::Udp] {
                    for port in PORTS {
                        let got = evaluate(&learned, dst, proto, port);
                        let want = oracle(&domains, &cidrs, octet, proto, port);
                        prop_assert_eq!(
                            (got.action, got.redirect),
                            want,
                            "{} {} {}\n{}\n{}",
                            dst,
                            proto,
                            port,
                            src,
                            learned
                        );
                        // A QUIC refusal names a domain allow rule that would redirect the port.
                        let quic_refusal = (proto == Proto::Udp && got.action == Action::Deny)
                            .then_some(got.rule_id)
                            .flatten()
                            .and_then(|id| policy.domain_rule(id))
                            .filter(|d| d.action == Action::Allow);
                        if let Some(d) = quic_refusal {
                            let rule = policy.rule(d.rule_id).expect("a reported rule exists");
                            prop_assert!(rule.covers_port(proto, port));
                            prop_assert!(d.inspect == InspectMode::On || port == 80 || port == 443);
                        }
                        points += 1;
                    }
                }
            }
            Ok(points)
        },
    );
}
