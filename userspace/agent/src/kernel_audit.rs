//! Kernel records (`struct cork_event`) → audit events, enriched with what only userspace
//! knows: the bottle's name, the manifest rule behind a rule id, wall-clock time, the name
//! the DNS proxy learned an address for. [`AuditWriter`] is the bottle's
//! [`EventHandler`]: the bpf reader hands it records, it writes them to the sink, repeated
//! allows of one flow summarised by [`aggregate`] (denies never are).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cork_audit::{AuditSink, EventHead, LossEvent, VerdictEvent};
use cork_bpf::abi::{self, CORK_RULE_NONE, cork_event, cork_hook, cork_unix_event, cork_unix_kind};
use cork_bpf::events::EventHandler;
use cork_dns::Resolved;
use cork_policy::{LivePolicy, split_rule};

use aggregate::{Admit, Aggregator, Summary};

mod aggregate;

/// What the agent adds to every kernel record of one bottle.
pub struct Enrichment {
    pub bottle: String,
    /// The bottle's policy generations: a kernel rule id names its generation's rule
    /// (`egress.allow[0]`), also when the record is read after an update.
    pub live: Arc<LivePolicy>,
    /// Wall clock minus CLOCK_BOOTTIME, to place kernel boot-time stamps.
    pub boot_offset: Duration,
    /// What the DNS proxy answered: names a destination by the name asked for it.
    pub resolved: Arc<Resolved>,
}

impl Enrichment {
    pub fn new(bottle: String, live: Arc<LivePolicy>, resolved: Arc<Resolved>) -> Self {
        Enrichment {
            bottle,
            live,
            boot_offset: boot_offset(),
            resolved,
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

/// The header's spelling of a code; a code the header does not know means the programs
/// and this build disagree, which is said in the log (and the event still written).
fn spelled(name: fn(u32) -> Option<&'static str>, code: u8, what: &str) -> &'static str {
    name(u32::from(code)).unwrap_or_else(|| {
        tracing::error!("kernel audit record with unknown {what} code {code}");
        "unknown"
    })
}

/// The bottle's handler for kernel records: enrich, write (repeated allows of one flow
/// summarised, see [`aggregate`]), flush when drained.
pub struct AuditWriter {
    enrichment: Enrichment,
    sink: Arc<Mutex<AuditSink>>,
    flows: Aggregator,
}

impl AuditWriter {
    pub fn new(enrichment: Enrichment, sink: Arc<Mutex<AuditSink>>) -> Self {
        AuditWriter {
            enrichment,
            sink,
            flows: Aggregator::default(),
        }
    }

    fn write<E: serde::Serialize>(&self, out: &E) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = sink.write(out) {
            tracing::error!("{e:#}");
        }
    }

    /// Writes each summary as its flow's last allow with `count`.
    fn write_summaries(&self, summaries: Vec<Summary>) -> bool {
        let wrote = !summaries.is_empty();
        for s in summaries {
            let mut out = verdict_from_kernel(&s.last, &self.enrichment);
            out.count = Some(s.count);
            self.write(&out);
        }
        wrote
    }

    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = sink.flush() {
            tracing::error!("{e:#}");
        }
    }
}

impl EventHandler for AuditWriter {
    fn event(&mut self, ev: &cork_event) {
        match self.flows.admit(ev) {
            Admit::Held => return,
            Admit::WriteAfter(summary) => {
                self.write_summaries(vec![summary]);
            }
            Admit::Write => {}
        }
        self.write(&verdict_from_kernel(ev, &self.enrichment));
    }

    fn counted(&mut self, ev: &cork_event, count: u64) {
        let mut out = verdict_from_kernel(ev, &self.enrichment);
        out.count = Some(count);
        self.write(&out);
    }

    fn unix_event(&mut self, ev: &cork_unix_event) {
        self.write(&verdict_from_unix(ev, &self.enrichment));
    }

    fn lost(&mut self, lost: u64, lost_total: u64) {
        let ev = LossEvent {
            head: cork_audit::EventHead::now(&self.enrichment.bottle, "audit", "loss"),
            lost,
            lost_total,
        };
        self.write(&ev);
    }

    fn drained(&mut self) {
        self.flush();
    }

    fn tick(&mut self) {
        let due = self.flows.due(boot_ns());
        if self.write_summaries(due) {
            self.flush();
        }
    }
}

impl Drop for AuditWriter {
    /// The reader is gone (finished or aborted): what was being counted is written now,
    /// so no allow goes unrecorded.
    fn drop(&mut self) {
        let held = self.flows.finish();
        if self.write_summaries(held) {
            self.flush();
        }
    }
}

use cork_bpf::boot_ns;

/// Turns one kernel record into its audit event.
pub fn verdict_from_kernel(ev: &cork_event, en: &Enrichment) -> VerdictEvent {
    let ts = en.boot_offset + Duration::from_nanos(ev.ts_boot_ns);
    let dst = if ev.hook != cork_hook::CORK_HOOK_SOCK_CREATE as u8 {
        addr(ev.family, &ev.dst)
    } else {
        None
    };
    let has_dst = ev.hook != cork_hook::CORK_HOOK_SOCK_CREATE as u8;
    // Packet hooks know the packet's source (a guest's address, on a tap); socket hooks
    // know the process instead.
    let is_skb = ev.hook == cork_hook::CORK_HOOK_SKB_EGRESS as u8
        || ev.hook == cork_hook::CORK_HOOK_TC_INGRESS as u8;
    VerdictEvent {
        head: EventHead {
            ts: humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + ts).to_string(),
            bottle: en.bottle.clone(),
            layer: "kernel",
            event: "verdict",
        },
        hook: spelled(abi::hook_name, ev.hook, "hook"),
        verdict: spelled(abi::verdict_name, ev.verdict, "verdict"),
        reason: spelled(abi::reason_name, ev.reason, "reason"),
        rule: (ev.rule_id != CORK_RULE_NONE)
            .then(|| en.live.kernel_rule_name(ev.rule_id))
            .flatten(),
        proto: proto_name(ev.proto, ev.sock_type),
        src: if is_skb {
            addr(ev.family, &ev.src).map(|a| a.to_string())
        } else {
            None
        },
        sport: is_skb.then_some(ev.sport).filter(|&p| p != 0),
        domain: dst.and_then(|a| en.resolved.name_of(a)),
        dst: dst.map(|a| a.to_string()),
        dport: has_dst.then_some(ev.dport),
        pid: (ev.pid != 0).then_some(ev.pid),
        comm: comm(&ev.comm),
        cgroup_id: ev.cgroup_id,
        cookie: ev.sock_cookie,
        count: None,
    }
}

/// Turns one record of a unix hook into its audit event: `dst` is the socket name judged
/// (the path, or `@` and the abstract name, as the manifest writes it; null when the kernel
/// could not read it), `rule` the `unix.allow` entry that allowed it.
pub fn verdict_from_unix(ev: &cork_unix_event, en: &Enrichment) -> VerdictEvent {
    let mut out = verdict_from_kernel(&ev.head, en);
    out.dst = unix_name(&ev.name);
    out.dport = None;
    out.domain = None;
    out.rule = (ev.head.rule_id != CORK_RULE_NONE)
        .then(|| format!("unix.allow[{}]", split_rule(ev.head.rule_id).1));
    out.proto = match i32::from(ev.head.sock_type) {
        libc::SOCK_STREAM => "unix_stream",
        libc::SOCK_DGRAM => "unix_dgram",
        libc::SOCK_SEQPACKET => "unix_seqpacket",
        _ => "unix",
    }
    .to_owned();
    out
}

/// The manifest spelling of a kernel unix key. Bytes that are not UTF-8 print as U+FFFD
/// (the manifest can only name UTF-8 ones).
fn unix_name(key: &abi::cork_unix_key) -> Option<String> {
    let bytes = &key.name[..usize::from(key.len).min(key.name.len())];
    let text = String::from_utf8_lossy(bytes);
    match u32::from(key.kind) {
        cork_unix_kind::CORK_UNIX_PATH => Some(text.into_owned()),
        cork_unix_kind::CORK_UNIX_ABSTRACT => Some(format!("@{text}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cork_bpf::abi::{cork_reason, cork_verdict};

    fn enrichment() -> Enrichment {
        let policy = cork_policy::compile(
            "version = 1\n[bottle]\nname = \"b\"\n[egress]\n\
             allow = [{ cidr = \"198.51.100.0/24\", ports = [\"443\"] }]\n",
            "m.toml",
        )
        .expect("valid manifest");
        Enrichment {
            bottle: "b".into(),
            live: Arc::new(LivePolicy::new(Arc::new(policy))),
            boot_offset: Duration::ZERO,
            resolved: Arc::default(),
        }
    }

    #[test]
    fn connect_deny_names_everything() {
        let mut ev = cork_event {
            hook: cork_hook::CORK_HOOK_CONNECT6 as u8,
            verdict: cork_verdict::CORK_VERDICT_DENY as u8,
            reason: cork_reason::CORK_REASON_DEFAULT_DENY as u8,
            rule_id: CORK_RULE_NONE,
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
    fn every_code_the_header_defines_has_a_spelling() {
        use cork_bpf::abi::{cork_hook, cork_reason};
        let reasons = [
            (cork_reason::CORK_REASON_ALLOW_RULE, "allow_rule"),
            (cork_reason::CORK_REASON_QUIC_REFUSED, "quic_refused"),
            (cork_reason::CORK_REASON_SPOOFED_MAC, "spoofed_mac"),
            (cork_reason::CORK_REASON_DNS_NAT, "dns_nat"),
        ];
        for (code, name) in reasons {
            assert_eq!(abi::reason_name(code), Some(name));
        }
        assert_eq!(
            abi::hook_name(cork_hook::CORK_HOOK_TC_INGRESS),
            Some("tc_ingress")
        );
        // Dense from 1: no gap where a code would print as "unknown".
        let last = cork_reason::CORK_REASON_CONTROL_SOCKET;
        assert!((1..=last).all(|c| abi::reason_name(c).is_some()));
        assert_eq!(abi::reason_name(0), None);
        assert_eq!(abi::reason_name(last + 1), None);
    }

    #[test]
    fn unix_records_name_the_socket_and_its_rule() {
        let mut ev = cork_unix_event::default();
        ev.head.hook = cork_hook::CORK_HOOK_CONNECT_UNIX as u8;
        ev.head.verdict = cork_verdict::CORK_VERDICT_ALLOW as u8;
        ev.head.reason = cork_reason::CORK_REASON_UNIX_ALLOW as u8;
        ev.head.rule_id = 1;
        ev.head.family = libc::AF_UNIX as u8;
        ev.head.sock_type = libc::SOCK_STREAM as u8;
        ev.name.kind = cork_unix_kind::CORK_UNIX_ABSTRACT as u8;
        ev.name.len = 4;
        ev.name.name[..4].copy_from_slice(b"a\0bc");
        let out = verdict_from_unix(&ev, &enrichment());
        assert_eq!(out.hook, "connect_unix");
        assert_eq!(out.reason, "unix_allow");
        assert_eq!(out.rule.as_deref(), Some("unix.allow[1]"));
        assert_eq!(out.dst.as_deref(), Some("@a\0bc"));
        assert_eq!(out.dport, None);
        assert_eq!(out.proto, "unix_stream");

        ev.head.hook = cork_hook::CORK_HOOK_SENDMSG_UNIX as u8;
        ev.head.verdict = cork_verdict::CORK_VERDICT_DENY as u8;
        ev.head.reason = cork_reason::CORK_REASON_CONTROL_SOCKET as u8;
        ev.head.rule_id = CORK_RULE_NONE;
        ev.head.sock_type = libc::SOCK_DGRAM as u8;
        ev.name = Default::default();
        ev.name.kind = cork_unix_kind::CORK_UNIX_PATH as u8;
        let path = b"/run/cork/cork.sock";
        ev.name.len = path.len() as u8;
        ev.name.name[..path.len()].copy_from_slice(path);
        let out = verdict_from_unix(&ev, &enrichment());
        assert_eq!(out.hook, "sendmsg_unix");
        assert_eq!(out.verdict, "deny");
        assert_eq!(out.reason, "control_socket");
        assert_eq!(out.rule, None);
        assert_eq!(out.dst.as_deref(), Some("/run/cork/cork.sock"));
        assert_eq!(out.proto, "unix_dgram");

        // Unreadable address: no name.
        ev.name = Default::default();
        assert_eq!(verdict_from_unix(&ev, &enrichment()).dst, None);
    }

    #[test]
    fn sock_create_has_no_destination() {
        let ev = cork_event {
            hook: cork_hook::CORK_HOOK_SOCK_CREATE as u8,
            verdict: cork_verdict::CORK_VERDICT_DENY as u8,
            reason: cork_reason::CORK_REASON_RAW_SOCKET as u8,
            rule_id: CORK_RULE_NONE,
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
