//! The request head: one DLP pass over the URL and every header value (block, supervise,
//! redact or log), and the header rules of both directions (hop-by-hop headers, the authority a
//! request names, WebSocket upgrades).

use crate::dlp_rules::DlpRules;
use cork_policy::DlpAction;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Version};
use hyper::body::Incoming;

use super::refusal::{Refusal, RequestAudit};
use crate::client_hello::normalize_host_name;
use crate::events::ProxyEvent;
use crate::server::Shared;
use cork_dlp::Finding;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing the proxy owns on each side. Names,
/// not strings: every request and response is stripped of them, and a string key is
/// parsed again on every lookup.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// The head as DLP let it through.
pub struct Head {
    /// The request's headers, redacted where DLP redacts.
    pub headers: HeaderMap,
    /// The path and query to send upstream, redacted where DLP redacts.
    pub pq: String,
    /// A finding calls for `supervise`: the request waits for an operator before
    /// anything of it goes upstream (the head is kept whole for the operator's decision).
    pub supervise: bool,
}

/// The request's path and query (`/` when it names none).
pub fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned())
}

/// Takes the request's headers and scans them with `pq`: a finding blocks the request,
/// is redacted or is logged, by the policy's DLP action.
pub fn scan(
    shared: &Shared,
    req: &mut Request<Incoming>,
    pq: String,
    audit: &mut RequestAudit,
    rules: &DlpRules,
) -> Result<Head, Refusal> {
    // DLP on the URL and every header value, before anything is forwarded.
    audit.ev.dlp_action = None;
    let mut new_pq = None;
    // One DLP pass over the URL and every header value, each on a line of its own (a
    // stream per value would cost a scanner setup each, at tens of thousands of req/s).
    let mut headers = std::mem::take(req.headers_mut());
    let mut joined = Vec::with_capacity(pq.len() + 64 * headers.len());
    let mut spans = Vec::with_capacity(headers.len() + 1);
    for v in std::iter::once(pq.as_bytes()).chain(headers.values().map(HeaderValue::as_bytes)) {
        spans.push(joined.len()..joined.len() + v.len());
        joined.extend_from_slice(v);
        joined.push(b'\n');
    }
    let mut findings = scan_all(shared, &joined);
    let mut supervise = false;
    if let Some(action) = rules.judge(&mut findings) {
        note(&mut audit.ev, &findings, action);
        match action {
            DlpAction::Block => return Err(Refusal::new(StatusCode::FORBIDDEN, "dlp_blocked")),
            DlpAction::Redact => {
                let redacted = |i: usize| {
                    let span = spans[i].clone();
                    let start = span.start as u64;
                    let hit = findings
                        .iter()
                        .any(|f| f.start < span.end as u64 && f.end() > start);
                    hit.then(|| cork_dlp::redact(&joined[span], start, &findings))
                };
                if let Some(red) = redacted(0) {
                    new_pq = Some(percent_safe(&red));
                }
                let mut out = HeaderMap::with_capacity(headers.len());
                for (i, (name, value)) in headers.iter().enumerate() {
                    let v = redacted(i + 1)
                        .and_then(|red| HeaderValue::from_bytes(&red).ok())
                        .unwrap_or_else(|| value.clone());
                    out.append(name.clone(), v);
                }
                headers = out;
            }
            DlpAction::Supervise => supervise = true,
            DlpAction::Log => {}
        }
    }
    Ok(Head {
        headers,
        pq: new_pq.unwrap_or(pq),
        supervise,
    })
}

fn scan_all(shared: &Shared, bytes: &[u8]) -> Vec<Finding> {
    shared.cfg.scanner.stream().scan_whole(bytes)
}

fn note(ev: &mut ProxyEvent, findings: &[Finding], action: DlpAction) {
    for f in findings {
        if !ev.detectors.contains(&f.detector) {
            ev.detectors.push(f.detector.clone());
        }
    }
    ev.dlp_action = Some(action.as_str());
}

/// A redacted URL keeps only URL-safe bytes (the marker's brackets are percent-encoded).
fn percent_safe(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'[' && b != b']' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn is_websocket(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The request's Host (HTTP/1.1) or :authority (HTTP/2, Host if absent). Both present on
/// HTTP/2 and different: refused as ambiguous.
pub fn request_authority(req: &Request<Incoming>, h2: bool) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if h2 {
        let auth = req.uri().authority().map(|a| a.as_str().to_owned());
        return match (auth, host) {
            (Some(a), Some(h)) if !a.eq_ignore_ascii_case(&h) => None,
            (Some(a), _) => Some(a),
            (None, h) => h,
        };
    }
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return None;
    }
    host
}

/// `name[:port]`, name normalised as SNI is. IP literals are refused (no name to check).
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.contains('@') || authority.starts_with('[') {
        return None;
    }
    let (name, port) = match authority.rsplit_once(':') {
        Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
        None => (authority, None),
    };
    let name = normalize_host_name(name.as_bytes()).ok()?;
    Some((name, port))
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(keep_upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    for h in &HOP_BY_HOP {
        if keep_upgrade && (h == header::UPGRADE || h == header::CONNECTION) {
            continue;
        }
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use http::Uri;

    use super::*;

    #[test]
    fn authorities_split_and_normalise() {
        assert_eq!(
            split_authority("API.Example.test:443"),
            Some(("api.example.test".into(), Some(443)))
        );
        assert_eq!(
            split_authority("api.example.test"),
            Some(("api.example.test".into(), None))
        );
        assert_eq!(split_authority("[2001:db8::1]:443"), None);
        assert_eq!(split_authority("198.51.100.1"), None);
        assert_eq!(split_authority("user@api.example.test"), None);
        assert_eq!(split_authority("api.example.test:x"), None);
    }

    #[test]
    fn redacted_urls_stay_valid() {
        let s = percent_safe(b"/a?k=[REDACTED] x");
        assert_eq!(s, "/a?k=%5BREDACTED%5D%20x");
        assert!(s.parse::<Uri>().is_ok());
    }
}
