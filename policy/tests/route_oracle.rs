//! `route_decision` must agree with a reading of the routes done segment by segment, and
//! must refuse every request path into which an ambiguous form was slipped. Paths over a
//! few labels (`v1`, `v1x` share a prefix but not a segment) make boundary cases common.

use cork_policy::{DomainRule, Policy, RouteVerdict, compile, route_decision};
use proptest::prelude::*;

const SEGMENTS: [&str; 4] = ["v1", "v1x", "a", "git-receive-pack"];
const METHODS: [&str; 3] = ["GET", "POST", "PUT"];

#[derive(Debug, Clone)]
struct Prefix {
    segments: Vec<&'static str>,
    trailing_slash: bool,
}

impl Prefix {
    fn text(&self) -> String {
        let mut text = format!("/{}", self.segments.join("/"));
        if self.trailing_slash && !self.segments.is_empty() {
            text.push('/');
        }
        text
    }

    /// The meaning: the prefix's segments lead the path's, and a trailing `/` needs
    /// one more (possibly empty) segment after them. `/` matches everything.
    fn matches(&self, path: &[&str]) -> bool {
        let n = self.segments.len();
        let needed = if self.trailing_slash || n == 0 {
            n + 1
        } else {
            n
        };
        path.len() >= needed && path[..n] == self.segments[..]
    }
}

#[derive(Debug, Clone)]
struct Route {
    methods: Vec<&'static str>,
    paths: Vec<Prefix>,
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&SEGMENTS[..])
}

fn prefix() -> impl Strategy<Value = Prefix> {
    (prop::collection::vec(segment(), 0..3), any::<bool>()).prop_map(|(segments, slash)| Prefix {
        segments,
        trailing_slash: slash,
    })
}

fn route() -> impl Strategy<Value = Route> {
    (
        prop::sample::subsequence(&METHODS[..], 0..=2),
        prop::collection::vec(prefix(), 0..3),
    )
        .prop_map(|(methods, paths)| Route { methods, paths })
}

fn policy(routes: &[Route]) -> Policy {
    let mut src = String::from(
        "version = 1\n[bottle]\nname = \"prop\"\n[[egress.allow]]\ndomain = \"r.example.test\"\n\
         ports = [443]\n",
    );
    for r in routes {
        src += "[[egress.allow.http]]\n";
        if !r.methods.is_empty() {
            src += &format!("methods = {:?}\n", r.methods);
        }
        if !r.paths.is_empty() {
            let paths: Vec<String> = r.paths.iter().map(Prefix::text).collect();
            src += &format!("paths = {paths:?}\n");
        }
    }
    compile(&src, "prop").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// A request: its segments after the leading `/` (a trailing `/` is a last empty one),
/// which segment starts are percent-encoded, and whether the query asks for a push.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    segments: Vec<&'static str>,
    trailing_slash: bool,
    encoded: Vec<bool>,
    push_query: bool,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(&METHODS[..]),
        prop::collection::vec(segment(), 0..4),
        any::<bool>(),
        prop::collection::vec(any::<bool>(), 4),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(method, segments, trailing_slash, encoded, push_query)| Request {
                method,
                segments,
                trailing_slash,
                encoded,
                push_query,
            },
        )
}

impl Request {
    /// The decoded segments as a server sees them.
    fn path(&self) -> Vec<&'static str> {
        let mut path = self.segments.clone();
        if self.trailing_slash || path.is_empty() {
            path.push("");
        }
        path
    }

    fn target(&self) -> String {
        let mut target = String::new();
        for (segment, &encode) in self.segments.iter().zip(&self.encoded) {
            target.push('/');
            // Encoding an ordinary letter changes nothing a server sees.
            match (encode, segment.split_at(1)) {
                (true, (first, rest)) => {
                    target += &format!("%{:02X}{rest}", first.as_bytes()[0]);
                }
                (false, _) => target += segment,
            }
        }
        if self.trailing_slash || self.segments.is_empty() {
            target.push('/');
        }
        if self.push_query {
            target += "?service=git-receive-pack";
        }
        target
    }
}

fn oracle(routes: &[Route], req: &Request) -> RouteVerdict {
    let path = req.path();
    let method_ok = |r: &Route| r.methods.is_empty() || r.methods.contains(&req.method);
    let names = |r: &Route| r.paths.iter().any(|p| p.matches(&path));
    // The last segment, or the one before a trailing `/`, names the endpoint.
    let endpoint = match path.as_slice() {
        [.., before, ""] => Some(*before),
        [.., last] => Some(*last),
        [] => None,
    };
    let push = req.push_query || endpoint == Some("git-receive-pack");
    if push {
        return if routes.iter().any(|r| method_ok(r) && names(r)) {
            RouteVerdict::Allowed
        } else {
            RouteVerdict::GitPush
        };
    }
    if routes.is_empty()
        || routes
            .iter()
            .any(|r| method_ok(r) && (r.paths.is_empty() || names(r)))
    {
        RouteVerdict::Allowed
    } else {
        RouteVerdict::NoRoute
    }
}

fn the_rule(policy: &Policy) -> &DomainRule {
    &policy.domains[0]
}

const AMBIGUOUS: [&str; 12] = [
    "/../", "/./", "//", "\\", "%2f", "%2F", "%5c", "%2e", "%2E", " ", "%00", "#",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn routes_agree_with_segment_oracle(
        routes in prop::collection::vec(route(), 0..4),
        requests in prop::collection::vec(request(), 1..16),
    ) {
        let policy = policy(&routes);
        for req in &requests {
            let got = route_decision(the_rule(&policy), req.method, &req.target());
            prop_assert_eq!(got, oracle(&routes, req), "{} {}\n{:?}", req.method, req.target(), routes);
        }
    }

    #[test]
    fn ambiguous_paths_are_refused_whatever_the_routes(
        routes in prop::collection::vec(route(), 0..3),
        req in request(),
        bad in prop::sample::select(&AMBIGUOUS[..]),
        at in any::<prop::sample::Index>(),
    ) {
        let policy = policy(&routes);
        let mut target = req.target();
        // Before the query, so the path itself is what is ambiguous.
        let path_len = target.find('?').unwrap_or(target.len());
        target.insert_str(at.index(path_len + 1), bad);
        prop_assert_eq!(
            route_decision(the_rule(&policy), req.method, &target),
            RouteVerdict::BadPath,
            "{}", target
        );
    }
}
