//! Golden and validation tests of the VM bottle plan.

use super::*;

/// A bottle as the integration tests set it up (guest side 198.51.100.128/26,
/// 2001:db8:100::/56).
pub(crate) fn sample() -> VmRules {
    VmRules {
        id: 7,
        ifname: "ck7".into(),
        guest_mac: [0x52, 0x54, 0x00, 0xc0, 0x00, 0x07],
        guest_v4: "198.51.100.130".parse().expect("v4"),
        gateway_v4: "198.51.100.129".parse().expect("v4"),
        guest_v6: "2001:db8:100:7::1234".parse().expect("v6"),
        guest_v6_prefix: 64,
        gateway_v6: "2001:db8:100:7::1".parse().expect("v6"),
        gateway_v6_ll: Some("fe80::1".parse().expect("v6")),
        dns_port: 5353,
        proxy_port: 15001,
        host_ports: vec![7000],
        marks: Marks::CORK,
    }
}

/// Compares with `golden/<name>`; `CORK_BLESS=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("CORK_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {} ({e}); run with CORK_BLESS=1", path.display()));
    assert_eq!(actual, want, "plan differs from {}", path.display());
}

#[test]
fn plan_matches_golden() {
    let plan = sample().plan().expect("plan");
    golden("vm_bottle_7.nft", &plan.to_string());
}

#[test]
fn one_address_v6_guest_and_no_host_ports() {
    let rules = VmRules {
        id: 12,
        guest_v6: "2001:db8:100:7::1234".parse().expect("v6"),
        guest_v6_prefix: 128,
        host_ports: vec![],
        ..sample()
    };
    let plan = rules.plan().expect("plan");
    let text = plan.to_string();
    assert!(
        text.contains("ip6 saddr 2001:db8:100:7::1234 return"),
        "{text}"
    );
    assert!(!text.contains("0x03000000"), "no host-port rules: {text}");
    let names: Vec<&str> = plan.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["b12_guard", "b12_pre", "b12_in", "b12_fwd", "b12_post"]
    );
}

#[test]
fn every_chain_ends_closed_or_only_nats() {
    let plan = sample().plan().expect("plan");
    for chain in &plan.chains {
        let last = chain.rules.last().expect("rules");
        match chain.chain_type {
            crate::plan::ChainType::Filter => {
                assert_eq!(last.action, Action::Drop, "{} must end in drop", chain.name)
            }
            crate::plan::ChainType::Nat => assert!(
                chain.rules.iter().all(|r| r.action != Action::Accept),
                "{} must not accept",
                chain.name
            ),
        }
    }
}

#[test]
fn bad_rules_are_refused() {
    let cases: Vec<(VmRules, &str)> = vec![
        (
            VmRules {
                ifname: "a-very-long-interface".into(),
                ..sample()
            },
            "IFNAMSIZ",
        ),
        (
            VmRules {
                ifname: "ck/7".into(),
                ..sample()
            },
            "'/'",
        ),
        (
            VmRules {
                guest_mac: [0x01, 0, 0x5e, 0, 0, 1],
                ..sample()
            },
            "unicast",
        ),
        (
            VmRules {
                guest_v6_prefix: 60,
                ..sample()
            },
            "multiple of 8",
        ),
        (
            VmRules {
                dns_port: 0,
                ..sample()
            },
            "dns_port",
        ),
        (
            VmRules {
                host_ports: vec![22, 0],
                ..sample()
            },
            "host port",
        ),
        (
            VmRules {
                gateway_v4: std::net::Ipv4Addr::UNSPECIFIED,
                ..sample()
            },
            "gateway_v4",
        ),
        (
            VmRules {
                marks: Marks {
                    direct: 0,
                    ..Marks::CORK
                },
                ..sample()
            },
            "marks",
        ),
    ];
    for (rules, needle) in cases {
        let err = rules.plan().expect_err(needle).to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
}

#[test]
fn v6_prefixes_are_masked() {
    assert_eq!(
        mask_v6("2001:db8:100:7::1234".parse().expect("v6"), 64),
        "2001:db8:100:7::".parse::<Ipv6Addr>().expect("v6")
    );
    assert_eq!(
        mask_v6("2001:db8:100:7::1234".parse().expect("v6"), 128),
        "2001:db8:100:7::1234".parse::<Ipv6Addr>().expect("v6")
    );
}

#[test]
fn without_an_inspecting_proxy_nothing_is_dnated_or_accepted_for_it() {
    let rules = VmRules {
        proxy_port: 0,
        ..sample()
    };
    let text = rules.plan().expect("plan").to_string();
    let with = sample().plan().expect("plan").to_string();
    // The inspect mark appears only in the proxy's DNAT and input rules.
    assert!(with.contains("0x02000000"), "{with}");
    assert!(!text.contains("0x02000000"), "{text}");
    assert!(text.contains("dnat"), "the DNS DNAT stays: {text}");
}

#[test]
fn host_ports_are_reachable_on_the_link_local_gateway_and_nothing_else_is() {
    let text = sample().plan().expect("plan").to_string();
    let ll: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("daddr fe80::1") && l.ends_with("accept"))
        .collect();
    assert_eq!(ll.len(), 2, "TCP and UDP to port 7000 only: {ll:#?}");
    assert!(ll.iter().all(|l| l.contains("dport 7000")), "{ll:#?}");
    // The guard lets the guest's link-local address talk to the router's, nothing else.
    let guard: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("saddr fe80::/64 ip6 daddr"))
        .collect();
    assert_eq!(guard.len(), 1, "{guard:#?}");
    let bad = VmRules {
        gateway_v6_ll: Some("2001:db8::1".parse().expect("v6")),
        ..sample()
    };
    assert!(matches!(bad.validate(), Err(PlanError::Address { .. })));
}
