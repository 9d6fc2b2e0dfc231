//! `cork probe`: a conformance gate run inside a bottle (`cork run --manifest M -- cork
//! probe`, `cork exec NAME -- cork probe`). It reads the bottle's manifest, derives every
//! promise the manifest implies ([`catalogue`]), checks each one from inside — connects,
//! socket(2) calls, /proc, DNS queries, the environment — and reports each with its
//! evidence: what it did, what it expected, what came back, and for a failure, why.
//!
//! The manifest: `--manifest PATH`, else `$CORK_MANIFEST`, which `cork run` and `cork exec`
//! set to the manifest's absolute path when the bottle can read it (see [`MANIFEST_ENV`]),
//! else, with `--guest` inside a VM bottle's guest, the one `cork vm` put in fw_cfg
//! ([`guest`]).
//!
//! Exit status: 0 when every hard probe passed, 1 when one failed, 2 when the probe could
//! not run (no manifest, a bad option).

mod catalogue;
mod cli;
mod dns;
mod env;
mod guest;
mod inside;
mod net;
mod process;
mod report;
mod samples;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use catalogue::{Check, Settings};
pub use catalogue::{Probe, Severity};
pub use cli::ProbeArgs;
use cork_policy::{DomainVerdict, Policy};
use report::{Outcome, ProbeReport, Trace};

/// The variable `cork run` and `cork exec` set to the bottle's manifest path.
pub const MANIFEST_ENV: &str = "CORK_MANIFEST";
/// The name the DNS probes ask for unless told otherwise: under `.invalid`, never a real
/// domain.
pub const DEFAULT_DENIED_NAME: &str = "cork-probe-not-allowed.invalid";
/// Resolvers the redirect probe sends to unless told otherwise (documentation addresses:
/// nothing real serves DNS there, so an answer can only be cork's).
pub const DEFAULT_RANDOM_RESOLVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 253)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x253)),
];

pub const EXIT_OK: u8 = 0;
pub const EXIT_HARD_FAILURE: u8 = 1;
pub const EXIT_CANNOT_RUN: u8 = 2;

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub manifest: Option<PathBuf>,
    pub json: bool,
    pub diag: bool,
    /// Default-deny samples; empty: [`samples::default_deny_samples`].
    pub deny_samples: Vec<IpAddr>,
    /// The system resolver; `None`: the first nameserver of /etc/resolv.conf.
    pub resolver: Option<IpAddr>,
    /// Resolvers for the redirect probe; empty: [`DEFAULT_RANDOM_RESOLVERS`].
    pub random_resolvers: Vec<IpAddr>,
    pub denied_name: Option<String>,
    /// A host loopback port not in `host_ports`; `None`: the lowest such port from 1.
    pub loopback_port: Option<u16>,
    pub timeout: Duration,
    /// Inside a VM bottle's guest (`--guest`): see [`guest`].
    pub guest: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no manifest: pass --manifest PATH, or run under `cork run`/`cork exec`, which set \
         ${MANIFEST_ENV} when the bottle can read the manifest"
    )]
    NoManifest,
    #[error(
        "reading the manifest {path} ({from}) from inside the bottle; if the bottle cannot \
         read it, pass --manifest with a copy it can read"
    )]
    ReadManifest {
        path: PathBuf,
        from: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] cork_policy::ManifestError),
    #[error("no resolver: /etc/resolv.conf names no nameserver; pass --resolver ADDR")]
    NoResolver,
    #[error("--dns-name {name:?} is allowed by the manifest; give a name it does not allow")]
    DeniedNameAllowed { name: String },
    #[error("--loopback-port {port} is in the manifest's host_ports; give a port it does not list")]
    LoopbackPortListed { port: u16 },
    #[error("writing the report")]
    Write(#[source] io::Error),
}

fn load_policy(opts: &ProbeOptions) -> Result<Policy, ProbeError> {
    let (path, from) = match (&opts.manifest, std::env::var_os(MANIFEST_ENV)) {
        (Some(p), _) => (p.clone(), "--manifest"),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), "$CORK_MANIFEST"),
        // `cork vm` hands its guest the manifest.
        _ if opts.guest => (guest::fw_cfg_file("opt/cork/manifest"), "fw_cfg"),
        _ => return Err(ProbeError::NoManifest),
    };
    let src = std::fs::read_to_string(&path).map_err(|source| ProbeError::ReadManifest {
        path: path.clone(),
        from,
        source,
    })?;
    Ok(cork_policy::compile(&src, &path.display().to_string())?)
}

fn settings(policy: &Policy, opts: &ProbeOptions) -> Result<Settings, ProbeError> {
    let resolver = match opts.resolver {
        Some(r) => r,
        None => std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|t| dns::resolv_conf_nameserver(&t))
            .ok_or(ProbeError::NoResolver)?,
    };
    let denied_name = opts
        .denied_name
        .clone()
        .unwrap_or_else(|| DEFAULT_DENIED_NAME.to_owned());
    if matches!(
        policy.match_domain(&denied_name),
        DomainVerdict::Allow { .. }
    ) {
        return Err(ProbeError::DeniedNameAllowed { name: denied_name });
    }
    let loopback_port = match opts.loopback_port {
        Some(port) if policy.host_ports.contains(&port) => {
            return Err(ProbeError::LoopbackPortListed { port });
        }
        Some(port) => port,
        None => (1..=u16::MAX)
            .find(|p| !policy.host_ports.contains(p))
            .unwrap_or(1),
    };
    Ok(Settings {
        deny_samples: if opts.deny_samples.is_empty() {
            samples::default_deny_samples(policy)
        } else {
            opts.deny_samples.clone()
        },
        resolver: SocketAddr::new(resolver, 53),
        random_resolvers: if opts.random_resolvers.is_empty() {
            DEFAULT_RANDOM_RESOLVERS.to_vec()
        } else {
            opts.random_resolvers.clone()
        },
        denied_name,
        loopback_port,
        gateways: opts.guest.then(guest::gateways),
    })
}

/// Runs one probe's check.
fn check(probe: &Probe, timeout: Duration, trace: &mut Trace) -> Outcome {
    match &probe.check {
        Check::Connect {
            addr,
            proto,
            expect,
        } => net::connect_probe(*addr, *proto, *expect, timeout, trace),
        Check::Socket {
            family,
            ty,
            protocol,
            what,
        } => net::socket_probe(*family, *ty, *protocol, what, trace),
        Check::UnixConnect { path } => net::unix_probe(path, trace),
        Check::Capabilities => process::capabilities(trace),
        Check::NoNewPrivs => process::no_new_privs(trace),
        Check::Seccomp => process::seccomp(trace),
        Check::CgroupMember { bottle } => process::cgroup_member(bottle, trace),
        Check::CgroupEscape => process::cgroup_escape(trace),
        Check::MountsReadOnly { fstypes } => process::mounts_readonly(fstypes, trace),
        Check::Dns {
            server,
            name,
            qtype,
            expect,
        } => dns::dns_probe(*server, name, *qtype, *expect, timeout, trace),
        Check::DomainAllow {
            server,
            name,
            port,
            proto,
            expect,
        } => dns::domain_allow_probe(*server, name, *port, *proto, *expect, timeout, trace),
        Check::CaBundle { var, subject } => env::ca_bundle_probe(var, subject, trace),
        Check::Placeholder { env, placeholder } => env::placeholder_probe(env, placeholder, trace),
        Check::RealValueAbsent { value_env, env } => env::real_absent_probe(value_env, env, trace),
        Check::CaFile { path, subject } => env::ca_file_probe(path, subject, trace),
        Check::FwCfgEnv {
            path,
            env,
            placeholder,
            value_env,
        } => env::fw_cfg_env_probe(path, env, placeholder, value_env, trace),
    }
}

/// Runs every probe `policy` implies; with `diag`, each failed one again, fully traced.
pub fn run_all(policy: &Policy, s: &Settings, timeout: Duration, diag: bool) -> Vec<ProbeReport> {
    catalogue::build(policy, s)
        .iter()
        .map(|probe| {
            let mut trace = Trace::new(false);
            let outcome = check(probe, timeout, &mut trace);
            let mut report = ProbeReport::new(probe, outcome, trace);
            if diag && !report.passed {
                let mut full = Trace::new(true);
                let again = check(probe, timeout, &mut full);
                let mut lines = vec![format!(
                    "re-run: {} ({})",
                    if again.passed { "passed" } else { "failed" },
                    again.observed
                )];
                lines.extend(full.evidence);
                lines.extend(full.detail);
                report.diag = Some(lines);
            }
            report
        })
        .collect()
}

/// `cork probe`: the exit status.
pub fn probe(opts: &ProbeOptions) -> u8 {
    match try_probe(opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cork probe: {}", cork_audit::error_chain(&e));
            EXIT_CANNOT_RUN
        }
    }
}

fn try_probe(opts: &ProbeOptions) -> Result<u8, ProbeError> {
    let policy = load_policy(opts)?;
    let s = settings(&policy, opts)?;
    let reports = run_all(&policy, &s, opts.timeout, opts.diag);
    let mut out = io::stdout().lock();
    let written = if opts.json {
        report::write_json(&mut out, &reports)
    } else {
        let mut header = format!(
            "cork probe: bottle {:?}, resolver {}, default-deny samples {:?}",
            policy.name, s.resolver, s.deny_samples
        );
        if let Some(gateways) = &s.gateways {
            header.push_str(&format!(", in a VM guest, gateways {gateways:?}"));
        }
        report::write_table(&mut out, &reports, &header)
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(ProbeError::Write(e)),
        _ => {}
    }
    let _ = out.flush();
    Ok(if reports.iter().any(ProbeReport::hard_failure) {
        EXIT_HARD_FAILURE
    } else {
        EXIT_OK
    })
}
