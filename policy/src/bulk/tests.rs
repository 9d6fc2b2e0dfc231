//! The bulk reader against `toml` itself: for every text, either it declines or it gives
//! exactly what `toml` gives (spans included); it never accepts a text `toml` refuses; and
//! `parse_manifest` through it gives the same manifest or the same located error.

use proptest::prelude::*;

use super::read_any;
use crate::manifest::{parse_read, parse_with_toml};
use crate::schema::RawManifest;

const HEAD: &str = "version = 1\n[bottle]\nname = \"agent-1\"\n";

/// What `toml` reads from `src`, as text (spans and all), or its error.
fn by_toml(src: &str) -> Result<String, String> {
    toml::from_str::<RawManifest>(src)
        .map(|raw| format!("{raw:?}"))
        .map_err(|e| e.to_string())
}

/// Checks the bulk reader on `src` and returns whether it answered.
fn check(src: &str) -> bool {
    let bulk = read_any(src).map(|raw| format!("{raw:?}"));
    match (by_toml(src), bulk) {
        (_, None) => {}
        (Ok(want), Some(got)) => assert_eq!(got, want, "bulk reading differs on:\n{src}"),
        (Err(e), Some(got)) => panic!("toml refuses ({e}) but bulk read:\n{src}\n{got}"),
    }
    let through_bulk = parse_read(src, "m.toml", read_any(src));
    assert_eq!(through_bulk, parse_with_toml(src, "m.toml"), "on:\n{src}");
    read_any(src).is_some()
}

fn plain_v4(i: usize) -> String {
    format!(
        "[[egress.allow]]\ncidr = \"10.0.{}.{}\"\nports = [443]\n",
        i / 256,
        i % 256
    )
}

#[test]
fn plain_entries_read_as_toml_reads_them() {
    let cases = [
        // Every key a plain entry has, in various spellings.
        "[[egress.allow]]\ncidr = \"198.51.100.0/24\"\nports = [443, \"8000-8100\", 80,]\n\
         proto = \"udp\"\n",
        "[[egress.allow]]\ndomain = \"api.example.test\"\ninspect = false\nports = [443]\n",
        "[[egress.deny]]\ncidr = \"2001:db8::/32\"\n[[egress.allow]]\ncidr = \"0.0.0.0/0\"\n",
        "  [[ egress . allow ]]  # indented, spaced, commented\n\tcidr='198.51.100.7'\n\
         ports = [\n  443, # a comment in the array\n  8443\n]\n\n# between\n\n",
        "[[\"egress\".'allow']]\n\"cidr\" = \"198.51.100.7\"\n",
        "[[egress.allow]]\r\ncidr = \"198.51.100.7\"\r\nports = [443]\r\n",
        "[[egress.allow]]\ncidr = \"198.51.\\u0031\\u0030\\u0030.7\"\n",
        "[[egress.allow]]\ncidr = \"\"\"198.51.100.7\"\"\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = []\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [1_000, +443]\n",
        // Not plain, left to toml: routes, asks, dotted or unknown keys, odd values.
        "[[egress.allow]]\ndomain = \"a.test\"\n[[egress.allow.http]]\npaths = [\"/v1/\"]\n\
         [[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[[egress.ask]]\ndomain = \"a.test\"\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nhttp.methods = [\"GET\"]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [0x1bb, 443]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [[443]]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [{ a = 1 }]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [99999999999999999999]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ninspect = \"yes\"\n",
        "[[egress.allow]]\ncidr = 7\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ncomment = \"x\"\n",
        // Other tables around, and `[egress]` itself.
        "[egress]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n[dns]\nmin_ttl = 5\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n[egress]\n[[egress.deny]]\ncidr = \"10.0.0.0/8\"\n",
        "[loopback]\nhost_ports = [53]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n\
         [unix]\nallow = [\"/run/a.sock\"]\n",
        "[dns]\nupstream = [\n\"198.51.100.53\",\n]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[dlp]\naction = \"\"\"\n[[egress.allow]]\ncidr = \"10.0.0.1\"\n\"\"\"\n\
         [[egress.allow]]\ncidr = \"198.51.100.7\"\n",
    ];
    let answered = cases
        .iter()
        .filter(|case| check(&format!("{HEAD}{case}")))
        .count();
    // All but the eight whose one entry is not plain.
    assert_eq!(answered, cases.len() - 8);
}

#[test]
fn texts_toml_refuses_are_declined() {
    let cases = [
        // Errors inside what would be plain entries.
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ncidr = \"198.51.100.8\"\n",
        "[[egress.allow]]\ncidr = \"bad \\q escape\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\" # a \u{1} control\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\r",
        "[[egress.allow]] cidr = \"198.51.100.7\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [443\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = 443]\n",
        "[[egress.al!ow]]\ncidr = \"198.51.100.7\"\n",
        // Layouts where the entries' removal would hide a conflict.
        "egress = { allow = [] }\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "egress.allow = []\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[egress]\nallow = []\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[egress]\n\"deny\" = []\n[[egress.deny]]\ncidr = \"198.51.100.7\"\n",
        "[egress.allow]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n[egress.allow]\n",
        "[[egress]]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[egress.allow.http]\n[[egress.allow]]\ncidr = \"198.51.100.7\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n[egress]\nallow = 1\n",
        // Errors elsewhere in the text.
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n[dns]\nmin_ttl = \"x\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n[bottle]\nname = \"again\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\n]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nx = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\
         [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\
         ]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
    ];
    for case in cases {
        let src = format!("{HEAD}{case}");
        check(&src);
        assert!(read_any(&src).is_none(), "bulk read:\n{src}");
    }
}

#[test]
fn errors_are_the_ones_toml_reading_gives() {
    // Entries that read fine but do not validate, after many plain ones: the error names
    // the same place as before.
    let many: String = (0..300).map(plain_v4).collect();
    for bad in [
        "[[egress.allow]]\ncidr = \"10.0.0.1/8\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = [443, 0]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nports = []\n",
        "[[egress.deny]]\ndomain = \"a.test\"\nports = [443]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ndomain = \"a.test\"\n",
        "[[egress.allow]]\nports = [443]\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\nproto = \"icmp\"\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ninspect = true\n",
        "[[egress.allow]]\ncidr = \"198.51.100.7\"\ncidr = \"198.51.100.8\"\n",
    ] {
        let src = format!("{HEAD}{many}{bad}{}", plain_v4(400));
        check(&src);
        assert!(parse_with_toml(&src, "m.toml").is_err(), "accepted:\n{bad}");
    }
}

#[test]
fn a_large_manifest_is_read_in_several_runs() {
    // Past `RUN_TOKENS` tokens, with a multi-line array at every run's end.
    let mut src = String::from(HEAD);
    for i in 0..20_000 {
        src.push_str(&plain_v4(i % 60_000));
        if i % 997 == 0 {
            src.push_str("[[egress.deny]]\ncidr = \"2001:db8::/48\"\nports = [\n 22,\n 23,\n]\n");
        }
    }
    let bulk = read_any(&src).map(|raw| format!("{raw:?}"));
    assert_eq!(bulk, by_toml(&src).ok());
}

/// One piece of a generated manifest body.
fn piece() -> impl Strategy<Value = String> {
    let v4 = (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("198.51.{a}.{b}"));
    let ports = prop::collection::vec(
        prop_oneof![
            (1u32..70_000).prop_map(|p| p.to_string()),
            Just("\"8000-8100\"".to_string()),
            Just("0".to_string()),
        ],
        0..3,
    )
    .prop_map(|p| format!("ports = [{}]\n", p.join(", ")));
    let ws = prop_oneof![Just(""), Just(" "), Just("\t"), Just("  # c\n")];
    prop_oneof![
        12 => (v4.clone(), ports.clone(), ws.clone())
            .prop_map(|(a, p, w)| format!("[[egress.allow]]{w}\ncidr = \"{a}\"\n{p}")),
        6 => (v4.clone(), ws.clone())
            .prop_map(|(a, w)| format!("[[egress.deny]]\n{w}cidr = \"{a}\"\nproto = \"any\"\n")),
        3 => Just("[[egress.allow]]\ndomain = \"a.test\"\n".to_string()),
        2 => Just("[[egress.allow.http]]\nmethods = [\"GET\"]\n".to_string()),
        1 => Just("[[egress.ask]]\ndomain = \"b.test\"\n".to_string()),
        1 => Just("[egress]\n".to_string()),
        1 => Just("[dns]\nmin_ttl = 5\n".to_string()),
        1 => Just("[unix]\nallow = [\n\"/run/a.sock\",\n]\n".to_string()),
        1 => Just("# comment\n\n".to_string()),
        1 => Just("[[egress.allow]]\ncidr = \"198.51.100.7\"\nextra = 1\n".to_string()),
        1 => Just("allow = []\n".to_string()),
        1 => Just("[egress.allow]\n".to_string()),
        1 => Just("[[egress.allow]]\ncidr = \"bad\\q\"\n".to_string()),
    ]
}

proptest! {
    #[test]
    fn generated_manifests_read_as_toml_reads_them(
        pieces in prop::collection::vec(piece(), 0..12),
    ) {
        check(&format!("{HEAD}{}", pieces.concat()));
    }
}

#[test]
fn only_long_texts_take_the_bulk_reader() {
    let short = format!("{HEAD}{}", plain_v4(1));
    assert!(super::read(&short).is_none());
    let long: String = (0..8_000).map(plain_v4).collect();
    let long = format!("{HEAD}{long}");
    assert!(long.len() >= super::MIN_BULK_LEN);
    assert!(super::read(&long).is_some());
}
