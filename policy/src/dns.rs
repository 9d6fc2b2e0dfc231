//! The `[dns]` table: how the (future) per-bottle DNS proxy resolves and how long the
//! addresses it learns for domain rules stay open.
//!
//! ```toml
//! [dns]
//! upstream = ["198.51.100.53", "[2001:db8::53]:5353"]  # default: the host's resolv.conf
//! min_ttl = 5               # seconds; default 5, 1-86400
//! max_ttl = 300             # seconds; default 300, min_ttl-86400
//! queries_per_second = 50   # default 50, 1-10000
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use toml::Spanned;

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::schema::RawDns;

/// Validated `[dns]` settings. They only take effect once a build enforces domain rules;
/// until then [`crate::compile`] accepts them and nothing reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `dns.upstream`: resolvers to forward to, in manifest order, duplicates dropped.
    /// `None` when the key is absent: the agent then uses the host's resolv.conf servers
    /// (this crate does no I/O, so it never fills them in). A missing port is
    /// [`DnsConfig::DEFAULT_PORT`]; IPv4-mapped IPv6 addresses are stored as IPv4.
    pub upstream: Option<Vec<SocketAddr>>,
    /// `dns.min_ttl`, seconds: the shortest time an address learned from an answer stays
    /// reachable, whatever the answer's TTL (a TTL of 0 must still let the client connect).
    pub min_ttl: u32,
    /// `dns.max_ttl`, seconds: the longest time an address learned from an answer stays
    /// reachable without being asked for again. Always `>= min_ttl`.
    pub max_ttl: u32,
    /// `dns.queries_per_second`: the bottle's query rate the proxy answers; queries above
    /// it are refused.
    pub queries_per_second: u32,
}

impl DnsConfig {
    /// Port of an upstream written without one.
    pub const DEFAULT_PORT: u16 = 53;
    pub const DEFAULT_MIN_TTL: u32 = 5;
    pub const DEFAULT_MAX_TTL: u32 = 300;
    /// Upper bound of `min_ttl` and `max_ttl`: one day.
    pub const TTL_LIMIT: u32 = 86_400;
    pub const DEFAULT_QUERIES_PER_SECOND: u32 = 50;
    pub const QUERIES_PER_SECOND_LIMIT: u32 = 10_000;
}

impl Default for DnsConfig {
    /// What a manifest without `[dns]` gets.
    fn default() -> Self {
        Self {
            upstream: None,
            min_ttl: Self::DEFAULT_MIN_TTL,
            max_ttl: Self::DEFAULT_MAX_TTL,
            queries_per_second: Self::DEFAULT_QUERIES_PER_SECOND,
        }
    }
}

/// Why a `dns.upstream` element is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error(
        "{text:?} is not an IP address with an optional port; write \"198.51.100.53\", \
         \"198.51.100.53:5353\", \"2001:db8::53\" or \"[2001:db8::53]:5353\""
    )]
    Malformed { text: String },
    #[error("{text:?} has port {port}, out of range 1-65535")]
    BadPort { text: String, port: String },
    #[error("{text:?} is not a unicast address a resolver can be reached at")]
    NotUnicast { text: String },
}

/// Validates the `[dns]` table; an absent table gives the defaults.
pub(crate) fn dns_config(
    loc: &Locator<'_>,
    raw: Option<RawDns>,
) -> Result<DnsConfig, ManifestError> {
    let Some(raw) = raw else {
        return Ok(DnsConfig::default());
    };
    let upstream = raw.upstream.map(|list| upstreams(loc, list)).transpose()?;

    let ttl_range = 1..=DnsConfig::TTL_LIMIT;
    let min_ttl = number(loc, raw.min_ttl.as_ref(), "dns.min_ttl", &ttl_range)?;
    let max_ttl = number(loc, raw.max_ttl.as_ref(), "dns.max_ttl", &ttl_range)?;
    let queries_per_second = number(
        loc,
        raw.queries_per_second.as_ref(),
        "dns.queries_per_second",
        &(1..=DnsConfig::QUERIES_PER_SECOND_LIMIT),
    )?;
    let min = min_ttl.unwrap_or(DnsConfig::DEFAULT_MIN_TTL);
    let max = max_ttl.unwrap_or(DnsConfig::DEFAULT_MAX_TTL);
    if min > max {
        // Blame a key the author wrote: `min_ttl` if present, else the `max_ttl` that fell
        // below the default minimum.
        return Err(match &raw.min_ttl {
            Some(v) => loc.error(
                v.span(),
                "dns.min_ttl",
                format!(
                    "{min} is above max_ttl {max}{}",
                    if raw.max_ttl.is_some() {
                        ""
                    } else {
                        " (the default)"
                    }
                ),
            ),
            // The defaults are ordered, so `max_ttl` was written.
            None => loc.error(
                raw.max_ttl.as_ref().map_or(0..0, Spanned::span),
                "dns.max_ttl",
                format!("{max} is below min_ttl {min} (the default)"),
            ),
        });
    }

    Ok(DnsConfig {
        upstream,
        min_ttl: min,
        max_ttl: max,
        queries_per_second: queries_per_second.unwrap_or(DnsConfig::DEFAULT_QUERIES_PER_SECOND),
    })
}

fn number(
    loc: &Locator<'_>,
    value: Option<&Spanned<i64>>,
    path: &str,
    range: &std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ManifestError> {
    let Some(value) = value else { return Ok(None) };
    u32::try_from(*value.get_ref())
        .ok()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            loc.error(
                value.span(),
                path,
                format!(
                    "{} is out of range {}-{}",
                    value.get_ref(),
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn upstreams(
    loc: &Locator<'_>,
    list: Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<SocketAddr>, ManifestError> {
    if list.get_ref().is_empty() {
        return Err(loc.error(
            list.span(),
            "dns.upstream",
            "an empty list leaves no resolver; omit `upstream` to use the host's resolv.conf \
             servers",
        ));
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, text) in list.into_inner().into_iter().enumerate() {
        let addr = parse_upstream(text.get_ref())
            .map_err(|e| loc.error(text.span(), format!("dns.upstream[{i}]"), e.to_string()))?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// `198.51.100.53`, `198.51.100.53:5353`, `2001:db8::53`, `[2001:db8::53]` or
/// `[2001:db8::53]:5353`.
pub(crate) fn parse_upstream(text: &str) -> Result<SocketAddr, UpstreamError> {
    let malformed = || UpstreamError::Malformed {
        text: text.to_owned(),
    };
    let (ip, port): (IpAddr, Option<&str>) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(malformed)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| malformed())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(malformed)?),
        };
        (ip.into(), port)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        (ip, None)
    } else if let Some((ip, port)) = text.rsplit_once(':')
        && !ip.contains(':')
    {
        (ip.parse().map_err(|_| malformed())?, Some(port))
    } else {
        return Err(malformed());
    };
    let port = match port {
        None => DnsConfig::DEFAULT_PORT,
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(malformed());
        }
        Some(p) => {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| UpstreamError::BadPort {
                    text: text.to_owned(),
                    port: p.to_owned(),
                })?
        }
    };
    let ip = ip.to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(UpstreamError::NotUnicast {
            text: text.to_owned(),
        });
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_spellings() {
        let ok = [
            ("198.51.100.53", "198.51.100.53:53"),
            ("198.51.100.53:5353", "198.51.100.53:5353"),
            ("2001:db8:53::53", "[2001:db8:53::53]:53"),
            ("[2001:db8::53]", "[2001:db8::53]:53"),
            ("[2001:db8::53]:5353", "[2001:db8::53]:5353"),
            ("::ffff:198.51.100.53", "198.51.100.53:53"),
            ("127.0.0.53", "127.0.0.53:53"),
        ];
        for (text, want) in ok {
            assert_eq!(parse_upstream(text).unwrap().to_string(), want, "{text}");
        }
        let bad = [
            ("", "not an IP address"),
            ("dns.example.test", "not an IP address"),
            ("198.51.100.53:", "not an IP address"),
            ("198.51.100.53:+5", "not an IP address"),
            ("[198.51.100.53]:53", "not an IP address"),
            ("[2001:db8::53]5353", "not an IP address"),
            ("[2001:db8::53", "not an IP address"),
            ("2001:db8::53:5353:1:2:3:4", "not an IP address"),
            ("198.51.100.53:0", "port 0, out of range"),
            ("198.51.100.53:65536", "port 65536, out of range"),
            (
                "[2001:db8::53]:99999999999",
                "port 99999999999, out of range",
            ),
            ("0.0.0.0", "not a unicast address"),
            ("[::]:53", "not a unicast address"),
            ("224.0.0.251", "not a unicast address"),
            ("255.255.255.255", "not a unicast address"),
            ("ff02::fb", "not a unicast address"),
        ];
        for (text, want) in bad {
            let got = parse_upstream(text).unwrap_err().to_string();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }
}
