//! The manifest's DLP settings checked against the detectors cork has, while the manifest
//! compiles: every `[[dlp.detectors]]` regex compiles within the scanner's bounds, and
//! every detector id the manifest names (`[dlp.actions]`, routes' `dlp_skip`) is a
//! built-in or a custom detector. A `Policy` that exists is one the scanner takes, so
//! `cork check` needs nothing but [`crate::compile`], and `cork run` fails on a bad
//! detector before anything is created.

use std::collections::HashSet;

use crate::Policy;
use crate::error::ManifestError;

/// Checks `policy`'s DLP settings; the error names the place in the manifest.
pub(crate) fn check(policy: &Policy, origin: &str) -> Result<(), ManifestError> {
    for (i, d) in policy.dlp.detectors.iter().enumerate() {
        let keywords: Vec<&str> = d.keywords.iter().map(String::as_str).collect();
        let config = cork_dlp::Config {
            builtin: false,
            custom: vec![cork_dlp::Detector::custom(&d.name, &d.regex, &keywords)],
            ..cork_dlp::Config::default()
        };
        if let Err(e) = cork_dlp::Scanner::new(&config) {
            return Err(ManifestError {
                origin: origin.to_owned(),
                line: d.line,
                col: d.col,
                path: format!("dlp.detectors[{i}].regex"),
                message: chain(&e),
            });
        }
    }
    let builtin: Vec<String> = cork_dlp::builtin_detectors()
        .into_iter()
        .map(|d| d.name)
        .collect();
    let known: HashSet<&str> = builtin
        .iter()
        .map(String::as_str)
        .chain(policy.dlp.detectors.iter().map(|d| d.name.as_str()))
        .collect();
    for r in policy.dlp_detector_refs() {
        if !known.contains(r.id.as_str()) {
            return Err(ManifestError {
                origin: origin.to_owned(),
                line: r.line,
                col: r.col,
                path: r.key.clone(),
                message: format!(
                    "unknown detector {:?}; `cork dlp detectors` lists the built-in ids, and \
                     [[dlp.detectors]] names the manifest's own",
                    r.id
                ),
            });
        }
    }
    Ok(())
}

/// The error and its sources, once each.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
