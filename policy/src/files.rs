//! The `[files]` table: host paths the bottle must not read, beyond cork's default list of
//! credential files (which the agent owns, in `cork_agent::secrets`), and holes in them.
//!
//! ```toml
//! [files]
//! hide = ["~/.config/my-tool/token"]   # masked too
//! allow = ["~/.ssh/known_hosts"]       # not masked, though under a hidden path
//! ```
//!
//! A path is absolute or starts with `~/` (`~` alone is the whole home), `~` standing for
//! the home of each user whose files a bottle hides. `*` and `?` match within one path
//! component. No `.`, `..` or empty components: the path is meant as written, before any
//! symlink is followed (the agent resolves symlinks when it masks).

use std::path::{Component, Path};

use toml::Spanned;

use crate::error::ManifestError;
use crate::glob::glob_match;
use crate::locate::Locator;
use crate::schema::RawFiles;

/// Validated `[files]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilesConfig {
    /// `files.hide`, in manifest order.
    pub hide: Vec<PathPattern>,
    /// `files.allow`, in manifest order.
    pub allow: Vec<PathPattern>,
}

/// One `hide` or `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// As written in the manifest.
    pub text: String,
    /// Relative to each user's home (`~/...`), else absolute.
    pub in_home: bool,
    /// The components after `~` or `/`, each a glob for one component.
    pub components: Vec<String>,
}

/// How a concrete path relates to a [`PathPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The pattern matches the path.
    Exact,
    /// The pattern matches something strictly below the path.
    Ancestor,
    /// The path is strictly below something the pattern matches.
    Below,
    /// Neither.
    None,
}

impl PathPattern {
    /// Parses a path in the syntax above; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (in_home, rest) = if text == "~" {
            (true, "")
        } else if let Some(rest) = text.strip_prefix("~/") {
            (true, rest)
        } else if text.starts_with('~') {
            return Err(format!(
                "{text:?}: `~user` is not supported; `~/` already means the home of every user \
                 whose files the bottle hides (the command's user, root and the invoking user)"
            ));
        } else if let Some(rest) = text.strip_prefix('/') {
            (false, rest)
        } else {
            return Err(format!(
                "{text:?} is relative; start it with `/` or `~/` (the bottle's working \
                 directory is not known when the manifest is read)"
            ));
        };
        if text.contains('\0') {
            return Err(format!("{text:?} contains a NUL byte"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let components: Vec<String> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').map(str::to_owned).collect()
        };
        for c in &components {
            match c.as_str() {
                "" => return Err(format!("{text:?} has an empty component (`//`)")),
                "." | ".." => {
                    return Err(format!(
                        "{text:?} has a `{c}` component; write the path it means"
                    ));
                }
                _ if c.contains("**") => {
                    return Err(format!(
                        "{text:?}: `**` is not supported; `*` matches within one component"
                    ));
                }
                _ => {}
            }
        }
        if !in_home && components.is_empty() {
            return Err(format!("{text:?} is the whole file system"));
        }
        Ok(PathPattern {
            text: text.to_owned(),
            in_home,
            components,
        })
    }

    /// How `path` (absolute, normalised) relates to this pattern, `~` being `home`.
    /// A home pattern relates to nothing when there is no home.
    pub fn coverage(&self, home: Option<&Path>, path: &Path) -> Coverage {
        let base = if self.in_home {
            match home {
                Some(h) => h,
                None => return Coverage::None,
            }
        } else {
            Path::new("/")
        };
        let Ok(rel) = path.strip_prefix(base) else {
            return Coverage::None;
        };
        let mut pattern = self.components.iter();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                return Coverage::None;
            };
            match pattern.next() {
                Some(p) if glob_match(p, &name.to_string_lossy()) => {}
                Some(_) => return Coverage::None,
                None => return Coverage::Below,
            }
        }
        if pattern.next().is_some() {
            Coverage::Ancestor
        } else {
            Coverage::Exact
        }
    }
}

/// Validates `[files]`.
pub(crate) fn files_config(
    loc: &Locator<'_>,
    raw: Option<RawFiles>,
) -> Result<FilesConfig, ManifestError> {
    let Some(raw) = raw else {
        return Ok(FilesConfig::default());
    };
    let parse = |key: &str, list: Option<Vec<Spanned<String>>>| {
        list.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                PathPattern::parse(entry.get_ref())
                    .map_err(|why| loc.error(entry.span(), format!("files.{key}[{i}]"), why))
                    .map(|p| (p, entry.span()))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let hide = parse("hide", raw.hide)?;
    let allow = parse("allow", raw.allow)?;
    for (i, (a, span)) in allow.iter().enumerate() {
        if let Some(j) = hide.iter().position(|(h, _)| h.text == a.text) {
            return Err(loc.error(
                span.clone(),
                format!("files.allow[{i}]"),
                format!(
                    "{:?} is also files.hide[{j}]; a path is either hidden or not",
                    a.text
                ),
            ));
        }
    }
    Ok(FilesConfig {
        hide: hide.into_iter().map(|(p, _)| p).collect(),
        allow: allow.into_iter().map(|(p, _)| p).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_home_and_absolute() {
        let p = PathPattern::parse("~/.config/my-tool/token").unwrap();
        assert!(p.in_home);
        assert_eq!(p.components, [".config", "my-tool", "token"]);
        let p = PathPattern::parse("/etc/cork/secret/").unwrap();
        assert!(!p.in_home);
        assert_eq!(p.components, ["etc", "cork", "secret"]);
        assert!(PathPattern::parse("~").unwrap().components.is_empty());
    }

    #[test]
    fn refuses_what_is_not_meant_literally() {
        for bad in [
            "",
            "rel/path",
            "~root/.ssh",
            "/a//b",
            "/a/../b",
            "~/./x",
            "/a/**/b",
            "/",
            "/a\0",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn coverage_per_component() {
        let home = Path::new("/home/u");
        let p = PathPattern::parse("~/.ssh/id_*").unwrap();
        assert_eq!(
            p.coverage(Some(home), Path::new("/home/u/.ssh/id_rsa")),
            Coverage::Exact
        );
        assert_eq!(
            p.coverage(Some(home), Path::new("/home/u/.ssh")),
            Coverage::Ancestor
        );
        assert_eq!(
            p.coverage(Some(home), Path::new("/home/u/.ssh/known_hosts")),
            Coverage::None
        );
        assert_eq!(
            p.coverage(Some(home), Path::new("/home/u/.ssh/id_rsa/x")),
            Coverage::Below
        );
        assert_eq!(
            p.coverage(Some(home), Path::new("/home/v/.ssh/id_rsa")),
            Coverage::None
        );
        assert_eq!(
            p.coverage(None, Path::new("/home/u/.ssh/id_rsa")),
            Coverage::None
        );
        let abs = PathPattern::parse("/srv/*/token").unwrap();
        assert_eq!(
            abs.coverage(None, Path::new("/srv/a/token")),
            Coverage::Exact
        );
        assert_eq!(abs.coverage(None, Path::new("/srv")), Coverage::Ancestor);
    }
}
