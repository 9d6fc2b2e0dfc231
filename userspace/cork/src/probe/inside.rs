//! The catalogue's probes of what the bottled process itself holds and is given: the
//! sockets it must be refused, its capabilities, no_new_privs, seccomp, cgroup and mounts,
//! the CA bundles and the credential placeholders in its environment.

use cork_policy::Policy;

use super::catalogue::{Check, Probe, Severity, hard, probe};

pub fn sockets(out: &mut Vec<Probe>) {
    use libc::{
        AF_INET, AF_INET6, AF_PACKET, ETH_P_ALL, IPPROTO_ICMP, IPPROTO_ICMPV6, SOCK_DGRAM, SOCK_RAW,
    };
    let list: [(&str, &str, libc::c_int, libc::c_int, libc::c_int); 5] = [
        (
            "raw4",
            "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
            AF_INET,
            SOCK_RAW,
            IPPROTO_ICMP,
        ),
        (
            "raw6",
            "socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)",
            AF_INET6,
            SOCK_RAW,
            IPPROTO_ICMPV6,
        ),
        (
            "icmp4",
            "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)",
            AF_INET,
            SOCK_DGRAM,
            IPPROTO_ICMP,
        ),
        (
            "icmp6",
            "socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)",
            AF_INET6,
            SOCK_DGRAM,
            IPPROTO_ICMPV6,
        ),
        (
            "packet",
            "socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))",
            AF_PACKET,
            SOCK_RAW,
            i32::from((ETH_P_ALL as u16).to_be()),
        ),
    ];
    for (id, what, family, ty, protocol) in list {
        out.push(hard(
            format!("socket.{id}"),
            format!("{what} is refused: nothing bypasses the connect/sendmsg hooks"),
            "socket(2) fails with EPERM or EACCES",
            Check::Socket {
                family,
                ty,
                protocol,
                what,
            },
        ));
    }
}

pub fn process(policy: &Policy, out: &mut Vec<Probe>) {
    let list = [
        (
            "proc.capabilities",
            "no capability that could undo enforcement is held or can come back".to_owned(),
            "none of cork's dropped capabilities in CapEff/CapPrm/CapInh/CapBnd/CapAmb",
            Check::Capabilities,
        ),
        (
            "proc.no_new_privs",
            "no exec (setuid binaries included) can gain privileges".to_owned(),
            "NoNewPrivs: 1 in /proc/self/status",
            Check::NoNewPrivs,
        ),
        (
            "proc.seccomp",
            "cork's seccomp filter (socket refusals and their audit) is installed".to_owned(),
            "Seccomp: 2 (filter mode) in /proc/self/status",
            Check::Seccomp,
        ),
        (
            "cgroup.member",
            format!(
                "this process is in bottle {:?}'s cgroup, where cork's programs judge it",
                policy.name
            ),
            "the cgroup v2 path in /proc/self/cgroup ends in cork-<bottle>-<agent pid>_<id>",
            Check::CgroupMember {
                bottle: policy.name.clone(),
            },
        ),
        (
            "cgroup.escape",
            "the bottle's cgroup cannot be left".to_owned(),
            "writing \"0\" to the parent cgroup's cgroup.procs fails (EROFS)",
            Check::CgroupEscape,
        ),
        (
            "mount.cgroup_ro",
            "every cgroup filesystem is read-only in the bottle".to_owned(),
            "every cgroup/cgroup2 mount in /proc/self/mountinfo has the ro option",
            Check::MountsReadOnly {
                fstypes: &["cgroup", "cgroup2"],
            },
        ),
        (
            "mount.bpf_ro",
            "bpffs (the pins that keep enforcement attached) is read-only in the bottle".to_owned(),
            "every bpf mount in /proc/self/mountinfo has the ro option",
            Check::MountsReadOnly { fstypes: &["bpf"] },
        ),
    ];
    for (id, proves, expected, check) in list {
        out.push(hard(id.to_owned(), proves, expected, check));
    }
}

pub fn ca(policy: &Policy, out: &mut Vec<Probe>) {
    // The bundle exists only when some rule sends traffic through the inspecting proxy.
    if !cork_policy::needs_inspecting_proxy(policy) {
        return;
    }
    let subject = cork_inspect::ca::subject(&policy.name);
    for var in cork_inspect::setup::CA_ENV_VARS {
        let (client, severity) = match var {
            "SSL_CERT_FILE" => ("OpenSSL and Python's ssl", Severity::Hard),
            "CURL_CA_BUNDLE" => ("curl", Severity::Soft),
            "REQUESTS_CA_BUNDLE" => ("Python requests", Severity::Soft),
            "NODE_EXTRA_CA_CERTS" => ("Node.js", Severity::Soft),
            "GIT_SSL_CAINFO" => ("git", Severity::Soft),
            _ => ("its clients", Severity::Soft),
        };
        out.push(probe(
            format!("ca.env:{var}"),
            severity,
            format!("{client} trust the bottle's CA ({var} names a bundle holding it)"),
            &format!(
                "${var} names a readable PEM bundle with a certificate whose CN is {subject:?}"
            ),
            Check::CaBundle {
                var,
                subject: subject.clone(),
            },
        ));
    }
}

pub fn credentials(policy: &Policy, out: &mut Vec<Probe>) {
    for c in &policy.credentials {
        out.push(hard(
            format!("cred.placeholder:{}", c.env),
            format!(
                "the credential for {} (line {}) is a placeholder in ${}",
                c.domain, c.line, c.env
            ),
            &format!("${} holds the manifest's placeholder", c.env),
            Check::Placeholder {
                env: c.env.clone(),
                placeholder: c.placeholder.clone(),
            },
        ));
        out.push(hard(
            format!("cred.real_absent:{}", c.value_env),
            format!(
                "the real value's variable ${} (cork's own) is not in the bottle",
                c.value_env
            ),
            &format!("${} is not set", c.value_env),
            Check::RealValueAbsent {
                value_env: c.value_env.clone(),
                env: c.env.clone(),
            },
        ));
    }
}
