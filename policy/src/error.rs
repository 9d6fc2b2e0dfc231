//! The one error type of this crate: a manifest problem pinned to a place in the text.
//!
//! Every failure — TOML syntax, an unknown key, a bad value, a kernel capacity the policy
//! would exceed — is reported as `origin:line:col: path: what is wrong`, so an operator can
//! jump straight to the offending entry.

/// A manifest problem, located in the manifest text.
///
/// `Display` is `{origin}:{line}:{col}: {path}: {message}` (the `path: ` part is left out
/// when the problem is not inside a particular field, e.g. a TOML syntax error). Lines and
/// columns are 1-based; columns count characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{col}: {}", what(.path, .message))]
pub struct ManifestError {
    /// Where the manifest came from, as the caller named it (usually a file path).
    pub origin: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub col: usize,
    /// Field path such as `egress.allow[0].ports[1]`; empty when no field is concerned.
    pub path: String,
    /// What is wrong, in words meant for the manifest's author.
    pub message: String,
}

fn what(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_path() {
        let mut e = ManifestError {
            origin: "bottle.toml".into(),
            line: 7,
            col: 9,
            path: "egress.allow[0].ports[1]".into(),
            message: "port 0 is out of range 1-65535".into(),
        };
        assert_eq!(
            e.to_string(),
            "bottle.toml:7:9: egress.allow[0].ports[1]: port 0 is out of range 1-65535"
        );
        e.path.clear();
        assert_eq!(
            e.to_string(),
            "bottle.toml:7:9: port 0 is out of range 1-65535"
        );
    }
}
