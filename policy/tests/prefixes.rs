//! `check_all_prefixes`: every prefix of a valid manifest parses or is refused with a
//! located error — never a panic, never a place outside the text.

use cork_policy::compile;

const MANIFEST: &str = r#"version = 1 # ünïcode comment

[bottle]
name = "agent-1"

[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443, "8000-8100"]
proto = "tcp"

[egress]
deny = [{ cidr = "::ffff:198.51.100.64/122", ports = ["1-1024"], proto = "any" }]

[[egress.allow]]
cidr = "2001:db8::/32"

[loopback]
host_ports = [8125, 8125]
"#;

#[test]
fn check_all_prefixes() {
    compile(MANIFEST, "full").expect("the whole manifest is valid");
    let lines = MANIFEST.lines().count() + 1;
    let mut accepted = 0;
    for end in (0..=MANIFEST.len()).filter(|&i| MANIFEST.is_char_boundary(i)) {
        let text = &MANIFEST[..end];
        match compile(text, "prefix") {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{end}: {e}");
                let line_len = text
                    .lines()
                    .nth(e.line - 1)
                    .map_or(0, |l| l.chars().count());
                assert!(e.col >= 1 && e.col <= line_len + 1, "{end}: {e}");
                assert!(!e.message.is_empty(), "{end}: {e}");
            }
        }
    }
    assert!(accepted > 0, "some prefixes are complete manifests");
}
