//! One inspected HTTPS API for a test: a name at 198.51.100.10:443 (and [2001:db8::10]:443
//! with [`InspectedApi::start_dual`]), served with a test
//! CA's certificate and answered by the World's DNS server at 198.51.100.53, plus the
//! manifest lines a bottle needs to reach it through cork's inspecting proxy.

use std::path::PathBuf;

use anyhow::Result;

use crate::dns_server::{DnsServer, Zone};
use crate::https_upstream::{HttpsUpstream, TestCa, UpstreamConfig};
use crate::world::World;

/// The API; its DNS server lives as long as this value.
pub struct InspectedApi {
    pub name: String,
    pub upstream: HttpsUpstream,
    pub ca_path: PathBuf,
    _dns: DnsServer,
}

impl InspectedApi {
    /// Starts the DNS server (the name's A record, TTL 300) and the HTTPS upstream.
    pub fn start(world: &World, name: &str) -> Result<Self> {
        Self::start_with(world, name, false)
    }

    /// [`InspectedApi::start`], with an AAAA record too and the upstream also at
    /// [2001:db8::10]:443.
    pub fn start_dual(world: &World, name: &str) -> Result<Self> {
        Self::start_with(world, name, true)
    }

    fn start_with(world: &World, name: &str, v6: bool) -> Result<Self> {
        let mut zone = Zone::new().a(name, "198.51.100.10", 300);
        let mut cfg = UpstreamConfig::new()
            .name(name)
            .tls("198.51.100.10:443".parse()?);
        if v6 {
            zone = zone.aaaa(name, "2001:db8::10", 300);
            cfg = cfg.tls("[2001:db8::10]:443".parse()?);
        }
        let dns = world.dns_server("198.51.100.53:53", zone)?;
        let ca = TestCa::new()?;
        let ca_path = world.path("upstream-ca", "pem");
        ca.write_pem(&ca_path)?;
        let upstream = world.https_upstream(&ca, cfg)?;
        Ok(InspectedApi {
            name: name.to_owned(),
            upstream,
            ca_path,
            _dns: dns,
        })
    }

    /// The `[[egress.allow]]` entry for the API on port 443 (a domain rule: inspected).
    pub fn allow_rule(&self) -> String {
        format!(
            "[[egress.allow]]\ndomain = \"{}\"\nports = [443]\n\n",
            self.name
        )
    }

    /// `[dns]` (the World's server) and `[tls]` (the API's CA), for a manifest's end.
    pub fn sections(&self) -> String {
        format!(
            "[dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            self.ca_path.display()
        )
    }
}
