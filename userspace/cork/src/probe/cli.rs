//! `cork probe`'s command-line flags (clap), turned into [`ProbeOptions`].

use std::path::PathBuf;
use std::time::Duration;

use super::ProbeOptions;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The bottle's manifest (default $CORK_MANIFEST, which `cork run`/`cork exec` set).
    #[arg(long, short = 'm')]
    pub manifest: Option<PathBuf>,
    /// One JSON object per probe, one per line.
    #[arg(long)]
    pub json: bool,
    /// Run each failed probe again with full tracing and show it.
    #[arg(long)]
    pub diag: bool,
    /// An address no rule covers, expected unreachable (default: one IPv4 and one IPv6
    /// address of 198.51.100.0/24 and 2001:db8::/32 outside every rule); repeatable.
    #[arg(long = "deny-sample", value_name = "ADDR")]
    pub deny_samples: Vec<std::net::IpAddr>,
    /// The bottle's resolver (default: the first nameserver of /etc/resolv.conf).
    #[arg(long, value_name = "ADDR")]
    pub resolver: Option<std::net::IpAddr>,
    /// An address nothing serves DNS at, whose queries cork must still answer (default
    /// 198.51.100.253 and 2001:db8::253); repeatable.
    #[arg(long = "random-resolver", value_name = "ADDR")]
    pub random_resolvers: Vec<std::net::IpAddr>,
    /// A name the manifest does not allow (default cork-probe-not-allowed.invalid).
    #[arg(long = "dns-name", value_name = "NAME")]
    pub dns_name: Option<String>,
    /// A host loopback port not in host_ports (default: the lowest one from 1).
    #[arg(long, value_name = "PORT")]
    pub loopback_port: Option<u16>,
    /// Probe from inside a VM bottle's guest: the promises cork's tap keeps (denied
    /// traffic dropped, allowed traffic answered, the gateway's host_ports, DNS), with
    /// the manifest, CA and placeholders from the fw_cfg files `cork vm` hands over.
    #[arg(long)]
    pub guest: bool,
    /// Seconds a connect or DNS query may take.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
}

impl ProbeArgs {
    pub fn options(self) -> ProbeOptions {
        ProbeOptions {
            manifest: self.manifest,
            json: self.json,
            diag: self.diag,
            deny_samples: self.deny_samples,
            resolver: self.resolver,
            random_resolvers: self.random_resolvers,
            denied_name: self.dns_name,
            loopback_port: self.loopback_port,
            // Bounded: a zero deadline is refused by connect_timeout, and a probe run
            // must end.
            timeout: Duration::from_secs_f64(self.timeout.clamp(0.05, 60.0)),
            guest: self.guest,
        }
    }
}
