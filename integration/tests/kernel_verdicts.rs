//! The kernel's decision, packet by packet, against the policy crate's reference model.
//! The real cgroup_skb program (attached nowhere) runs on synthetic packets through
//! BPF_PROG_TEST_RUN, with maps filled from a manifest whose rules overlap in every way
//! (deny inside allow, allow inside deny, per-port and per-protocol slots, v4 and v6); each
//! verdict must equal `cork_policy::evaluate` on the same plan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use cork_bpf::LoadConstants;
use cork_bpf::test_run::{SkbTestRun, ip_packet};
use cork_integration::verdicts::{
    Lcg, PROXY_MANIFEST, PROXY_NAMES, PinnedRun, cgroup_consts, learn_names,
};
use cork_policy::{Action, Proto};

const CONSTS: LoadConstants = cgroup_consts(7);

const MANIFEST: &str = r#"
version = 1
[bottle]
name = "verdicts"

[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443, "8000-8100"]

[[egress.allow]]
cidr = "198.51.100.64/26"
proto = "udp"
ports = [53]

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.allow]]
cidr = "198.51.100.66/32"
ports = [22]

[[egress.deny]]
cidr = "198.51.100.128/25"
ports = [8080]
proto = "tcp"

[[egress.allow]]
cidr = "2001:db8::/64"
proto = "any"
ports = ["1000-2000"]

[[egress.deny]]
cidr = "2001:db8::66/128"
proto = "udp"

[loopback]
host_ports = [8125]
"#;

/// The manifest's plan, and its programs loaded (not attached) with their pins under a
/// name `cork clean` leaves alone (not `cork-<name>-<pid>`: other tests run it meanwhile).
fn load(tag: &str) -> Result<(cork_policy::KernelPlan, PinnedRun<SkbTestRun>)> {
    let plan = cork_policy::compile(MANIFEST, "verdicts.toml")?.kernel_plan();
    let mut h = PinnedRun::new("verdicts", tag)?;
    h.run = Some(SkbTestRun::load(CONSTS, &h.pin_dir, &plan)?);
    Ok((plan, h))
}

#[test]
fn skb_verdicts_match_the_policy_model() -> Result<()> {
    let (plan, mut h) = load("test")?;
    let run = h.run.as_mut().expect("loaded");

    let src4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let src6: IpAddr = "2001:db8::1".parse()?;
    let ports = [
        22u16, 53, 443, 999, 1000, 1500, 2000, 2001, 8000, 8080, 8100, 8101,
    ];
    let v4_hosts = [0u8, 1, 10, 63, 64, 65, 66, 67, 127, 128, 200, 255];
    let v6_hosts = [0u16, 1, 0x10, 0x66, 0x67, 0xffff];
    let mut rng = Lcg(0x5eed);
    let (mut passed, mut dropped) = (0, 0);
    for _ in 0..3000 {
        let proto = rng.pick(&[Proto::Tcp, Proto::Udp]);
        let port = rng.pick(&ports);
        let (src, dst) = if rng.next_u64().is_multiple_of(2) {
            (
                src4,
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.pick(&v4_hosts))),
            )
        } else {
            // Half in the allowed /64, half just outside it.
            let hi = rng.pick(&[0u16, 1]);
            let dst = Ipv6Addr::new(0x2001, 0xdb8, 0, hi, 0, 0, 0, rng.pick(&v6_hosts));
            (src6, IpAddr::V6(dst))
        };
        let want = cork_policy::evaluate(&plan, dst, proto, port).action == Action::Allow;
        let got = run.passes(&ip_packet(src, dst, proto.ip_proto(), 40000, port))?;
        assert_eq!(
            got, want,
            "{proto:?} to {dst} port {port}: kernel passes={got}, model {want}"
        );
        if got { passed += 1 } else { dropped += 1 }
    }
    // The table exercised both outcomes.
    assert!(
        passed > 300 && dropped > 300,
        "passed {passed}, dropped {dropped}"
    );
    Ok(())
}

#[test]
fn skb_drops_unknown_sockets_loopback_and_non_tcp_udp() -> Result<()> {
    let (_plan, mut h) = load("loop")?;
    let run = h.run.as_mut().expect("loaded");

    let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let allowed4: IpAddr = "198.51.100.10".parse()?;
    let cases = [
        // A socket the bottle did not create reaches only the host ports on loopback.
        (lo4, lo4, 6, 8125, true),
        (lo6, lo6, 17, 8125, true),
        (lo4, lo4, 6, 3000, false),
        (lo6, lo6, 6, 3000, false),
        // ICMP (1), ICMPv6 (58), SCTP (132) never pass, even to an allowed prefix.
        (allowed4, allowed4, 1, 0, false),
        (lo6, "2001:db8::10".parse()?, 58, 0, false),
        (allowed4, allowed4, 132, 443, false),
        // And the plain allowed case, as the control.
        ("198.51.100.1".parse()?, allowed4, 6, 443, true),
    ];
    for (src, dst, proto, port, want) in cases {
        let got = run.passes(&ip_packet(src, dst, proto, 40000, port))?;
        assert_eq!(got, want, "proto {proto} to {dst} port {port}");
    }
    Ok(())
}

/// A learned host entry (what the DNS proxy will install for an allowed name's address)
/// adds its slots only until it expires, and never hides the manifest's prefix rules.
#[test]
fn learned_entries_apply_until_they_expire_and_never_hide_static_rules() -> Result<()> {
    use cork_bpf::test_run::boot_ns;
    use cork_policy::Slot;

    let (plan, mut h) = load("learn")?;
    let run = h.run.as_mut().expect("loaded");

    let name_slot = Slot {
        port_lo: 9443,
        port_hi: 9443,
        proto: Proto::Tcp,
        action: Action::Allow,
        rule_id: 7,
        redirect: cork_policy::Redirect::None,
    };
    let src4: IpAddr = "198.51.100.1".parse()?;
    let src6: IpAddr = "2001:db8::1".parse()?;
    let fresh = boot_ns() + 60_000_000_000;
    let stale = boot_ns() - 1;
    let tcp = |src, dst: &str, port| -> Result<Vec<u8>> {
        Ok(ip_packet(src, dst.parse()?, 6, 40000, port))
    };

    // Inside 198.51.100.0/24 (static: 443 and 8000-8100): learned 9443 adds to them.
    let e = plan.learned_entry("198.51.100.77".parse()?, &[name_slot])?;
    run.learn(&e, fresh)?;
    assert!(
        run.passes(&tcp(src4, "198.51.100.77", 9443)?)?,
        "learned port"
    );
    assert!(
        run.passes(&tcp(src4, "198.51.100.77", 443)?)?,
        "static port still"
    );
    assert!(!run.passes(&tcp(src4, "198.51.100.77", 9444)?)?);
    run.learn(&e, stale)?;
    assert!(
        !run.passes(&tcp(src4, "198.51.100.77", 9443)?)?,
        "expired: learned port gone"
    );
    assert!(
        run.passes(&tcp(src4, "198.51.100.77", 443)?)?,
        "expired: static port stays"
    );

    // A name resolving into a denied prefix stays denied.
    let e = plan.learned_entry("198.51.100.66".parse()?, &[name_slot])?;
    run.learn(&e, fresh)?;
    assert!(
        !run.passes(&tcp(src4, "198.51.100.66", 9443)?)?,
        "cidr deny beats the name"
    );

    // Outside every prefix (IPv6 beyond the /64): only the learned slot, only while fresh.
    let e = plan.learned_entry("2001:db8:1::10".parse()?, &[name_slot])?;
    run.learn(&e, fresh)?;
    assert!(run.passes(&tcp(src6, "2001:db8:1::10", 9443)?)?);
    assert!(!run.passes(&tcp(src6, "2001:db8:1::10", 443)?)?);
    run.learn(&e, stale)?;
    assert!(!run.passes(&tcp(src6, "2001:db8:1::10", 9443)?)?);
    Ok(())
}

/// The real skb program on addresses learned for names with redirecting rules agrees with
/// the policy model: a packet passes (on a socket no connect() vetted) exactly when the
/// model allows it without the proxy — traffic the policy sends through the proxy never
/// goes direct, and UDP to an inspected port (HTTP/3) is refused.
#[test]
fn skb_verdicts_for_proxied_names_match_the_policy_model() -> Result<()> {
    use cork_bpf::test_run::boot_ns;
    use cork_policy::compile;

    let policy = compile(PROXY_MANIFEST, "verdicts-proxy.toml")?;
    let plan = policy.kernel_plan();
    let mut h = PinnedRun::new("verdicts", "proxy")?;
    h.run = Some(SkbTestRun::load(CONSTS, &h.pin_dir, &plan)?);
    let run = h.run.as_mut().expect("loaded");

    let src: IpAddr = "198.51.100.1".parse()?;
    let fresh = boot_ns() + 60_000_000_000;
    let ports = [22u16, 80, 443, 8443, 9000, 9001, 9002];
    // Each name learned at its own host (the kernel's trie and the model alike).
    let model = learn_names(&policy, &plan, &PROXY_NAMES, |e| Ok(run.learn(e, fresh)?))?;
    let (mut redirected, mut passed, mut dropped) = (0, 0, 0);
    for (name, host) in PROXY_NAMES {
        let dst = IpAddr::V4(Ipv4Addr::new(198, 51, 100, host));
        for proto in [Proto::Tcp, Proto::Udp] {
            for port in ports {
                let v = cork_policy::evaluate(&model, dst, proto, port);
                let want = v.action == Action::Allow && !v.redirect;
                let got = run.passes(&ip_packet(src, dst, proto.ip_proto(), 40000, port))?;
                assert_eq!(
                    got, want,
                    "{name}@{dst} {proto:?} {port}: kernel passes={got}, model {v:?}"
                );
                redirected += usize::from(v.redirect);
                if got { passed += 1 } else { dropped += 1 }
            }
        }
    }
    assert!(
        redirected >= 6 && passed >= 6 && dropped >= 6,
        "redirected {redirected}, passed {passed}, dropped {dropped}"
    );
    Ok(())
}
