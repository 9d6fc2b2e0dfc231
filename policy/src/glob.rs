//! The one wildcard syntax of the manifest's `[env]` names and `[files]` paths: `*` stands
//! for any run of characters and `?` for one, nothing else is special. Path patterns apply
//! it per path component (a `*` never crosses a `/`), which `files.rs` arranges by
//! matching component by component.

/// Does `pattern` match all of `text`? Iterative with one backtrack point, so a pattern
/// of many `*` stays linear per star instead of exponential.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `text` has a wildcard in it.
pub fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_marks() {
        let yes = [
            ("*", ""),
            ("*", "abc"),
            ("*_TOKEN", "GH_TOKEN"),
            ("*_SECRET*", "AZURE_CLIENT_SECRET"),
            ("*_SECRET*", "MY_SECRET_KEY"),
            ("id_*", "id_ed25519"),
            ("a?c", "abc"),
            ("a*b*c", "aXbYbZc"),
            ("GITHUB_TOKEN", "GITHUB_TOKEN"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p} ~ {t}");
        }
        let no = [
            ("*_TOKEN", "TOKEN"),
            ("*_TOKEN", "GH_TOKENS"),
            ("a?c", "ac"),
            ("abc", "abcd"),
            ("a*b*c", "aXbYbZ"),
            ("id_*", "known_hosts"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p} !~ {t}");
        }
        assert!(glob_match(&"*a".repeat(20), &"a".repeat(40)));
        assert!(!glob_match(&"*a".repeat(20), &"b".repeat(40)));
    }
}
