//! HTTP routes of an inspected domain rule (`[[egress.allow.http]]`): their validation,
//! and [`route_decision`], the check the proxy makes on every request it inspects.
//!
//! Routes are an allow-list, so every doubt resolves to a refusal: a request path that
//! different servers could read differently is refused outright ([`RouteVerdict::BadPath`])
//! rather than matched, and a git push needs a route that names its path.

use toml::Spanned;

use crate::dlp::{DetectorRef, DlpAction, detector_ref, parse_action};
use crate::domain_rule::DomainRule;
use crate::error::ManifestError;
use crate::locate::Locator;
use crate::request_target::RequestTarget;
use crate::schema::RawRoute;

/// One `[[egress.allow.http]]` entry. A request matches when its method is in `methods`
/// (or `methods` is empty) and its path is under one of `paths` (or `paths` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
    /// Path prefixes, written decoded, matched at a segment boundary: `/v1/` matches
    /// `/v1/` and `/v1/x`, `/v1` matches `/v1` and `/v1/x`, neither matches `/v1x`. Empty
    /// means any path.
    pub paths: Vec<String>,
    /// `dlp_action`: the DLP action for requests on this route, instead of `[dlp]`'s.
    pub dlp_action: Option<DlpAction>,
    /// `dlp_skip`: detector ids whose findings are ignored on this route (a JWT sent to
    /// the identity provider that issued it is not a leak).
    pub dlp_skip: Vec<DetectorRef>,
    /// 1-based manifest line of the entry (its `[[egress.allow.http]]` header).
    pub line: usize,
    /// 1-based column of the entry.
    pub col: usize,
}

/// What [`route_decision`] says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteVerdict {
    /// The rule has no routes, or a route matches.
    Allowed,
    /// The rule has routes and none matches.
    NoRoute,
    /// A git smart-HTTP push (`git-receive-pack`) that no route names explicitly. Pushes
    /// publish the workspace, so "any request" does not include them.
    GitPush,
    /// The path is not one that every server reads the same way (dot segments, `//`,
    /// backslashes, encoded separators, control bytes, bad escapes); checking a route
    /// against it would prove nothing.
    BadPath,
}

impl HttpRoute {
    fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// Whether one of `paths` matches (false when `paths` is empty).
    fn names_path(&self, path: &[u8]) -> bool {
        self.paths.iter().any(|p| under_prefix(p, path))
    }

    fn matches(&self, method: &str, path: &[u8]) -> bool {
        self.allows_method(method) && (self.paths.is_empty() || self.names_path(path))
    }
}

/// Whether the decoded `path` is under `prefix` at a segment boundary.
fn under_prefix(prefix: &str, path: &[u8]) -> bool {
    let prefix = prefix.as_bytes();
    if prefix.ends_with(b"/") {
        path.starts_with(prefix)
    } else {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
    }
}

/// Decides one request of an inspected flow under `rule`: `method` as sent (methods are
/// case-sensitive), `path_and_query` the origin-form request target (`/v1/x?y=1`).
pub fn route_decision(rule: &DomainRule, method: &str, path_and_query: &str) -> RouteVerdict {
    let Some(target) = RequestTarget::parse(path_and_query) else {
        return RouteVerdict::BadPath;
    };
    let path = target.path.as_slice();
    if target.git_push {
        let named = rule
            .routes
            .iter()
            .any(|r| r.allows_method(method) && r.names_path(path));
        return if named {
            RouteVerdict::Allowed
        } else {
            RouteVerdict::GitPush
        };
    }
    if rule.routes.is_empty() || rule.routes.iter().any(|r| r.matches(method, path)) {
        RouteVerdict::Allowed
    } else {
        RouteVerdict::NoRoute
    }
}

/// The route of `rule` a request goes by, for its DLP settings: the first that matches
/// (`None` when the rule has no routes or the path is not one [`route_decision`] allows).
pub fn route_for<'r>(
    rule: &'r DomainRule,
    method: &str,
    path_and_query: &str,
) -> Option<&'r HttpRoute> {
    let target = RequestTarget::parse(path_and_query)?;
    let path = target.path.as_slice();
    rule.routes.iter().find(|r| r.matches(method, path))
}

/// Validates one `[[egress.allow.http]]` entry; `id` is its path (`egress.allow[0].http[1]`).
pub(crate) fn http_route(
    loc: &Locator<'_>,
    id: &str,
    entry: Spanned<RawRoute>,
) -> Result<HttpRoute, ManifestError> {
    let (line, col) = loc.line_col(entry.span().start);
    let raw = entry.into_inner();
    let methods = list(loc, id, "methods", raw.methods, check_method)?;
    let paths = list(loc, id, "paths", raw.paths, check_path)?;
    let dlp_action = match raw.dlp_action {
        None => None,
        Some(text) => match parse_action(text.get_ref()) {
            Some(Some(a)) => Some(a),
            _ => {
                return Err(loc.error(
                    text.span(),
                    format!("{id}.dlp_action"),
                    format!(
                        "unknown action {:?}; expected {}",
                        text.get_ref(),
                        crate::dlp::ACTIONS
                    ),
                ));
            }
        },
    };
    let dlp_skip = match raw.dlp_skip {
        None => Vec::new(),
        Some(list) => list
            .into_inner()
            .into_iter()
            .enumerate()
            .map(|(i, d)| detector_ref(loc, &format!("{id}.dlp_skip[{i}]"), d))
            .collect::<Result<_, _>>()?,
    };
    Ok(HttpRoute {
        methods,
        paths,
        dlp_action,
        dlp_skip,
        line,
        col,
    })
}

/// A `methods` or `paths` list, each element passed through `check`; absent is empty.
fn list(
    loc: &Locator<'_>,
    id: &str,
    key: &str,
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, ManifestError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.get_ref().is_empty() {
        // As with `ports`: an empty list reads as "none", yet absent means "any".
        return Err(loc.error(
            raw.span(),
            format!("{id}.{key}"),
            format!("an empty list matches nothing; omit `{key}` to match any"),
        ));
    }
    raw.into_inner()
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            check(value.get_ref())
                .map_err(|why| loc.error(value.span(), format!("{id}.{key}[{i}]"), why))?;
            Ok(value.into_inner())
        })
        .collect()
}

fn check_method(method: &str) -> Result<(), String> {
    let ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{method:?} is not a method name; write it in upper case (`A-Z` and `-`), as \
             requests send it: \"GET\", \"POST\""
        ))
    }
}

/// A route path must be one a request can match: requests with the refused forms are
/// [`RouteVerdict::BadPath`], and request paths are decoded before matching.
fn check_path(path: &str) -> Result<(), String> {
    let why = if !path.starts_with('/') {
        "does not start with `/`"
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains white space or a control character"
    } else if path.contains(['?', '#']) {
        "contains `?` or `#`; a route matches the path only, not the query or fragment"
    } else if path.contains('%') {
        "contains `%`; write the path decoded (requests are decoded before matching)"
    } else if path.contains('\\') {
        "contains a backslash, which requests may not (they are refused as ambiguous)"
    } else if path.contains("//") {
        "contains `//`, which requests may not (they are refused as ambiguous)"
    } else if path.split('/').any(|s| s == "." || s == "..") {
        "contains a `.` or `..` segment, which requests may not (they are refused as \
         ambiguous)"
    } else {
        return Ok(());
    };
    Err(format!("{path:?} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let cases = [
            ("/v1/", "/v1/x", true),
            ("/v1/", "/v1/", true),
            ("/v1/", "/v1", false),
            ("/v1/", "/v1x", false),
            ("/v1", "/v1", true),
            ("/v1", "/v1/x", true),
            ("/v1", "/v1x", false),
            ("/v1", "/v", false),
            ("/", "/anything", true),
        ];
        for (prefix, path, want) in cases {
            assert_eq!(
                under_prefix(prefix, path.as_bytes()),
                want,
                "{prefix} {path}"
            );
        }
    }

    #[test]
    fn route_paths() {
        for good in ["/", "/v1/", "/v1", "/a.b/c..d/", "/caf\u{e9}/", "/x;y"] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        let bad = [
            ("v1/", "does not start"),
            ("/a b", "white space"),
            ("/a\u{7f}", "control"),
            ("/a?b", "`?` or `#`"),
            ("/a#b", "`?` or `#`"),
            ("/a%2Fb", "decoded"),
            ("/a\\b", "backslash"),
            ("/a//b", "`//`"),
            ("/a/../b", "`..` segment"),
            ("/a/./b", "`.` or"),
            ("/a/..", "segment"),
        ];
        for (path, want) in bad {
            let got = check_path(path).unwrap_err();
            assert!(got.contains(want), "{path:?}: {got}");
        }
    }

    #[test]
    fn methods() {
        for good in ["GET", "M-SEARCH"] {
            assert_eq!(check_method(good), Ok(()));
        }
        for bad in ["", "get", "GET ", "G3T", "PÖST"] {
            assert!(check_method(bad).is_err(), "{bad:?}");
        }
    }
}
