//! Kernel records (`struct cork_event`) → audit events, enriched with what only userspace
//! knows: the bottle's name, the manifest rule behind a rule id, wall-clock time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::VerdictEvent;
use crate::bpf::abi::{CORK_RULE_NONE, cork_event, cork_hook, cork_reason, cork_verdict};

/// What the agent adds to every kernel record of one bottle.
pub struct Enrichment {
    pub bottle: String,
    /// Manifest rule names by rule id (`egress.allow[0]`).
    pub rules: Vec<String>,
    /// Wall clock minus CLOCK_BOOTTIME, to place kernel boot-time stamps.
    pub boot_offset: Duration,
    /// Addresses the DNS proxy learned, with the name asked for them.
    pub names: Arc<Mutex<HashMap<IpAddr, String>>>,
}

impl Enrichment {
    pub fn new(
        bottle: String,
        rules: Vec<String>,
        names: Arc<Mutex<HashMap<IpAddr, String>>>,
    ) -> Self {
        Enrichment {
            bottle,
            rules,
            boot_offset: boot_offset(),
            names,
        }
    }
}

fn boot_offset() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    wall.saturating_sub(boot)
}

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

fn hook_name(hook: u8) -> &'static str {
    match hook as u32 {
        cork_hook::CORK_HOOK_CONNECT4 => "connect4",
        cork_hook::CORK_HOOK_CONNECT6 => "connect6",
        cork_hook::CORK_HOOK_SENDMSG4 => "sendmsg4",
        cork_hook::CORK_HOOK_SENDMSG6 => "sendmsg6",
        cork_hook::CORK_HOOK_SOCK_CREATE => "sock_create",
        cork_hook::CORK_HOOK_SKB_EGRESS => "skb_egress",
        cork_hook::CORK_HOOK_RECVMSG4 => "recvmsg4",
        cork_hook::CORK_HOOK_RECVMSG6 => "recvmsg6",
        _ => "unknown",
    }
}

fn reason_name(reason: u8) -> &'static str {
    match reason as u32 {
        cork_reason::CORK_REASON_ALLOW_RULE => "allow_rule",
        cork_reason::CORK_REASON_DENY_RULE => "deny_rule",
        cork_reason::CORK_REASON_DEFAULT_DENY => "default_deny",
        cork_reason::CORK_REASON_LOOPBACK_OWN => "loopback_own",
        cork_reason::CORK_REASON_LOOPBACK_HOST_PORT => "loopback_host_port",
        cork_reason::CORK_REASON_LOOPBACK_FOREIGN => "loopback_foreign",
        cork_reason::CORK_REASON_RAW_SOCKET => "raw_socket",
        cork_reason::CORK_REASON_ICMP_SOCKET => "icmp_socket",
        cork_reason::CORK_REASON_UNSUPPORTED_SOCKET => "unsupported_socket",
        cork_reason::CORK_REASON_UNVETTED_PACKET => "unvetted_packet",
        cork_reason::CORK_REASON_PACKET_SOCKET => "packet_socket",
        cork_reason::CORK_REASON_DNS_REDIRECT => "dns_redirect",
        cork_reason::CORK_REASON_PROXY_REDIRECT => "proxy_redirect",
        cork_reason::CORK_REASON_QUIC_REFUSED => "quic_refused",
        _ => "unknown",
    }
}

fn proto_name(proto: u8, sock_type: u8) -> String {
    match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        0 | 255 if sock_type == libc::SOCK_RAW as u8 => "raw".into(),
        n => n.to_string(),
    }
}

fn addr(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

fn comm(raw: &[u8; 16]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (end > 0).then(|| String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Turns one kernel record into its audit event.
pub fn verdict_from_kernel(ev: &cork_event, en: &Enrichment) -> VerdictEvent {
    let ts = en.boot_offset + Duration::from_nanos(ev.ts_boot_ns);
    let dst = if ev.hook != cork_hook::CORK_HOOK_SOCK_CREATE as u8 {
        addr(ev.family, &ev.dst)
    } else {
        None
    };
    let has_dst = ev.hook != cork_hook::CORK_HOOK_SOCK_CREATE as u8;
    let is_skb = ev.hook == cork_hook::CORK_HOOK_SKB_EGRESS as u8;
    VerdictEvent {
        ts: humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + ts).to_string(),
        bottle: en.bottle.clone(),
        layer: "kernel",
        event: "verdict",
        hook: hook_name(ev.hook),
        verdict: if ev.verdict == cork_verdict::CORK_VERDICT_ALLOW as u8 {
            "allow"
        } else {
            "deny"
        },
        reason: reason_name(ev.reason),
        rule: (ev.rule_id != CORK_RULE_NONE as u16)
            .then(|| en.rules.get(ev.rule_id as usize).cloned())
            .flatten(),
        proto: proto_name(ev.proto, ev.sock_type),
        src: if is_skb {
            addr(ev.family, &ev.src).map(|a| a.to_string())
        } else {
            None
        },
        sport: is_skb.then_some(ev.sport).filter(|&p| p != 0),
        domain: dst.and_then(|a| {
            en.names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&a)
                .cloned()
        }),
        dst: dst.map(|a| a.to_string()),
        dport: has_dst.then_some(ev.dport),
        pid: (ev.pid != 0).then_some(ev.pid),
        comm: comm(&ev.comm),
        cgroup_id: ev.cgroup_id,
        cookie: ev.sock_cookie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrichment() -> Enrichment {
        Enrichment {
            bottle: "b".into(),
            rules: vec!["egress.allow[0]".into()],
            boot_offset: Duration::ZERO,
            names: Arc::default(),
        }
    }

    #[test]
    fn connect_deny_names_everything() {
        let mut ev = cork_event {
            hook: cork_hook::CORK_HOOK_CONNECT6 as u8,
            verdict: cork_verdict::CORK_VERDICT_DENY as u8,
            reason: cork_reason::CORK_REASON_DEFAULT_DENY as u8,
            rule_id: CORK_RULE_NONE as u16,
            family: AF_INET6,
            proto: 6,
            dport: 443,
            pid: 42,
            ..Default::default()
        };
        ev.dst = "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets();
        ev.comm[..4].copy_from_slice(b"curl");
        let out = verdict_from_kernel(&ev, &enrichment());
        assert_eq!(out.hook, "connect6");
        assert_eq!(out.verdict, "deny");
        assert_eq!(out.reason, "default_deny");
        assert_eq!(out.rule, None);
        assert_eq!(out.dst.as_deref(), Some("2001:db8::10"));
        assert_eq!(out.dport, Some(443));
        assert_eq!(out.comm.as_deref(), Some("curl"));
        assert_eq!(out.pid, Some(42));
    }

    #[test]
    fn allow_names_its_rule_and_v4_is_v4() {
        let mut ev = cork_event {
            hook: cork_hook::CORK_HOOK_CONNECT6 as u8,
            verdict: cork_verdict::CORK_VERDICT_ALLOW as u8,
            reason: cork_reason::CORK_REASON_ALLOW_RULE as u8,
            rule_id: 0,
            family: AF_INET,
            proto: 17,
            dport: 53,
            ..Default::default()
        };
        ev.dst[..4].copy_from_slice(&[198, 51, 100, 10]);
        let out = verdict_from_kernel(&ev, &enrichment());
        assert_eq!(out.rule.as_deref(), Some("egress.allow[0]"));
        assert_eq!(out.dst.as_deref(), Some("198.51.100.10"));
        assert_eq!(out.proto, "udp");
        assert_eq!(out.pid, None);
    }

    #[test]
    fn sock_create_has_no_destination() {
        let ev = cork_event {
            hook: cork_hook::CORK_HOOK_SOCK_CREATE as u8,
            verdict: cork_verdict::CORK_VERDICT_DENY as u8,
            reason: cork_reason::CORK_REASON_RAW_SOCKET as u8,
            rule_id: CORK_RULE_NONE as u16,
            family: AF_INET,
            proto: 255,
            sock_type: libc::SOCK_RAW as u8,
            ..Default::default()
        };
        let out = verdict_from_kernel(&ev, &enrichment());
        assert_eq!(out.dst, None);
        assert_eq!(out.dport, None);
        assert_eq!(out.proto, "raw");
        assert_eq!(out.reason, "raw_socket");
    }
}
