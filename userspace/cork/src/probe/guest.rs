//! `cork probe --guest`: the probe run inside a VM bottle's guest. A guest has no cgroup
//! hook and no seccomp filter of cork's: what cork promises it is what the tap enforces.
//! So the guest catalogue keeps the network and DNS promises and changes what they
//! expect — a denied connect is *dropped* (it times out: the tap sends no RST), an allowed
//! one must get an answer — swaps host loopback for the gateway (only `host_ports` reach
//! the host, on the gateway's addresses), and reads the manifest, the bottle CA and the
//! placeholders from the fw_cfg files `cork vm` hands the guest
//! (`/sys/firmware/qemu_fw_cfg/by_name/opt/cork/{manifest,ca.pem,env}/raw`). Process
//! probes (capabilities, seccomp, cgroup, mounts, the control socket) are not run: they
//! are the guest's own business.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;

use cork_policy::{Policy, Proto};

use super::catalogue::{Check, Expect, Probe, Settings, hard};

/// Where a Linux guest finds cork's fw_cfg files (module `qemu_fw_cfg`).
pub const FW_CFG_DIR: &str = "/sys/firmware/qemu_fw_cfg/by_name";

/// The path of fw_cfg entry `name` (`opt/cork/manifest`) in a guest.
pub fn fw_cfg_file(name: &str) -> PathBuf {
    PathBuf::from(FW_CFG_DIR).join(name).join("raw")
}

/// The guest's gateways: the IPv4 default route's gateway and the IPv6 default route's
/// next hop (with its link's scope when it is link-local), as read from /proc.
pub fn gateways() -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if let Some(gw) = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_gateway_v4(&t))
    {
        out.push(SocketAddr::new(IpAddr::V4(gw), 0));
    }
    if let Some((gw, dev)) = std::fs::read_to_string("/proc/net/ipv6_route")
        .ok()
        .and_then(|t| default_gateway_v6(&t))
    {
        let scope = if gw.is_unicast_link_local() {
            nix::net::if_::if_nametoindex(dev.as_str()).unwrap_or(0)
        } else {
            0
        };
        out.push(SocketAddr::V6(SocketAddrV6::new(gw, 0, 0, scope)));
    }
    out
}

/// The gateway of the IPv4 default route in /proc/net/route text (hex, host order of a
/// little-endian machine: the address's bytes as the kernel stores them).
pub fn default_gateway_v4(text: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, mask) = (f.get(1)?, f.get(2)?, f.get(7)?);
        if *dest != "00000000" || *mask != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(gw, 16).ok()?;
        (raw != 0).then(|| Ipv4Addr::from(raw.to_le_bytes()))
    })
}

/// The next hop and device of the IPv6 default route in /proc/net/ipv6_route text.
pub fn default_gateway_v6(text: &str) -> Option<(Ipv6Addr, String)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, len, hop, dev) = (f.first()?, f.get(1)?, f.get(4)?, f.get(9)?);
        if dest.bytes().any(|b| b != b'0') || *len != "00" {
            return None;
        }
        let raw = u128::from_str_radix(hop, 16).ok()?;
        (raw != 0).then(|| (Ipv6Addr::from(raw), (*dev).to_owned()))
    })
}

/// The probes of the gateway: its other ports dropped, `host_ports` answered.
pub fn gateway(policy: &Policy, s: &Settings, gateways: &[SocketAddr], out: &mut Vec<Probe>) {
    for gw in gateways {
        let mut sa = *gw;
        sa.set_port(s.loopback_port);
        out.push(hard(
            format!("gateway.foreign:{sa}"),
            format!("a host service on the gateway {sa} (port not in host_ports) is unreachable"),
            DROPPED_CONNECT,
            Check::Connect {
                addr: sa,
                proto: Proto::Tcp,
                expect: Expect::Dropped,
            },
        ));
        for &port in &policy.host_ports {
            let mut sa = *gw;
            sa.set_port(port);
            out.push(hard(
                format!("gateway.host_port:{sa}"),
                format!("host port {port} (loopback.host_ports) is reachable on the gateway {sa}"),
                ANSWERED_CONNECT,
                Check::Connect {
                    addr: sa,
                    proto: Proto::Tcp,
                    expect: Expect::Answered,
                },
            ));
        }
    }
}

pub const DROPPED_CONNECT: &str =
    "a TCP connect times out: cork's tap drops the SYN and sends no RST";
pub const ANSWERED_CONNECT: &str =
    "a TCP connect is answered (connected, or refused by the other end): the tap let it through";

/// The bottle CA and credential placeholders, as `cork vm` hands them over.
pub fn fw_cfg(policy: &Policy, out: &mut Vec<Probe>) {
    if cork_policy::needs_inspecting_proxy(policy) {
        let subject = cork_inspect::ca::subject(&policy.name);
        out.push(hard(
            "ca.fw_cfg".to_owned(),
            "the guest can trust the bottle's CA: cork handed it over as fw_cfg opt/cork/ca.pem"
                .to_owned(),
            &format!("fw_cfg opt/cork/ca.pem holds a certificate whose CN is {subject:?}"),
            Check::CaFile {
                path: fw_cfg_file("opt/cork/ca.pem"),
                subject,
            },
        ));
    }
    for c in &policy.credentials {
        out.push(hard(
            format!("cred.fw_cfg_placeholder:{}", c.env),
            format!(
                "the credential for {} (line {}) reaches the guest as a placeholder in {}",
                c.domain, c.line, c.env
            ),
            &format!(
                "fw_cfg opt/cork/env sets {} to the manifest's placeholder",
                c.env
            ),
            Check::FwCfgEnv {
                path: fw_cfg_file("opt/cork/env"),
                env: c.env.clone(),
                placeholder: c.placeholder.clone(),
                value_env: c.value_env.clone(),
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::catalogue::build;

    #[test]
    fn default_routes_from_proc() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t806433C6\t00000000\t0001\t0\t0\t0\tC0FFFFFF\t0\t0\t0\n\
                  eth0\t00000000\t816433C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            default_gateway_v4(v4),
            Some(Ipv4Addr::new(198, 51, 100, 129))
        );
        assert_eq!(default_gateway_v4("Iface\tDestination\n"), None);
        let v6 = "20010db8010000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe8000000000000000c04bfffe000001 00000400 00000001 00000000 00000003     eth0\n";
        assert_eq!(
            default_gateway_v6(v6),
            Some(("fe80::c0:4bff:fe00:1".parse().unwrap(), "eth0".to_owned()))
        );
    }

    const MANIFEST: &str = r#"
version = 1
[bottle]
name = "vm"

[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8080]

[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [9090]
proto = "udp"

[[egress.deny]]
cidr = "2001:db8::20/128"

[[egress.allow]]
domain = "api.vm.test"
ports = [443]

[loopback]
host_ports = [7000]

[[credentials]]
domain = "api.vm.test"
header = "x-api-key"
placeholder = "cork-placeholder-vm"
env = "VM_KEY"
value_env = "VM_REAL"
"#;

    #[test]
    fn a_guest_checks_what_the_tap_keeps() {
        let policy = cork_policy::compile(MANIFEST, "vm.toml").unwrap();
        let s = Settings {
            deny_samples: vec!["198.51.100.254".parse().unwrap()],
            resolver: "198.51.100.129:53".parse().unwrap(),
            random_resolvers: vec!["198.51.100.253".parse().unwrap()],
            denied_name: "no.invalid".into(),
            loopback_port: 1,
            gateways: Some(vec!["198.51.100.129:0".parse().unwrap()]),
        };
        let probes = build(&policy, &s);
        let by_id = |id: &str| {
            probes
                .iter()
                .find(|p| p.id == id)
                .unwrap_or_else(|| panic!("{id} missing"))
        };
        let expect = |id: &str| match &by_id(id).check {
            Check::Connect { expect, .. } | Check::DomainAllow { expect, .. } => *expect,
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(expect("net.allow:egress.allow[0]"), Expect::Answered);
        assert_eq!(expect("net.deny:egress.deny[0]"), Expect::Dropped);
        assert_eq!(expect("net.default_deny:198.51.100.254"), Expect::Dropped);
        assert_eq!(expect("dns.allow:egress.allow[2]"), Expect::Answered);
        assert_eq!(expect("gateway.foreign:198.51.100.129:1"), Expect::Dropped);
        assert_eq!(
            expect("gateway.host_port:198.51.100.129:7000"),
            Expect::Answered
        );
        for id in [
            "dns.not_allowed",
            "dns.txt_refused",
            "dns.redirect:198.51.100.253",
            "ca.fw_cfg",
            "cred.fw_cfg_placeholder:VM_KEY",
        ] {
            by_id(id);
        }
        // What a guest is not promised, or cannot see, is not probed.
        for gone in [
            "loopback.",
            "unix.",
            "socket.",
            "proc.",
            "cgroup.",
            "ca.env:",
            "net.allow:egress.allow[1]",
        ] {
            assert!(
                !probes.iter().any(|p| p.id.starts_with(gone)),
                "{gone}: {:?}",
                probes.iter().map(|p| &p.id).collect::<Vec<_>>()
            );
        }
    }
}
