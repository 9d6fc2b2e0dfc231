//! `check_all_prefixes`: every prefix of a valid manifest parses or is refused with a
//! located error — never a panic, never a place outside the text. Run through `compile`
//! (which refuses domain rules) and through the full parse that keeps them.

use cork_policy::{ManifestError, Policy, compile, parse_manifest};

const MANIFEST: &str = r#"version = 1 # ünïcode comment

[bottle]
name = "agent-1"

[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443, "8000-8100"]
proto = "tcp"

[egress]
deny = [
  { cidr = "::ffff:198.51.100.64/122", ports = ["1-1024"], proto = "any" },
  { domain = "evil.pkg.example.test" },
]

[[egress.allow]]
cidr = "2001:db8::/32"

[[egress.allow]]
domain = "API.example.test."
ports = [443]

[[egress.allow]]
domain = "*.pkg.example.test"

[loopback]
host_ports = [8125, 8125]

[dns]
upstream = ["198.51.100.53", "[2001:db8::53]:5353"]
min_ttl = 10
max_ttl = 600
queries_per_second = 100
"#;

/// One way from manifest text to a policy.
type Build = fn(&str, &str) -> Result<Policy, ManifestError>;

fn unenforced(src: &str, origin: &str) -> Result<Policy, ManifestError> {
    Policy::from_manifest_unenforced(parse_manifest(src, origin)?)
}

#[test]
fn check_all_prefixes() {
    let full = unenforced(MANIFEST, "full").expect("the whole manifest is valid");
    assert_eq!(full.domains.len(), 3);
    assert_eq!(
        compile(MANIFEST, "full").expect("compile takes domain rules"),
        full
    );
    let how: [(&str, Build); 2] = [("compile", compile), ("unenforced", unenforced)];
    for (what, build) in how {
        check_prefixes(what, build);
    }
}

fn check_prefixes(what: &str, build: Build) {
    let lines = MANIFEST.lines().count() + 1;
    let mut accepted = 0;
    for end in (0..=MANIFEST.len()).filter(|&i| MANIFEST.is_char_boundary(i)) {
        let text = &MANIFEST[..end];
        match build(text, "prefix") {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{what} {end}: {e}");
                let line_len = text
                    .lines()
                    .nth(e.line - 1)
                    .map_or(0, |l| l.chars().count());
                assert!(e.col >= 1 && e.col <= line_len + 1, "{what} {end}: {e}");
                assert!(!e.message.is_empty(), "{what} {end}: {e}");
            }
        }
    }
    assert!(accepted > 0, "{what}: some prefixes are complete manifests");
}
