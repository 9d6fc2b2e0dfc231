//! A policy at the scale real allowlists reach: 100 000 prefixes per address family in the
//! kernel tries, and rules past index 65 535 (rule ids are 32-bit) named in audit events.
//! The generated prefixes are data only (10.0.0.0/8 and 2001:db8:8000::/33, never
//! contacted); the bottle talks to the world's own servers.

use anyhow::Result;
use cork_integration::scale_bench::data_rules;
use cork_integration::{Probe, Side, World};
use serde_json::json;

const PER_FAMILY: usize = 100_000;

#[test]
fn a_hundred_thousand_prefixes_per_family_are_enforced() -> Result<()> {
    let world = World::new("a_hundred_thousand_prefixes_per_family_are_enforced")?;
    let ok4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let ok6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let no4 = world.tcp_server(Side::Internet, "198.51.100.11:8443")?;
    let no6 = world.tcp_server(Side::Internet, "[2001:db8::11]:8443")?;
    // The rules that matter come last, so their ids are far above 65 535.
    let first = 2 * PER_FAMILY;
    let body = format!(
        "{}[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8443]\n\
         [[egress.allow]]\ncidr = \"2001:db8::10/128\"\nports = [8443]\n",
        data_rules(PER_FAMILY)
    );
    let probe = Probe::new()
        .tcp(&ok4.ip(), 8443)?
        .tcp(&ok6.ip(), 8443)?
        .tcp(&no4.ip(), 8443)?
        .tcp(&no6.ip(), 8443)?;
    let (out, audit) = world.run_probe("a", &body, &probe)?;
    assert_eq!(out.lines(), ["ok", "ok", "EPERM", "EPERM"], "{out}");
    assert!(no4.peers().is_empty() && no6.peers().is_empty());
    for (hook, dst, rule) in [
        ("connect4", "198.51.100.10", first),
        ("connect6", "2001:db8::10", first + 1),
    ] {
        audit.expect(json!({
            "hook": hook, "dst": dst, "dport": 8443, "verdict": "allow",
            "reason": "allow_rule", "rule": format!("egress.allow[{rule}]"),
        }))?;
    }
    for (hook, dst) in [("connect4", "198.51.100.11"), ("connect6", "2001:db8::11")] {
        audit.expect(json!({
            "hook": hook, "dst": dst, "verdict": "deny", "reason": "default_deny",
        }))?;
    }
    Ok(())
}
