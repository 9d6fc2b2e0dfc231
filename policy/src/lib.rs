//! cork policy: manifest text → validated, compiled [`Policy`] → [`KernelPlan`], a pure
//! description of the kernel map entries. No I/O, no privileges.
//!
//! ```
//! let src = r#"
//! version = 1
//! [bottle]
//! name = "agent-1"
//! [[egress.allow]]
//! cidr = "198.51.100.0/24"
//! ports = [443]
//! "#;
//! let policy = cork_policy::compile(src, "bottle.toml").unwrap();
//! let plan = policy.kernel_plan();
//! let v = cork_policy::evaluate(&plan, "198.51.100.9".parse().unwrap(), cork_policy::Proto::Tcp, 443);
//! assert_eq!(v.action, cork_policy::Action::Allow);
//! ```
//!
//! Semantics callers rely on:
//! - Deny beats allow across overlapping prefixes in both directions; no match is deny.
//! - A rule without `ports` covers every port (slot `0-65535`). `proto` defaults to `tcp`
//!   for allow rules and `any` for deny rules.
//! - IPv4-mapped IPv6 prefixes (`::ffff:198.51.100.0/120`) compile to the IPv4 prefix they
//!   denote, because the kernel normalises mapped destinations to IPv4. Consequently an
//!   IPv6 prefix such as `::/0` does not cover IPv4-mapped destinations: write
//!   `0.0.0.0/0` for those.
//! - Domain rules (`domain = "api.example.test"` or `"*.pkg.example.test"`) and the
//!   `[dns]` table are parsed and validated; [`Policy::match_domain`] and
//!   [`Policy::allowed_slots`] decide names for the agent's DNS proxy, which teaches the
//!   kernel the addresses of allowed answers. Domain rules never add kernel plan entries.
//! - A wildcard `*.a.test` matches every name below `a.test` but not `a.test` itself; a
//!   matching deny domain rule beats every allow domain rule. Deny domain rules refuse the
//!   name whatever the port, so they take no `ports` or `proto`.
//! - The inspecting proxy sees TCP to a domain allow rule's ports 80 and 443 (all its
//!   ports with `inspect = true`): the rule's learned slots carry a [`Redirect`], and
//!   [`evaluate`] reports `redirect`. With `inspect = false` those flows still reach the
//!   proxy, which checks the TLS server name and passes them through. UDP that a slot would
//!   redirect is denied, so that HTTP/3 falls back to TCP. `cidr` rules are never
//!   redirected, and `inspect` on a `cidr` or deny rule is refused.
//!   [`Policy::web_decision`] is the proxy's per-flow choice.
//! - `[[egress.allow.http]]` after an inspected domain rule lists the requests it allows
//!   (`methods`, `paths` as segment-boundary prefixes; none = any request). A git push
//!   (`git-receive-pack`) needs a route naming its path, and a request path that servers
//!   could read differently is refused: see [`route_decision`].
//! - `[[egress.ask]]` (a domain, optional `ports`, default 80 and 443, and
//!   `[[egress.ask.http]]` routes) makes its names reachable like an allow rule, always
//!   inspected; each request its routes admit waits for an operator, before any allow
//!   rule for the name is asked ([`Policy::request_decision`]). Ask rules take the rule
//!   ids after every allow and deny rule.
//! - `[tls] upstream_ca` adds roots for upstream verification (absolute paths, not read
//!   here). `[[credentials]]` gives the bottle a placeholder that the proxy swaps for the
//!   real value in one header to one exact host, which must be inspected
//!   ([`Policy::credentials_for`]). `[dlp]` sets the action on a finding (`block` by
//!   default, `supervise`, `redact`, `log`) and adds `[[dlp.detectors]]`, whose regexes the DLP crate
//!   compiles.
//! - `[unix] allow` lists the unix-domain sockets the bottle may connect or send to, by
//!   absolute path or `@abstract` name, matched exactly as the program passes them; every
//!   other one is denied, and cork's [`CONTROL_SOCKET`] always is (see `unix.rs`).
//!
//! ```toml
//! [[egress.allow]]
//! domain = "api.example.test"
//! ports = [443]
//! [[egress.allow.http]]
//! methods = ["GET", "POST"]
//! paths = ["/v1/"]
//!
//! [[credentials]]
//! domain = "api.example.test"
//! header = "x-api-key"
//! placeholder = "cork-placeholder-acme"
//! env = "ACME_API_KEY"
//! value_env = "ACME_REAL_KEY"
//!
//! [dlp]
//! action = "block"
//! ```

mod ask;
mod bulk;
mod compile;
mod credential;
mod dlp;
mod dlp_check;
mod dns;
mod domain;
mod domain_rule;
mod duration;
mod egress;
mod env;
mod error;
mod evaluate;
mod files;
mod glob;
mod inspect;
mod learn;
mod live;
mod locate;
mod manifest;
mod plan;
mod ports;
mod prefix;
mod request_target;
mod route;
mod rule;
mod schema;
mod tls;
mod unix;
mod vm;
mod web;

pub use compile::{Policy, compile};
pub use credential::Credential;
pub use dlp::{
    CustomDetector, DEFAULT_APPROVAL_TIMEOUT, DetectorAction, DetectorRef, DlpAction, DlpConfig,
    MAX_APPROVAL_TIMEOUT,
};
pub use dns::DnsConfig;
pub use domain::{DomainError, DomainPattern};
pub use domain_rule::{DomainRule, DomainVerdict};
pub use duration::parse_duration;
pub use env::EnvConfig;
pub use error::ManifestError;
pub use evaluate::{Verdict, evaluate};
pub use files::{Coverage, FilesConfig, PathPattern};
pub use glob::{glob_match, has_wildcard};
pub use inspect::InspectMode;
pub use learn::{LearnError, LearnedEntry};
pub use live::{
    Generation, LivePolicy, PolicySlot, RULE_SLOT_BIT, UpdateRefusal, check_update,
    needs_inspecting_proxy, split_rule, tag_rule,
};
pub use manifest::{MANIFEST_VERSION, Manifest, parse_manifest};
pub use plan::{
    KernelPlan, MAX_HOST_PORTS, MAX_PREFIXES_PER_FAMILY, MAX_RULES, MAX_SLOTS_PER_PREFIX,
    PrefixEntry, RULE_ID_NONE, Redirect, RuleId, Slot, UnixEntry,
};
pub use ports::{PortError, PortRange, Proto};
pub use prefix::{Prefix, PrefixError};
pub use route::{HttpRoute, RouteVerdict, route_decision, route_for};
pub use rule::{Action, RuleInfo, RuleTarget};
pub use tls::TlsConfig;
pub use unix::{
    CONTROL_SOCKET, CONTROL_SOCKET_SPELLINGS, MAX_UNIX_ABSTRACT, MAX_UNIX_NAMES, MAX_UNIX_PATH,
    UnixConfig, UnixName,
};
pub use vm::check_for_vm;
pub use web::{RequestVerdict, WebDecision};
