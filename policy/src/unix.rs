//! The `[unix]` table: the unix-domain sockets a bottle may connect or send datagrams to.
//! Everything else is refused by the kernel (`cgroup/connect_unix`, `cgroup/sendmsg_unix`),
//! and cork's own control socket is refused whatever the manifest says.
//!
//! ```toml
//! [unix]
//! allow = ["/run/app/app.sock", "@app-bus"]
//! ```
//!
//! An entry is either an absolute path (a socket in the file system) or `@` followed by an
//! abstract name (the bytes after the leading NUL of `sun_path`, as `ss` and
//! `/proc/net/unix` print them; a NUL inside the name is written `\u0000`). The kernel
//! hooks run before the kernel resolves the address, so they compare the string the program
//! passed to `connect()`/`sendto()`: a path is matched exactly as written, which is why
//! relative paths and spellings with `//`, `.` or `..` are refused here — another spelling
//! of a listed socket is simply not listed, and is denied.

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::schema::RawUnix;

/// Where `cork daemon` listens unless told otherwise: bottles may never connect to it.
pub const CONTROL_SOCKET: &str = "/run/cork/cork.sock";
/// Every spelling of [`CONTROL_SOCKET`] that a manifest may not list and that the kernel
/// denies even if it did (`/var/run` is a symlink to `/run` on every current distribution).
pub const CONTROL_SOCKET_SPELLINGS: &[&str] = &[CONTROL_SOCKET, "/var/run/cork/cork.sock"];
/// Entries of the kernel's unix name map; equals `CORK_MAX_UNIX_NAMES` in cork_abi.h. The
/// control socket spellings take two of them.
pub const MAX_UNIX_NAMES: usize = 256;
/// Bytes of `sun_path` (`struct sockaddr_un`); equals `CORK_UNIX_NAME_MAX`. A path may fill
/// it (the kernel adds the terminating NUL itself).
pub const MAX_UNIX_PATH: usize = 108;
/// An abstract name fills `sun_path` after its leading NUL.
pub const MAX_UNIX_ABSTRACT: usize = MAX_UNIX_PATH - 1;

/// A unix socket address as the kernel hooks see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnixName {
    /// A socket in the file system, by the absolute path programs pass.
    Path(String),
    /// An abstract socket: the name after the leading NUL (written `@name`).
    Abstract(String),
}

impl UnixName {
    /// Parses a manifest entry; the error says what is wrong, in the manifest's words.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix('@') {
            if name.is_empty() {
                return Err(
                    "`@` alone is an empty abstract name; write the name after `@`".to_owned(),
                );
            }
            if name.len() > MAX_UNIX_ABSTRACT {
                return Err(format!(
                    "the abstract name is {} bytes; the kernel holds at most {MAX_UNIX_ABSTRACT} \
                     (sun_path is {MAX_UNIX_PATH} bytes and the first is the NUL that marks it \
                     abstract)",
                    name.len()
                ));
            }
            return Ok(UnixName::Abstract(name.to_owned()));
        }
        if text.is_empty() {
            return Err(
                "empty; write an absolute socket path (`/run/app.sock`) or `@name` for an \
                 abstract socket"
                    .to_owned(),
            );
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is relative; write the absolute path the program passes to connect() \
                 (the kernel compares that string before any working directory applies, so a \
                 relative name could never be matched safely), or `@name` for an abstract socket"
            ));
        };
        if text.contains('\0') {
            return Err(format!(
                "{text:?} contains a NUL byte; the kernel ends a socket path at the first NUL"
            ));
        }
        if text.len() > MAX_UNIX_PATH {
            return Err(format!(
                "{text:?} is {} bytes; a socket path holds at most {MAX_UNIX_PATH} (sun_path)",
                text.len()
            ));
        }
        for comp in rest.split('/') {
            let what = match comp {
                "" if rest.is_empty() => "is the root directory, not a socket",
                "" => "has an empty component (`//` or a trailing `/`)",
                "." | ".." => "has a `.` or `..` component",
                _ => continue,
            };
            return Err(format!(
                "{text:?} {what}; write the path exactly as programs pass it (the kernel \
                 compares the string, so another spelling of it would never match)"
            ));
        }
        if CONTROL_SOCKET_SPELLINGS.contains(&text) {
            return Err(format!(
                "{text:?} is cork's control socket; bottles may never connect to it"
            ));
        }
        Ok(UnixName::Path(text.to_owned()))
    }

    /// Whether this is an abstract name.
    pub fn is_abstract(&self) -> bool {
        matches!(self, UnixName::Abstract(_))
    }

    /// The name's bytes as the kernel compares them: the path, or the abstract name after
    /// its leading NUL.
    pub fn bytes(&self) -> &[u8] {
        match self {
            UnixName::Path(p) => p.as_bytes(),
            UnixName::Abstract(a) => a.as_bytes(),
        }
    }
}

/// The manifest spelling: the path, or `@` and the abstract name.
impl std::fmt::Display for UnixName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnixName::Path(p) => f.write_str(p),
            UnixName::Abstract(a) => write!(f, "@{a}"),
        }
    }
}

/// Validated `[unix]`; the default allows no unix socket at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnixConfig {
    /// `unix.allow`, in manifest order: entry `i` is rule `unix.allow[i]` in audit events.
    pub allow: Vec<UnixName>,
}

/// Validates `[unix]`.
pub(crate) fn unix_config(
    loc: &Locator<'_>,
    raw: Option<RawUnix>,
) -> Result<UnixConfig, ManifestError> {
    let Some(list) = raw.and_then(|r| r.allow) else {
        return Ok(UnixConfig::default());
    };
    let span = list.span();
    let mut allow: Vec<UnixName> = Vec::new();
    for (i, entry) in list.into_inner().into_iter().enumerate() {
        let path = format!("unix.allow[{i}]");
        let name =
            UnixName::parse(entry.get_ref()).map_err(|why| loc.error(entry.span(), &path, why))?;
        if let Some(j) = allow.iter().position(|n| *n == name) {
            return Err(loc.error(
                entry.span(),
                path,
                format!("{:?} is already unix.allow[{j}]", entry.get_ref()),
            ));
        }
        allow.push(name);
    }
    let room = MAX_UNIX_NAMES - CONTROL_SOCKET_SPELLINGS.len();
    if allow.len() > room {
        return Err(loc.error(
            span,
            "unix.allow",
            format!(
                "{} names, but the kernel map holds at most {room} beside cork's own entries",
                allow.len()
            ),
        ));
    }
    Ok(UnixConfig { allow })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names() {
        assert_eq!(
            UnixName::parse("/run/app.sock"),
            Ok(UnixName::Path("/run/app.sock".into()))
        );
        assert_eq!(
            UnixName::parse("@app-bus"),
            Ok(UnixName::Abstract("app-bus".into()))
        );
        // A NUL is part of an abstract name (the kernel compares every byte of it).
        assert_eq!(
            UnixName::parse("@a\0b").map(|n| n.bytes().to_vec()),
            Ok(b"a\0b".to_vec())
        );
        let longest_path = format!("/{}", "p".repeat(MAX_UNIX_PATH - 1));
        assert!(UnixName::parse(&longest_path).is_ok());
        let longest_abstract = format!("@{}", "a".repeat(MAX_UNIX_ABSTRACT));
        assert!(UnixName::parse(&longest_abstract).is_ok());
        assert_eq!(
            UnixName::parse("@x").map(|n| n.to_string()),
            Ok("@x".to_owned())
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("@", "empty abstract name"),
            ("run/app.sock", "is relative"),
            ("./app.sock", "is relative"),
            ("/", "root directory"),
            ("/run//app.sock", "empty component"),
            ("/run/app.sock/", "empty component"),
            ("/run/./app.sock", "`.` or `..`"),
            ("/run/../run/app.sock", "`.` or `..`"),
            ("/run/a\0b", "NUL byte"),
            ("/run/cork/cork.sock", "control socket"),
            ("/var/run/cork/cork.sock", "control socket"),
        ];
        for (text, why) in cases {
            let err = UnixName::parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let too_long = format!("/{}", "p".repeat(MAX_UNIX_PATH));
        assert!(
            UnixName::parse(&too_long)
                .unwrap_err()
                .contains("at most 108")
        );
        let too_long = format!("@{}", "a".repeat(MAX_UNIX_ABSTRACT + 1));
        assert!(
            UnixName::parse(&too_long)
                .unwrap_err()
                .contains("at most 107")
        );
    }

    #[test]
    fn a_path_and_an_abstract_name_with_the_same_bytes_differ() {
        let p = UnixName::parse("/x").unwrap();
        let a = UnixName::parse("@/x").unwrap();
        assert_eq!(p.bytes(), a.bytes());
        assert_ne!(p, a);
    }
}
