//! Resolving masks against a throwaway home: defaults, globs, symlinks, holes, variables.

use super::*;

fn policy(extra: &str) -> FilesConfig {
    cork_policy::compile(
        &format!("version = 1\n[bottle]\nname = \"t\"\n{extra}"),
        "t",
    )
    .expect("test manifest compiles")
    .files
}

/// A throwaway home with some credential files; removed on drop.
struct TempHome(PathBuf);

impl TempHome {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cork-secrets-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in [".aws", ".ssh", ".config/my-tool", ".docker", "elsewhere"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        for f in [
            ".aws/credentials",
            ".ssh/id_ed25519",
            ".ssh/known_hosts",
            ".docker/config.json",
            ".config/my-tool/token",
            "elsewhere/key",
        ] {
            fs::write(dir.join(f), "fake").expect("write");
        }
        std::os::unix::fs::symlink(dir.join("elsewhere/key"), dir.join(".netrc")).expect("symlink");
        fs::write(dir.join("elsewhere/ssh-key"), "fake").expect("write");
        std::os::unix::fs::symlink(dir.join("elsewhere/ssh-key"), dir.join(".ssh/id_rsa"))
            .expect("symlink");
        std::os::unix::fs::symlink("/usr", dir.join(".aws/usr")).expect("symlink");
        TempHome(dir)
    }

    fn home(&self) -> Vec<Home> {
        vec![Home {
            path: fs::canonicalize(&self.0).expect("canonical"),
            whose: "test".into(),
        }]
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The masks under the test home, relative to it (the host may have agent sockets too).
fn paths(home: &[Home], masks: &[Mask]) -> Vec<(String, MaskKind)> {
    masks
        .iter()
        .filter_map(|m| {
            let rel = m.path.strip_prefix(&home[0].path).ok()?;
            Some((rel.display().to_string(), m.kind))
        })
        .collect()
}

#[test]
fn defaults_hide_and_symlinks_resolve() {
    let t = TempHome::new("defaults");
    let homes = t.home();
    let m = masks(
        &policy("[files]\nhide = [\"~/.config/my-*/token\"]\n"),
        &homes,
        &[],
    );
    assert_eq!(
        paths(&homes, &m),
        [
            (".aws".to_owned(), MaskKind::Dir),
            (".config/my-tool/token".to_owned(), MaskKind::File),
            (".docker/config.json".to_owned(), MaskKind::File),
            (".ssh".to_owned(), MaskKind::Dir),
            ("elsewhere/key".to_owned(), MaskKind::File),
            ("elsewhere/ssh-key".to_owned(), MaskKind::File),
        ]
    );
    let linked = m
        .iter()
        .find(|m| m.path.ends_with("elsewhere/ssh-key"))
        .expect("linked");
    assert!(
        linked
            .why
            .starts_with("default ~/.ssh of test, linked from "),
        "{}",
        linked.why
    );
    let netrc = m
        .iter()
        .find(|m| m.path.ends_with("elsewhere/key"))
        .expect("netrc");
    assert_eq!(netrc.why, "default ~/.netrc of test");
}

#[test]
fn allow_punches_holes() {
    let t = TempHome::new("allow");
    let homes = t.home();
    let m = masks(
        &policy("[files]\nallow = [\"~/.ssh/known_hosts\", \"~/.docker\"]\n"),
        &homes,
        &[],
    );
    let got = paths(&homes, &m);
    assert!(
        got.contains(&(".ssh/id_ed25519".to_owned(), MaskKind::File)),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|(p, _)| p == ".ssh" || p.contains("known_hosts")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|(p, _)| p.starts_with(".docker")),
        "{got:?}"
    );
}

#[test]
fn variables_name_files_and_hard_links_are_said() {
    let t = TempHome::new("vars");
    let homes = t.home();
    let key = homes[0].path.join("elsewhere/key");
    fs::hard_link(&key, homes[0].path.join("elsewhere/link")).expect("link");
    let sock = homes[0].path.join("elsewhere/link");
    let removed = vec![(
        OsString::from("SSH_AUTH_SOCK"),
        sock.clone().into_os_string(),
    )];
    let m = masks(&policy(""), &homes, &removed);
    let link = m
        .iter()
        .find(|m| m.path == sock)
        .expect("named file masked");
    assert_eq!(
        link.why,
        "named by SSH_AUTH_SOCK; 2 hard links, the others are not masked"
    );
}

#[test]
fn defaults_parse() {
    for d in DEFAULT_HIDDEN.iter().chain(DEFAULT_AGENT_SOCKETS) {
        let p = PathPattern::parse(d).expect("a default parses");
        assert_eq!(p.in_home, d.starts_with('~'), "{d}");
    }
}
