//! The VM bottle's tap program (`ebpf/tap.bpf.c`), run by the kernel on synthetic
//! Ethernet frames from a guest (`BPF_PROG_TEST_RUN`, attached nowhere), checked against
//! the policy model; and the same program attached to a real device through a tcx link,
//! read back and removed.
//!
//! The model a guest's frame is judged by: the guest's MAC and addresses only (anti-spoof),
//! DNS to any address handed to the DNS proxy, the gateway only on host ports, everything
//! else exactly as `cork_policy::evaluate` says for a cgroup bottle.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use cork_bpf::abi::{cork_guest, cork_mark};
use cork_bpf::test_run::{TapTestRun, TapVerdict, eth_frame, ip_packet};
use cork_bpf::{AttachTarget, Enforcement, LoadConstants};
use cork_integration::World;
use cork_integration::verdicts::{Lcg, PROXY_MANIFEST, PROXY_NAMES, PinnedRun, learn_names};
use cork_policy::{Action, Proto};

const MANIFEST: &str = r#"
version = 1
[bottle]
name = "tapverdicts"

[[egress.allow]]
cidr = "198.51.100.0/25"
ports = [443, "8000-8100"]

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.allow]]
cidr = "198.51.100.64/26"
proto = "udp"
ports = [5000]

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

const MAC: [u8; 6] = [0x02, 0xc0, 0x4b, 0, 0, 0x82];
const GUEST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 130);
const GW4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 129);
const PREFIX6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0);
const GUEST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0x82);
const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 1);
const GW6_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn guest() -> cork_guest {
    cork_guest {
        mac: MAC,
        v6_prefix_len: 64,
        v4: GUEST4.octets(),
        gw4: GW4.octets(),
        v6_prefix: PREFIX6.octets(),
        gw6: GW6.octets(),
        gw6_ll: GW6_LL.octets(),
        ..Default::default()
    }
}

fn consts() -> LoadConstants {
    LoadConstants {
        bottle_id: 9,
        dns_port: 0,
        proxy_port: 0,
        guest: Some(guest()),
    }
}

fn load(tag: &str) -> Result<(cork_policy::KernelPlan, PinnedRun<TapTestRun>)> {
    let plan = cork_policy::compile(MANIFEST, "tapverdicts.toml")?.kernel_plan();
    let mut h = PinnedRun::new("tapverdicts", tag)?;
    h.run = Some(TapTestRun::load(consts(), &h.pin_dir, &plan)?);
    Ok((plan, h))
}

const DROP: TapVerdict = TapVerdict {
    passed: false,
    mark: 0,
};

fn pass(mark: u32) -> TapVerdict {
    TapVerdict { passed: true, mark }
}

/// What the tap must do with a packet from the guest's own MAC and address.
fn model(plan: &cork_policy::KernelPlan, dst: IpAddr, proto: Proto, port: u16) -> TapVerdict {
    if port == 53 {
        return pass(cork_mark::CORK_MARK_DNS);
    }
    if dst == IpAddr::V4(GW4) || dst == IpAddr::V6(GW6) {
        return if port == 8125 {
            pass(cork_mark::CORK_MARK_HOST)
        } else {
            DROP
        };
    }
    let v = cork_policy::evaluate(plan, dst, proto, port);
    match v.action {
        Action::Allow if v.redirect => pass(cork_mark::CORK_MARK_INSPECT),
        Action::Allow => pass(cork_mark::CORK_MARK_DIRECT),
        _ => DROP,
    }
}

#[test]
fn tap_verdicts_match_the_policy_model() -> Result<()> {
    let (plan, mut h) = load("model")?;
    let run = h.run.as_mut().context("loaded")?;
    let ports = [
        22u16, 53, 443, 999, 1000, 1500, 2000, 2001, 5000, 8000, 8100, 8125, 8101,
    ];
    let v4_hosts = [1u8, 10, 63, 64, 65, 66, 67, 127, 129, 200];
    let v6_hosts = [0x1u16, 0x10, 0x66, 0x67, 0xffff];
    let mut rng = Lcg(0x7a9);
    let (mut passed, mut dropped) = (0, 0);
    for _ in 0..3000 {
        let proto = rng.pick(&[Proto::Tcp, Proto::Udp]);
        let port = rng.pick(&ports);
        let (src, dst) = match rng.next_u64() % 3 {
            0 => (
                IpAddr::V4(GUEST4),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.pick(&v4_hosts))),
            ),
            1 => {
                let hi = rng.pick(&[0u16, 1]);
                let dst = Ipv6Addr::new(0x2001, 0xdb8, 0, hi, 0, 0, 0, rng.pick(&v6_hosts));
                (IpAddr::V6(GUEST6), IpAddr::V6(dst))
            }
            _ => (IpAddr::V6(GUEST6), IpAddr::V6(GW6)),
        };
        let want = model(&plan, dst, proto, port);
        let frame = eth_frame(MAC, &ip_packet(src, dst, proto.ip_proto(), 40000, port));
        let got = run.run(&frame)?;
        assert_eq!(got, want, "{proto:?} to {dst} port {port}");
        if got.passed {
            passed += 1
        } else {
            dropped += 1
        }
    }
    assert!(
        passed > 300 && dropped > 300,
        "passed {passed}, dropped {dropped}"
    );
    Ok(())
}

#[test]
fn spoofed_guests_and_other_protocols_are_dropped() -> Result<()> {
    let (_plan, mut h) = load("spoof")?;
    let run = h.run.as_mut().context("loaded")?;
    let allowed: IpAddr = "198.51.100.10".parse()?;
    let other_mac = [0x02, 0xc0, 0x4b, 0, 0, 0x99];
    let tcp = 6;
    let udp = 17;
    let cases: Vec<(&str, Vec<u8>, TapVerdict)> = vec![
        (
            "control: allowed from the guest",
            eth_frame(MAC, &ip_packet(GUEST4.into(), allowed, tcp, 40000, 443)),
            pass(cork_mark::CORK_MARK_DIRECT),
        ),
        (
            "another MAC, even to an allowed destination",
            eth_frame(
                other_mac,
                &ip_packet(GUEST4.into(), allowed, tcp, 40000, 443),
            ),
            DROP,
        ),
        (
            "another source address",
            eth_frame(
                MAC,
                &ip_packet("198.51.100.131".parse()?, allowed, tcp, 40000, 443),
            ),
            DROP,
        ),
        (
            "an IPv6 source outside the guest's /64",
            eth_frame(
                MAC,
                &ip_packet(
                    "2001:db8:100:2::82".parse()?,
                    "2001:db8::10".parse()?,
                    tcp,
                    40000,
                    1500,
                ),
            ),
            DROP,
        ),
        (
            "control: IPv6 inside the guest's /64",
            eth_frame(
                MAC,
                &ip_packet(
                    "2001:db8:100:1::1234".parse()?,
                    "2001:db8::10".parse()?,
                    tcp,
                    40000,
                    1500,
                ),
            ),
            pass(cork_mark::CORK_MARK_DIRECT),
        ),
        (
            "ICMP echo to an allowed host",
            eth_frame(MAC, &ip_packet(GUEST4.into(), allowed, 1, 0, 0)),
            DROP,
        ),
        (
            "DNS to any resolver goes to the DNS proxy",
            eth_frame(
                MAC,
                &ip_packet(GUEST4.into(), "198.51.100.250".parse()?, udp, 40000, 53),
            ),
            pass(cork_mark::CORK_MARK_DNS),
        ),
        (
            "DHCP from 0.0.0.0",
            eth_frame(
                MAC,
                &ip_packet(
                    Ipv4Addr::UNSPECIFIED.into(),
                    Ipv4Addr::BROADCAST.into(),
                    udp,
                    68,
                    67,
                ),
            ),
            pass(cork_mark::CORK_MARK_LINK),
        ),
        (
            "UDP from 0.0.0.0 to anything but DHCP",
            eth_frame(
                MAC,
                &ip_packet(Ipv4Addr::UNSPECIFIED.into(), allowed, udp, 68, 443),
            ),
            DROP,
        ),
        (
            "the gateway on a host port",
            eth_frame(MAC, &ip_packet(GUEST4.into(), GW4.into(), tcp, 40000, 8125)),
            pass(cork_mark::CORK_MARK_HOST),
        ),
        (
            "the gateway on another port",
            eth_frame(MAC, &ip_packet(GUEST4.into(), GW4.into(), tcp, 40000, 22)),
            DROP,
        ),
        (
            "the gateway's link-local address on a host port",
            eth_frame(
                MAC,
                &ip_packet(GUEST6.into(), GW6_LL.into(), tcp, 40000, 8125),
            ),
            pass(cork_mark::CORK_MARK_HOST),
        ),
    ];
    for (what, frame, want) in cases {
        assert_eq!(run.run(&frame)?, want, "{what}");
    }

    // ARP: the guest's own address (or a probe from 0.0.0.0) only.
    let arp = |sender: Ipv4Addr, mac: [u8; 6]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&sender.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&GW4.octets());
        f
    };
    assert_eq!(run.run(&arp(GUEST4, MAC))?, pass(cork_mark::CORK_MARK_LINK));
    assert_eq!(
        run.run(&arp(Ipv4Addr::UNSPECIFIED, MAC))?,
        pass(cork_mark::CORK_MARK_LINK)
    );
    assert_eq!(
        run.run(&arp("198.51.100.1".parse()?, MAC))?,
        DROP,
        "ARP for another address"
    );

    // NDP from link-local passes; anything else from link-local does not.
    let mut ns = ip_packet("fe80::82".parse()?, "ff02::1:ff00:1".parse()?, 58, 0, 0);
    ns[40] = 135; // ICMPv6 type: neighbour solicitation
    assert_eq!(
        run.run(&eth_frame(MAC, &ns))?,
        pass(cork_mark::CORK_MARK_LINK)
    );
    let ll_tcp = ip_packet(
        "fe80::82".parse()?,
        "2001:db8::10".parse()?,
        tcp,
        40000,
        1500,
    );
    assert_eq!(
        run.run(&eth_frame(MAC, &ll_tcp))?,
        DROP,
        "TCP from link-local"
    );
    Ok(())
}

/// The program attached the way a VM bottle's tap gets it: a tcx link on the device,
/// pinned, read back by the verification, and gone after removal.
#[test]
fn tap_program_attaches_to_a_device_verifies_and_detaches() -> Result<()> {
    let world = World::new("tap_program_attaches_to_a_device")?;
    let dev = format!("{}t", world.id());
    let peer = format!("{}u", world.id());
    // A veth pair inside the world's namespace stands in for a tap (no dummy module here).
    world
        .bottle()
        .ip(&["link", "add", &dev, "type", "veth", "peer", "name", &peer])?;
    world.bottle().ip(&["link", "set", &dev, "up"])?;
    let plan = cork_policy::compile(MANIFEST, "tapverdicts.toml")?.kernel_plan();
    let pin_dir = cork_agent::mounts::ensure_bpffs()?
        .join(format!("cork-tapverdicts-{}-attach", std::process::id()));
    let dev2 = dev.clone();
    let attached = world.bottle().run(move || {
        let target = AttachTarget::TcIngress { ifname: dev2 };
        let enf = Enforcement::install(consts(), &target, &pin_dir, &plan)?;
        enf.verify(&target, &plan, 0)?;
        let pinned = pin_dir.join("link_cork_tap_ingress").exists();
        let problems = enf.remove();
        anyhow::ensure!(problems.is_empty(), "removal: {problems:?}");
        Ok((pinned, pin_dir.exists()))
    })?;
    assert_eq!(
        attached,
        (true, false),
        "(link pinned, pin dir left after removal)"
    );
    let shown = world.bottle().ip(&["link", "show", &dev])?;
    assert!(shown.contains(&dev), "{shown}");
    Ok(())
}

/// Addresses learned for names whose rules inspect: TCP to an inspected port is marked for
/// the inspecting proxy, UDP to it (HTTP/3) is dropped, other allowed ports go direct —
/// exactly as the policy model says for a cgroup bottle.
#[test]
fn tap_marks_inspected_flows_of_learned_names_like_the_model() -> Result<()> {
    use cork_bpf::test_run::boot_ns;
    use cork_policy::compile;

    let policy = compile(PROXY_MANIFEST, "verdicts-proxy.toml")?;
    let plan = policy.kernel_plan();
    let mut h = PinnedRun::new("tapverdicts", "proxy")?;
    h.run = Some(TapTestRun::load(consts(), &h.pin_dir, &plan)?);
    let run = h.run.as_mut().context("loaded")?;
    let fresh = boot_ns() + 60_000_000_000;
    let model_plan = learn_names(&policy, &plan, &PROXY_NAMES, |e| Ok(run.learn(e, fresh)?))?;
    let mut inspected = 0;
    for (name, host) in PROXY_NAMES {
        let dst = IpAddr::V4(Ipv4Addr::new(198, 51, 100, host));
        for proto in [Proto::Tcp, Proto::Udp] {
            for port in [22u16, 80, 443, 8443, 9000, 9001, 9002] {
                let want = model(&model_plan, dst, proto, port);
                let frame = eth_frame(
                    MAC,
                    &ip_packet(GUEST4.into(), dst, proto.ip_proto(), 40000, port),
                );
                let got = run.run(&frame)?;
                assert_eq!(got, want, "{name}@{dst} {proto:?} {port}");
                inspected += usize::from(got.mark == cork_mark::CORK_MARK_INSPECT);
            }
        }
    }
    assert!(inspected >= 4, "only {inspected} inspected flows exercised");
    Ok(())
}
