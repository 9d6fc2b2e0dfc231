//! Which DLP action applies to a finding on one request: `[dlp]`'s action, the
//! per-detector `[dlp.actions]`, and the request's `[[egress.allow.http]]` route
//! (`dlp_action`, `dlp_skip`); see [`cork_policy::DlpConfig::resolve`].

use std::sync::Arc;

use cork_dlp::Finding;
use cork_policy::{DlpAction, HttpRoute, Policy};

/// The DLP settings of one request.
#[derive(Debug, Clone)]
pub struct DlpRules {
    policy: Arc<Policy>,
    route: Option<HttpRoute>,
    /// An operator approved this request: `supervise` findings no longer hold it.
    approved: bool,
}

impl DlpRules {
    /// `route`: the route the request went by, if its rule has routes.
    pub fn new(policy: Arc<Policy>, route: Option<HttpRoute>) -> Self {
        DlpRules {
            policy,
            route,
            approved: false,
        }
    }

    /// The route the request went by, if its rule has routes.
    pub fn route(&self) -> Option<&HttpRoute> {
        self.route.as_ref()
    }

    /// These rules once an operator approved the request.
    pub fn approve(&mut self) {
        self.approved = true;
    }

    pub fn is_approved(&self) -> bool {
        self.approved
    }

    /// Drops the findings this request ignores (`"off"`, `dlp_skip`); the strongest
    /// action the others call for (`None` when none is left).
    pub fn judge(&self, findings: &mut Vec<Finding>) -> Option<DlpAction> {
        let mut strongest: Option<DlpAction> = None;
        findings.retain(
            |f| match self.policy.dlp.resolve(self.route.as_ref(), &f.detector) {
                None => false,
                Some(a) => {
                    strongest = Some(strongest.map_or(a, |s| s.max(a)));
                    true
                }
            },
        );
        strongest
    }

    /// Whether some finding on this request could call for `supervise`: its body is then
    /// buffered (up to a bound) and scanned before anything goes upstream.
    pub fn may_supervise(&self) -> bool {
        let dlp = &self.policy.dlp;
        dlp.action == DlpAction::Supervise
            || self
                .route
                .as_ref()
                .is_some_and(|r| r.dlp_action == Some(DlpAction::Supervise))
            || dlp
                .actions
                .iter()
                .any(|a| a.action == Some(DlpAction::Supervise))
    }

    /// Whether some finding on this request could be redacted: a redacted body's length
    /// changes, so it cannot keep its `Content-Length`.
    pub fn may_redact(&self) -> bool {
        let dlp = &self.policy.dlp;
        dlp.action == DlpAction::Redact
            || self
                .route
                .as_ref()
                .is_some_and(|r| r.dlp_action == Some(DlpAction::Redact))
            || dlp
                .actions
                .iter()
                .any(|a| a.action == Some(DlpAction::Redact))
    }
}
