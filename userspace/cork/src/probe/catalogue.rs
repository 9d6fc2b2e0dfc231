//! The probe catalogue: every promise a compiled manifest implies, as a list of probes —
//! what each one checks, what it proves, what it expects and how bad its failure is. Pure:
//! no I/O here, so the choice of sample addresses and names is unit-tested.
//!
//! The destinations come from [`super::samples`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::inside;
use super::samples::{DEFAULT_PORT, sample_in, sample_name};

use cork_policy::{Action, DomainVerdict, Policy, Proto, RuleTarget};
use hickory_proto::rr::RecordType;

/// How bad a failed probe is: a hard failure makes `cork probe` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Hard,
    Soft,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Hard => "hard",
            Severity::Soft => "soft",
        }
    }
}

/// One promise to check.
#[derive(Debug, Clone)]
pub struct Probe {
    pub id: String,
    pub severity: Severity,
    /// What a pass proves, in a sentence.
    pub proves: String,
    pub expected: String,
    pub check: Check,
}

/// What a connect must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The kernel refuses the connect with EPERM.
    Refused,
    /// The kernel lets it out: connected, or refused by the other end.
    NotRefused,
    /// From a VM guest: the tap drops it, so the connect times out.
    Dropped,
    /// From a VM guest: the tap lets it through, so something answers (connected, or
    /// refused by the other end); a timeout means it was dropped.
    Answered,
}

/// What a DNS query must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsExpect {
    /// REFUSED from cork's proxy.
    Refused,
    /// Any answer: the query reached cork's proxy although it was sent elsewhere.
    Redirected,
}

#[derive(Debug, Clone)]
pub enum Check {
    Connect {
        addr: SocketAddr,
        proto: Proto,
        expect: Expect,
    },
    Socket {
        family: libc::c_int,
        ty: libc::c_int,
        protocol: libc::c_int,
        what: &'static str,
    },
    UnixConnect {
        path: String,
    },
    Capabilities,
    NoNewPrivs,
    Seccomp,
    CgroupMember {
        bottle: String,
    },
    CgroupEscape,
    MountsReadOnly {
        fstypes: &'static [&'static str],
    },
    Dns {
        server: SocketAddr,
        name: String,
        qtype: RecordType,
        expect: DnsExpect,
    },
    /// An allowed name resolves (not REFUSED) and its first address is reachable on `port`.
    DomainAllow {
        server: SocketAddr,
        name: String,
        port: u16,
        proto: Proto,
        /// `NotRefused` in a cgroup bottle, `Answered` in a guest.
        expect: Expect,
    },
    CaBundle {
        var: &'static str,
        subject: String,
    },
    Placeholder {
        env: String,
        placeholder: String,
    },
    RealValueAbsent {
        value_env: String,
        env: String,
    },
    /// A PEM file (a guest's fw_cfg `opt/cork/ca.pem`) holds the bottle's CA.
    CaFile {
        path: std::path::PathBuf,
        subject: String,
    },
    /// A guest's fw_cfg `opt/cork/env` sets `env` to the placeholder and has no
    /// `value_env`; nor has the probe's own environment.
    FwCfgEnv {
        path: std::path::PathBuf,
        env: String,
        placeholder: String,
        value_env: String,
    },
}

/// What the catalogue needs besides the policy: the concrete addresses and names the
/// probes use (defaults already filled in by the caller).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses no rule covers, each expected to meet the default deny.
    pub deny_samples: Vec<IpAddr>,
    /// The bottle's system resolver (its resolv.conf nameserver, or `--resolver`).
    pub resolver: SocketAddr,
    /// Resolvers nothing serves DNS at: cork must answer for them all the same.
    pub random_resolvers: Vec<IpAddr>,
    /// A name the manifest does not allow.
    pub denied_name: String,
    /// A host loopback port not in `host_ports` (in a guest: a gateway port).
    pub loopback_port: u16,
    /// In a VM guest (`--guest`): its gateways. `None` in a cgroup bottle.
    pub gateways: Option<Vec<SocketAddr>>,
}

impl Settings {
    /// What a connect the manifest denies must meet here, and how the report says it.
    fn denied(&self) -> (Expect, &'static str) {
        match self.gateways {
            None => (Expect::Refused, REFUSED_CONNECT),
            Some(_) => (Expect::Dropped, super::guest::DROPPED_CONNECT),
        }
    }

    /// What a connect the manifest allows must meet here, and how the report says it.
    fn allowed(&self) -> (Expect, &'static str) {
        match self.gateways {
            None => (Expect::NotRefused, REACHED_CONNECT),
            Some(_) => (Expect::Answered, super::guest::ANSWERED_CONNECT),
        }
    }
}

/// The port a rule's sample uses: its first port, else 443.
fn rule_port(ports: &[cork_policy::PortRange]) -> u16 {
    ports.first().map_or(DEFAULT_PORT, |r| r.lo())
}

/// The packet protocol a probe of a rule with `proto` sends.
fn packet_proto(proto: Proto) -> Proto {
    match proto {
        Proto::Udp => Proto::Udp,
        Proto::Tcp | Proto::Any => Proto::Tcp,
    }
}

pub(super) fn probe(
    id: String,
    severity: Severity,
    proves: String,
    expected: &str,
    check: Check,
) -> Probe {
    Probe {
        id,
        severity,
        proves,
        expected: expected.to_owned(),
        check,
    }
}

pub(super) fn hard(id: String, proves: String, expected: &str, check: Check) -> Probe {
    probe(id, Severity::Hard, proves, expected, check)
}

const REFUSED_CONNECT: &str = "connect(2) fails with EPERM (refused by cork's cgroup hook)";
const REACHED_CONNECT: &str =
    "connect(2) is not refused by the kernel (connected, or refused by the other end)";

/// Every probe `policy` implies, in a stable order: rules, default deny, loopback, unix,
/// sockets, process, DNS, CA, credentials.
///
/// In a VM guest ([`Settings::gateways`]): rules, default deny, the gateway, DNS, and the
/// CA and credentials as fw_cfg hands them over (see [`super::guest`]).
pub fn build(policy: &Policy, s: &Settings) -> Vec<Probe> {
    let mut out = Vec::new();
    rules(policy, s, &mut out);
    let (expect, expected) = s.denied();
    for &addr in &s.deny_samples {
        let sa = SocketAddr::new(addr, DEFAULT_PORT);
        out.push(hard(
            format!("net.default_deny:{addr}"),
            format!("{sa}, which no rule allows, is unreachable (default deny)"),
            expected,
            Check::Connect {
                addr: sa,
                proto: Proto::Tcp,
                expect,
            },
        ));
    }
    if let Some(gateways) = &s.gateways {
        super::guest::gateway(policy, s, gateways, &mut out);
        dns(policy, s, &mut out);
        super::guest::fw_cfg(policy, &mut out);
        return out;
    }
    loopback(policy, s, &mut out);
    for path in cork_policy::CONTROL_SOCKET_SPELLINGS {
        out.push(hard(
            format!("unix.control_socket:{path}"),
            format!("cork's control socket {path} cannot be reached from the bottle"),
            "connect(2) to the unix socket fails with EPERM",
            Check::UnixConnect {
                path: (*path).to_owned(),
            },
        ));
    }
    inside::sockets(&mut out);
    inside::process(policy, &mut out);
    dns(policy, s, &mut out);
    inside::ca(policy, &mut out);
    inside::credentials(policy, &mut out);
    out
}

fn rules(policy: &Policy, s: &Settings, out: &mut Vec<Probe>) {
    for rule in &policy.rules {
        let port = rule_port(&rule.ports);
        let proto = packet_proto(rule.proto);
        if s.gateways.is_some() && proto == Proto::Udp {
            // From a guest a UDP datagram's fate cannot be seen (no refusal, no answer
            // owed): the README lists this limit.
            continue;
        }
        match (&rule.target, rule.action) {
            (RuleTarget::Prefix(p), action) => {
                let (kind, (expect, expected)) = match action {
                    Action::Deny => ("deny", s.denied()),
                    Action::Allow => ("allow", s.allowed()),
                };
                let Some(addr) = sample_in(policy, p, proto, port, action) else {
                    // Every address of the prefix is decided otherwise (a deny inside an
                    // allow): no sample can show this rule alone.
                    continue;
                };
                let sa = SocketAddr::new(addr, port);
                out.push(hard(
                    format!("net.{kind}:{}", rule.id),
                    format!(
                        "{} ({p}, line {}) holds: {} {sa} is {}",
                        rule.id,
                        rule.line,
                        proto_name(proto),
                        if matches!(expect, Expect::Refused | Expect::Dropped) {
                            "unreachable"
                        } else {
                            "reachable"
                        }
                    ),
                    expected,
                    Check::Connect {
                        addr: sa,
                        proto,
                        expect,
                    },
                ));
            }
            (RuleTarget::Domain(pattern), Action::Allow) => {
                let name = sample_name(pattern);
                if !matches!(policy.match_domain(&name), DomainVerdict::Allow { .. }) {
                    continue;
                }
                out.push(hard(
                    format!("dns.allow:{}", rule.id),
                    format!(
                        "{} (line {}) holds: {name} resolves through cork and its address \
                         is reachable on {} port {port}",
                        rule.id,
                        rule.line,
                        proto_name(proto)
                    ),
                    "the A/AAAA query is not REFUSED, and connect(2) to an answer is not \
                     refused by the kernel",
                    Check::DomainAllow {
                        server: s.resolver,
                        name,
                        port,
                        proto,
                        expect: s.allowed().0,
                    },
                ));
            }
            (RuleTarget::Domain(pattern), Action::Deny) => {
                let name = sample_name(pattern);
                out.push(hard(
                    format!("dns.deny:{}", rule.id),
                    format!(
                        "{} (line {}) holds: cork's DNS proxy refuses {name}",
                        rule.id, rule.line
                    ),
                    "the A query gets REFUSED",
                    Check::Dns {
                        server: s.resolver,
                        name,
                        qtype: RecordType::A,
                        expect: DnsExpect::Refused,
                    },
                ));
            }
        }
    }
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "UDP",
        Proto::Tcp | Proto::Any => "TCP",
    }
}

fn loopback(policy: &Policy, s: &Settings, out: &mut Vec<Probe>) {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    for ip in [v4, v6] {
        let sa = SocketAddr::new(ip, s.loopback_port);
        out.push(hard(
            format!("loopback.foreign:{sa}"),
            format!("a host loopback service on {sa} (port not in host_ports) is unreachable"),
            REFUSED_CONNECT,
            Check::Connect {
                addr: sa,
                proto: Proto::Tcp,
                expect: Expect::Refused,
            },
        ));
    }
    for &port in &policy.host_ports {
        for ip in [v4, v6] {
            let sa = SocketAddr::new(ip, port);
            out.push(hard(
                format!("loopback.host_port:{sa}"),
                format!("host port {port} (loopback.host_ports) is reachable at {sa}"),
                REACHED_CONNECT,
                Check::Connect {
                    addr: sa,
                    proto: Proto::Tcp,
                    expect: Expect::NotRefused,
                },
            ));
        }
    }
}

/// The first name an allow rule allows (for the TXT probe), if any.
fn allowed_name(policy: &Policy) -> Option<String> {
    policy
        .domains
        .iter()
        .filter(|d| d.action == Action::Allow)
        .map(|d| sample_name(&d.pattern))
        .find(|n| matches!(policy.match_domain(n), DomainVerdict::Allow { .. }))
}

fn dns(policy: &Policy, s: &Settings, out: &mut Vec<Probe>) {
    let name = s.denied_name.clone();
    out.push(hard(
        "dns.not_allowed".to_owned(),
        format!(
            "a name the manifest does not allow ({name}) is refused by cork's DNS proxy \
             through the system resolver {}",
            s.resolver
        ),
        "the A query gets REFUSED",
        Check::Dns {
            server: s.resolver,
            name: name.clone(),
            qtype: RecordType::A,
            expect: DnsExpect::Refused,
        },
    ));
    let txt = allowed_name(policy).unwrap_or_else(|| name.clone());
    out.push(hard(
        "dns.txt_refused".to_owned(),
        format!("a TXT query ({txt}), a data channel, is refused"),
        "the TXT query gets REFUSED",
        Check::Dns {
            server: s.resolver,
            name: txt,
            qtype: RecordType::TXT,
            expect: DnsExpect::Refused,
        },
    ));
    for &ip in &s.random_resolvers {
        let server = SocketAddr::new(ip, 53);
        out.push(hard(
            format!("dns.redirect:{ip}"),
            format!("DNS sent to another resolver ({server}) is still answered by cork's proxy"),
            "an answer (REFUSED for the denied name) arrives from the address queried",
            Check::Dns {
                server,
                name: name.clone(),
                qtype: RecordType::A,
                expect: DnsExpect::Redirected,
            },
        ));
    }
}

#[cfg(test)]
#[path = "catalogue_tests.rs"]
mod tests;
