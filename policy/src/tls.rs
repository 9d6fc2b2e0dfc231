//! The `[tls]` table: how the inspecting proxy verifies the servers it connects to.
//!
//! ```toml
//! [tls]
//! upstream_ca = ["/etc/cork/extra-ca.pem"]   # extra roots, besides the system's
//! ```
//!
//! Only the paths are checked here (this crate does no I/O); the agent reads the files
//! and reports a missing or unreadable one.

use std::path::PathBuf;

use toml::Spanned;

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::schema::RawTls;

/// Validated `[tls]` settings; the default has no extra roots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// `tls.upstream_ca`: PEM files of extra roots trusted for upstream servers, absolute
    /// paths in manifest order, duplicates dropped.
    pub upstream_ca: Vec<PathBuf>,
}

/// Validates `[tls]`; an absent table gives the default.
pub(crate) fn tls_config(
    loc: &Locator<'_>,
    raw: Option<Spanned<RawTls>>,
) -> Result<TlsConfig, ManifestError> {
    let Some(list) = raw.and_then(|t| t.into_inner().upstream_ca) else {
        return Ok(TlsConfig::default());
    };
    if list.get_ref().is_empty() {
        return Err(loc.error(
            list.span(),
            "tls.upstream_ca",
            "an empty list adds no root; omit `upstream_ca` to trust the system roots only",
        ));
    }
    let mut upstream_ca: Vec<PathBuf> = Vec::new();
    for (i, path) in list.into_inner().into_iter().enumerate() {
        // The agent may run from any directory, so a relative path would mean different
        // files at different times.
        if !path.get_ref().starts_with('/') || path.get_ref().contains('\0') {
            return Err(loc.error(
                path.span(),
                format!("tls.upstream_ca[{i}]"),
                format!(
                    "{:?} is not an absolute path; write the full path of a PEM file, such \
                     as \"/etc/cork/extra-ca.pem\"",
                    path.get_ref()
                ),
            ));
        }
        let path = PathBuf::from(path.into_inner());
        if !upstream_ca.contains(&path) {
            upstream_ca.push(path);
        }
    }
    Ok(TlsConfig { upstream_ca })
}
